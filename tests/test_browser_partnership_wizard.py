"""The partnership wizard in a real Chromium (Debian's, through Playwright), with its script on: the two walkthroughs
of the reference (SAML2 IdP → SP and SAML2 SP → IdP) against real entities and keys made through the services, with
settings shown and hidden as they apply, live window previews, an expression tested against a user of the embedded
directory in the page, and the lifecycle around the wizard (activate, blocked edit, deactivate and edit)."""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from entities import entity_services
from entities import services as keystore
from entities.models import Binding, EndpointKind, EntityType, Location
from federation.directories import get_embedded_directory
from federation.models import UserAttribute
from partnerships.models import Partnership, PartnershipState

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SP_ACS = "https://sp1.example.com/affwebservices/public/saml2assertionconsumer"
IDP_SSO = "https://idp1.example.com/affwebservices/public/saml2sso"


def entity(name, location, entity_type, endpoints=(), **values):
    base = {"location": location, "entity_type": entity_type, "name": name, "entity_id": name}
    if location == Location.LOCAL:
        base["base_url"] = f"https://{name}.example.com"
    base.update(values)
    return entity_services.create_entity(base, list(endpoints))


@pytest.fixture
def bob(db):
    user = get_user_model().objects.create_user("bob", email="bob@example.com", first_name="Bob", last_name="Builder")
    UserAttribute.objects.create(user=user, name="department", value="Sales")
    return user


@pytest.fixture
def idp_side(db):
    """The IdP site of the reference walkthrough: local IdP idp1 with its signing key, remote SP sp1 with a POST ACS
    and its certificate (verification and encryption)."""
    get_embedded_directory()  # a transactional test flushes the row the migration made
    keystore.generate_key_pair("idp1-signing", "rsa2048", "CN=idp1.example.com", 365, [])
    sp_key = keystore.generate_key_pair("sp1-key", "rsa2048", "CN=sp1.example.com", 365, [])
    keystore.import_trusted_certificate("sp1-cert", sp_key.certificate_pem)
    entity("idp1", Location.LOCAL, EntityType.SAML2_IDP, signing_key="idp1-signing")
    entity(
        "sp1",
        Location.REMOTE,
        EntityType.SAML2_SP,
        [{"kind": EndpointKind.ACS, "binding": Binding.HTTP_POST, "location": SP_ACS, "index": 0, "is_default": True}],
        verification_certificate="sp1-cert",
        encryption_certificate="sp1-cert",
    )


@pytest.fixture
def sp_side(db):
    """The SP site: local SP sp1 with signing and decryption keys, remote IdP idp1 with a Redirect SSO service."""
    get_embedded_directory()
    keystore.generate_key_pair("sp1-signing", "rsa2048", "CN=sp1.example.com", 365, [])
    idp_key = keystore.generate_key_pair("idp1-key", "rsa2048", "CN=idp1.example.com", 365, [])
    keystore.import_trusted_certificate("idp1-cert", idp_key.certificate_pem)
    entity("sp1", Location.LOCAL, EntityType.SAML2_SP, signing_key="sp1-signing", decryption_key="sp1-signing")
    entity(
        "idp1",
        Location.REMOTE,
        EntityType.SAML2_IDP,
        [{"kind": EndpointKind.SSO, "binding": Binding.HTTP_REDIRECT, "location": IDP_SSO}],
        verification_certificate="idp1-cert",
    )


def heading(page, step):
    return page.get_by_role("heading", name=re.compile(rf"^Step \d+ of \d+: {re.escape(step)}$"))


def next_step(page, expected):
    page.get_by_role("button", name="Next", exact=True).click()
    assert heading(page, expected).is_visible(), page.locator(".errorlist, .messages").all_inner_texts()


def test_saml2_idp_to_sp_walkthrough_with_lifecycle(signed_in_page, live_server, idp_side, bob):
    page = signed_in_page
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Partnerships").click()
    page.get_by_role("link", name="Create partnership").click()

    # 1 Partnership type.
    assert heading(page, "Partnership type").is_visible()
    page.get_by_label("SAML2 IdP → SP").check()
    next_step(page, "Configure partnership")

    # 2 Configure: the only local IdP is chosen; the skew preview follows what is typed.
    page.get_by_role("textbox", name="Partnership name").fill("TestPartnership")
    assert page.get_by_label("Local SAML2 IdP").input_value() != ""
    page.get_by_label("Remote SAML2 SP").select_option(label="sp1 (sp1)")
    assert page.get_by_label("Directory, row 1").input_value() == "Embedded directory"
    preview = page.locator("#id_skew_seconds_preview")
    assert "11:59:30" in preview.inner_text()
    page.get_by_role("spinbutton", name="Skew time (seconds)").fill("45")
    page.wait_for_function("document.querySelector('#id_skew_seconds_preview').textContent.includes('11:59:15')")
    next_step(page, "Federation users")
    next_step(page, "Assertion configuration")

    # 3 Assertion: Name ID, a user attribute and an expression attribute tested against bob in the page.
    page.get_by_role("textbox", name="Name ID value").fill("username")
    page.get_by_label("Assertion attribute, row 1").fill("mail")
    page.get_by_label("Value, row 1").fill("email")
    page.get_by_role("button", name="Add row").click()
    page.get_by_label("Assertion attribute, row 2").fill("displayName")
    dn_spec = page.get_by_label("DN specification, row 2")
    assert dn_spec.is_hidden()  # only for the DN attribute type
    test_link = page.locator("#table-attributes tbody tr").nth(1).get_by_role("link", name="Test this expression against a user")
    assert test_link.is_hidden()  # only for the Expression type
    page.get_by_label("Type, row 2").select_option("expression")
    assert test_link.is_visible()
    page.get_by_label("Value, row 2").fill('#{attr["first_name"]} #{attr["last_name"]} (#{attr["department"]})')
    test_link.click()
    row = page.locator("#table-attributes tbody tr").nth(1)
    row.get_by_label("User name").fill("bob")
    row.get_by_role("button", name="Test").click()
    expect(row.locator(".expression-test-result")).to_have_text("For bob: “Bob Builder (Sales)”.")
    next_step(page, "SSO and SLO")

    # 4 SSO and SLO: SLO settings appear only with single logout on; the validity preview follows the duration.
    bindings = page.get_by_role("group", name="SLO bindings")
    assert bindings.is_hidden()
    page.get_by_label("Enable single logout").check()
    assert bindings.is_visible()
    page.get_by_label("Enable single logout").uncheck()
    assert bindings.is_hidden()
    page.get_by_role("spinbutton", name="SSO validity duration (seconds)").fill("120")
    page.wait_for_function("document.querySelector('#id_sso_validity_seconds_preview').textContent.includes('12:02:45')")
    next_step(page, "Signature and encryption")

    # 5 Signature and encryption: keys prefilled from the entities; encrypt the assertion.
    assert page.get_by_role("combobox", name="Signing key pair", exact=True).input_value() == "idp1-signing"
    page.get_by_label("Encrypt assertion").check()
    assert page.get_by_role("combobox", name="Encryption certificate", exact=True).input_value() == "sp1-cert"
    next_step(page, "Confirm")

    # 6 Confirm: a box per step with Modify; Finish.
    for title in ("Partnership type", "Configure partnership", "Federation users", "Assertion configuration", "SSO and SLO"):
        assert page.get_by_role("link", name=f"Modify {title}").is_visible()
    assert not Partnership.objects.exists()
    page.get_by_role("button", name="Finish").click()
    assert page.get_by_text("Partnership “TestPartnership” saved. It is Defined: activate it when ready.").is_visible()
    partnership = Partnership.objects.get()
    attributes = partnership.settings["assertion"]["attributes"]
    assert [(a["name"], a["value_type"]) for a in attributes] == [("mail", "user"), ("displayName", "expression")]
    assert partnership.settings["signature"]["encrypt_assertion"] is True
    assert partnership.settings["configure"]["skew_seconds"] == 45

    # Activate (confirmed), then try to edit: blocked, with Deactivate and edit.
    page.get_by_role("link", name="Activate…").click()
    page.get_by_role("button", name="Yes, activate").click()
    assert Partnership.objects.get().state == PartnershipState.ACTIVE
    page.goto(f"{live_server.url}/partnerships/{partnership.pk}/edit/")
    assert page.get_by_role("heading", name="TestPartnership is active").is_visible()
    page.get_by_role("link", name="Deactivate and edit…").click()
    page.get_by_role("button", name="Yes, deactivate").click()

    # The wizard opens on Configure with the entities locked; change the description and the validity.
    assert heading(page, "Configure partnership").is_visible()
    assert page.get_by_label("Local SAML2 IdP").is_disabled() and page.get_by_label("Remote SAML2 SP").is_disabled()
    page.get_by_label("Description").fill("Reference walkthrough, edited")
    next_step(page, "Federation users")
    next_step(page, "Assertion configuration")
    next_step(page, "SSO and SLO")
    page.get_by_role("spinbutton", name="SSO validity duration (seconds)").fill("90")
    next_step(page, "Signature and encryption")
    next_step(page, "Confirm")
    page.get_by_role("button", name="Save changes").click()
    assert page.get_by_text("Partnership “TestPartnership” saved. It is Inactive: activate it when ready.").is_visible()

    # Reactivate: a second snapshot is served.
    page.get_by_role("link", name="Activate…").click()
    page.get_by_role("button", name="Yes, activate").click()
    partnership.refresh_from_db()
    assert partnership.state == PartnershipState.ACTIVE and partnership.description == "Reference walkthrough, edited"
    assert partnership.current_snapshot().version == 2
    assert partnership.current_snapshot().data["settings"]["sso_slo"]["sso_validity_seconds"] == 90


def test_saml2_sp_to_idp_with_identity_attribute_and_mapping(signed_in_page, live_server, sp_side):
    page = signed_in_page
    page.goto(f"{live_server.url}/partnerships/create/")
    page.get_by_label("SAML2 SP → IdP").check()
    next_step(page, "Configure partnership")
    page.get_by_role("textbox", name="Partnership name").fill("DemoPartnership")
    page.get_by_label("Remote SAML2 IdP").select_option(label="idp1 (idp1)")
    next_step(page, "User identification")

    # User identification by an assertion attribute, looked up in the embedded directory by e-mail.
    attribute = page.get_by_role("textbox", name="Attribute", exact=True)
    assert attribute.is_hidden()
    page.get_by_label("Identity from the assertion").select_option("attribute")
    assert attribute.is_visible()
    attribute.fill("mail")
    page.get_by_label("Search specification, row 1").fill("email=%s")
    next_step(page, "SSO and SLO")
    next_step(page, "AuthnContext configuration")
    next_step(page, "Signature and encryption")
    next_step(page, "Application integration")

    # Application integration: a target and an attribute mapping (the table appears with mapping on).
    page.get_by_role("textbox", name="Target", exact=True).fill("https://sp1.example.com/spsample/welcome.html")
    mappings = page.locator("#table-attribute_mappings")
    assert mappings.is_hidden()
    page.get_by_label("Enable attribute mapping").check()
    assert mappings.is_visible()
    page.get_by_label("Application attribute, row 1").fill("Email")
    page.get_by_label("Expression, row 1").fill('#{attr["mail"]}')
    next_step(page, "Confirm")
    page.get_by_role("button", name="Finish").click()
    assert page.get_by_text("Partnership “DemoPartnership” saved. It is Defined: activate it when ready.").is_visible()

    page.get_by_role("link", name="Activate…").click()
    page.get_by_role("button", name="Yes, activate").click()
    partnership = Partnership.objects.get()
    assert partnership.state == PartnershipState.ACTIVE
    settings = partnership.settings
    assert settings["user_identification"]["identity_source"] == "attribute"
    assert settings["user_identification"]["identity_attribute"] == "mail"
    assert settings["user_identification"]["search_specs"] == [{"directory": "Embedded directory", "search_spec": "email=%s"}]
    assert settings["application"]["attribute_mappings"] == [{"name": "Email", "expression": '#{attr["mail"]}'}]
