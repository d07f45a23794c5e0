"""Authentication context template console pages: list, view, create/edit with the row editor (no JavaScript),
preview of strengths and ranges, messages at the field, delete with confirmation, roles and audit."""

import lxml.html
import pytest
from django.urls import reverse

from federation.models import AuditEvent
from federation.saml.constants import AC_PASSWORD, AC_X509
from partnerships import authn_context_services as services
from partnerships.authn_context import AC_INTERNET_PROTOCOL, AC_MOBILE_TWO_FACTOR_CONTRACT, DEFAULT_CLASS_URIS
from partnerships.models import AuthnContextTemplate

pytestmark = pytest.mark.django_db

LIST = "/partnerships/authn-contexts/"
CREATE = "/partnerships/authn-contexts/new/"
B4 = [
    {"uri": AC_X509, "max_level": ""},
    {"uri": AC_MOBILE_TWO_FACTOR_CONTRACT, "max_level": "15"},
    {"uri": AC_INTERNET_PROTOCOL, "max_level": "10"},
    {"uri": AC_PASSWORD, "max_level": "5"},
]


def form_data(name="Corporate", rows=(), action="save", levels=True, description="", **extra):
    data = {"name": name, "description": description, "row_count": str(len(rows)), "action": action, **extra}
    if levels:
        data["protection_levels"] = "on"
    for index, row in enumerate(rows):
        data[f"row-{index}-uri"] = row["uri"]
        data[f"row-{index}-max_level"] = str(row.get("max_level") or "")
        if row.get("grouped"):
            data[f"row-{index}-grouped"] = "on"
    return data


def page(response):
    return lxml.html.fromstring(response.content.decode())


def error_at(response, element_id):
    nodes = page(response).xpath(f'//*[@id="{element_id}_errors"]//li')
    return [n.text_content() for n in nodes]


def uris_in_editor(response):
    doc = page(response)
    count = int(doc.xpath('//input[@name="row_count"]/@value')[0])
    return [doc.xpath(f'//input[@name="row-{i}-uri"]/@value')[0] for i in range(count)]


def make(name="Corporate", rows=B4, levels=True):
    return services.create_template(name, protection_levels=levels, entries=rows)


# ---------------------------------------------------------------- list and view


def test_urls_are_in_the_partnerships_namespace():
    assert reverse("partnerships:authn_context_list") == LIST
    assert reverse("partnerships:authn_context_create") == CREATE
    assert reverse("partnerships:list") == "/partnerships/"


def test_partnership_list_links_to_the_templates(admin_client):
    assert f'href="{LIST}"' in admin_client.get(reverse("partnerships:list")).content.decode()


def test_empty_list_offers_create(admin_client):
    text = admin_client.get(LIST).content.decode()
    assert "No authentication context templates are defined yet." in text
    assert f'href="{CREATE}"' in text


def test_list_searches_by_name_and_uri_and_paginates(admin_client):
    make("Corporate")
    services.create_template("Kerberos only", entries=[{"uri": "urn:oasis:names:tc:SAML:2.0:ac:classes:Kerberos"}])
    text = admin_client.get(LIST).content.decode()
    assert "Corporate" in text and "Kerberos only" in text
    assert "X509, MobileTwoFactorContract, InternetProtocol, Password" in text
    text = admin_client.get(LIST, {"q": "kerberos"}).content.decode()
    assert "Kerberos only" in text and "Corporate" not in text
    assert "No templates match this search." in admin_client.get(LIST, {"q": "nothing-like-this"}).content.decode()
    for i in range(55):
        services.create_template(f"t{i:02}", entries=[{"uri": AC_PASSWORD}])
    second = admin_client.get(LIST, {"page": 2}).content.decode()
    assert "Page 2 of 2 (57 in all)" in second


def test_detail_shows_strengths_and_ranges(admin_client):
    template = make(rows=[dict(B4[0]), dict(B4[1], grouped=True), dict(B4[2]), dict(B4[3], grouped=True)])
    response = admin_client.get(reverse("partnerships:authn_context_detail", args=[template.pk]))
    cells = [
        [td.text_content().strip() for td in tr.xpath("td")]
        for tr in page(response).xpath('//table[@class="ac-preview"]/tbody/tr')
    ]
    assert [(c[1].split()[0], c[2], c[3]) for c in cells] == [
        (AC_X509, "2", "16–1000"),
        (AC_MOBILE_TWO_FACTOR_CONTRACT, "2", "11–15"),
        (AC_INTERNET_PROTOCOL, "1", "6–10"),
        (AC_PASSWORD, "1", "1–5"),
    ]


def test_missing_template_is_404(admin_client):
    assert admin_client.get(reverse("partnerships:authn_context_detail", args=[999])).status_code == 404


# ---------------------------------------------------------------- create and the row editor


def test_create_the_b4_example_and_audit_it(admin_client):
    response = admin_client.post(CREATE, form_data(rows=B4, description="agreed with sp1"))
    template = AuthnContextTemplate.objects.get(name="Corporate")
    assert response.status_code == 302 and response["Location"] == reverse(
        "partnerships:authn_context_detail", args=[template.pk]
    )
    assert template.protection_levels and template.description == "agreed with sp1"
    assert template.entries == [
        {"uri": AC_X509, "grouped": False, "max_level": 1000},
        {"uri": AC_MOBILE_TWO_FACTOR_CONTRACT, "grouped": False, "max_level": 15},
        {"uri": AC_INTERNET_PROTOCOL, "grouped": False, "max_level": 10},
        {"uri": AC_PASSWORD, "grouped": False, "max_level": 5},
    ]
    assert template.compiled().class_for_level(20) == AC_X509
    event = AuditEvent.objects.get(action="create", object_type="partnerships.AuthnContextTemplate")
    assert event.actor == "alice-admin" and event.object_repr == "Corporate"
    assert event.changes["entries"][1][1] == {"uri": AC_MOBILE_TWO_FACTOR_CONTRACT, "grouped": False, "max_level": 15}
    follow = admin_client.get(response["Location"]).content.decode()
    assert "Created the authentication context template “Corporate”." in follow


def test_load_default_uris_then_add_move_and_remove_without_javascript(admin_client):
    response = admin_client.post(CREATE, form_data(rows=[], action="load_defaults", levels=False))
    assert response.status_code == 200
    assert uris_in_editor(response) == list(DEFAULT_CLASS_URIS)
    assert "Loaded 25 default URIs." in response.content.decode()
    assert not AuthnContextTemplate.objects.exists()

    rows = [{"uri": AC_PASSWORD}, {"uri": AC_X509}]
    again = admin_client.post(CREATE, form_data(rows=rows, action="load_defaults", levels=False))
    assert len(uris_in_editor(again)) == 25 and uris_in_editor(again)[:2] == [AC_PASSWORD, AC_X509]
    assert "Loaded 23 default URIs." in again.content.decode()

    added = admin_client.post(
        CREATE, form_data(rows=rows, action="add", new_uri=" https://refeds.org/profile/mfa ", levels=False)
    )
    assert uris_in_editor(added) == [AC_PASSWORD, AC_X509, "https://refeds.org/profile/mfa"]
    assert page(added).xpath('//input[@name="new_uri"]/@value') == [""]

    duplicate = admin_client.post(CREATE, form_data(rows=rows, action="add", new_uri=AC_X509, levels=False))
    assert "X509 is already in the list." in duplicate.content.decode()
    assert uris_in_editor(duplicate) == [AC_PASSWORD, AC_X509]

    blank = admin_client.post(CREATE, form_data(rows=rows, action="add", new_uri="", levels=False))
    assert "Type a class URI to add" in blank.content.decode()

    moved = admin_client.post(CREATE, form_data(rows=rows, action="up:1", levels=False))
    assert uris_in_editor(moved) == [AC_X509, AC_PASSWORD]
    moved = admin_client.post(CREATE, form_data(rows=rows, action="down:0", levels=False))
    assert uris_in_editor(moved) == [AC_X509, AC_PASSWORD]
    removed = admin_client.post(CREATE, form_data(rows=rows, action="remove:0", levels=False))
    assert uris_in_editor(removed) == [AC_X509]
    ignored = admin_client.post(CREATE, form_data(rows=rows, action="remove:9", levels=False))
    assert uris_in_editor(ignored) == [AC_PASSWORD, AC_X509]
    assert not AuthnContextTemplate.objects.exists()


def test_moving_a_grouped_row_to_the_top_ungroups_it(admin_client):
    rows = [{"uri": AC_X509}, {"uri": AC_PASSWORD, "grouped": True}]
    response = admin_client.post(CREATE, form_data(rows=rows, action="up:1", levels=False))
    doc = page(response)
    assert uris_in_editor(response) == [AC_PASSWORD, AC_X509]
    assert doc.xpath('//input[@name="row-0-grouped"]/@checked') == []


def test_editor_shows_the_computed_preview(admin_client):
    response = admin_client.post(CREATE, form_data(rows=B4, action="preview"))
    assert response.status_code == 200
    ranges = [td.text_content() for td in page(response).xpath('//table[@class="ac-rows"]//td[@class="range"]')]
    assert ranges == ["16–1000", "11–15", "6–10", "1–5"]
    assert not AuthnContextTemplate.objects.exists()


def test_protection_level_column_only_when_enabled_and_values_are_kept(admin_client):
    response = admin_client.post(CREATE, form_data(rows=B4, action="preview", levels=False))
    doc = page(response)
    assert doc.xpath('//input[@name="row-1-max_level"]/@type') == ["hidden"]
    assert doc.xpath('//input[@name="row-1-max_level"]/@value') == ["15"]
    assert "Maximum protection level" not in response.content.decode()


@pytest.mark.parametrize(
    ("rows", "element_id", "message"),
    [
        (
            [B4[0], {"uri": AC_PASSWORD, "max_level": "0"}],
            "id_row-1-max_level",
            "0 is out of range: protection levels run from 1 to 1000.",
        ),
        (
            [B4[0], {"uri": AC_PASSWORD, "max_level": "1200"}],
            "id_row-1-max_level",
            "1200 is out of range: protection levels run from 1 to 1000.",
        ),
        (
            [B4[0], B4[2], {"uri": AC_PASSWORD, "max_level": "10"}],
            "id_row-2-max_level",
            "Must be lower than 10, the maximum of the URI above: levels fall strictly from the strongest URI to the "
            "weakest, otherwise the ranges would overlap.",
        ),
        (
            [{"uri": AC_X509, "max_level": "500"}, B4[3]],
            "id_row-0-max_level",
            "The strongest URI's range must reach 1000 (no gap at the top); leave its maximum blank or enter 1000.",
        ),
        (
            [B4[0], {"uri": AC_PASSWORD, "max_level": ""}],
            "id_row-1-max_level",
            "Enter this URI's maximum protection level (1–1000).",
        ),
        (
            [B4[0], B4[3], {"uri": AC_X509, "max_level": "2"}],
            "id_row-2-uri",
            "X509 is already in row 1; each URI may appear once.",
        ),
        (
            [B4[0], {"uri": "Password", "max_level": "3"}],
            "id_row-1-uri",
            "This is not a URI; class URIs look like urn:oasis:names:tc:SAML:2.0:ac:classes:Password.",
        ),
    ],
)
def test_save_shows_each_problem_at_its_field(admin_client, rows, element_id, message):
    response = admin_client.post(CREATE, form_data(rows=rows))
    assert response.status_code == 400
    assert error_at(response, element_id) == [message]
    assert not AuthnContextTemplate.objects.exists()
    # What was typed is kept.
    assert uris_in_editor(response) == [row["uri"] for row in rows]


def test_preview_action_shows_problems_too(admin_client):
    response = admin_client.post(CREATE, form_data(rows=[B4[0], {"uri": AC_PASSWORD, "max_level": "abc"}], action="preview"))
    assert response.status_code == 400
    assert error_at(response, "id_row-1-max_level") == ["“abc” is not a whole number; enter a protection level from 1 to 1000."]


def test_empty_template_and_missing_name(admin_client):
    response = admin_client.post(CREATE, form_data(name="  ", rows=[]))
    assert response.status_code == 400
    text = response.content.decode()
    assert "Add at least one class URI (type one and click Add URI, or Load default URIs)." in text
    assert error_at(response, "id_name") == ["This field is required."]


def test_names_are_unique_regardless_of_case(admin_client):
    make("Corporate")
    response = admin_client.post(CREATE, form_data(name="CORPORATE", rows=B4))
    assert response.status_code == 400
    assert error_at(response, "id_name") == ["A template named “Corporate” already exists; choose another name."]
    assert AuthnContextTemplate.objects.count() == 1


# ---------------------------------------------------------------- edit


def test_edit_prefills_saves_and_audits_the_diff(admin_client):
    template = make()
    url = reverse("partnerships:authn_context_edit", args=[template.pk])
    form = admin_client.get(url)
    assert uris_in_editor(form) == [AC_X509, AC_MOBILE_TWO_FACTOR_CONTRACT, AC_INTERNET_PROTOCOL, AC_PASSWORD]
    assert page(form).xpath('//input[@name="row-1-max_level"]/@value') == ["15"]
    rows = [dict(B4[0]), dict(B4[1], grouped=True), dict(B4[2], max_level="12"), dict(B4[3], grouped=True)]
    response = admin_client.post(url, form_data(name="Corporate 2", rows=rows))
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.name == "Corporate 2"
    compiled = template.compiled()
    assert [(r.strength, r.range_label) for r in compiled.rows] == [(2, "16–1000"), (2, "13–15"), (1, "6–12"), (1, "1–5")]
    event = AuditEvent.objects.get(action="update", object_type="partnerships.AuthnContextTemplate")
    assert event.actor == "alice-admin"
    assert event.changes["name"] == ["Corporate", "Corporate 2"]
    assert set(event.changes) == {"name", "entries"}


def test_edit_keeps_its_own_name(admin_client):
    template = make()
    response = admin_client.post(reverse("partnerships:authn_context_edit", args=[template.pk]), form_data(rows=B4))
    assert response.status_code == 302
    assert not AuditEvent.objects.filter(action="update").exists()  # nothing changed, nothing logged


# ---------------------------------------------------------------- delete


def test_delete_asks_first_then_deletes_and_audits(admin_client):
    template = make()
    url = reverse("partnerships:authn_context_delete", args=[template.pk])
    confirm = admin_client.get(url).content.decode()
    assert "Yes, delete Corporate" in confirm and "No partnership uses it." in confirm
    assert AuthnContextTemplate.objects.filter(pk=template.pk).exists()
    response = admin_client.post(url)
    assert response.status_code == 302 and response["Location"] == LIST
    assert not AuthnContextTemplate.objects.exists()
    event = AuditEvent.objects.get(action="delete", object_type="partnerships.AuthnContextTemplate")
    assert event.actor == "alice-admin" and event.object_repr == "Corporate"


def test_deletion_blockers_is_empty_while_nothing_references_templates():
    assert services.deletion_blockers(make()) == []


# ---------------------------------------------------------------- services


def test_services_report_every_problem_with_its_place():
    with pytest.raises(services.AuthnContextTemplateError) as caught:
        services.create_template("", protection_levels=True, entries=[{"uri": AC_X509, "max_level": 7}, {"uri": "x y"}])
    assert [(p.row, p.field) for p in caught.value.problems] == [(None, "name"), (0, "max_level"), (1, "uri"), (1, "max_level")]
    assert caught.value.for_field("name") == ["Enter a name for the template."]


def test_model_clean_uses_the_same_rules():
    from django.core.exceptions import ValidationError

    template = AuthnContextTemplate(
        name="x", protection_levels=True, entries=[{"uri": AC_X509}, {"uri": AC_PASSWORD, "max_level": 0}]
    )
    with pytest.raises(ValidationError) as caught:
        template.full_clean()
    assert caught.value.message_dict["entries"] == ["row 2: 0 is out of range: protection levels run from 1 to 1000."]


# ---------------------------------------------------------------- roles


def test_auditor_reads_but_cannot_change(auditor_client):
    template = make()
    detail_url = reverse("partnerships:authn_context_detail", args=[template.pk])
    edit_url = reverse("partnerships:authn_context_edit", args=[template.pk])
    delete_url = reverse("partnerships:authn_context_delete", args=[template.pk])
    assert auditor_client.get(LIST).status_code == 200
    assert CREATE not in auditor_client.get(LIST).content.decode()
    detail = auditor_client.get(detail_url)
    assert detail.status_code == 200 and edit_url not in detail.content.decode() and delete_url not in detail.content.decode()
    assert auditor_client.get(CREATE).status_code == 403
    assert auditor_client.get(edit_url).status_code == 403
    assert auditor_client.get(delete_url).status_code == 403
    assert auditor_client.post(CREATE, form_data(name="Other", rows=B4)).status_code == 403
    assert auditor_client.post(edit_url, form_data(name="Changed", rows=B4)).status_code == 403
    assert auditor_client.post(delete_url).status_code == 403
    assert list(AuthnContextTemplate.objects.values_list("name", flat=True)) == ["Corporate"]
    assert AuditEvent.objects.filter(object_type="partnerships.AuthnContextTemplate").count() == 1  # the create


def test_signed_out_users_are_sent_to_login(client):
    response = client.get(LIST)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
