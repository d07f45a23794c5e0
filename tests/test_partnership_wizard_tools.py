"""The partnership wizard's helpers: "Test this expression against a user" (JSON for the page's script, a page of its
own without JavaScript) against the embedded directory and a real slapd, and the live validity-window previews."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from federation.directories import EMBEDDED_NAME
from federation.models import UserAttribute
from partnerships import catalog
from tests.test_directories import make_ldap_directory
from tests.test_partnership_wizard_support import configure_values, entities_for, start, walk
from tests.wizard_helpers import follow, page_form, submit

pytestmark = pytest.mark.django_db

URL = reverse("partnerships:expression_test")
JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture
def bob(db):
    user = get_user_model().objects.create_user("bob", email="bob@example.org", first_name="Bob", last_name="Builder")
    UserAttribute.objects.create(user=user, name="groups", value="staff")
    UserAttribute.objects.create(user=user, name="groups", value="admins")
    UserAttribute.objects.create(user=user, name="title", value="manager")
    return user


def test_expression_against_an_embedded_user(admin_client, bob):
    answer = admin_client.post(
        URL, {"expression": '#{attr["last_name"]}, #{attr["first_name"]}', "user": "bob", "directory": EMBEDDED_NAME}, **JSON
    ).json()
    assert answer["ok"] and answer["values"] == ["Builder, Bob"]
    assert answer["attributes"] == {"last_name": ["Builder"], "first_name": ["Bob"]}
    assert answer["text"] == "For bob: “Builder, Bob”."
    # A multi-valued attribute passes through; a conditional picks; DELETE removes.
    answer = admin_client.post(URL, {"expression": '#{attr["groups"]}', "user": "bob", "directory": EMBEDDED_NAME}, **JSON).json()
    assert answer["values"] == ["staff", "admins"]
    expression = "#{attr[\"title\"] == 'manager' ? 'administrator' : DELETE}"
    answer = admin_client.post(URL, {"expression": expression, "user": "bob", "directory": EMBEDDED_NAME}, **JSON).json()
    assert answer["values"] == ["administrator"]
    answer = admin_client.post(
        URL,
        {"expression": "#{session_attr[\"level\"] == 'high' ? 'yes' : DELETE}", "user": "bob", "directory": EMBEDDED_NAME},
        **JSON,
    ).json()
    assert answer["deleted"] and answer["text"] == "For bob: DELETE (the attribute is left out)."


def test_expression_errors_in_plain_words(admin_client, bob):
    answer = admin_client.post(URL, {"expression": '#{attr["mail"', "user": "bob", "directory": EMBEDDED_NAME}, **JSON).json()
    assert not answer["ok"] and "at position" in answer["error"] and isinstance(answer["position"], int)
    answer = admin_client.post(
        URL, {"expression": '#{attr["mail"]}', "user": "nobody", "directory": EMBEDDED_NAME}, **JSON
    ).json()
    assert answer == {"ok": False, "error": f"User “nobody” was not found in {EMBEDDED_NAME}."}
    refused = admin_client.post(URL, {"expression": "x", "user": "", "directory": "no such directory"}, **JSON)
    assert refused.status_code == 400 and not refused.json()["ok"]


@pytest.mark.ldap
def test_expression_against_an_ldap_user(admin_client, slapd):
    directory = make_ldap_directory(slapd)
    answer = admin_client.post(
        URL, {"expression": '#{attr["givenName"]} <#{attr["mail"]}>', "user": "carol", "directory": directory.name}, **JSON
    ).json()
    assert answer["ok"], answer
    assert answer["values"] == ["Carol <carol@example.org>"]


def test_expression_test_needs_csrf_and_an_administrator(admin_user, auditor_client, bob):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    data = {"expression": '#{attr["email"]}', "user": "bob", "directory": EMBEDDED_NAME}
    assert client.post(URL, data, **JSON).status_code == 403
    page = client.get(URL)
    token = page.cookies["csrftoken"].value
    answer = client.post(URL, data, HTTP_X_CSRFTOKEN=token, **JSON)
    assert answer.status_code == 200 and answer.json()["values"] == ["bob@example.org"]
    assert auditor_client.post(URL, data, **JSON).status_code == 403


def test_expression_test_page_without_javascript(admin_client, bob):
    page = admin_client.get(URL + "?expression=%23%7Battr%5B%22email%22%5D%7D&directory=" + EMBEDDED_NAME)
    assert page.status_code == 200
    shown = page_form(page)
    assert shown["expression"] == ['#{attr["email"]}'] and shown["directory"] == [EMBEDDED_NAME]
    result = submit(admin_client, page, {"user": "bob"}, action="")
    assert result.status_code == 200 and "For bob: “bob@example.org”." in result.content.decode()


def test_wizard_offers_the_expression_test_with_the_partnership_directories(admin_client):
    local, remote = entities_for("saml2_idp_sp")
    page = start(admin_client, "saml2_idp_sp")
    response = submit(admin_client, page, configure_values("Exprs", local, remote))
    assertion = walk(admin_client, admin_client.get(response["Location"]), until="assertion")
    text = assertion.content.decode()
    # In the attribute table, under the value of a row whose type is Expression (the script shows it only then).
    assert 'class="expression-test" data-visible-when="{&quot;key&quot;: &quot;value_type&quot;' in text
    assert f'href="{URL}?expression=&amp;directory=Embedded%20directory"' in text
    assert f'data-expression-test-url="{URL}"' in text


# --------------------------------------------------------------------------------------------------- previews


def test_window_preview_endpoint(admin_client, auditor_client):
    url = reverse("partnerships:wizard_preview")
    answer = admin_client.get(url, {"name": "validity", "skew": "30", "other": "60"}).json()
    assert answer["text"] == catalog.validity_window(30, 60)
    assert "11:59:30" in answer["text"] and "12:01:30" in answer["text"]
    assert admin_client.get(url, {"name": "slo", "skew": "30", "other": "60"}).json()["text"] == catalog.slo_window(30, 60)
    assert admin_client.get(url, {"name": "validity", "skew": "-"}).json()["text"] == catalog.validity_window(None, None)
    assert auditor_client.get(url, {"name": "acceptance", "skew": "10"}).json()["text"] == catalog.acceptance_window(10)


def test_previews_are_rendered_next_to_skew_and_validity(admin_client):
    local, remote = entities_for("saml2_idp_sp")
    configure = start(admin_client, "saml2_idp_sp")
    assert '<output class="window-preview" id="id_skew_seconds_preview"' in configure.content.decode()
    assert catalog.validity_window(30, 60) in configure.content.decode()
    response = submit(admin_client, configure, configure_values("Windows", local, remote, skew_seconds="45"))
    sso = walk(admin_client, admin_client.get(response["Location"]), {"assertion": {"name_id_value": "uid"}}, until="sso_slo")
    text = sso.content.decode()
    assert catalog.validity_window(45, 60) in text
    assert 'data-preview="validity" data-skew="45" data-other="60" data-role="other"' in text
    assert catalog.slo_window(45, 60) in text
    changed = follow(admin_client, submit(admin_client, sso, {"sso_validity_seconds": "300"}, action="back"))
    again = follow(admin_client, submit(admin_client, changed))
    assert catalog.validity_window(45, 300) in again.content.decode()
