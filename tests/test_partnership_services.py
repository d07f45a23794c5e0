"""Partnership services: create/update rules, lifecycle (Incomplete/Defined/Active/Inactive), the activated
snapshot, Get updates, and the delete protection partnerships give their entities, keys, templates and
directories. Real entities and keys (tests/partnership_fixtures.py); the catalog decides the settings."""

import pytest
from django.db.models import ProtectedError

from entities import entity_services
from entities import services as keystore
from entities.models import Binding, EndpointKind
from federation.directories import EMBEDDED_NAME
from federation.models import AuditEvent, UserDirectory
from partnerships import catalog, services
from partnerships.models import AuthnContextTemplate, Partnership, PartnershipSnapshot, PartnershipState, SnapshotImmutable
from partnerships.services import PartnershipError
from tests.partnership_fixtures import SP_ACS

pytestmark = pytest.mark.django_db
IDP_SP = "saml2_idp_sp"


def first_setting(kind, setting_type):
    """(step, key) of the first setting of this type the catalog has for the kind."""
    for step in catalog.steps_for(kind):
        for setting in catalog.settings_for(kind, step.key):
            if setting.type == setting_type:
                return step.key, setting.key
    pytest.fail(f"the catalog has no {setting_type} setting for {kind}")


def defined(make_partnership, saml2_idp_sp, name="idp-to-sp"):
    local, remote = saml2_idp_sp
    partnership = make_partnership(name, IDP_SP, local, remote)
    assert partnership.state == PartnershipState.DEFINED, services.stored_problems(partnership)
    return partnership


# ---------------------------------------------------------------- create / identity rules


def test_defaults_with_matching_entities_make_a_defined_partnership(make_partnership, saml2_idp_sp):
    partnership = defined(make_partnership, saml2_idp_sp)
    assert partnership.entity_data["local"]["entity_id"] == "https://idp-local.example/"
    assert partnership.entity_data["remote"]["endpoints"][0]["location"] == SP_ACS
    assert services.directory_names(partnership) == [EMBEDDED_NAME]
    assert AuditEvent.objects.filter(action="create", object_type="partnerships.Partnership").count() == 1


def test_remote_entity_put_off_gives_an_incomplete_partnership(make_partnership, saml2_idp_sp):
    local, _ = saml2_idp_sp
    partnership = make_partnership("later", IDP_SP, local, None)
    assert partnership.state == PartnershipState.INCOMPLETE
    assert partnership.entity_data["remote"] is None


@pytest.mark.parametrize("name", ["has space", "slash/name", "ümlaut", ""])
def test_partnership_name_characters(make_partnership, saml2_idp_sp, name):
    local, remote = saml2_idp_sp
    with pytest.raises(PartnershipError) as caught:
        make_partnership(name, IDP_SP, local, remote)
    assert caught.value.for_field("configure", "name") == [catalog.validate_name(name)]


def test_names_are_unique_without_regard_to_case(make_partnership, saml2_idp_sp):
    defined(make_partnership, saml2_idp_sp, "Partner.One")
    local, remote = saml2_idp_sp
    with pytest.raises(PartnershipError) as caught:
        make_partnership("partner.one", IDP_SP, local, remote)
    assert caught.value.messages() == ["A partnership named “Partner.One” already exists; choose another name."]


def test_entities_must_match_the_kind(make_partnership, saml2_idp_sp):
    local, remote = saml2_idp_sp
    with pytest.raises(PartnershipError) as caught:
        make_partnership("swapped", IDP_SP, remote, local)
    assert caught.value.for_field("configure", "local_entity") == [
        "Entity “sp-partner” is a remote SAML2 SP; a SAML2 IdP → SP partnership needs a local SAML2 IdP."
    ]
    assert caught.value.for_field("configure", "remote_entity") == [
        "Entity “idp-local” is a local SAML2 IdP; a SAML2 IdP → SP partnership needs a remote SAML2 SP."
    ]


def test_unknown_directory_and_unknown_setting_are_refused(make_partnership, saml2_idp_sp):
    local, remote = saml2_idp_sp
    with pytest.raises(PartnershipError) as caught:
        make_partnership("p", IDP_SP, local, remote, directories=["nope"])
    assert caught.value.messages() == ["There is no directory named “nope”."]
    with pytest.raises(PartnershipError) as caught:
        make_partnership("p", IDP_SP, local, remote, settings={"configure": {"colour": "blue"}})
    assert any("colour" in message for message in caught.value.messages())
    assert not Partnership.objects.exists()


def test_entities_cannot_be_swapped_but_a_put_off_remote_can_be_chosen(make_partnership, saml2_idp_sp):
    local, remote = saml2_idp_sp
    partnership = make_partnership("later", IDP_SP, local, None)
    other = entity_services.create_entity(
        {"location": "remote", "entity_type": "saml2_sp", "name": "sp-other", "entity_id": "urn:other"},
        [{"kind": EndpointKind.ACS, "binding": Binding.HTTP_POST, "location": SP_ACS, "index": 0, "is_default": True}],
    )
    partnership = services.save_partnership(
        partnership,
        kind=IDP_SP,
        name="later",
        local_entity=local,
        remote_entity=remote,
        directories=[EMBEDDED_NAME],
        settings=partnership.settings,
    )
    assert partnership.remote_entity == remote and partnership.entity_data["remote"]["name"] == "sp-partner"
    with pytest.raises(PartnershipError) as caught:
        services.save_partnership(
            partnership, kind=IDP_SP, name="later", local_entity=local, remote_entity=other, directories=[], settings={}
        )
    assert caught.value.messages() == ["The entities of a partnership cannot be swapped; create a new partnership."]


# ---------------------------------------------------------------- lifecycle


def test_activate_freezes_a_snapshot_and_blocks_changes(make_partnership, saml2_idp_sp):
    partnership = defined(make_partnership, saml2_idp_sp)
    snapshot = services.activate(partnership)
    partnership.refresh_from_db()
    assert partnership.state == PartnershipState.ACTIVE and snapshot.current and snapshot.version == 1
    assert snapshot.remote_entity_id == "https://sp-partner.example/" and snapshot.data["settings"] == partnership.settings
    assert snapshot.data["certificates"]["sp-partner-cert"]["kind"] == "trusted_certificate"  # pre-filled from the SP
    with pytest.raises(PartnershipError) as caught:
        services.save_partnership(
            partnership,
            kind=IDP_SP,
            name=partnership.name,
            local_entity=partnership.local_entity,
            remote_entity=partnership.remote_entity,
            settings=partnership.settings,
        )
    assert caught.value.messages() == [
        "Partnership “idp-to-sp” is active. Deactivate it before you change it (Deactivate and edit)."
    ]
    with pytest.raises(PartnershipError, match="Deactivate it before deleting it"):
        services.delete_partnership(partnership)
    with pytest.raises(PartnershipError, match="only a Defined or Inactive partnership can be activated"):
        services.activate(partnership)
    assert AuditEvent.objects.filter(action="activate", object_repr="idp-to-sp").count() == 1


def test_snapshot_rows_are_immutable(make_partnership, saml2_idp_sp):
    snapshot = services.activate(defined(make_partnership, saml2_idp_sp))
    snapshot.data = {"tampered": True}
    with pytest.raises(SnapshotImmutable):
        snapshot.save()


def test_deactivate_then_edit_then_reactivate_makes_a_second_snapshot(make_partnership, saml2_idp_sp):
    partnership = defined(make_partnership, saml2_idp_sp)
    services.activate(partnership)
    with pytest.raises(PartnershipError, match="only an Active partnership can be deactivated"):
        services.deactivate(Partnership.objects.create(name="x", kind=IDP_SP, local_entity=partnership.local_entity))
    services.deactivate(partnership)
    partnership.refresh_from_db()
    assert partnership.state == PartnershipState.INACTIVE and partnership.current_snapshot() is None
    settings = partnership.settings
    settings["configure"]["skew_seconds"] = 45
    partnership = services.save_partnership(
        partnership,
        kind=IDP_SP,
        name=partnership.name,
        description="edited",
        local_entity=partnership.local_entity,
        remote_entity=partnership.remote_entity,
        directories=[EMBEDDED_NAME],
        settings=settings,
    )
    assert partnership.state == PartnershipState.INACTIVE  # edited but still complete: stays Inactive
    second = services.activate(partnership)
    assert second.version == 2 and second.data["settings"]["configure"]["skew_seconds"] == 45
    assert list(PartnershipSnapshot.objects.filter(partnership=partnership, current=True)) == [second]


def test_activation_revalidates_and_names_every_problem(make_partnership, saml2_idp_sp):
    local, remote = saml2_idp_sp
    partnership = make_partnership("later", IDP_SP, local, None)
    partnership.state = PartnershipState.DEFINED  # as if it had been complete: activation must look again
    partnership.save()
    with pytest.raises(PartnershipError) as caught:
        services.activate(partnership)
    assert "Choose the remote entity (it was put off)." in caught.value.messages()
    partnership.refresh_from_db()
    assert partnership.state == PartnershipState.INCOMPLETE and not partnership.snapshots.exists()


def test_delete_an_inactive_partnership(make_partnership, saml2_idp_sp):
    partnership = defined(make_partnership, saml2_idp_sp)
    services.delete_partnership(partnership)
    assert not Partnership.objects.exists()


# ---------------------------------------------------------------- get updates


def test_entity_changes_show_and_get_updates_copies_them(make_partnership, saml2_idp_sp):
    partnership = defined(make_partnership, saml2_idp_sp)
    assert services.entity_changes(partnership) == []
    remote = partnership.remote_entity
    entity_services.update_entity(remote, {"description": "x", "name_id_formats": []})
    changes = services.entity_changes(partnership)
    assert [(side, field) for side, field, _, _ in changes] == [("remote", "name_id_formats")]
    listed = services.with_update_flag(Partnership.objects.filter(pk=partnership.pk)).get()
    assert listed.entity_updated
    services.get_updates(partnership)
    partnership.refresh_from_db()
    assert services.entity_changes(partnership) == []
    assert partnership.entity_data["remote"]["name_id_formats"] == []
    assert not services.with_update_flag(Partnership.objects.filter(pk=partnership.pk)).get().entity_updated
    assert AuditEvent.objects.filter(action="get updates").count() == 1


def test_get_updates_refused_while_active(make_partnership, saml2_idp_sp):
    partnership = defined(make_partnership, saml2_idp_sp)
    services.activate(partnership)
    with pytest.raises(PartnershipError, match="Deactivate it before you get entity updates"):
        services.get_updates(partnership)


# ---------------------------------------------------------------- what partnerships protect


def test_an_entity_in_a_partnership_cannot_be_deleted_and_the_message_names_it(make_partnership, saml2_idp_sp):
    partnership = defined(make_partnership, saml2_idp_sp)
    blockers = entity_services.deletion_blockers(partnership.remote_entity)
    assert blockers and "idp-to-sp" in " ".join(str(b) for b in blockers)
    with pytest.raises(entity_services.EntityError) as caught:
        entity_services.delete_entity(partnership.remote_entity)
    assert "idp-to-sp" in caught.value.message


def test_a_directory_in_a_partnership_cannot_be_deleted(make_partnership, saml2_idp_sp):
    defined(make_partnership, saml2_idp_sp)
    with pytest.raises(ProtectedError):
        UserDirectory.objects.get(name=EMBEDDED_NAME).delete()


def test_a_keystore_entry_named_by_a_partnership_cannot_be_deleted(make_partnership, saml2_idp_sp):
    step, key = first_setting(IDP_SP, "key_pair")
    keystore.generate_key_pair("partnership-only", "rsa2048", "CN=p", 365, [])
    partnership = make_partnership("p1", IDP_SP, *saml2_idp_sp, settings={step: {key: "partnership-only"}})
    assert partnership.references.filter(keystore_entry__alias="partnership-only", setting=f"{step}.{key}").exists()
    with pytest.raises(Exception) as caught:
        keystore.delete_entry("partnership-only")
    assert "p1" in str(caught.value)


def test_an_authn_context_template_in_use_cannot_be_deleted(client, admin_client, make_partnership, saml2_sp_idp):
    """The real reference that replaces the console test's mocked ProtectedError."""
    from django.urls import reverse

    from partnerships import authn_context_services

    template = authn_context_services.create_template(
        "Corporate", entries=[{"uri": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"}]
    )
    step, key = first_setting("saml2_sp_idp", "authn_template")
    partnership = make_partnership("sp-to-idp", "saml2_sp_idp", *saml2_sp_idp, settings={step: {key: "Corporate"}})
    assert partnership.references.filter(authn_template=template).exists()
    response = admin_client.post(reverse("partnerships:authn_context_delete", args=[template.pk]))
    assert response.status_code == 409
    assert "sp-to-idp" in response.content.decode()
    assert AuthnContextTemplate.objects.filter(pk=template.pk).exists()


def test_passwords_are_sealed_and_never_in_the_settings(make_partnership, saml2_idp_sp):
    secret_settings = [
        (step.key, s.key)
        for step in catalog.steps_for(IDP_SP)
        for s in catalog.settings_for(IDP_SP, step.key)
        if s.type == "password"
    ]
    if not secret_settings:
        pytest.fail("the catalog has no password setting for SAML2 IdP → SP (back-channel Basic password expected)")
    step, key = secret_settings[0]
    partnership = make_partnership("p1", IDP_SP, *saml2_idp_sp, settings={step: {key: "s3cret-Pa55"}})
    assert partnership.settings[step][key] == "set"
    assert "s3cret-Pa55" not in partnership.secrets and services.read_secrets(partnership)[f"{step}.{key}"] == "s3cret-Pa55"
    # saving again with an empty password keeps the stored one
    settings = partnership.settings
    settings[step][key] = ""
    partnership = services.save_partnership(
        partnership,
        kind=IDP_SP,
        name="p1",
        local_entity=partnership.local_entity,
        remote_entity=partnership.remote_entity,
        directories=[EMBEDDED_NAME],
        settings=settings,
    )
    assert services.read_secrets(partnership)[f"{step}.{key}"] == "s3cret-Pa55"
    assert not any("s3cret" in str(e.changes) for e in AuditEvent.objects.all())


# ---------------------------------------------------------------- what the runtime reads


def test_runtime_finds_only_the_current_snapshot_and_follows_deactivation(
    make_partnership, saml2_idp_sp, django_assert_num_queries
):
    from partnerships import runtime

    partnership = defined(make_partnership, saml2_idp_sp)
    with pytest.raises(runtime.NoActivePartnership):
        runtime.find_active(IDP_SP, "https://sp-partner.example/")
    snapshot = services.activate(partnership)
    found = runtime.find_active(IDP_SP, "https://sp-partner.example/")
    assert (
        found.snapshot_id == snapshot.pk
        and found.name == "idp-to-sp"
        and found.remote["entity_id"] == "https://sp-partner.example/"
    )
    with django_assert_num_queries(1):  # the "which snapshot is current" lookup; the data comes from the cache
        assert runtime.find_active(IDP_SP, "https://sp-partner.example/", "https://idp-local.example/") is found
    services.deactivate(partnership)
    with pytest.raises(runtime.NoActivePartnership):
        runtime.find_active(IDP_SP, "https://sp-partner.example/")
