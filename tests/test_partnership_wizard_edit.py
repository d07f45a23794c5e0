"""Editing a partnership through the wizard: prefilled from what is stored, entities locked, blocked while Active
(with Deactivate and edit), Get updates confirmed or not, and passwords that are never shown again."""

import json

import pytest
from django.contrib.sessions.models import Session
from django.urls import reverse

from entities import entity_services
from entities.models import Binding, EndpointKind
from federation.directories import EMBEDDED_NAME
from partnerships import catalog, services
from partnerships.models import Partnership, PartnershipState
from tests.test_partnership_wizard_support import (
    REQUIRED_INPUT,
    SP_ACS,
    configure_values,
    entities_for,
    flash_messages,
    start,
    step_of,
    walk,
)
from tests.wizard_helpers import buttons, follow, page_form, submit

pytestmark = pytest.mark.django_db


def complete_partnership(make_partnership, kind="saml2_idp_sp", name="Edited", **settings):
    local, remote = entities_for(kind)
    merged = {step: dict(values) for step, values in REQUIRED_INPUT[kind].items()}
    for step, values in settings.items():
        merged.setdefault(step, {}).update(values)
    partnership = make_partnership(name, kind, local, remote, settings=merged)
    assert partnership.state == PartnershipState.DEFINED, partnership.problems
    return partnership


def open_edit(client, partnership):
    response = client.get(reverse("partnerships:edit", args=[partnership.pk]))
    assert response.status_code == 302 and step_of(response["Location"]) == "configure"
    return client.get(response["Location"])


def test_edit_is_prefilled_and_the_entities_are_locked(admin_client, make_partnership):
    partnership = complete_partnership(make_partnership, configure={"skew_seconds": 40})
    configure = open_edit(admin_client, partnership)
    text = configure.content.decode()
    shown = page_form(configure)
    assert shown["name"] == ["Edited"] and shown["skew_seconds"] == ["40"]
    assert shown["directories-0-directory"] == [EMBEDDED_NAME]
    # Disabled selects are not posted: the entities cannot be swapped, and no Create detour is offered.
    assert "local_entity" not in shown and "remote_entity" not in shown
    assert 'name="local_entity" disabled' in text and "idp-local (https://idp-local.example/)" in text
    assert not [value for _, value, _ in buttons(configure) if value and value.startswith("detour:local")]
    assert "Step 1 of" in text and "Partnership type" not in text.split("<h2>")[0]

    confirm = walk(admin_client, configure, {"configure": {"skew_seconds": "55"}})
    finished = submit(admin_client, confirm, action="finish")
    partnership.refresh_from_db()
    assert finished["Location"] == reverse("partnerships:detail", args=[partnership.pk])
    assert partnership.settings["configure"]["skew_seconds"] == 55
    assert partnership.settings["assertion"]["name_id_value"] == "uid"


def test_a_remote_entity_that_was_put_off_can_be_chosen_when_editing(admin_client, make_partnership):
    local, remote = entities_for("saml2_idp_sp")
    partnership = make_partnership("Later", "saml2_idp_sp", local, None, settings=REQUIRED_INPUT["saml2_idp_sp"])
    assert partnership.state == PartnershipState.INCOMPLETE
    configure = open_edit(admin_client, partnership)
    assert page_form(configure)["remote_entity"] == [""]
    confirm = walk(admin_client, configure, {"configure": {"remote_entity": str(remote.pk)}})
    detail = follow(admin_client, submit(admin_client, confirm, action="finish"))
    partnership.refresh_from_db()
    assert partnership.remote_entity == remote and partnership.state == PartnershipState.DEFINED
    assert partnership.entity_data["remote"]["name"] == "sp-partner"
    assert "Partnership “Later” saved. It is Defined: activate it when ready." in flash_messages(detail)


def test_editing_an_active_partnership_is_blocked_with_deactivate_and_edit(admin_client, make_partnership):
    partnership = complete_partnership(make_partnership)
    services.activate(partnership)
    blocked = admin_client.get(reverse("partnerships:edit", args=[partnership.pk]))
    text = blocked.content.decode()
    assert blocked.status_code == 409
    assert "cannot be changed" in text
    deactivate_url = reverse("partnerships:action", args=[partnership.pk, "deactivate"]) + "?then=edit"
    assert f'href="{deactivate_url}"' in text and "Deactivate and edit" in text

    # A wizard run opened before the activation cannot finish either.
    services.deactivate(partnership)
    configure = open_edit(admin_client, partnership)
    services.activate(Partnership.objects.get(pk=partnership.pk))
    assert submit(admin_client, configure).status_code == 409
    assert admin_client.get(configure.request["PATH_INFO"]).status_code == 409

    # Deactivate and edit: the confirmation page, then the wizard.
    page = admin_client.get(deactivate_url)
    assert page.status_code == 200
    response = admin_client.post(deactivate_url, {"then": "edit"})
    assert response["Location"] == reverse("partnerships:edit", args=[partnership.pk])
    configure = follow(admin_client, follow(admin_client, response))
    confirm = walk(admin_client, configure, {"configure": {"description": "changed while inactive"}})
    submit(admin_client, confirm, action="finish")
    partnership.refresh_from_db()
    assert partnership.state == PartnershipState.INACTIVE and partnership.description == "changed while inactive"


def changed_remote_endpoints(remote):
    entity_services.update_entity(
        remote,
        {},
        endpoints=[
            {"kind": EndpointKind.ACS, "binding": Binding.HTTP_POST, "location": SP_ACS, "index": 0, "is_default": True},
            {"kind": EndpointKind.ACS, "binding": Binding.HTTP_POST, "location": "https://sp.partner.example/acs2", "index": 1},
        ],
    )


def test_get_updates_not_confirmed_changes_nothing(admin_client, make_partnership):
    partnership = complete_partnership(make_partnership)
    changed_remote_endpoints(partnership.remote_entity)
    before = Partnership.objects.get(pk=partnership.pk).entity_data
    configure = open_edit(admin_client, partnership)
    assert ("wizard_action", "detour:get-updates", "Get updates…") in buttons(configure)
    leave = submit(admin_client, configure, {"description": "typed first"}, action="detour:get-updates")
    assert leave["Location"].startswith(reverse("partnerships:wizard_get_updates", args=[partnership.pk]))
    question = follow(admin_client, leave)
    text = question.content.decode()
    assert "https://sp.partner.example/acs2" in text and "No, back to the wizard" in text
    # "No" is a plain link back: nothing is marked, what was typed is kept.
    back = follow(admin_client, admin_client.get(page_form(question)["next"][0]))
    assert page_form(back)["description"][0].strip() == "typed first" and "Get updates confirmed" not in back.content.decode()
    confirm = walk(admin_client, back)
    assert "Entity data" not in confirm.content.decode()
    submit(admin_client, confirm, action="finish")
    assert Partnership.objects.get(pk=partnership.pk).entity_data == before


def test_get_updates_confirmed_copies_the_entity_data_at_finish(admin_client, make_partnership):
    partnership = complete_partnership(make_partnership)
    changed_remote_endpoints(partnership.remote_entity)
    configure = open_edit(admin_client, partnership)
    leave = submit(admin_client, configure, action="detour:get-updates")
    question = follow(admin_client, leave)
    yes = admin_client.post(leave["Location"], page_form(question, -1))
    assert "created=1" in yes["Location"]
    configure = follow(admin_client, follow(admin_client, yes))
    assert "Get updates confirmed" in configure.content.decode()
    confirm = walk(admin_client, configure)
    assert "Get updates: the entities&#x27; current data is copied in at Finish" in confirm.content.decode()
    # Until Finish the partnership keeps its copy.
    assert len(Partnership.objects.get(pk=partnership.pk).entity_data["remote"]["endpoints"]) == 1
    submit(admin_client, confirm, action="finish")
    partnership.refresh_from_db()
    assert [e["location"] for e in partnership.entity_data["remote"]["endpoints"]] == [SP_ACS, "https://sp.partner.example/acs2"]
    assert services.entity_changes(partnership) == []


def test_no_get_updates_button_when_the_entities_did_not_change(admin_client, make_partnership):
    partnership = complete_partnership(make_partnership)
    configure = open_edit(admin_client, partnership)
    assert not [value for _, value, _ in buttons(configure) if value == "detour:get-updates"]


def test_a_refusal_at_finish_is_shown_at_its_step_and_field(admin_client, make_partnership, monkeypatch):
    """save_partnership re-checks everything; what it refuses goes back to the step and field it names. The wizard's own
    checks catch everything the data can say, so a refusal here can only come from a change made by someone else
    between Confirm and the save: that race is simulated by making the service refuse."""
    from partnerships.catalog import Problem
    from partnerships.services import PartnershipError

    partnership = complete_partnership(make_partnership)
    confirm = walk(admin_client, open_edit(admin_client, partnership))

    def refuse(*args, **kwargs):
        raise PartnershipError(
            [
                Problem("sso_slo", "sso_bindings", "Refused binding."),
                Problem("signature", "signing_key", "Refused key."),
                Problem("", "", "Refused as a whole."),
            ]
        )

    monkeypatch.setattr(services, "save_partnership", refuse)
    shown = submit(admin_client, confirm, action="finish")
    assert shown.status_code == 200
    from tests.wizard_helpers import field_errors

    text = shown.content.decode()
    assert "Step 1 of" in text and "Configure partnership" in text  # the first step with a problem ("" → Configure)
    assert "Refused as a whole." in text
    assert "SSO and SLO: Refused binding." in text and "Signature and encryption: Refused key." in text
    sso = admin_client.get(confirm.request["PATH_INFO"].replace("/confirm/", "/sso_slo/"))
    assert field_errors(sso, "id_sso_bindings") == []  # other steps are not marked invalid by the messages alone


def session_text():
    return " ".join(json.dumps(s.get_decoded()) for s in Session.objects.all())


def test_passwords_are_never_rendered_back_nor_kept_in_clear(admin_client, make_partnership):
    secret = "s3cret-cookie-Passw0rd"
    local, remote = entities_for("saml2_sp_idp")
    page = start(admin_client, "saml2_sp_idp")
    response = submit(admin_client, page, configure_values("Secrets", local, remote))
    application = walk(admin_client, admin_client.get(response["Location"]), until="application")
    values = {"target": "https://app.sp.example/", "redirect_mode": "open_format_cookie", "cookie_password": secret}
    back = submit(admin_client, application, values, action="back")
    assert secret not in session_text()  # sealed before it is stored in the session
    signature = admin_client.get(back["Location"])
    application = follow(admin_client, submit(admin_client, signature))
    assert secret not in application.content.decode()
    assert page_form(application)["cookie_password"] == [""]
    # Next with the field left empty keeps what was typed earlier in this run.
    confirm = follow(admin_client, submit(admin_client, application))
    assert secret not in confirm.content.decode() and "will be set to what you typed" in confirm.content.decode()
    submit(admin_client, confirm, action="finish")
    partnership = Partnership.objects.get()
    assert services.read_secrets(partnership)["application.cookie_password"] == secret
    assert secret not in json.dumps(partnership.settings)

    # Editing: the field is empty, says a password is stored, and empty keeps it.
    configure = open_edit(admin_client, partnership)
    application = walk(admin_client, configure, until="application")
    text = application.content.decode()
    assert secret not in text and page_form(application)["cookie_password"] == [""]
    assert "A password is stored: leave this empty to keep it." in text
    confirm = follow(admin_client, submit(admin_client, application))
    assert "stored (unchanged)" in confirm.content.decode()
    submit(admin_client, confirm, action="finish")
    assert services.read_secrets(Partnership.objects.get())["application.cookie_password"] == secret


def test_step_pages_use_a_bounded_number_of_queries(admin_client, make_partnership, django_assert_max_num_queries):
    from entities.models import EntityType, Location
    from tests.test_partnership_wizard_support import acs, make_entity

    partnership = complete_partnership(make_partnership)
    configure = open_edit(admin_client, partnership)
    walk(admin_client, configure)  # every step stored once

    def counts():
        url = configure.request["PATH_INFO"]
        found = []
        for spec in [*catalog.steps_for(partnership.kind), None]:
            step = spec.key if spec else "confirm"
            with django_assert_max_num_queries(20 if spec else 25) as captured:
                page = admin_client.get(url.replace("/configure/", f"/{step}/"))
            assert page.status_code == 200, step
            found.append(len(captured))
        return found

    before = counts()
    # More entities, directories and keystore entries to choose from do not mean more queries per page.
    for number in range(15):
        make_entity(f"more-sp-{number}", Location.REMOTE, EntityType.SAML2_SP, [acs(Binding.HTTP_POST, SP_ACS)])
    assert counts() == before
