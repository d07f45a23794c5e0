"""The create-partnership and edit-partnership wizards end to end with the Django test client: every step is posted
from the values the page shows, as a browser would (tests/wizard_helpers.py), against real entities and keys made
through the services."""

import pytest
from django.urls import reverse

from federation.directories import EMBEDDED_NAME
from partnerships import catalog, services
from partnerships.models import Partnership, PartnershipState
from tests.test_partnership_wizard_support import (
    REQUIRED_INPUT,
    configure_values,
    entities_for,
    flash_messages,
    messages_on,
    start,
    step_of,
    walk,
)
from tests.wizard_helpers import buttons, follow, page_form, submit

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", list(catalog.KINDS))
def test_create_each_kind_through_the_wizard(admin_client, kind):
    local, remote = entities_for(kind)
    configure = start(admin_client, kind)
    text = configure.content.decode()
    assert f"Partnership type: <strong>{catalog.KINDS[kind].label}</strong>" in text
    steps = [step.key for step in catalog.steps_for(kind)]
    # The step list shows the type, every catalogue step of the kind and Confirm.
    for spec in catalog.steps_for(kind):
        assert spec.title in text

    response = submit(admin_client, configure, configure_values(f"P-{kind}", local, remote))
    assert response.status_code == 302 and step_of(response["Location"]) == steps[1], messages_on(response)
    confirm = walk(admin_client, admin_client.get(response["Location"]), REQUIRED_INPUT[kind])
    text = confirm.content.decode()
    assert text.count('aria-label="Modify ') == len(steps) + 1  # the type step and every catalogue step
    assert "The partnership is saved as" in text and "Defined" in text
    assert not Partnership.objects.exists()

    finished = submit(admin_client, confirm, action="finish")
    partnership = Partnership.objects.get()
    assert finished.status_code == 302 and finished["Location"] == reverse("partnerships:detail", args=[partnership.pk])
    assert (partnership.name, partnership.kind, partnership.state) == (f"P-{kind}", kind, PartnershipState.DEFINED)
    assert (partnership.local_entity, partnership.remote_entity) == (local, remote)
    assert services.directory_names(partnership) == [EMBEDDED_NAME]
    assert set(partnership.settings) == set(steps)
    for step, values in REQUIRED_INPUT[kind].items():
        for key, value in values.items():
            assert partnership.settings[step][key] == value
    detail = follow(admin_client, finished)
    assert f"Partnership “P-{kind}” saved. It is Defined: activate it when ready." in flash_messages(detail)


def test_type_step_offers_the_six_kinds_with_a_sentence(admin_client):
    page = admin_client.get(admin_client.get(reverse("partnerships:create"))["Location"])
    text = page.content.decode()
    for info in catalog.KINDS.values():
        assert f'value="{info.key}"' in text and info.label in text
    assert "This site is the SAML 2.0 identity provider" in text
    refused = submit(admin_client, page, {})
    assert refused.status_code == 200 and "This field is required." in refused.content.decode()


def test_auditor_cannot_open_the_wizard(auditor_client):
    assert auditor_client.get(reverse("partnerships:create")).status_code == 403
    assert auditor_client.post(reverse("partnerships:expression_test"), {}).status_code == 403


# --------------------------------------------------------------------------------------------------- prefill


def test_steps_are_prefilled_from_the_entities_and_edits_never_reach_them(admin_client):
    from entities import entity_services
    from entities.models import Binding, EndpointKind

    local, remote = entities_for("saml2_idp_sp")
    # The local IdP's entity-level attributes; the remote SP takes POST and Artifact.
    entity_services.update_entity(
        local,
        {},
        attributes=[
            {
                "name": "mail",
                "name_format": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic",
                "value_type": "user",
                "value": "mail",
            },
            {
                "name": "role",
                "name_format": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic",
                "value_type": "static",
                "value": "staff",
            },
        ],
    )
    entity_services.update_entity(
        remote,
        {},
        endpoints=[
            {
                "kind": EndpointKind.ACS,
                "binding": Binding.HTTP_POST,
                "location": "https://sp.partner.example/acs",
                "index": 0,
                "is_default": True,
            },
            {
                "kind": EndpointKind.ACS,
                "binding": Binding.HTTP_ARTIFACT,
                "location": "https://sp.partner.example/acs-art",
                "index": 1,
            },
            {"kind": EndpointKind.SLO, "binding": Binding.HTTP_REDIRECT, "location": "https://sp.partner.example/slo"},
        ],
    )
    configure = start(admin_client, "saml2_idp_sp")
    shown = page_form(configure)
    # The only local IdP is chosen, with its base URL; the directory is the only one there is.
    assert shown["local_entity"] == [str(local.pk)] and shown["base_url"] == ["https://idp-local.example"]
    assert shown["directories-0-directory"] == [EMBEDDED_NAME] and shown["skew_seconds"] == ["30"]

    response = submit(admin_client, configure, configure_values("Prefilled", local, remote))
    users = admin_client.get(response["Location"])
    assertion = follow(admin_client, submit(admin_client, users))
    shown = page_form(assertion)
    assert shown["name_id_format"] == ["urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"]  # the SP's first format
    assert shown["attributes-0-name"] == ["mail"] and shown["attributes-0-value_type"] == ["user"]
    assert shown["attributes-1-name"] == ["role"] and shown["attributes-1-value"] == ["staff"]
    # Change an inherited attribute inside the partnership.
    sso = follow(admin_client, submit(admin_client, assertion, {"name_id_value": "uid", "attributes-1-value": "partner-staff"}))
    shown = page_form(sso)
    assert shown["sso_bindings"] == ["post", "artifact"] and shown["slo_bindings"] == ["redirect"]
    signature = follow(admin_client, submit(admin_client, sso, {"sso_bindings": ["post"]}))
    shown = page_form(signature)
    assert shown["signing_key"] == ["local-signing"]
    assert shown["verification_certificate"] == ["partner-cert"] and shown["encryption_certificate"] == ["partner-cert"]

    confirm = follow(admin_client, submit(admin_client, signature))
    submit(admin_client, confirm, action="finish")
    partnership = Partnership.objects.get()
    rows = partnership.settings["assertion"]["attributes"]
    assert [(r["name"], r["value"]) for r in rows] == [("mail", "mail"), ("role", "partner-staff")]
    # The entity keeps its own attribute: values flow entity → partnership only.
    assert list(local.attributes.order_by("position").values_list("value", flat=True)) == ["mail", "staff"]


def test_user_identification_gets_one_search_spec_per_directory(admin_client):
    local, remote = entities_for("saml2_sp_idp")
    configure = start(admin_client, "saml2_sp_idp")
    users = follow(admin_client, submit(admin_client, configure, configure_values("SpPrefill", local, remote)))
    shown = page_form(users)
    assert shown["search_specs-0-directory"] == [EMBEDDED_NAME] and shown["search_specs-0-search_spec"] == ["username=%s"]
    sso = follow(admin_client, submit(admin_client, users))
    assert page_form(sso)["authn_request_bindings"] == ["redirect", "post"]  # the remote IdP's SSO endpoints


# --------------------------------------------------------------------------------------------------- Back / Modify


def test_back_and_modify_keep_what_was_typed(admin_client):
    local, remote = entities_for("saml2_idp_sp")
    configure = start(admin_client, "saml2_idp_sp")
    users = follow(admin_client, submit(admin_client, configure, configure_values("Keep", local, remote, skew_seconds="45")))
    assertion = follow(admin_client, submit(admin_client, users))
    # Type something, go Back without Next: it is kept (not validated) and shown again.
    back = submit(admin_client, assertion, {"name_id_value": "employeeNumber", "name_id_type": "user"}, action="back")
    assert step_of(back["Location"]) == "federation_users"
    assertion = follow(admin_client, submit(admin_client, admin_client.get(back["Location"])))
    assert page_form(assertion)["name_id_value"] == ["employeeNumber"]
    confirm = walk(admin_client, assertion)
    assert "employeeNumber" in confirm.content.decode() and "45" in confirm.content.decode()

    # Modify on Confirm goes to the step with its values; "Save and return to Confirm" comes back.
    configure = admin_client.get(confirm.request["PATH_INFO"].replace("/confirm/", "/configure/"))
    shown = page_form(configure)
    assert shown["name"] == ["Keep"] and shown["skew_seconds"] == ["45"]
    assert ("wizard_action", "goto:confirm", "Save and return to Confirm") in buttons(configure)
    response = submit(admin_client, configure, {"skew_seconds": "50"}, action="goto:confirm")
    assert step_of(response["Location"]) == "confirm"
    confirm = follow(admin_client, response)
    submit(admin_client, confirm, action="finish")
    partnership = Partnership.objects.get()
    assert partnership.settings["configure"]["skew_seconds"] == 50
    assert partnership.settings["assertion"]["name_id_value"] == "employeeNumber"


# --------------------------------------------------------------------------------------------------- detours


def test_generate_a_key_on_the_way_and_come_back_with_it_chosen(admin_client):
    local, remote = entities_for("saml2_idp_sp")
    configure = start(admin_client, "saml2_idp_sp")
    signature = walk(
        admin_client,
        follow(admin_client, submit(admin_client, configure, configure_values("Detour", local, remote))),
        REQUIRED_INPUT["saml2_idp_sp"],
        until="signature",
    )
    assert ("wizard_action", "detour:signing_key-generate", "Generate") in buttons(signature)
    assert ("wizard_action", "detour:encryption_certificate-import", "Import") in buttons(signature)
    leave = submit(admin_client, signature, {"encrypt_assertion": "on"}, action="detour:signing_key-generate")
    assert leave["Location"].startswith(reverse("keystore:generate") + "?next=")
    generate = admin_client.get(leave["Location"])
    made = admin_client.post(
        leave["Location"],
        {**page_form(generate), "alias": "new-idp-key", "algorithm": "rsa2048", "subject": "CN=new", "days": "365"},
    )
    assert made.status_code == 302 and "created=new-idp-key" in made["Location"]
    back = follow(admin_client, made)  # the wizard puts the alias into the field...
    signature = follow(admin_client, back)  # ...and shows the step again
    shown = page_form(signature)
    assert shown["signing_key"] == ["new-idp-key"] and shown["encrypt_assertion"] == ["on"]  # what was typed is kept
    confirm = follow(admin_client, submit(admin_client, signature))
    submit(admin_client, confirm, action="finish")
    assert Partnership.objects.get().settings["signature"]["signing_key"] == "new-idp-key"


def test_create_local_entity_detour_comes_back_with_the_entity_chosen(admin_client, make_key_pair):
    configure = start(admin_client, "saml2_idp_sp")
    assert "No local" not in configure.content.decode()
    leave = submit(admin_client, configure, {"name": "WithNewIdp"}, action="detour:local-create")
    assert leave["Location"].startswith(reverse("partnerships:wizard_entity_create") + "?")
    type_step = follow(admin_client, follow(admin_client, leave))
    shown = page_form(type_step)
    assert shown["location"] == ["local"] and shown["entity_type"] == ["saml2_idp"]
    assert type_step.content.decode().count('name="entity_type"') == 1  # the only type the partnership can use
    entity_step = follow(admin_client, submit(admin_client, type_step))
    confirm = follow(
        admin_client,
        submit(
            admin_client,
            entity_step,
            {"entity_id": "https://new-idp.example/", "name": "new-idp", "base_url": "https://new-idp.example"},
        ),
    )
    done = submit(admin_client, confirm, action="finish")
    from entities.models import Entity

    entity = Entity.objects.get(name="new-idp")
    assert "created=" + str(entity.pk) in done["Location"]
    configure = follow(admin_client, follow(admin_client, done))
    shown = page_form(configure)
    assert shown["local_entity"] == [str(entity.pk)] and shown["name"] == ["WithNewIdp"]


def test_cancelled_entity_detour_goes_back_with_nothing_changed(admin_client):
    local, _ = entities_for("saml2_idp_sp")
    configure = start(admin_client, "saml2_idp_sp")
    leave = submit(admin_client, configure, {"name": "Cancelled"}, action="detour:remote-create")
    type_step = follow(admin_client, follow(admin_client, leave))
    assert page_form(type_step)["location"] == ["remote"]
    cancelled = submit(admin_client, type_step, action="cancel")
    configure = follow(admin_client, follow(admin_client, cancelled))
    assert page_form(configure)["name"] == ["Cancelled"] and page_form(configure)["remote_entity"] == [""]


def test_import_metadata_detour_starts_a_remote_import_and_cancel_comes_back(admin_client):
    entities_for("saml2_idp_sp")
    configure = start(admin_client, "saml2_idp_sp")
    leave = submit(admin_client, configure, {"name": "FromMetadata"}, action="detour:remote-import")
    assert leave["Location"].startswith(reverse("partnerships:wizard_metadata_import") + "?next=")
    source = follow(admin_client, follow(admin_client, leave))
    assert "Import metadata" in source.content.decode()
    assert page_form(source)["operation"] == ["create-remote"]  # entities.metadata_import.CREATE_REMOTE
    cancelled = submit(admin_client, source, action="cancel")
    configure = follow(admin_client, follow(admin_client, cancelled))
    assert page_form(configure)["name"] == ["FromMetadata"]


def test_list_offers_create_and_detail_offers_edit(admin_client, make_partnership):
    local, remote = entities_for("saml2_idp_sp")
    partnership = make_partnership("Buttons", "saml2_idp_sp", local, remote, settings=REQUIRED_INPUT["saml2_idp_sp"])
    listing = admin_client.get(reverse("partnerships:list")).content.decode()
    assert f'<a class="button" href="{reverse("partnerships:create")}">Create partnership</a>' in listing
    detail = admin_client.get(reverse("partnerships:detail", args=[partnership.pk])).content.decode()
    assert f'<a class="button" href="{reverse("partnerships:edit", args=[partnership.pk])}">Edit</a>' in detail
