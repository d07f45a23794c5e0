"""The create-entity and edit-entity wizards end to end with the Django test client: every step is
posted from the values the page shows, as a browser would (see tests/wizard_helpers.py)."""

import re

import pytest
from django.urls import reverse

from entities import entity_services as es
from entities import services
from entities.models import Binding, EndpointKind, Entity, EntityType, KeystoreEntry, Location, NameIdFormat
from federation.models import AuditEvent
from tests.wizard_helpers import buttons, field_errors, follow, form_action, page_form, submit

pytestmark = pytest.mark.django_db

SSO = "https://idp1.example.com/affwebservices/public/saml2sso"
ACS = "https://sp1.example.com/affwebservices/public/saml2assertionconsumer"


def start(client):
    response = client.get(reverse("entities:create"))
    assert response.status_code == 302
    assert re.fullmatch(r"/entities/create/[A-Za-z0-9_-]+/type/", response["Location"])
    return client.get(response["Location"])


def choose_type(client, location=Location.LOCAL, entity_type=EntityType.SAML2_IDP, token=""):
    page = start(client)
    response = submit(client, page, {"location": location, "entity_type": entity_type, "saml_token_type": token})
    assert response.status_code == 302 and response["Location"].endswith("/configure/")
    return client.get(response["Location"])


IDP_VALUES = {
    "entity_id": "idp1",
    "name": "idp1",
    "base_url": "https://idp1.example.com",
    "name_id_formats": [NameIdFormat.UNSPECIFIED, NameIdFormat.PERSISTENT],
    "attributes-0-name": "mail",
    "attributes-0-value_type": "user",
    "attributes-0-value": "mail",
}


def test_create_local_saml2_idp_end_to_end(admin_client, make_key_pair):
    make_key_pair("idp1-signing")
    configure = choose_type(admin_client)
    assert configure.status_code == 200
    assert "Step 2 of 3: Configure entity" in configure.content.decode()
    # Local IdP: identification, signing and decryption keys with Import / Generate, attributes; no endpoint table.
    values = page_form(configure)
    assert {"entity_id", "name", "base_url", "signing_key", "decryption_key", "attributes-TOTAL_FORMS"} <= set(values)
    assert "verification_certificate" not in values and "endpoints-TOTAL_FORMS" not in values
    assert values["name_id_formats"] == [NameIdFormat.UNSPECIFIED]
    detours = {value for name, value, _ in buttons(configure) if value and value.startswith("detour:")}
    assert detours == {
        "detour:signing_key-generate",
        "detour:signing_key-import",
        "detour:next_signing_key-generate",
        "detour:decryption_key-generate",
        "detour:decryption_key-import",
    }

    confirm_redirect = submit(admin_client, configure, {**IDP_VALUES, "signing_key": "idp1-signing"})
    assert confirm_redirect.status_code == 302 and confirm_redirect["Location"].endswith("/confirm/")
    confirm = admin_client.get(confirm_redirect["Location"])
    text = confirm.content.decode()
    # One box per step, each with a Modify link back to it; the derived service URLs are previewed.
    assert text.count('aria-label="Modify ') == 2
    assert 'aria-label="Modify Entity type"' in text and 'aria-label="Modify Configure entity"' in text
    assert "SAML2 IdP" in text and "idp1-signing" in text and "Persistent" in text
    assert SSO in text
    assert not Entity.objects.exists()

    finished = submit(admin_client, confirm, action="finish")
    entity = Entity.objects.get()
    assert finished.status_code == 302 and finished["Location"] == reverse("entities:detail", args=[entity.pk])
    assert (entity.location, entity.entity_type, entity.entity_id, entity.signing_key.alias) == (
        Location.LOCAL,
        EntityType.SAML2_IDP,
        "idp1",
        "idp1-signing",
    )
    assert entity.name_id_formats == [NameIdFormat.UNSPECIFIED, NameIdFormat.PERSISTENT]
    assert [(a.name, a.value) for a in entity.attributes.all()] == [("mail", "mail")]
    detail = admin_client.get(finished["Location"]).content.decode()
    assert "Entity &#x27;idp1&#x27; created." in detail and SSO in detail
    assert AuditEvent.objects.filter(action="create", object_type="entities.Entity", actor="alice-admin").count() == 1

    # The run is over: its pages send the administrator away and Finish cannot create a second entity.
    again = admin_client.post(form_action(confirm), {"wizard_action": "finish"})
    assert again.status_code == 302 and again["Location"] == reverse("entities:list")
    assert Entity.objects.count() == 1


def test_create_remote_sp_with_endpoint_rows(admin_client, make_expiring_certificate):
    make_expiring_certificate("sp1-cert", 200)
    configure = choose_type(admin_client, Location.REMOTE, EntityType.SAML2_SP)
    values = page_form(configure)
    assert "base_url" not in values and "signing_key" not in values and "attributes-TOTAL_FORMS" not in values
    assert values["endpoints-TOTAL_FORMS"] == ["1"]
    assert {value for _, value, _ in buttons(configure) if value and value.startswith("detour:")} == {
        "detour:verification_certificate-import",
        "detour:encryption_certificate-import",
    }

    row = {
        "entity_id": "sp1",
        "name": "sp1",
        "verification_certificate": "sp1-cert",
        "endpoints-0-kind": EndpointKind.ACS,
        "endpoints-0-binding": Binding.HTTP_POST,
        "endpoints-0-location": ACS,
        "endpoints-0-index": "0",
        "endpoints-0-is_default": "on",
    }
    added = follow(admin_client, submit(admin_client, configure, row, action="add:endpoints"))
    values = page_form(added)
    assert values["endpoints-TOTAL_FORMS"] == ["2"] and values["endpoints-0-location"] == [ACS]
    assert not field_errors(added, "id_endpoints-1-location")  # a new blank row is not an error

    # A third row, then remove the (blank) second one: the third moves up.
    added = follow(admin_client, submit(admin_client, added, {"endpoints-1-kind": EndpointKind.SLO}, action="add:endpoints"))
    third = {
        "endpoints-2-kind": EndpointKind.SLO,
        "endpoints-2-binding": Binding.HTTP_REDIRECT,
        "endpoints-2-location": "https://sp1.example.com/affwebservices/public/saml2slo",
    }
    removed = follow(admin_client, submit(admin_client, added, third, action="remove:endpoints:1"))
    values = page_form(removed)
    assert values["endpoints-TOTAL_FORMS"] == ["2"]
    assert values["endpoints-1-location"] == ["https://sp1.example.com/affwebservices/public/saml2slo"]
    assert values["endpoints-1-binding"] == [Binding.HTTP_REDIRECT]

    confirm = follow(admin_client, submit(admin_client, removed))
    assert "Assertion consumer service" in confirm.content.decode()
    follow(admin_client, submit(admin_client, confirm, action="finish"))
    entity = Entity.objects.get()
    assert [(e.kind, e.binding, e.index, e.is_default) for e in entity.endpoints.all()] == [
        (EndpointKind.ACS, Binding.HTTP_POST, 0, True),
        (EndpointKind.SLO, Binding.HTTP_REDIRECT, None, False),
    ]
    assert entity.verification_certificate.alias == "sp1-cert"


def test_back_keeps_the_values_of_every_step(admin_client):
    configure = choose_type(admin_client)
    back = submit(admin_client, configure, {"entity_id": "idp1", "name": "idp 1"}, action="back")
    assert back.status_code == 302 and back["Location"].endswith("/type/")
    type_page = admin_client.get(back["Location"])
    assert page_form(type_page)["location"] == [Location.LOCAL]
    assert page_form(type_page)["entity_type"] == [EntityType.SAML2_IDP]
    assert "disabled>Back</button>" in type_page.content.decode()  # first step: Back is there but off

    configure = follow(admin_client, submit(admin_client, type_page))
    values = page_form(configure)
    assert (values["entity_id"], values["name"]) == (["idp1"], ["idp 1"])
    # Shown as typed, without messages: Back does not check the step.
    assert not field_errors(configure, "id_name") and not field_errors(configure, "id_base_url")


def test_invalid_step_shows_the_error_at_the_field_and_does_not_advance(admin_client):
    configure = choose_type(admin_client)
    response = submit(admin_client, configure, {"entity_id": "idp1", "name": "idp 1", "base_url": "idp1.example.com"})
    assert response.status_code == 200
    assert "Step 2 of 3" in response.content.decode()
    assert field_errors(response, "id_name") == ["Use only letters, digits, '_', '-' and '.' in an entity name (no spaces)."]
    assert field_errors(response, "id_base_url") == [
        "Enter an absolute URL starting with https:// (or http://), such as https://idp.example.org/."
    ]
    assert page_form(response)["name"] == ["idp 1"]
    # The confirm step is out of reach while this step is invalid.
    confirm = admin_client.get(form_action(response).replace("/configure/", "/confirm/"))
    assert confirm.status_code == 302 and "/configure/" in confirm["Location"] and "check=1" in confirm["Location"]
    checked = admin_client.get(confirm["Location"])
    assert field_errors(checked, "id_name") and "Please check the step" in checked.content.decode()
    assert not Entity.objects.exists()


def test_type_step_requires_a_token_type_for_wsfed(admin_client):
    page = start(admin_client)
    response = submit(admin_client, page, {"location": Location.LOCAL, "entity_type": EntityType.WSFED_IP})
    assert response.status_code == 200
    assert field_errors(response, "id_saml_token_type") == ["Choose the SAML token type of this WS-Federation entity."]


def test_wsfed_ip_wizard_shows_the_wsfed_fields_and_namespace_column(admin_client):
    configure = choose_type(admin_client, Location.LOCAL, EntityType.WSFED_IP, "saml11")
    values = page_form(configure)
    assert {"wsfed_specific_id", "wsfed_signout_confirm_url", "attributes-0-namespace"} <= set(values)
    assert "decryption_key" not in values and "attributes-0-name_format" not in values
    text = configure.content.decode()
    assert "Persistent" not in text  # SAML 1.1 tokens cannot carry SAML 2.0-only NameID formats
    confirm = follow(
        admin_client,
        submit(
            admin_client,
            configure,
            {
                "entity_id": "https://ip.example.com/adfs/services/trust",
                "name": "o365-ip",
                "base_url": "https://ip.example.com",
                "wsfed_specific_id": "microsoftonline",
                "attributes-0-name": "UPN",
                "attributes-0-namespace": "http://schemas.xmlsoap.org/claims",
                "attributes-0-value_type": "user",
                "attributes-0-value": "userPrincipalName",
            },
        ),
    )
    assert "https://ip.example.com/affwebservices/public/wsfeddispatcher/microsoftonline" in confirm.content.decode()
    follow(admin_client, submit(admin_client, confirm, action="finish"))
    entity = Entity.objects.get()
    assert (entity.saml_token_type, entity.wsfed_specific_id, entity.attributes.get().namespace) == (
        "saml11",
        "microsoftonline",
        "http://schemas.xmlsoap.org/claims",
    )


def test_service_rules_are_checked_on_next_with_row_errors_at_the_cell(admin_client):
    configure = choose_type(admin_client, Location.REMOTE, EntityType.SAML2_SP)
    response = submit(
        admin_client,
        configure,
        {
            "entity_id": "sp1",
            "name": "sp1",
            "endpoints-0-kind": EndpointKind.ACS,
            "endpoints-0-binding": Binding.HTTP_REDIRECT,
            "endpoints-0-location": ACS,
            "endpoints-0-index": "0",
        },
    )
    assert response.status_code == 200
    assert field_errors(response, "id_endpoints-0-binding") == [
        "A SAML2 SP assertion consumer service cannot use HTTP-Redirect; choose HTTP-POST, HTTP-Artifact or PAOS (ECP)."
    ]
    # No ACS row at all: the message sits above the table.
    response = submit(
        admin_client,
        response,
        {"endpoints-0-kind": "", "endpoints-0-binding": "", "endpoints-0-location": "", "endpoints-0-index": ""},
    )
    assert "A remote SAML2 SP needs at least one assertion consumer service URL." in response.content.decode()
    assert 'id="table-endpoints-errors"' in response.content.decode()


def test_modify_returns_to_the_step_and_back_to_confirm(admin_client):
    configure = choose_type(admin_client)
    confirm = follow(admin_client, submit(admin_client, configure, IDP_VALUES))
    modify_url = re.search(r'href="([^"]+/configure/)" aria-label="Modify Configure entity"', confirm.content.decode())[1]
    again = admin_client.get(modify_url)
    assert page_form(again)["entity_id"] == ["idp1"]
    assert ("wizard_action", "goto:confirm", "Save and return to Confirm") in buttons(again)
    back_to_confirm = submit(admin_client, again, {"entity_id": "urn:idp1"}, action="goto:confirm")
    assert back_to_confirm["Location"].endswith("/confirm/")
    assert "urn:idp1" in admin_client.get(back_to_confirm["Location"]).content.decode()

    # Modify the first step: changing the type keeps what still applies and asks for the rest.
    type_url = re.search(r'href="([^"]+/type/)" aria-label="Modify Entity type"', confirm.content.decode())[1]
    type_page = admin_client.get(type_url)
    configure = follow(
        admin_client, submit(admin_client, type_page, {"location": Location.REMOTE, "entity_type": EntityType.SAML2_SP})
    )
    values = page_form(configure)
    assert values["entity_id"] == ["urn:idp1"] and "base_url" not in values and values["endpoints-TOTAL_FORMS"] == ["1"]
    response = submit(admin_client, configure)
    assert "A remote SAML2 SP needs at least one assertion consumer service URL." in response.content.decode()
    assert not Entity.objects.exists()


def test_abandoning_or_cancelling_creates_nothing(admin_client):
    configure = choose_type(admin_client)
    submit(admin_client, configure, IDP_VALUES)  # valid, stored, but never finished
    assert not Entity.objects.exists()

    cancelled = submit(admin_client, configure, IDP_VALUES, action="cancel")
    assert cancelled.status_code == 302 and cancelled["Location"] == reverse("entities:list")
    assert not Entity.objects.exists() and not AuditEvent.objects.filter(object_type="entities.Entity").exists()
    gone = admin_client.get(form_action(configure))
    assert gone.status_code == 302 and gone["Location"] == reverse("entities:list")


def test_two_runs_do_not_mix(admin_client):
    first = choose_type(admin_client)
    second = choose_type(admin_client, Location.REMOTE, EntityType.SAML2_SP)
    assert form_action(first) != form_action(second)
    submit(admin_client, first, {"entity_id": "one"}, action="back")
    assert page_form(admin_client.get(form_action(second)))["entity_id"] == [""]


def test_generate_detour_keeps_typed_values_and_selects_the_new_alias(admin_client):
    configure = choose_type(admin_client)
    typed = {"entity_id": "idp1", "name": "idp1", "base_url": "https://idp1.example.com", "attributes-0-name": "mail"}
    detour = submit(admin_client, configure, typed, action="detour:signing_key-generate")
    assert detour.status_code == 302 and detour["Location"].startswith(reverse("keystore:generate") + "?next=")

    generate = admin_client.get(detour["Location"])
    assert generate.status_code == 200
    assert "Back to the wizard" in generate.content.decode()
    keystore_values = page_form(generate)
    assert keystore_values["next"][0].endswith("/configure/?wizard_return=signing_key-generate")
    created = admin_client.post(
        form_action(generate) if form_action(generate) != "" else detour["Location"],
        {
            **{k: v[0] for k, v in keystore_values.items()},
            "alias": "idp1-signing",
            "subject": "CN=idp1.example.com",
            "algorithm": "ec-p256",
        },
    )
    assert created.status_code == 302
    assert created["Location"].endswith("/configure/?wizard_return=signing_key-generate&created=idp1-signing")
    assert KeystoreEntry.objects.filter(alias="idp1-signing").exists()

    landed = admin_client.get(created["Location"])
    assert landed.status_code == 302 and landed["Location"].endswith("/configure/")
    configure = admin_client.get(landed["Location"])
    values = page_form(configure)
    assert values["signing_key"] == ["idp1-signing"]
    assert (values["entity_id"], values["name"], values["base_url"], values["attributes-0-name"]) == (
        ["idp1"],
        ["idp1"],
        ["https://idp1.example.com"],
        ["mail"],
    )
    assert "Key pair &#x27;idp1-signing&#x27; generated" in configure.content.decode()
    follow(admin_client, submit(admin_client, configure, {"attributes-0-value_type": "user", "attributes-0-value": "mail"}))


def test_import_detour_for_a_partner_certificate(admin_client):
    from tests.keystore_fixtures import cert_pem, self_signed

    configure = choose_type(admin_client, Location.REMOTE, EntityType.SAML2_SP)
    detour = submit(admin_client, configure, {"entity_id": "sp1"}, action="detour:verification_certificate-import")
    assert detour["Location"].startswith(reverse("keystore:import_trusted_certificate") + "?next=")
    page = admin_client.get(detour["Location"])
    _key, certificate = self_signed("sp1.example.com")
    created = admin_client.post(
        detour["Location"], {"alias": "sp1-cert", "pem": cert_pem(certificate).decode(), "next": page_form(page)["next"][0]}
    )
    assert created["Location"].endswith("created=sp1-cert")
    configure = follow(admin_client, admin_client.get(created["Location"]))
    assert page_form(configure)["verification_certificate"] == ["sp1-cert"]
    assert page_form(configure)["entity_id"] == ["sp1"]


def test_a_keystore_page_ignores_a_next_url_on_another_site(admin_client):
    response = admin_client.post(
        reverse("keystore:generate"),
        {"alias": "k1", "subject": "CN=k1", "algorithm": "ec-p256", "days": "30", "next": "https://evil.example/steal"},
    )
    assert response["Location"] == reverse("keystore:detail", args=["k1"])


def test_finish_reports_a_conflict_that_appeared_meanwhile_at_the_field(admin_client):
    confirm = follow(admin_client, submit(admin_client, choose_type(admin_client), IDP_VALUES))
    es.create_entity(
        {"location": "local", "entity_type": "saml2_sp", "entity_id": "x", "name": "IDP1", "base_url": "https://x.example.com"}
    )
    response = submit(admin_client, confirm, action="finish")
    assert response.status_code == 302 and "/configure/" in response["Location"]  # the step is no longer valid
    page = admin_client.get(response["Location"])
    assert field_errors(page, "id_name") == ["The entity name 'IDP1' is already used by another entity; entity names are unique."]
    assert Entity.objects.count() == 1


def test_a_key_deleted_before_finish_sends_the_user_back(admin_client, make_key_pair):
    make_key_pair("short-lived")
    confirm = follow(admin_client, submit(admin_client, choose_type(admin_client), {**IDP_VALUES, "signing_key": "short-lived"}))
    services.delete_entry("short-lived")
    response = submit(admin_client, confirm, action="finish")
    assert "/configure/" in response["Location"]
    page = admin_client.get(response["Location"])
    assert field_errors(page, "id_signing_key") == ["Select a valid choice. That choice is not one of the available choices."]
    assert not Entity.objects.exists()


def test_enter_key_submits_next(admin_client):
    configure = choose_type(admin_client)
    first = buttons(configure)[0]
    assert first[:2] == ("wizard_action", "next")


def test_auditor_cannot_use_the_wizards(auditor_client, admin_user):
    assert auditor_client.get(reverse("entities:create")).status_code == 403
    assert (
        auditor_client.post(reverse("entities:create_step", args=["abc", "type"]), {"wizard_action": "next"}).status_code == 403
    )
    entity = es.create_entity(
        {"location": "local", "entity_type": "saml2_idp", "entity_id": "i", "name": "i", "base_url": "https://i.example.com"}
    )
    assert auditor_client.get(reverse("entities:edit", args=[entity.pk])).status_code == 403
    assert auditor_client.post(reverse("entities:edit_step", args=[entity.pk, "abc", "configure"]), {}).status_code == 403


# ---------------------------------------------------------------- edit


def test_edit_wizard_is_prefilled_and_saves_changes(admin_client, make_key_pair):
    make_key_pair("old-key")
    make_key_pair("new-key")
    entity = es.create_entity(
        {
            "location": "remote",
            "entity_type": "saml2_sp",
            "entity_id": "sp1",
            "name": "sp1",
            "verification_certificate": "old-key",
        },
        [{"kind": "acs", "binding": Binding.HTTP_POST, "index": 0, "is_default": True, "location": ACS}],
    )
    AuditEvent.objects.all().delete()
    started = admin_client.get(reverse("entities:edit", args=[entity.pk]))
    assert re.fullmatch(rf"/entities/{entity.pk}/edit/[A-Za-z0-9_-]+/configure/", started["Location"])
    configure = admin_client.get(started["Location"])
    text = configure.content.decode()
    assert "Edit entity sp1" in text and "Step 1 of 2" in text
    values = page_form(configure)
    assert values["entity_id"] == ["sp1"] and values["verification_certificate"] == ["old-key"]
    assert values["endpoints-0-location"] == [ACS] and values["endpoints-0-is_default"] == ["on"]
    assert values["endpoints-TOTAL_FORMS"] == ["2"]  # the saved row and one blank row

    confirm = follow(
        admin_client, submit(admin_client, configure, {"verification_certificate": "new-key", "endpoints-0-index": "3"})
    )
    assert ("wizard_action", "finish", "Save changes") in buttons(confirm)
    saved = submit(admin_client, confirm, action="finish")
    assert saved["Location"] == reverse("entities:detail", args=[entity.pk])
    entity.refresh_from_db()
    assert entity.verification_certificate.alias == "new-key" and entity.endpoints.get().index == 3
    changes = {e.object_type: e.changes for e in AuditEvent.objects.filter(action="update")}
    assert changes["entities.Entity"]["verification_certificate"][1] == str(entity.verification_certificate_id)
    assert changes["entities.Endpoint"] == {"index": ["0", "3"]}


def test_edit_refuses_a_name_taken_by_another_entity(admin_client):
    es.create_entity(
        {"location": "local", "entity_type": "saml2_idp", "entity_id": "a", "name": "a", "base_url": "https://a.example.com"}
    )
    b = es.create_entity(
        {"location": "local", "entity_type": "saml2_idp", "entity_id": "b", "name": "b", "base_url": "https://b.example.com"}
    )
    configure = follow(admin_client, admin_client.get(reverse("entities:edit", args=[b.pk])))
    response = submit(admin_client, configure, {"name": "A"})
    assert field_errors(response, "id_name") == [
        "The entity name 'a' is already used by another entity; entity names are unique."
    ]
    # Keeping its own name (in another case) is fine.
    assert submit(admin_client, configure, {"name": "B"}).status_code == 302


# ---------------------------------------------------------------- the engine on its own (federation.wizard)


@pytest.fixture
def trip(settings, admin_client):
    from tests import wizard_urls

    settings.ROOT_URLCONF = "tests.wizard_urls"
    wizard_urls.FINISHED.clear()
    return wizard_urls.FINISHED


def trip_start(client):
    return client.get(client.get("/trip/")["Location"])


def test_engine_conditional_step_and_summary(admin_client, trip):
    who = trip_start(admin_client)
    stops = follow(admin_client, submit(admin_client, who, {"name": "Ann", "kind": "solo"}))
    assert "Step 2 of 3: Stops" in stops.content.decode()
    back = follow(admin_client, submit(admin_client, stops, action="back"))
    group = follow(admin_client, submit(admin_client, back, {"kind": "group"}))
    assert "Step 2 of 4: Group" in group.content.decode()
    stops = follow(admin_client, submit(admin_client, group, {"size": "3"}))
    confirm = follow(admin_client, submit(admin_client, stops, {"stops-0-city": "Kyoto", "stops-0-nights": "2"}))
    text = confirm.content.decode()
    assert "Step 4 of 4: Confirm" in text and "Kyoto" in text and "Group" in text and ">3<" in text
    assert submit(admin_client, confirm, action="finish").content == b"done"
    assert trip[0]["who"].form == {"name": "Ann", "kind": "group"}
    assert trip[0]["group"].form == {"size": 3}
    assert trip[0]["stops"].rows == {"stops": [{"city": "Kyoto", "nights": 2}]}


def test_engine_finish_errors_go_back_to_the_step_and_row(admin_client, trip):
    who = trip_start(admin_client)
    stops = follow(admin_client, submit(admin_client, who, {"name": "taken", "kind": "solo"}))
    stops = follow(admin_client, submit(admin_client, stops, {"stops-0-city": "Oslo"}, action="add:stops"))
    stops = follow(admin_client, submit(admin_client, stops, action="add:stops"))
    # Row 2 left blank: the error for the second filled-in row (Nowhere) lands on form row 3.
    confirm = follow(admin_client, submit(admin_client, stops, {"stops-2-city": "Nowhere"}))
    response = submit(admin_client, confirm, action="finish")
    assert response.status_code == 200 and "Step 1 of 3: Who" in response.content.decode()
    assert field_errors(response, "id_name") == ["This name is taken."]
    who = follow(admin_client, submit(admin_client, response, {"name": "Bo"}))  # Next from Who goes on to Stops
    confirm = follow(admin_client, submit(admin_client, who))
    response = submit(admin_client, confirm, action="finish")
    assert field_errors(response, "id_stops-2-city") == ["No such city."]
    assert field_errors(response, "id_stops-0-city") == []
    assert trip == []


def test_engine_keeps_at_most_max_runs_per_session(admin_client, trip):
    first = trip_start(admin_client)
    for _ in range(10):
        trip_start(admin_client)
    assert admin_client.get(form_action(first))["Location"] == "/"  # the oldest run was dropped


def test_engine_refuses_unknown_steps_actions_and_detours(admin_client, trip):
    who = trip_start(admin_client)
    url = form_action(who)
    assert admin_client.get(url.replace("/who/", "/nowhere/")).status_code == 404
    assert admin_client.get(url.replace("/who/", "/group/")).status_code == 404  # condition false: not a step now
    assert admin_client.post(url, {"wizard_action": "explode"}).status_code == 404
    assert admin_client.post(url, {"wizard_action": "detour:keystore"}).status_code == 404
    assert admin_client.post(url, {"wizard_action": "add:nothing"}).status_code == 404


def test_remove_row_renumbers_later_rows():
    from federation.wizard import remove_row

    raw = {"t-TOTAL_FORMS": ["3"], "t-INITIAL_FORMS": ["0"], "t-0-a": ["x"], "t-1-a": ["y"], "t-2-a": ["z"], "other": ["1"]}
    assert remove_row(raw, "t", 1) == {
        "t-TOTAL_FORMS": ["2"],
        "t-INITIAL_FORMS": ["0"],
        "t-0-a": ["x"],
        "t-1-a": ["z"],
        "other": ["1"],
    }
