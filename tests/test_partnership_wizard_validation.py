"""Validation at the field in the partnership wizard: on Next, the configuration of every step is checked with the
catalogue's rules (partnerships.catalog.validate) and this step's problems appear next to their fields, in table
cells, or as warnings that do not stop the administrator."""

import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.urls import reverse

from entities import entity_services
from entities import services as keystore
from entities.models import Binding, EndpointKind, NameIdFormat
from federation.saml.encryption import MIN_RSA_KEY_BITS
from partnerships import catalog
from partnerships.models import Partnership, PartnershipState
from tests.keystore_fixtures import cert_pem, name
from tests.test_partnership_wizard_support import (
    REQUIRED_INPUT,
    SP_ACS,
    configure_values,
    entities_for,
    flash_messages,
    messages_on,
    start,
    step_of,
    walk,
    warnings_at,
)
from tests.wizard_helpers import field_errors, follow, page_form, submit

pytestmark = pytest.mark.django_db


def to_step(client, kind, step, configure=None, changes=None, entities=None):
    """A new wizard run of `kind` walked to `step` (Configure with `configure` values), with the entities."""
    local, remote = entities or entities_for(kind)
    page = start(client, kind)
    values = configure_values("Checked", local, remote, **(configure or {}))
    if step == "configure":
        return page, (local, remote), values
    response = submit(client, page, values)
    assert response.status_code == 302, messages_on(response)
    page = walk(client, client.get(response["Location"]), {**REQUIRED_INPUT[kind], **(changes or {})}, until=step)
    return page, (local, remote), None


def next_refused(client, page, changes):
    response = submit(client, page, changes)
    assert response.status_code == 200, "Next should have been refused"
    return response


# --------------------------------------------------------------------------------------------------- Configure


@pytest.mark.parametrize(
    ("typed", "words"), [("Partner SP", "cannot contain spaces"), ("partner/sp", "“/” is not allowed"), ("", "Enter")]
)
def test_partnership_name_characters(admin_client, typed, words):
    page, _, values = to_step(admin_client, "saml2_idp_sp", "configure")
    refused = next_refused(admin_client, page, {**values, "name": typed})
    assert field_errors(refused, "id_name") == [catalog.validate_name(typed)]
    assert words in catalog.validate_name(typed)


def test_partnership_name_already_taken(admin_client, make_partnership):
    local, remote = entities_for("saml2_idp_sp")
    make_partnership("Taken", "saml2_idp_sp", local, remote)
    page, _, values = to_step(admin_client, "saml2_idp_sp", "configure", entities=(local, remote))
    refused = next_refused(admin_client, page, {**values, "name": "TAKEN"})
    assert field_errors(refused, "id_name") == ["A partnership named “Taken” already exists; choose another name."]


def test_negative_skew_and_not_a_number(admin_client):
    page, _, values = to_step(admin_client, "saml2_idp_sp", "configure")
    refused = next_refused(admin_client, page, {**values, "skew_seconds": "-5"})
    assert field_errors(refused, "id_skew_seconds") == ["Skew time (seconds) must be a whole number, 0 or more (not -5)."]
    refused = next_refused(admin_client, refused, {"skew_seconds": "thirty"})
    assert field_errors(refused, "id_skew_seconds") == ["Skew time (seconds) must be a whole number."]


def test_a_directory_chosen_twice_and_none_chosen(admin_client):
    page, _, values = to_step(admin_client, "saml2_idp_sp", "configure")
    twice = configure_values("Checked", *entities_for_existing(), directories=("Embedded directory", "Embedded directory"))
    refused = next_refused(admin_client, page, twice)
    assert field_errors(refused, "id_directories-1-directory") == [
        "“Embedded directory” is chosen twice; each directory is listed once."
    ]
    none = configure_values("Checked", *entities_for_existing(), directories=())
    refused = next_refused(admin_client, refused, none)
    assert ("table-directories-errors", "Select at least one user directory.") in messages_on(refused)


def entities_for_existing():
    from entities.models import Entity

    return Entity.objects.get(name="idp-local"), Entity.objects.get(name="sp-partner")


def test_remote_entity_put_off_does_not_block_and_saves_incomplete(admin_client):
    local, _ = entities_for("saml2_idp_sp")
    page = start(admin_client, "saml2_idp_sp")
    response = submit(admin_client, page, configure_values("Later", local, None))
    assert response.status_code == 302 and step_of(response["Location"]) == "federation_users"
    confirm = walk(admin_client, admin_client.get(response["Location"]), REQUIRED_INPUT["saml2_idp_sp"])
    text = confirm.content.decode()
    assert "put off: the partnership is saved as Incomplete until it is chosen" in text
    assert 'The partnership is saved as <span class="state state-incomplete">Incomplete</span>' in text
    detail = follow(admin_client, submit(admin_client, confirm, action="finish"))
    partnership = Partnership.objects.get()
    assert partnership.state == PartnershipState.INCOMPLETE and partnership.remote_entity is None
    assert any(
        m.startswith("Partnership “Later” saved. It is Incomplete: the remote entity is not chosen yet")
        for m in flash_messages(detail)
    )


# --------------------------------------------------------------------------------------------------- assertion / identification


def test_allow_create_without_persistent_name_id(admin_client):
    page, _, _ = to_step(admin_client, "saml2_idp_sp", "assertion")
    refused = next_refused(
        admin_client, page, {"allow_create": "on", "name_id_format": NameIdFormat.UNSPECIFIED, "name_id_value": "uid"}
    )
    assert field_errors(refused, "id_allow_create") == [
        "Allow IdP to create a persistent identifier needs the Name ID format Persistent: choose it above, or untick this."
    ]
    accepted = submit(admin_client, refused, {"name_id_format": NameIdFormat.PERSISTENT})
    assert accepted.status_code == 302


def test_allow_create_at_the_sp_needs_the_idp_to_list_persistent(admin_client):
    local, remote = entities_for("saml2_sp_idp")
    entity_services.update_entity(remote, {"name_id_formats": [NameIdFormat.UNSPECIFIED]})
    page, _, _ = to_step(admin_client, "saml2_sp_idp", "user_identification", entities=(local, remote))
    refused = next_refused(admin_client, page, {"allow_create": "on"})
    assert field_errors(refused, "id_allow_create") == [
        "AllowCreate needs the IdP to use the Persistent Name ID format, and the remote entity “idp-partner” does not "
        "list it: add it to the entity, or untick this."
    ]


def test_search_spec_without_placeholder_is_shown_in_its_cell(admin_client):
    page, _, _ = to_step(admin_client, "saml2_sp_idp", "user_identification")
    refused = next_refused(admin_client, page, {"search_specs-0-search_spec": "username=bob"})
    assert field_errors(refused, "id_search_specs-0-search_spec") == [
        "The search specification must contain %s where the value goes, such as uid=%s (not “username=bob”)."
    ]


def test_federation_user_rule_cell_is_required(admin_client):
    page, _, _ = to_step(admin_client, "saml2_idp_sp", "federation_users")
    refused = next_refused(
        admin_client, page, {"rules-0-directory": "Embedded directory", "rules-0-kind": "group", "rules-0-value": ""}
    )
    assert field_errors(refused, "id_rules-0-value") != []


def test_hidden_settings_are_ignored_on_the_server(admin_client):
    page, _, _ = to_step(admin_client, "saml2_idp_sp", "sso_slo")
    assert page_form(page)["session_not_on_or_after"] == ["assertion_validity"]
    # Shown only with a custom SessionNotOnOrAfter: a bad value there does not stop Next and is not kept.
    text = page.content.decode()
    assert 'data-field="session_duration_minutes" data-visible-when=' in text
    response = submit(admin_client, page, {"session_duration_minutes": "soon"})
    assert response.status_code == 302
    confirm = walk(admin_client, admin_client.get(response["Location"]))
    submit(admin_client, confirm, action="finish")
    assert Partnership.objects.get().settings["sso_slo"]["session_duration_minutes"] == 120


# --------------------------------------------------------------------------------------------------- SSO and SLO


def test_binding_without_endpoint_on_the_remote_entity(admin_client):
    page, _, _ = to_step(admin_client, "saml2_idp_sp", "sso_slo")
    refused = next_refused(admin_client, page, {"sso_bindings": ["post", "artifact"]})
    [message] = field_errors(refused, "id_sso_bindings")
    assert message.startswith("HTTP-Artifact SSO needs an assertion consumer service")
    assert "HTTP-Artifact binding on the remote entity “sp-partner”" in message


def test_client_certificate_back_channel_over_http(admin_client):
    local, remote = entities_for("saml2_idp_sp")
    entity_services.update_entity(
        remote,
        {},
        endpoints=[
            {"kind": EndpointKind.ACS, "binding": Binding.HTTP_POST, "location": SP_ACS, "index": 0, "is_default": True},
            {"kind": EndpointKind.ACS, "binding": Binding.HTTP_ARTIFACT, "location": SP_ACS, "index": 1},
        ],
    )
    page, _, _ = to_step(
        admin_client, "saml2_idp_sp", "sso_slo", configure={"base_url": "http://idp-local.example"}, entities=(local, remote)
    )
    refused = next_refused(admin_client, page, {"sso_bindings": ["post", "artifact"], "backchannel_in_auth": "client_cert"})
    assert field_errors(refused, "id_backchannel_in_auth") == [
        "A client-certificate back channel needs https:// for every URL of the partnership, and http://idp-local.example is not https."
    ]
    # Without authentication it is allowed, with a warning that follows the administrator to the next page.
    response = submit(admin_client, refused, {"backchannel_in_auth": "none"})
    assert response.status_code == 302
    shown = flash_messages(admin_client.get(response["Location"]))
    assert any(m.startswith("SSO and SLO: No back-channel authentication") for m in shown)


# --------------------------------------------------------------------------------------------------- signature


def test_post_without_signed_assertion_is_refused_then_a_warning_when_signing_is_disabled(admin_client):
    page, _, _ = to_step(admin_client, "saml2_idp_sp", "signature")
    refused = next_refused(admin_client, page, {"sign_post": "response"})
    assert field_errors(refused, "id_sign_post") == [
        "With HTTP-POST the assertion must be signed: choose Assertion, or Assertion and response."
    ]
    response = submit(admin_client, refused, {"disable_signature_processing": "on"})
    assert response.status_code == 302
    confirm = admin_client.get(response["Location"])
    shown = flash_messages(confirm)
    assert any("Signature processing is disabled" in m for m in shown)
    assert any("(Ignored while signature processing is disabled.)" in m for m in shown)
    # Back on the step, the warnings sit at their fields.
    signature = admin_client.get(confirm.request["PATH_INFO"].replace("/confirm/", "/signature/"))
    assert warnings_at(signature, "id_sign_post") == [
        "With HTTP-POST the assertion must be signed: choose Assertion, or Assertion and response. (Ignored while "
        "signature processing is disabled.)"
    ]
    assert warnings_at(signature, "id_disable_signature_processing")[0].startswith("Signature processing is disabled")
    assert "Warnings (they do not stop it)" in confirm.content.decode()


def weak_certificate_pem(bits, tmp_path):
    """A self-signed certificate with an RSA key of `bits` (cryptography makes 1024; openssl makes 512, which
    cryptography refuses to generate)."""
    if bits >= 1024:
        from datetime import UTC, datetime, timedelta

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        key = rsa.generate_private_key(65537, bits)
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name(f"weak-{bits}"))
            .issuer_name(name(f"weak-{bits}"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        return cert_pem(certificate)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            f"rsa:{bits}",
            "-nodes",
            "-keyout",
            str(tmp_path / "k.pem"),
            "-out",
            str(tmp_path / "c.pem"),
            "-subj",
            f"/CN=weak-{bits}",
            "-days",
            "30",
        ],
        check=True,
        capture_output=True,
    )
    return (tmp_path / "c.pem").read_bytes()


@pytest.mark.parametrize("bits", [1024, 512])
def test_weak_rsa_encryption_certificate_with_oaep(admin_client, tmp_path, bits):
    # Partner certificates are imported whatever their key size (only key pairs this site holds must be 2048+).
    keystore.import_trusted_certificate(f"weak-{bits}", weak_certificate_pem(bits, tmp_path))
    page, _, _ = to_step(admin_client, "saml2_idp_sp", "signature")
    chosen = {"encrypt_assertion": "on", "encryption_certificate": f"weak-{bits}", "encryption_key_transport": "rsa-oaep-mgf1p"}
    if bits >= MIN_RSA_KEY_BITS:  # the catalogue's floor for RSA-OAEP key transport
        assert submit(admin_client, page, chosen).status_code == 302
        return
    refused = next_refused(admin_client, page, chosen)
    assert field_errors(refused, "id_encryption_certificate") == [
        f"RSA-OAEP needs an RSA key of at least {MIN_RSA_KEY_BITS} bits, and “weak-{bits}” has {bits}."
    ]


def test_a_key_deleted_meanwhile_is_caught_on_confirm(admin_client):
    keystore.generate_key_pair("short-lived", "rsa2048", "CN=short", 30, [])
    page, _, _ = to_step(admin_client, "saml2_idp_sp", "signature")
    confirm = follow(admin_client, submit(admin_client, page, {"signing_key": "short-lived"}))
    assert "short-lived" in confirm.content.decode()
    keystore.delete_entry("short-lived")
    back = admin_client.get(confirm.request["PATH_INFO"])
    assert back.status_code == 302 and step_of(back["Location"]) == "signature"
    signature = follow(admin_client, back)
    assert field_errors(signature, "id_signing_key") == [
        "“short-lived” is not in the keystore (any more): choose another entry, or Generate / Import one."
    ]


# --------------------------------------------------------------------------------------------------- application


def test_relay_state_overrides_target_with_empty_target_needs_allowed_urls(admin_client):
    page, _, _ = to_step(admin_client, "saml2_sp_idp", "application", changes={"application": {}})
    refused = next_refused(admin_client, page, {"target": "", "relay_state_overrides_target": "on"})
    assert (
        "table-allowed_targets-errors",
        "With an empty target, list at least one allowed target URL: a RelayState is only followed to an allowed URL.",
    ) in messages_on(refused)
    refused = next_refused(admin_client, refused, {"relay_state_overrides_target": None})
    assert field_errors(refused, "id_target") == ["Enter the target URL, or tick Relay state overrides target."]
    accepted = submit(
        admin_client,
        refused,
        {"relay_state_overrides_target": "on", "allowed_targets-0-url": "https://app.sp.example/"},
    )
    assert accepted.status_code == 302, messages_on(accepted)


def test_header_names_that_differ_only_by_case(admin_client):
    page, _, _ = to_step(admin_client, "saml2_sp_idp", "application", changes={"application": {}})
    values = {
        "target": "https://app.sp.example/",
        "redirect_mode": "http_headers",
        "attribute_mapping_enabled": "on",
        "attribute_mappings-TOTAL_FORMS": "2",
        "attribute_mappings-0-name": "Mail",
        "attribute_mappings-0-expression": '#{attr["mail"]}',
        "attribute_mappings-1-name": "mail",
        "attribute_mappings-1-expression": '#{attr["email"]}',
    }
    refused = next_refused(admin_client, page, values)
    assert field_errors(refused, "id_attribute_mappings-1-name") == [
        "“mail” and the attribute of row 1 differ only by letter case; HTTP header names ignore case, so both cannot "
        "be passed as headers."
    ]
    refused = next_refused(
        admin_client, refused, {"attribute_mappings-1-name": "mail2", "attribute_mappings-1-expression": '#{attr["x"'}
    )
    [message] = field_errors(refused, "id_attribute_mappings-1-expression")
    assert "at position" in message


def test_nothing_is_saved_before_finish(admin_client):
    page, _, _ = to_step(admin_client, "saml2_sp_idp", "confirm")
    assert reverse("partnerships:list")
    assert not Partnership.objects.exists()
