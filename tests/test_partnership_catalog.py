"""The partnership settings catalogue: kinds, steps per kind, which fields exist where (the reference's C10 matrix and
the protocol-specific fields), defaults, visibility, normalize, the window previews and the generated reference.

No database: the catalogue is plain data. The validation rules are in test_partnership_catalog_rules.py.
"""

import importlib.util
from pathlib import Path

import pytest

from partnerships import catalog
from partnerships.catalog import Problem

ROOT = Path(__file__).resolve().parent.parent
ALL_KINDS = list(catalog.KINDS)
ASSERTING = ["saml2_idp_sp", "saml11_producer_consumer", "wsfed_ip_rp"]
RELYING = ["saml2_sp_idp", "saml11_consumer_producer", "wsfed_rp_ip"]


def keys(kind, step):
    return {setting.key for setting in catalog.settings_for(kind, step)}


def table(kind, step, key):
    return next((t for t in catalog.tables_for(kind, step) if t.key == key), None)


def column_keys(kind, step, key):
    return {column.key for column in catalog.columns_for(kind, table(kind, step, key))}


# --- kinds and steps -------------------------------------------------------------------------------------------------


def test_six_kinds_with_their_entity_types():
    assert [(k.key, k.protocol, k.asserting, k.local_entity_type, k.remote_entity_type) for k in catalog.KINDS.values()] == [
        ("saml2_idp_sp", "saml2", True, "saml2_idp", "saml2_sp"),
        ("saml2_sp_idp", "saml2", False, "saml2_sp", "saml2_idp"),
        ("saml11_producer_consumer", "saml11", True, "saml11_producer", "saml11_consumer"),
        ("saml11_consumer_producer", "saml11", False, "saml11_consumer", "saml11_producer"),
        ("wsfed_ip_rp", "wsfed", True, "wsfed_ip", "wsfed_rp"),
        ("wsfed_rp_ip", "wsfed", False, "wsfed_rp", "wsfed_ip"),
    ]
    assert catalog.kind("saml2_idp_sp").label == "SAML2 IdP → SP"


def test_entity_types_are_those_of_the_entities_app():
    from entities.models import EntityType

    values = {value for value, _label in EntityType.choices}
    for info in catalog.KINDS.values():
        assert {info.local_entity_type, info.remote_entity_type} <= values


def test_unknown_kind_is_a_clear_key_error():
    with pytest.raises(KeyError, match="Unknown partnership kind 'saml3'.*saml2_idp_sp"):
        catalog.kind("saml3")
    with pytest.raises(KeyError):
        catalog.steps_for("nope")


STEP_TITLES = {
    "saml2_idp_sp": [
        ("configure", "Configure partnership"),
        ("federation_users", "Federation users"),
        ("assertion", "Assertion configuration"),
        ("sso_slo", "SSO and SLO"),
        ("signature", "Signature and encryption"),
    ],
    "saml2_sp_idp": [
        ("configure", "Configure partnership"),
        ("user_identification", "User identification"),
        ("sso_slo", "SSO and SLO"),
        ("authn_context", "AuthnContext configuration"),
        ("signature", "Signature and encryption"),
        ("application", "Application integration"),
    ],
    "saml11_producer_consumer": [
        ("configure", "Configure partnership"),
        ("federation_users", "Federation users"),
        ("assertion", "Assertion configuration"),
        ("sso_slo", "Single sign-on"),
        ("signature", "Signature"),
    ],
    "saml11_consumer_producer": [
        ("configure", "Configure partnership"),
        ("user_identification", "User identification"),
        ("sso_slo", "Single sign-on"),
        ("signature", "Signature"),
        ("application", "Application integration"),
    ],
    "wsfed_ip_rp": [
        ("configure", "Configure partnership"),
        ("federation_users", "Federation users"),
        ("assertion", "Assertion configuration"),
        ("sso_slo", "Single sign-on and sign-out"),
        ("signature", "Signature"),
    ],
    "wsfed_rp_ip": [
        ("configure", "Configure partnership"),
        ("user_identification", "User identification"),
        ("sso_slo", "Single sign-on and sign-out"),
        ("signature", "Signature"),
        ("application", "Application integration"),
    ],
}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_steps_in_wizard_order_with_their_titles(kind):
    assert [(step.key, step.title) for step in catalog.steps_for(kind)] == STEP_TITLES[kind]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_keys_are_unique_within_a_step_for_each_kind(kind):
    for step in catalog.steps_for(kind):
        names = [s.key for s in catalog.settings_for(kind, step.key)] + [t.key for t in catalog.tables_for(kind, step.key)]
        assert len(names) == len(set(names)), (step.key, sorted(n for n in names if names.count(n) > 1))
        for spec in catalog.tables_for(kind, step.key):
            columns = [c.key for c in catalog.columns_for(kind, spec)]
            assert len(columns) == len(set(columns)), (step.key, spec.key)


def test_every_setting_is_well_formed():
    """Help on every field, defaults among the choices, types the wizard knows, snake_case keys."""
    for kind in ALL_KINDS:
        for step in catalog.steps_for(kind):
            items = list(catalog.settings_for(kind, step.key))
            for spec in catalog.tables_for(kind, step.key):
                assert spec.help, spec.key
                items += catalog.columns_for(kind, spec)
            for setting in items:
                where = f"{kind}/{step.key}/{setting.key}"
                assert setting.help.strip(), where
                assert setting.key.isidentifier() and setting.key == setting.key.lower(), where
                default = catalog.default_value(setting)
                if setting.type == "choice" and default:
                    assert default in setting.choice_values, where
                if setting.type == "multichoice":
                    assert set(default) <= set(setting.choice_values), where
                if setting.type == "directory":
                    assert spec is not None  # only as a table column
    for step in catalog.STEPS:
        assert all(s.type != "directory" for s in step.settings), step.key


# --- which fields exist where --------------------------------------------------------------------------------------


def test_federation_users_and_assertion_only_on_the_asserting_side():
    for kind in ASSERTING:
        assert {"federation_users", "assertion"} <= {s.key for s in catalog.steps_for(kind)}
    for kind in RELYING:
        assert not {"federation_users", "assertion"} & {s.key for s in catalog.steps_for(kind)}


def test_user_identification_and_application_only_on_the_relying_side():
    for kind in RELYING:
        assert {"user_identification", "application"} <= {s.key for s in catalog.steps_for(kind)}
    for kind in ASSERTING:
        assert not {"user_identification", "application"} & {s.key for s in catalog.steps_for(kind)}


def test_authn_context_step_only_for_a_saml2_sp():
    assert [k for k in ALL_KINDS if "authn_context" in {s.key for s in catalog.steps_for(k)}] == ["saml2_sp_idp"]


def test_federation_user_rules_table_columns_follow_federation_users_rows():
    from partnerships.federation_users import FederationUserRule, RuleKind

    spec = table("saml2_idp_sp", "federation_users", "rules")
    assert [c.key for c in spec.columns] == ["directory", "kind", "value", "exclude"]
    assert spec.column("kind").choices == tuple((kind.value, kind.label) for kind in RuleKind)
    row = catalog.default_row("saml2_idp_sp", spec) | {"directory": "corp", "value": "cn=staff,dc=example,dc=org"}
    assert FederationUserRule.from_dict(row).as_dict() == row
    assert catalog.defaults("saml2_idp_sp")["federation_users"] == {"rules": []}  # no rows: all users


def test_assertion_attribute_columns_per_protocol():
    assert column_keys("saml2_idp_sp", "assertion", "attributes") == {
        "name",
        "retrieval",
        "name_format",
        "value_type",
        "value",
        "dn_spec",
        "encrypt",
    }
    for kind in ("saml11_producer_consumer", "wsfed_ip_rp"):
        assert column_keys(kind, "assertion", "attributes") == {"name", "namespace", "value_type", "value", "dn_spec"}
    value_types = table("saml2_idp_sp", "assertion", "attributes").column("value_type").choice_values
    assert set(value_types) == {"static", "user", "dn", "session", "expression"}
    formats = table("saml2_idp_sp", "assertion", "attributes").column("name_format").choice_values
    assert [f.rsplit(":", 1)[1] for f in formats] == ["unspecified", "basic", "uri"]


def test_name_id_settings_and_allow_create():
    assert {"name_id_format", "name_id_type", "name_id_value", "name_id_dn_spec"} <= keys("saml11_producer_consumer", "assertion")
    assert "allow_create" in keys("saml2_idp_sp", "assertion")
    assert "allow_create" not in keys("saml11_producer_consumer", "assertion") | keys("wsfed_ip_rp", "assertion")
    saml11_formats = next(s for s in catalog.settings_for("saml11_producer_consumer", "assertion") if s.key == "name_id_format")
    saml2_formats = next(s for s in catalog.settings_for("saml2_idp_sp", "assertion") if s.key == "name_id_format")
    persistent = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    assert persistent in saml2_formats.choice_values and persistent not in saml11_formats.choice_values
    name_id_types = next(s for s in catalog.settings_for("saml2_idp_sp", "assertion") if s.key == "name_id_type")
    assert {"static", "user", "dn"} <= set(name_id_types.choice_values)


def test_user_identification_fields():
    for kind in RELYING:
        assert {"identity_source", "identity_attribute", "identity_xpath"} <= keys(kind, "user_identification")
        assert column_keys(kind, "user_identification", "search_specs") == {"directory", "search_spec"}
    assert {"allow_create", "allow_create_query_override"} <= keys("saml2_sp_idp", "user_identification")
    for kind in ("saml11_consumer_producer", "wsfed_rp_ip"):
        assert not {"allow_create", "allow_create_query_override"} & keys(kind, "user_identification")


def test_sso_bindings_per_protocol_and_side():
    assert "authn_request_bindings" in keys("saml2_idp_sp", "sso_slo") and "authn_request_bindings" in keys(
        "saml2_sp_idp", "sso_slo"
    )
    for kind in ("saml11_producer_consumer", "saml11_consumer_producer", "wsfed_ip_rp", "wsfed_rp_ip"):
        assert "authn_request_bindings" not in keys(kind, "sso_slo")
    for kind in ("saml2_idp_sp", "saml2_sp_idp", "saml11_producer_consumer", "saml11_consumer_producer"):
        assert "sso_bindings" in keys(kind, "sso_slo")
    assert not {"sso_bindings", "ecp_enabled"} & (keys("wsfed_ip_rp", "sso_slo") | keys("wsfed_rp_ip", "sso_slo"))
    assert "ecp_enabled" in keys("saml2_idp_sp", "sso_slo") and "ecp_enabled" not in keys("saml11_producer_consumer", "sso_slo")


def test_artifact_back_channel_only_where_artifact_exists():
    channel = {"backchannel_in_auth", "backchannel_out_auth"}
    for kind in ("wsfed_ip_rp", "wsfed_rp_ip"):
        assert not channel & keys(kind, "sso_slo")
    assert keys("saml11_producer_consumer", "sso_slo") & channel == {"backchannel_in_auth"}
    assert keys("saml11_consumer_producer", "sso_slo") & channel == {"backchannel_out_auth"}
    assert channel <= keys("saml2_idp_sp", "sso_slo") and channel <= keys("saml2_sp_idp", "sso_slo")
    assert "backchannel_out_client_key" in keys("saml11_consumer_producer", "sso_slo")
    assert "backchannel_in_password" in keys("saml11_producer_consumer", "sso_slo")


def test_asserting_side_sso_fields():
    for kind in ASSERTING:
        assert {"authn_mode", "authn_url", "delegated_type", "delegated_url", "sso_validity_seconds"} <= keys(kind, "sso_slo")
    for kind in RELYING:
        assert not {"authn_mode", "sso_validity_seconds"} & keys(kind, "sso_slo")
    idp = keys("saml2_idp_sp", "sso_slo")
    assert {
        "authn_context_mode",
        "authn_class",
        "authn_template",
        "ignore_requested_authn_context",
        "allowed_transactions",
        "session_not_on_or_after",
        "one_time_use",
        "user_consent",
        "negative_response",
        "attribute_service_enabled",
        "idp_discovery_enabled",
        "mni_enabled",
    } <= idp
    assert "authn_class" in keys("saml11_producer_consumer", "sso_slo") and "authn_class" not in keys("wsfed_ip_rp", "sso_slo")
    assert "do_not_cache" in keys("saml11_producer_consumer", "sso_slo") and "one_time_use" not in keys(
        "saml11_producer_consumer", "sso_slo"
    )
    assert {"audience"} <= keys("wsfed_ip_rp", "sso_slo")
    assert {"require_consent", "attribute_requester_enabled", "idp_discovery_enabled"} <= keys("saml2_sp_idp", "sso_slo")
    assert "user_consent" not in keys("saml2_sp_idp", "sso_slo")


def test_logout_fields_per_protocol():
    slo = {"slo_enabled", "slo_bindings", "slo_validity_seconds", "slo_confirm_url", "slo_relay_state_overrides_confirm"}
    for kind in ("saml2_idp_sp", "saml2_sp_idp"):
        assert slo <= keys(kind, "sso_slo")
    for kind in ("saml11_producer_consumer", "saml11_consumer_producer", "wsfed_ip_rp", "wsfed_rp_ip"):
        assert not slo & keys(kind, "sso_slo")
    assert {"signout_enabled", "signout_confirm_url", "signout_url"} <= keys("wsfed_ip_rp", "sso_slo")
    assert "signout_confirm_url" not in keys("wsfed_rp_ip", "sso_slo")  # IP side only (ch15-20 A9)
    assert "signout_enabled" not in keys("saml2_idp_sp", "sso_slo")


def test_manage_name_id_defaults_of_the_reference():
    settings = {s.key: s for s in catalog.settings_for("saml2_sp_idp", "sso_slo")}
    assert (settings["mni_soap_timeout_seconds"].default, settings["mni_retries"].default) == (60, 3)
    assert settings["mni_retry_interval_minutes"].default == 15
    assert settings["mni_notification_timeout_seconds"].default == 60
    assert settings["mni_notification_auth"].choice_values == ("none", "basic")
    assert "mni_enabled" not in keys("saml11_producer_consumer", "sso_slo")


def test_status_redirects_per_side():
    idp = table("saml2_idp_sp", "sso_slo", "status_redirects").column("condition").choice_values
    assert set(idp) == {"server_error", "bad_request", "method_not_allowed", "unauthorized"}
    sp = table("saml2_sp_idp", "application", "status_redirects").column("condition").choice_values
    assert {"user_not_found", "invalid_sso_message", "unaccepted_credential", "server_error"} <= set(sp)
    consumer = table("saml11_consumer_producer", "application", "status_redirects").column("condition").choice_values
    assert set(consumer) == {"user_not_found", "invalid_sso_message", "unaccepted_credential"}
    assert table("saml2_idp_sp", "sso_slo", "status_redirects").column("method").choice_values == ("302", "post")
    assert table("saml11_producer_consumer", "sso_slo", "status_redirects") is None


def test_application_fields_per_protocol():
    redirect = next(s for s in catalog.settings_for("saml2_sp_idp", "application") if s.key == "redirect_mode")
    assert set(redirect.choice_values) == {"no_data", "http_headers", "open_format_cookie", "persist_attributes"}
    wsfed_redirect = next(s for s in catalog.settings_for("wsfed_rp_ip", "application") if s.key == "redirect_mode")
    assert "http_headers" not in wsfed_redirect.choice_values
    assert "relay_state_overrides_target" in keys("saml2_sp_idp", "application")
    assert "relay_state_overrides_target" not in keys("saml11_consumer_producer", "application")
    assert table("saml11_consumer_producer", "application", "attribute_mappings") is not None
    assert table("wsfed_rp_ip", "application", "attribute_mappings") is None  # attribute mapping is SAML only
    for kind in RELYING:
        assert {"target", "provisioning_type", "provisioning_url", "session_idle_minutes", "session_max_minutes"} <= keys(
            kind, "application"
        )
        assert {"cookie_name", "cookie_domain", "cookie_password", "cookie_algorithm"} <= keys(kind, "application")
        assert column_keys(kind, "application", "allowed_targets") == {"url"}


def test_wsfed_configure_fields_only_at_the_ip():
    assert {"sts_active_profile", "metadata_exchange"} <= keys("wsfed_ip_rp", "configure")
    for kind in ALL_KINDS:
        assert {"base_url", "skew_seconds"} <= keys(kind, "configure")
        if kind != "wsfed_ip_rp":
            assert not {"sts_active_profile", "metadata_exchange"} & keys(kind, "configure")


# The reference's C10 summary matrix (ch15-20): which signing and encryption fields each side has.
# Columns: signing key, signature algorithm, verification certificate, what to sign (POST / artifact), SLO SOAP
# signing, require signed AuthnRequests, sign AuthnRequests, encryption (IdP), required encryption + decryption (SP).
# One deliberate addition to the reference: SAML 1.1 producers and WS-Fed IPs also choose their signature (and
# digest) algorithm, so RSA-SHA256 is the default there too and SHA-1 is only used when asked for.
C10 = {
    #                          sign  alg   verify what  slo   req   signAR enc  decrypt
    "saml11_producer_consumer": (True, True, False, True, False, False, False, False, False),
    "saml11_consumer_producer": (False, False, True, False, False, False, False, False, False),
    "wsfed_ip_rp": (True, True, False, False, False, False, False, False, False),
    "wsfed_rp_ip": (False, False, True, False, False, False, False, False, False),
    "saml2_idp_sp": (True, True, True, True, True, True, False, True, False),
    "saml2_sp_idp": (True, True, True, False, False, False, True, False, True),
}
C10_FIELDS = (
    {"signing_key"},
    {"signature_algorithm", "digest_algorithm"},
    {"verification_certificate"},
    {"sign_post", "sign_artifact"},
    {"sign_slo_soap"},
    {"require_signed_authn_requests"},
    {"sign_authn_requests"},
    {"encrypt_assertion", "encrypt_name_id", "encryption_certificate", "encryption_block_algorithm", "encryption_key_transport"},
    {"require_encrypted_assertion", "require_encrypted_name_id", "decryption_key"},
)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_signature_step_follows_the_c10_matrix(kind):
    present = keys(kind, "signature")
    for expected, fields in zip(C10[kind], C10_FIELDS, strict=True):
        assert (fields <= present) if expected else not (fields & present), (kind, fields)
    assert "disable_signature_processing" in present  # every row of C10 has it
    block = next((s for s in catalog.settings_for(kind, "signature") if s.key == "encryption_block_algorithm"), None)
    if block is not None:
        assert {"aes128-cbc", "aes256-cbc", "aes128-gcm", "aes256-gcm", "tripledes-cbc"} == set(block.choice_values)


def test_signature_choices_and_defaults():
    settings = {s.key: s for s in catalog.settings_for("saml2_idp_sp", "signature")}
    assert settings["signature_algorithm"].default == "rsa-sha256"
    assert {"rsa-sha1", "rsa-sha256", "rsa-sha512", "ecdsa-sha256"} <= set(settings["signature_algorithm"].choice_values)
    assert settings["sign_post"].choice_values == ("assertion", "response", "both")
    assert set(settings["encryption_key_transport"].choice_values) >= {"rsa-oaep-mgf1p", "rsa-1_5"}
    assert catalog.ALGORITHM_URIS["rsa-sha256"] == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    for setting in (settings["signature_algorithm"], settings["digest_algorithm"], settings["encryption_block_algorithm"]):
        assert all(value in catalog.ALGORITHM_URIS for value in setting.choice_values)


def test_binding_short_names_map_to_the_entities_binding_uris():
    from entities.models import Binding

    uris = {value for value, _label in Binding.choices}
    for protocol in ("saml2", "saml11"):
        assert set(catalog.BINDING_URIS[protocol].values()) <= uris


# --- defaults and visibility -----------------------------------------------------------------------------------------


def test_defaults_of_an_idp_partnership():
    values = catalog.defaults("saml2_idp_sp")
    assert list(values) == ["configure", "federation_users", "assertion", "sso_slo", "signature"]
    assert values["configure"] == {"base_url": "", "skew_seconds": 30}
    assert values["assertion"]["name_id_format"] == "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
    assert values["assertion"]["attributes"] == []
    sso = values["sso_slo"]
    assert (sso["sso_bindings"], sso["sso_validity_seconds"], sso["allowed_transactions"]) == (["post"], 60, "both")
    assert (sso["slo_enabled"], sso["slo_validity_seconds"], sso["status_redirects"]) == (False, 60, [])
    assert values["signature"]["disable_signature_processing"] is False


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_defaults_have_every_applicable_key_and_fresh_lists(kind):
    values = catalog.defaults(kind)
    for step in catalog.steps_for(kind):
        expected = keys(kind, step.key) | {t.key for t in catalog.tables_for(kind, step.key)}
        assert set(values[step.key]) == expected
    if "sso_bindings" in values.get("sso_slo", {}):
        values["sso_slo"]["sso_bindings"].append("artifact")
        assert catalog.defaults(kind)["sso_slo"]["sso_bindings"] == ["post"]


def test_visible_follows_the_other_values_of_the_step():
    settings = {s.key: s for s in catalog.settings_for("saml2_idp_sp", "sso_slo")}
    assert not catalog.visible(settings["slo_bindings"], {"slo_enabled": False})
    assert catalog.visible(settings["slo_bindings"], {"slo_enabled": True})
    assert catalog.visible(settings["sso_validity_seconds"], {})
    channel = settings["backchannel_in_auth"]
    assert not catalog.visible(channel, {"sso_bindings": ["post"]})
    assert catalog.visible(channel, {"sso_bindings": ["post", "artifact"]})
    assert catalog.visible(channel, {"slo_enabled": True, "slo_bindings": ["soap"]})
    assert not catalog.visible(channel, {"slo_enabled": False, "slo_bindings": ["soap"]})
    password = settings["backchannel_in_password"]
    assert catalog.visible(password, {"sso_bindings": ["artifact"], "backchannel_in_auth": "basic"})
    assert not catalog.visible(password, {"sso_bindings": ["post"], "backchannel_in_auth": "basic"})
    spec = table("saml2_idp_sp", "sso_slo", "attribute_search_specs")
    assert catalog.visible(spec, {"attribute_service_enabled": True}) and not catalog.visible(spec, {})
    dn = table("saml2_idp_sp", "assertion", "attributes").column("dn_spec")
    assert catalog.visible(dn, {"value_type": "dn"}) and not catalog.visible(dn, {"value_type": "user"})


# --- normalize -------------------------------------------------------------------------------------------------------


def test_normalize_fills_defaults_and_coerces_form_strings():
    config, problems = catalog.normalize(
        "saml2_idp_sp",
        {
            "configure": {"skew_seconds": " 45 "},
            "sso_slo": {"slo_enabled": "on", "slo_bindings": "redirect, soap", "one_time_use": "false"},
            "assertion": {"attributes": [{"name": "mail", "encrypt": "1"}]},
        },
    )
    assert problems == []
    assert config["configure"] == {"base_url": "", "skew_seconds": 45}
    assert (config["sso_slo"]["slo_enabled"], config["sso_slo"]["slo_bindings"]) == (True, ["redirect", "soap"])
    assert config["sso_slo"]["one_time_use"] is False
    row = config["assertion"]["attributes"][0]
    assert row["encrypt"] is True and row["value_type"] == "user" and row["retrieval"] == "sso"
    assert set(config) == {step.key for step in catalog.steps_for("saml2_idp_sp")}


def test_normalize_names_unknown_and_inapplicable_steps_and_keys():
    config, problems = catalog.normalize(
        "saml11_producer_consumer",
        {
            "colour": {},
            "authn_context": {"enabled": True},
            "configure": {"skew": 30, "sts_active_profile": True},
        },
    )
    assert Problem("colour", "", "Unknown step “colour”.") in problems
    assert (
        Problem("authn_context", "", "The step “authn_context” does not apply to a SAML1.1 Producer → Consumer partnership.")
        in problems
    )
    assert Problem("configure", "skew", "Unknown field “skew”.") in problems
    assert (
        Problem(
            "configure", "sts_active_profile", "“sts_active_profile” does not apply to a SAML1.1 Producer → Consumer partnership."
        )
        in problems
    )
    assert "colour" not in config and "authn_context" not in config


@pytest.mark.parametrize(
    ("step", "values", "field", "message"),
    [
        ("configure", {"skew_seconds": "thirty"}, "skew_seconds", "Skew time (seconds) must be a whole number (not “thirty”)."),
        ("configure", {"skew_seconds": True}, "skew_seconds", "Skew time (seconds) must be a whole number."),
        ("configure", {"base_url": ["x"]}, "base_url", "Base URL must be text."),
        ("sso_slo", {"one_time_use": "maybe"}, "one_time_use", "Set OneTimeUse condition must be true or false."),
        (
            "sso_slo",
            {"sso_bindings": ["post", "fax"]},
            "sso_bindings",
            "SSO bindings has an unknown choice “fax”: expected “post” or “artifact”.",
        ),
        ("sso_slo", {"sso_bindings": 3}, "sso_bindings", "SSO bindings must be a list of choices."),
        (
            "sso_slo",
            {"allowed_transactions": "never"},
            "allowed_transactions",
            "Allowed transactions has an unknown choice “never”: expected “both”, “idp_initiated” or “sp_initiated”.",
        ),
    ],
)
def test_normalize_reports_wrong_types_and_keeps_the_default(step, values, field, message):
    config, problems = catalog.normalize("saml2_idp_sp", {step: values})
    assert problems == [Problem(step, field, message)]
    assert config[step][field] == catalog.defaults("saml2_idp_sp")[step][field]


def test_normalize_checks_table_row_shapes():
    config, problems = catalog.normalize(
        "saml11_producer_consumer",
        {
            "assertion": {
                "attributes": [
                    {"name": "mail", "namespace": "urn:mace:shibboleth:1.0:attributeNamespace:uri", "colour": "red"},
                    "mail",
                    {"name": "uid", "name_format": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic", "encrypt": True},
                ]
            },
            "federation_users": {"rules": "everyone"},
        },
    )
    assert problems == [
        Problem("assertion", "attributes.0.colour", "Unknown column “colour” in Assertion attributes."),
        Problem("assertion", "attributes.1", "Row 2 of Assertion attributes must be a mapping of columns to values."),
        Problem(
            "assertion",
            "attributes.2.name_format",
            "The column “name_format” does not apply to a SAML1.1 Producer → Consumer partnership.",
        ),
        Problem(
            "assertion",
            "attributes.2.encrypt",
            "The column “encrypt” does not apply to a SAML1.1 Producer → Consumer partnership.",
        ),
        Problem("federation_users", "rules", "Federation user rules must be a list of rows."),
    ]
    assert [row["name"] for row in config["assertion"]["attributes"]] == ["mail", "uid"]
    assert config["assertion"]["attributes"][0]["namespace"] == "urn:mace:shibboleth:1.0:attributeNamespace:uri"
    assert "name_format" not in config["assertion"]["attributes"][1]
    assert config["federation_users"]["rules"] == []


def test_normalize_refuses_a_config_that_is_not_a_mapping():
    config, problems = catalog.normalize("wsfed_rp_ip", ["configure"])
    assert problems == [Problem("", "", "The configuration must be a mapping of steps to their settings.")]
    assert config == catalog.defaults("wsfed_rp_ip")
    _, problems = catalog.normalize("wsfed_rp_ip", {"configure": "fast"})
    assert problems == [Problem("configure", "", "The settings of a step must be a mapping of names to values.")]


def test_normalize_keeps_expression_spacing_and_trims_urls():
    config, _ = catalog.normalize(
        "saml2_sp_idp",
        {
            "application": {
                "target": "  https://app.example.org/  ",
                "attribute_mappings": [{"name": " FullName ", "expression": '#{attr["last"]}, #{attr["first"]} '}],
            }
        },
    )
    assert config["application"]["target"] == "https://app.example.org/"
    assert config["application"]["attribute_mappings"][0] == {
        "name": "FullName",
        "expression": '#{attr["last"]}, #{attr["first"]} ',
    }


def test_normalized_config_round_trips():
    config, _ = catalog.normalize("saml2_sp_idp", {"sso_slo": {"slo_enabled": True}})
    again, problems = catalog.normalize("saml2_sp_idp", config)
    assert problems == [] and again == config


# --- window previews (reference worked examples) -----------------------------------------------------------------------


def test_validity_window_worked_example_ch09_b7():
    # Issued at 1:00 GMT, skew 30 s, validity 60 s: valid 12:59:30 to 1:01:30, from 30 s before issue to 90 s after.
    text = catalog.validity_window(30, 60)
    assert text == (
        "An assertion issued at 12:00:00 is valid from 11:59:30 to 12:01:30 (issue − 30 s … issue + 60 s + 30 s): 120 s in all."
    )


def test_both_ends_worked_example_ch09_b7():
    # AP: issued 5:00 PM, validity 60 s, skew 60 s → 4:59 to 5:02; RP skew 180 s → 4:56 to 5:05; 540 s in all.
    assert "valid from 11:59:00 to 12:02:00" in catalog.validity_window(60, 60)
    text = catalog.acceptance_window(180, 60, 60)
    assert "accepted here from 11:56:00 to 12:05:00" in text and text.endswith("540 s in all.")
    assert (
        catalog.acceptance_window(30)
        == "A received assertion is accepted from its NotBefore − 30 s until its NotOnOrAfter + 30 s."
    )


def test_slo_window_worked_example_ch15_a4():
    # Issued at 1:00 GMT, skew 30 s, SLO validity 60 s: valid 1:00:00 to 1:01:30, expires 90 s after issue.
    assert catalog.slo_window(30, 60) == (
        "A logout request issued at 12:00:00 is valid from 12:00:00 to 12:01:30 (issue + 30 s + 60 s): "
        "it expires 90 s after it is issued."
    )


@pytest.mark.parametrize("bad", [(-1, 60), (30, None), ("30", 60), (True, 60)])
def test_window_previews_ask_for_whole_numbers(bad):
    assert catalog.validity_window(*bad).startswith("Enter the skew and the validity duration as whole numbers")
    assert catalog.slo_window(*bad).startswith("Enter the skew and the SLO validity duration")


# --- the generated reference -------------------------------------------------------------------------------------------


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_partnership_settings_doc", ROOT / "scripts" / "gen_partnership_settings_doc.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_settings_reference_equals_the_generated_one():
    generated = _generator().render()
    committed = (ROOT / "docs" / "partnership-settings.md").read_text(encoding="utf-8")
    assert committed == generated, (
        "docs/partnership-settings.md is stale: run .venv/bin/python scripts/gen_partnership_settings_doc.py"
    )


def test_settings_reference_lists_every_setting_of_every_step():
    text = _generator().render()
    for kind in ALL_KINDS:
        for step in catalog.steps_for(kind):
            assert f"`{step.key}`" in text
            for setting in catalog.settings_for(kind, step.key):
                assert f"| {setting.label} | `{setting.key}` |" in text, setting.key
            for spec in catalog.tables_for(kind, step.key):
                assert f"### Table: {spec.label} (`{spec.key}`)" in text


def test_endpoint_kinds_used_by_the_rules_are_those_of_the_entities_app():
    from entities.models import EndpointKind
    from partnerships import catalog_rules

    ours = {
        catalog_rules.ACS,
        catalog_rules.SSO,
        catalog_rules.SLO,
        catalog_rules.ARTIFACT_RESOLUTION,
        catalog_rules.ATTRIBUTE_SERVICE,
        catalog_rules.MANAGE_NAME_ID,
    }
    assert ours == {value for value, _label in EndpointKind.choices}


def test_embedded_search_spec_rule_matches_the_directory_layer():
    from federation import directories
    from partnerships import catalog_rules

    assert catalog_rules.EMBEDDED_SEARCH_SPEC.pattern == directories._EMBEDDED_SPEC.pattern


def test_logout_sections_are_the_ones_that_need_the_session_store():
    needing = {
        setting.key
        for setting in catalog.settings_for("saml2_idp_sp", "sso_slo") + catalog.settings_for("wsfed_ip_rp", "sso_slo")
        if catalog.requires_session_store("sso_slo", setting)
    }
    assert needing == {
        "slo_enabled",
        "slo_bindings",
        "slo_validity_seconds",
        "slo_confirm_url",
        "slo_relay_state_overrides_confirm",
        "signout_enabled",
        "signout_confirm_url",
        "signout_url",
    }
    assert "session store" in catalog.SESSION_STORE_NOTE
