"""The create-entity wizard in a real Chromium: a local SAML2 IdP with the reference walkthrough's
values (entity ID and name idp1 on idp1.example.com), generating its signing key from the wizard
and coming back to it, then Finish and the entity page with its SSO URL."""

import pytest

from entities.models import Entity, EntityType, KeystoreEntry, Location

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SSO_URL = "https://idp1.example.com/affwebservices/public/saml2sso"


def test_create_local_idp_with_a_generated_signing_key(signed_in_page, live_server):
    page = signed_in_page
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Entities").click()
    page.get_by_role("link", name="Create entity").click()

    # Step 1: location and type.
    assert page.get_by_role("heading", name="Step 1 of 3: Entity type").is_visible()
    page.get_by_label("Local", exact=True).check()
    page.get_by_label("SAML2 IdP", exact=True).check()
    page.get_by_role("button", name="Next", exact=True).click()

    # Step 2: identification, then a detour to the keystore for the signing key.
    assert page.get_by_role("heading", name="Step 2 of 3: Configure entity").is_visible()
    page.get_by_role("textbox", name="Entity ID", exact=True).fill("idp1")
    page.get_by_role("textbox", name="Entity name", exact=True).fill("idp1")
    page.get_by_role("textbox", name="Base URL", exact=True).fill("https://idp1.example.com")
    page.get_by_role("button", name="Generate a signing key pair").click()

    assert page.get_by_role("heading", name="Generate key pair").is_visible()
    page.get_by_label("Alias").fill("idp1-signing")
    page.get_by_label("Subject").fill("CN=idp1.example.com,O=Example")
    page.get_by_label("Algorithm").select_option(label="EC P-256")
    page.get_by_role("button", name="Generate").click()

    # Back in the wizard: what was typed is kept and the new key is selected.
    assert page.get_by_role("heading", name="Step 2 of 3: Configure entity").is_visible()
    assert page.get_by_role("textbox", name="Entity ID", exact=True).input_value() == "idp1"
    assert page.get_by_role("textbox", name="Base URL", exact=True).input_value() == "https://idp1.example.com"
    assert page.get_by_label("Signing key alias", exact=True).input_value() == "idp1-signing"
    page.get_by_role("button", name="Next", exact=True).click()

    # Step 3: one box per step with Modify, and the derived SSO URL; nothing saved yet.
    assert page.get_by_role("heading", name="Step 3 of 3: Confirm").is_visible()
    assert page.get_by_role("link", name="Modify Entity type").is_visible()
    assert page.get_by_role("link", name="Modify Configure entity").is_visible()
    assert page.get_by_text(SSO_URL).is_visible()
    assert not Entity.objects.exists()
    page.get_by_role("button", name="Finish").click()

    assert page.get_by_role("heading", name="idp1").is_visible()
    assert page.get_by_text("Entity 'idp1' created.").is_visible()
    assert page.get_by_role("cell", name=SSO_URL).is_visible()
    entity = Entity.objects.get()
    assert (entity.location, entity.entity_type, entity.entity_id) == (Location.LOCAL, EntityType.SAML2_IDP, "idp1")
    assert entity.signing_key == KeystoreEntry.objects.get(alias="idp1-signing")
    page.get_by_role("link", name="idp1-signing").click()
    assert page.get_by_role("heading", name="idp1-signing").is_visible()
    assert page.get_by_role("link", name="entity 'idp1' (signing key)").is_visible()
