"""Every validation rule of the partnership catalogue, each with the message the administrator sees.

Each test starts from a complete configuration of its kind (no blocking problem), breaks one thing, checks the
Problem, and (where it makes sense) mends it again, so every rule is seen both failing and passing.
No database: entities, keys and directories are passed as the plain facts `validate` takes.
"""

import copy

import pytest

from partnerships import catalog
from partnerships.catalog import EntityFacts, KeyFacts, Problem, ValidationContext

POST2 = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
REDIRECT2 = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
ARTIFACT2 = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"
SOAP2 = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"
PAOS = "urn:oasis:names:tc:SAML:2.0:bindings:PAOS"
POST1 = "urn:oasis:names:tc:SAML:1.0:profiles:browser-post"
ARTIFACT1 = "urn:oasis:names:tc:SAML:1.0:profiles:artifact-01"
SOAP1 = "urn:oasis:names:tc:SAML:1.0:bindings:SOAP-binding"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"

KEYS = {
    "idp-signing": KeyFacts("idp-signing", "key_pair", "RSA", 2048, False),
    "sp-signing": KeyFacts("sp-signing", "key_pair", "RSA", 2048, False),
    "ec-signing": KeyFacts("ec-signing", "key_pair", "EC", 256, False),
    "partner": KeyFacts("partner", "trusted_certificate", "RSA", 2048, False),
    "partner-512": KeyFacts("partner-512", "trusted_certificate", "RSA", 512, False),
    "partner-ec": KeyFacts("partner-ec", "trusted_certificate", "EC", 256, False),
    "old-partner": KeyFacts("old-partner", "trusted_certificate", "RSA", 2048, True),
    "root-ca": KeyFacts("root-ca", "trusted_ca", "RSA", 4096, False),
}

LOCAL = {
    "saml2_idp_sp": "https://idp.example.org",
    "saml2_sp_idp": "https://sp.example.org",
    "saml11_producer_consumer": "https://idp.example.org",
    "saml11_consumer_producer": "https://sp.example.org",
    "wsfed_ip_rp": "https://ip.example.org",
    "wsfed_rp_ip": "https://rp.example.org",
}
# The one endpoint each remote entity needs for the complete configuration below.
REMOTE_ENDPOINTS = {
    "saml2_idp_sp": (("acs", POST2, "https://sp.partner.org/acs"),),
    "saml2_sp_idp": (("sso", REDIRECT2, "https://idp.partner.org/sso"),),
    "saml11_producer_consumer": (("acs", POST1, "https://consumer.partner.org/samlcc"),),
    "saml11_consumer_producer": (),
    "wsfed_ip_rp": (("acs", "", "https://rp.partner.org/wsfed"),),
    "wsfed_rp_ip": (("sso", "", "https://ip.partner.org/wsfed"),),
}


def complete(kind):
    """The smallest configuration of this kind with no blocking problem."""
    info = catalog.kind(kind)
    config = catalog.defaults(kind)
    if info.asserting:
        config["assertion"]["name_id_value"] = "mail"
        config["signature"]["signing_key"] = "idp-signing"
    else:
        config["user_identification"]["search_specs"] = [{"directory": "corp", "search_spec": "uid=%s"}]
        config["signature"]["verification_certificate"] = "partner"
        config["application"]["target"] = "https://app.example.org/welcome"
    return config


def context(kind, *, endpoints=None, remote=True, local=True, directories=(("corp", "ldap"),), **changes):
    facts = {
        "kind": catalog.kind(kind),
        "local": EntityFacts("local1", "local1", LOCAL[kind], (), (), ()) if local else None,
        "remote": (
            EntityFacts("partner1", "partner1", "", (), REMOTE_ENDPOINTS[kind] if endpoints is None else endpoints, ())
            if remote
            else None
        ),
        "directories": tuple(directories),
        "keys": dict(KEYS),
        "authn_templates": frozenset({"Corporate strengths"}),
    }
    facts.update(changes)
    return ValidationContext(**facts)


def with_values(kind, **steps):
    """The complete configuration with some values changed: with_values(k, sso_slo={"slo_enabled": True})."""
    config = complete(kind)
    for step, values in steps.items():
        config[step].update(copy.deepcopy(values))
    return config


def blocking(problems):
    return [p for p in problems if p.blocking]


def warnings(problems):
    return [p for p in problems if not p.blocking]


def problems_at(problems, step, field):
    return [p for p in problems if p.step == step and p.field == field]


def only_blocking(config, ctx):
    return blocking(catalog.validate(config, ctx))


# --- the baseline --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(catalog.KINDS))
def test_complete_configuration_has_no_blocking_problem(kind):
    problems = catalog.validate(complete(kind), context(kind))
    assert blocking(problems) == []
    assert warnings(problems) == []


@pytest.mark.parametrize("kind", list(catalog.KINDS))
def test_defaults_alone_are_incomplete(kind):
    assert blocking(catalog.validate(catalog.defaults(kind), context(kind)))


# --- the partnership name, numbers, URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Enter a partnership name."),
        (
            "Test Partnership",
            "A partnership name cannot contain spaces: use only letters, digits, “_”, “-” and “.”, as in Partner_SP-1.",
        ),
        ("sp1/prod", "“/” is not allowed in a partnership name: use only letters, digits, “_”, “-” and “.”, as in Partner_SP-1."),
        ("été", "“é” is not allowed in a partnership name: use only letters, digits, “_”, “-” and “.”, as in Partner_SP-1."),
        ("x" * 101, "A partnership name has at most 100 characters."),
        (None, "Enter a partnership name."),
    ],
)
def test_partnership_name_rule(name, message):
    assert catalog.validate_name(name) == message


@pytest.mark.parametrize("name", ["TestPartnership", "DemoPartnership", "Partner_SP-1.prod", "x" * 100])
def test_partnership_names_that_are_fine(name):
    assert catalog.validate_name(name) is None


@pytest.mark.parametrize(
    ("kind", "step", "key", "label"),
    [
        ("saml2_idp_sp", "configure", "skew_seconds", "Skew time (seconds)"),
        ("saml2_idp_sp", "sso_slo", "sso_validity_seconds", "SSO validity duration (seconds)"),
        ("wsfed_ip_rp", "sso_slo", "sso_validity_seconds", "SSO validity duration (seconds)"),
        ("saml11_consumer_producer", "configure", "skew_seconds", "Skew time (seconds)"),
    ],
)
def test_skew_and_validity_are_non_negative_whole_numbers(kind, step, key, label):
    problems = catalog.validate(with_values(kind, **{step: {key: -5}}), context(kind))
    assert problems_at(problems, step, key) == [Problem(step, key, f"{label} must be a whole number, 0 or more (not -5).")]
    problems = catalog.validate(with_values(kind, **{step: {key: "1.5"}}), context(kind))
    assert problems_at(problems, step, key) == [Problem(step, key, f"{label} must be a whole number (not “1.5”).")]
    assert only_blocking(with_values(kind, **{step: {key: 0}}), context(kind)) == []


def test_slo_validity_is_non_negative_when_slo_is_on():
    config = with_values(
        "saml2_idp_sp",
        sso_slo={"slo_enabled": True, "slo_validity_seconds": -1},
        signature={"verification_certificate": "partner"},
    )
    ctx = context(
        "saml2_idp_sp", endpoints=REMOTE_ENDPOINTS["saml2_idp_sp"] + (("slo", REDIRECT2, "https://sp.partner.org/slo"),)
    )
    assert only_blocking(config, ctx) == [
        Problem("sso_slo", "slo_validity_seconds", "SLO validity duration (seconds) must be a whole number, 0 or more (not -1).")
    ]
    config["sso_slo"]["slo_validity_seconds"] = 60
    assert only_blocking(config, ctx) == []


def test_manage_name_id_numbers_have_a_minimum():
    config = with_values("saml2_sp_idp", sso_slo={"mni_enabled": True, "mni_retry_interval_minutes": 0})
    ctx = context(
        "saml2_sp_idp", endpoints=REMOTE_ENDPOINTS["saml2_sp_idp"] + (("manage_name_id", SOAP2, "https://idp.partner.org/nid"),)
    )
    assert problems_at(catalog.validate(config, ctx), "sso_slo", "mni_retry_interval_minutes") == [
        Problem("sso_slo", "mni_retry_interval_minutes", "Retry interval (minutes) must be at least 1 (not 0).")
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("idp.example.org", "Enter an absolute URL starting with https:// (or http://), such as https://app.example.org/."),
        ("https://idp.example.org/a b", "A URL cannot contain spaces; encode them as %20."),
        ("https://admin:pw@idp.example.org", "Do not put a user name or password in the URL."),
        ("https://idp.example.org/#top", "Remove the #fragment; browsers do not send it to the server."),
        ("https://idp.example.org:99999/", "This is not a valid URL."),
    ],
)
def test_urls_must_be_absolute_http_urls(url, message):
    problems = catalog.validate(with_values("saml2_idp_sp", configure={"base_url": url}), context("saml2_idp_sp"))
    assert problems_at(problems, "configure", "base_url") == [Problem("configure", "base_url", message)]


def test_a_hidden_value_never_blocks():
    # An unusable SLO confirm URL left behind while SLO is off is not shown, so it is not checked.
    config = with_values("saml2_idp_sp", sso_slo={"slo_enabled": False, "slo_confirm_url": "not a url"})
    assert only_blocking(config, context("saml2_idp_sp")) == []


# --- entities and directories ----------------------------------------------------------------------------------------


def test_a_remote_entity_put_off_leaves_the_partnership_incomplete():
    problems = only_blocking(complete("saml2_idp_sp"), context("saml2_idp_sp", remote=False))
    assert problems == [
        Problem(
            "configure",
            "remote_entity",
            "Choose the remote entity (or import it from the partner's metadata): the partnership stays Incomplete until "
            "it has one.",
        )
    ]


def test_local_entity_and_directories_are_needed():
    problems = only_blocking(complete("saml2_sp_idp"), context("saml2_sp_idp", local=False, directories=()))
    assert Problem("configure", "local_entity", "Choose the local entity.") in problems
    assert Problem("configure", "directories", "Select at least one user directory.") in problems


# --- required fields -------------------------------------------------------------------------------------------------


def _required_shown_by_default(kind):
    config = complete(kind)
    for step in catalog.steps_for(kind):
        for setting in catalog.settings_for(kind, step.key):
            if setting.required and catalog.visible(setting, config[step.key]):
                yield step.key, setting


@pytest.mark.parametrize("kind", list(catalog.KINDS))
def test_every_required_field_shown_by_default_is_reported_when_empty(kind):
    found = list(_required_shown_by_default(kind))
    assert found
    for step, setting in found:
        config = complete(kind)
        config[step][setting.key] = [] if setting.type == "multichoice" else ("" if setting.type != "int" else None)
        problems = catalog.validate(config, context(kind))
        assert Problem(step, setting.key, f"{setting.label} is required.") in problems, (step, setting.key)


@pytest.mark.parametrize(
    ("kind", "step", "values", "field", "label"),
    [
        ("saml2_idp_sp", "assertion", {"name_id_type": "dn", "name_id_dn_spec": ""}, "name_id_dn_spec", "DN specification"),
        ("saml2_idp_sp", "sso_slo", {"authn_mode": "delegated"}, "delegated_url", "Delegated authentication URL"),
        ("saml2_idp_sp", "sso_slo", {"authn_mode": "delegated"}, "delegated_cookie_password", "Open-format cookie password"),
        (
            "saml2_idp_sp",
            "sso_slo",
            {"authn_mode": "delegated", "delegated_type": "query_string"},
            "delegated_hash_secret",
            "Hash secret",
        ),
        ("saml2_idp_sp", "sso_slo", {"authn_context_mode": "auto_detect"}, "authn_template", "Authentication context template"),
        (
            "saml2_idp_sp",
            "sso_slo",
            {"session_not_on_or_after": "custom", "session_duration_minutes": None},
            "session_duration_minutes",
            "SP session duration (minutes)",
        ),
        ("saml2_idp_sp", "sso_slo", {"idp_discovery_enabled": True}, "idp_discovery_service_url", "Discovery service URL"),
        ("saml2_sp_idp", "user_identification", {"identity_source": "attribute"}, "identity_attribute", "Attribute"),
        ("saml2_sp_idp", "user_identification", {"identity_source": "xpath"}, "identity_xpath", "XPath query"),
        ("saml2_sp_idp", "authn_context", {"enabled": True}, "template", "Authentication context template"),
        (
            "saml2_sp_idp",
            "authn_context",
            {"enabled": True, "use_template_classes": False},
            "requested_classes",
            "Requested classes",
        ),
        ("saml2_sp_idp", "application", {"provisioning_type": "remote"}, "provisioning_url", "Provisioning application URL"),
        ("saml2_sp_idp", "application", {"redirect_mode": "open_format_cookie"}, "cookie_password", "Cookie encryption password"),
        ("saml2_sp_idp", "application", {"redirect_mode": "http_headers", "header_prefix": ""}, "header_prefix", "Header prefix"),
        ("wsfed_rp_ip", "application", {"redirect_mode": "open_format_cookie", "cookie_name": ""}, "cookie_name", "Cookie name"),
        (
            "saml11_producer_consumer",
            "sso_slo",
            {"sso_bindings": ["artifact"], "backchannel_in_auth": "basic"},
            "backchannel_in_password",
            "Incoming password",
        ),
        (
            "saml2_sp_idp",
            "sso_slo",
            {"sso_bindings": ["artifact"], "backchannel_out_auth": "client_cert"},
            "backchannel_out_client_key",
            "Outgoing client certificate",
        ),
        (
            "saml2_sp_idp",
            "sso_slo",
            {"attribute_requester_enabled": True},
            "attribute_requester_name_id_value",
            "Query Name ID value",
        ),
    ],
)
def test_required_fields_that_appear_with_other_choices(kind, step, values, field, label):
    problems = catalog.validate(with_values(kind, **{step: values}), context(kind))
    assert Problem(step, field, f"{label} is required.") in problems


@pytest.mark.parametrize(
    ("kind", "table", "row", "column", "label"),
    [
        ("saml2_idp_sp", "attributes", {"name": "", "value": "mail"}, "name", "Assertion attribute"),
        ("saml2_idp_sp", "attributes", {"name": "mail", "value": ""}, "value", "Value"),
        ("wsfed_ip_rp", "attributes", {"name": "UPN", "value": "uid", "value_type": "dn"}, "dn_spec", "DN specification"),
    ],
)
def test_required_table_cells(kind, table, row, column, label):
    config = with_values(kind, assertion={table: [row]})
    problems = catalog.validate(config, context(kind))
    assert Problem("assertion", f"{table}.0.{column}", f"{label} is required.") in problems


# --- federation users ----------------------------------------------------------------------------------------------


def test_federation_user_rows_are_checked_by_the_federation_users_rules():
    rows = [
        {"directory": "corp", "kind": "group", "value": "cn=staff,ou=groups,dc=example,dc=org", "exclude": False},
        {"directory": "corp", "kind": "user", "value": "not a dn", "exclude": False},
        {"directory": "corp", "kind": "user_filter", "value": "(mail=*@example.org", "exclude": True},
        {"directory": "local", "kind": "ou", "value": "ou=people", "exclude": False},
        {"directory": "hr", "kind": "group", "value": "cn=hr,dc=example,dc=org", "exclude": False},
    ]
    config = with_values("saml2_idp_sp", federation_users={"rules": rows})
    problems = only_blocking(config, context("saml2_idp_sp", directories=(("corp", "ldap"), ("local", "embedded"))))
    assert [(p.field, p.message) for p in problems] == [
        ("rules.1.value", "'not a dn' is not a DN (expected something like uid=user1,ou=people,dc=example,dc=com)."),
        ("rules.2.value", "'(mail=*@example.org' is not a valid LDAP filter: Missing ')' to close the '(' at character 1."),
        (
            "rules.3.kind",
            "The embedded directory has no organizational units; use a group or a filter on user properties instead.",
        ),
        (
            "rules.4.directory",
            "The directory 'hr' is not one of the partnership's selected directories; select it in step 1 or remove this row.",
        ),
    ]
    config["federation_users"]["rules"] = rows[:1]
    assert only_blocking(config, context("saml2_idp_sp")) == []


# --- assertion configuration ---------------------------------------------------------------------------------------


def test_allow_create_needs_the_persistent_name_id_format():
    config = with_values("saml2_idp_sp", assertion={"allow_create": True, "name_id_format": EMAIL})
    assert only_blocking(config, context("saml2_idp_sp")) == [
        Problem(
            "assertion",
            "allow_create",
            "Allow IdP to create a persistent identifier needs the Name ID format Persistent: choose it above, or untick this.",
        )
    ]
    config["assertion"]["name_id_format"] = PERSISTENT
    assert only_blocking(config, context("saml2_idp_sp")) == []


def test_a_name_id_format_the_partner_does_not_list_is_a_warning():
    ctx = context("saml2_idp_sp")
    ctx = ValidationContext(
        **{**ctx.__dict__, "remote": EntityFacts("sp1", "sp1", "", (PERSISTENT,), REMOTE_ENDPOINTS["saml2_idp_sp"], ())}
    )
    problems = catalog.validate(with_values("saml2_idp_sp", assertion={"name_id_format": EMAIL}), ctx)
    assert problems == [
        Problem(
            "assertion",
            "name_id_format",
            "The remote entity “sp1” does not list this Name ID format among the formats it supports.",
            False,
        )
    ]
    assert catalog.validate(with_values("saml2_idp_sp", assertion={"name_id_format": PERSISTENT}), ctx) == []


@pytest.mark.parametrize(
    ("expression", "position"),
    [
        ('#{attr["a"] + attr["b"]}', 12),
        ("#{attr['title'] == 'manager' ? 'administrator'}", 46),
        ('#{ATTR["mail"]}', 2),
    ],
)
def test_attribute_expressions_must_compile_and_the_message_gives_the_position(expression, position):
    row = {"name": "role", "value_type": "expression", "value": expression}
    problems = only_blocking(with_values("saml2_idp_sp", assertion={"attributes": [row]}), context("saml2_idp_sp"))
    assert len(problems) == 1 and problems[0].field == "attributes.0.value"
    assert problems[0].message.startswith("This expression does not compile: ")
    assert f"at position {position}" in problems[0].message


def test_expression_problem_message_in_full():
    row = {"name": "mail", "value_type": "expression", "value": '#{ATTR["mail"]}'}
    problems = only_blocking(with_values("wsfed_ip_rp", assertion={"attributes": [row]}), context("wsfed_ip_rp"))
    assert problems == [
        Problem(
            "assertion",
            "attributes.0.value",
            "This expression does not compile: `ATTR` must be written in lower case: `attr` at position 2.",
        )
    ]


def test_reference_expressions_compile():
    rows = [
        {
            "name": "role",
            "value_type": "expression",
            "value": "#{attr[\"title\"] == 'manager' ? 'administrator' : attr[\"title\"]}",
        },
        {"name": "admintitle", "value_type": "expression", "value": '#{attr["role"] == "superuser" ? DELETE : attr["title"]}'},
        {
            "name": "ManagerName",
            "value_type": "expression",
            "value": "#{attr[\"title\"] != 'Manager' ? attr[\"manager\"] : 'DELETE'}",
        },
        {
            "name": "x",
            "value_type": "expression",
            "value": '#{session_attr["att1"] == "admin" ? session_attr["attr2"] : attr["attr3"]}',
        },
    ]
    assert catalog.validate(with_values("saml2_idp_sp", assertion={"attributes": rows}), context("saml2_idp_sp")) == []


def test_an_expression_typed_as_a_user_attribute_is_a_warning():
    row = {"name": "mail", "value_type": "user", "value": '#{attr["mail"]}'}
    problems = catalog.validate(with_values("saml2_idp_sp", assertion={"attributes": [row]}), context("saml2_idp_sp"))
    assert problems == [
        Problem(
            "assertion", "attributes.0.value", "This looks like an expression: choose the type Expression to evaluate it.", False
        )
    ]


def test_an_assertion_attribute_appears_once():
    rows = [{"name": "mail", "value": "mail"}, {"name": "uid", "value": "uid"}, {"name": "mail", "value": "email"}]
    problems = only_blocking(with_values("saml2_idp_sp", assertion={"attributes": rows}), context("saml2_idp_sp"))
    assert problems == [Problem("assertion", "attributes.2.name", "“mail” is already in row 1; each attribute once.")]
    rows[2]["name_format"] = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"  # another format: another attribute
    assert only_blocking(with_values("saml2_idp_sp", assertion={"attributes": rows}), context("saml2_idp_sp")) == []


def test_attribute_service_retrieval_while_the_service_is_off_is_a_warning():
    row = {"name": "mail", "value": "mail", "retrieval": "attribute_service"}
    problems = catalog.validate(with_values("saml2_idp_sp", assertion={"attributes": [row]}), context("saml2_idp_sp"))
    assert problems == [
        Problem(
            "assertion",
            "attributes.0.retrieval",
            "The attribute service is off (SSO and SLO step), so this attribute is only sent in SSO assertions.",
            False,
        )
    ]


def test_plugin_class_is_a_dotted_path():
    problems = only_blocking(with_values("saml2_idp_sp", assertion={"plugin_class": "AddCostCentre"}), context("saml2_idp_sp"))
    assert problems == [
        Problem(
            "assertion",
            "plugin_class",
            "Enter the plugin's dotted Python path, module and class, such as mycompany.federation.AddCostCentre.",
        )
    ]
    config = with_values("saml2_idp_sp", assertion={"plugin_class": "mycompany.federation.AddCostCentre"})
    assert only_blocking(config, context("saml2_idp_sp")) == []


# --- user identification ---------------------------------------------------------------------------------------------


def test_search_specs_contain_percent_s_and_there_is_one_per_directory():
    kind = "saml2_sp_idp"
    dirs = (("corp", "ldap"), ("local", "embedded"))
    rows = [
        {"directory": "corp", "search_spec": "uid=user"},
        {"directory": "corp", "search_spec": "mail=%s"},
        {"directory": "hr", "search_spec": "uid=%s"},
    ]
    problems = only_blocking(with_values(kind, user_identification={"search_specs": rows}), context(kind, directories=dirs))
    assert problems == [
        Problem(
            "user_identification",
            "search_specs.0.search_spec",
            "The search specification must contain %s where the value goes, such as uid=%s (not “uid=user”).",
        ),
        Problem(
            "user_identification",
            "search_specs.1.directory",
            "Directory “corp” already has a search specification in row 1; one per directory.",
        ),
        Problem(
            "user_identification",
            "search_specs.2.directory",
            "“hr” is not one of the partnership's selected directories; select it in the Configure partnership step or "
            "remove this row.",
        ),
        Problem("user_identification", "search_specs", "Add a search specification for directory “local”, such as uid=%s."),
    ]
    rows = [{"directory": "corp", "search_spec": "(mail=%s)"}, {"directory": "local", "search_spec": "username=%s"}]
    assert only_blocking(with_values(kind, user_identification={"search_specs": rows}), context(kind, directories=dirs)) == []


@pytest.mark.parametrize(
    ("directory_kind", "spec", "message"),
    [
        ("embedded", "(|(username=%s)(email=%s))", "For the embedded directory write name=%s, such as username=%s or email=%s."),
        (
            "ldap",
            "(uid=%s",
            "“(uid=%s” is not an LDAP filter with %s in it, such as uid=%s or (mail=%s): Missing ')' to close the '(' at character 1.",
        ),
    ],
)
def test_search_specs_fit_their_directory(directory_kind, spec, message):
    kind = "wsfed_rp_ip"
    config = with_values(kind, user_identification={"search_specs": [{"directory": "corp", "search_spec": spec}]})
    problems = only_blocking(config, context(kind, directories=(("corp", directory_kind),)))
    assert problems == [Problem("user_identification", "search_specs.0.search_spec", message)]


def test_identity_xpath_must_compile():
    kind = "saml11_consumer_producer"
    config = with_values(kind, user_identification={"identity_source": "xpath", "identity_xpath": "//saml1:Attribute[@Name='x'"})
    problems = only_blocking(config, context(kind))
    assert [p.field for p in problems] == ["identity_xpath"]
    assert problems[0].message.startswith("This is not an XPath 1.0 query: ")
    config["user_identification"]["identity_xpath"] = "//saml1:Attribute[@AttributeName='uid']/saml1:AttributeValue/text()"
    assert only_blocking(config, context(kind)) == []


def test_an_identity_attribute_the_partner_does_not_declare_is_a_warning():
    kind = "saml2_sp_idp"
    base = context(kind)
    ctx = ValidationContext(
        **{**base.__dict__, "remote": EntityFacts("idp1", "idp1", "", (), REMOTE_ENDPOINTS[kind], ("mail", "uid"))}
    )
    problems = catalog.validate(
        with_values(kind, user_identification={"identity_source": "attribute", "identity_attribute": "Mail"}), ctx
    )
    assert problems == [
        Problem(
            "user_identification",
            "identity_attribute",
            "“Mail” is not one of the attributes the remote entity “idp1” declares; check the spelling (case matters).",
            False,
        )
    ]


def test_sp_allow_create_needs_a_persistent_idp_and_the_override_needs_allow_create():
    kind = "saml2_sp_idp"
    base = context(kind)
    ctx = ValidationContext(**{**base.__dict__, "remote": EntityFacts("idp1", "idp1", "", (EMAIL,), REMOTE_ENDPOINTS[kind], ())})
    problems = only_blocking(with_values(kind, user_identification={"allow_create": True}), ctx)
    assert problems == [
        Problem(
            "user_identification",
            "allow_create",
            "AllowCreate needs the IdP to use the Persistent Name ID format, and the remote entity “idp1” does not list it: "
            "add it to the entity, or untick this.",
        )
    ]
    ctx = ValidationContext(
        **{**base.__dict__, "remote": EntityFacts("idp1", "idp1", "", (EMAIL, PERSISTENT), REMOTE_ENDPOINTS[kind], ())}
    )
    assert only_blocking(with_values(kind, user_identification={"allow_create": True}), ctx) == []
    problems = only_blocking(with_values(kind, user_identification={"allow_create_query_override": True}), ctx)
    assert problems == [
        Problem(
            "user_identification",
            "allow_create_query_override",
            "The query parameter can only override AllowCreate when “Allow IdP to create a new user identifier” is ticked.",
        )
    ]
    config = with_values(kind, user_identification={"allow_create": True, "allow_create_query_override": True})
    assert only_blocking(config, ctx) == []


# --- bindings need endpoints -----------------------------------------------------------------------------------------

ENDPOINT_CASES = [
    # (kind, step values, missing endpoint, field, message)
    (
        "saml2_idp_sp",
        {"sso_bindings": ["post", "artifact"]},
        ("acs", ARTIFACT2, "https://sp.partner.org/acs"),
        "sso_bindings",
        "HTTP-Artifact SSO needs an assertion consumer service URL with the HTTP-Artifact binding on the remote entity "
        "“partner1”: add one to the entity (or import its metadata).",
    ),
    (
        "saml2_idp_sp",
        {"ecp_enabled": True},
        ("acs", PAOS, "https://sp.partner.org/paos"),
        "ecp_enabled",
        "ECP needs an assertion consumer service URL with the PAOS binding on the remote entity “partner1”: add one to "
        "the entity (or import its metadata).",
    ),
    (
        "saml2_idp_sp",
        {"slo_enabled": True, "slo_bindings": ["redirect"]},
        ("slo", REDIRECT2, "https://sp.partner.org/slo"),
        "slo_bindings",
        "HTTP-Redirect single logout needs a single logout service URL with the HTTP-Redirect binding on the remote "
        "entity “partner1”: add one to the entity (or import its metadata).",
    ),
    (
        "saml2_sp_idp",
        {"authn_request_bindings": ["redirect", "post"]},
        ("sso", POST2, "https://idp.partner.org/sso"),
        "authn_request_bindings",
        "Sending AuthnRequests by HTTP-POST needs a single sign-on service URL with the HTTP-POST binding on the remote "
        "entity “partner1”: add one to the entity (or import its metadata).",
    ),
    (
        "saml2_sp_idp",
        {"sso_bindings": ["artifact"]},
        ("artifact_resolution", SOAP2, "https://idp.partner.org/ars"),
        "sso_bindings",
        "HTTP-Artifact SSO needs an artifact resolution service URL with the SOAP binding on the remote entity "
        "“partner1”: add one to the entity (or import its metadata).",
    ),
    (
        "saml2_sp_idp",
        {"slo_enabled": True, "slo_bindings": ["soap"]},
        ("slo", SOAP2, "https://idp.partner.org/slosoap"),
        "slo_bindings",
        "SOAP single logout needs a single logout service URL with the SOAP binding on the remote entity “partner1”: add "
        "one to the entity (or import its metadata).",
    ),
    (
        "saml2_sp_idp",
        {"mni_enabled": True},
        ("manage_name_id", SOAP2, "https://idp.partner.org/nid"),
        "mni_enabled",
        "Manage Name ID needs a Manage Name ID service URL with the SOAP binding on the remote entity “partner1”: add one "
        "to the entity (or import its metadata).",
    ),
    (
        "saml2_sp_idp",
        {"attribute_requester_enabled": True, "attribute_requester_name_id_value": "uid"},
        ("attribute_service", SOAP2, "https://idp.partner.org/attr"),
        "attribute_requester_enabled",
        "The attribute requester needs an attribute service URL with the SOAP binding on the remote entity “partner1”: "
        "add one to the entity (or import its metadata).",
    ),
    (
        "saml11_producer_consumer",
        {"sso_bindings": ["artifact"]},
        ("acs", ARTIFACT1, "https://consumer.partner.org/samlcc"),
        "sso_bindings",
        "HTTP-Artifact SSO needs an assertion consumer service URL with the HTTP-Artifact binding on the remote entity "
        "“partner1”: add one to the entity (or import its metadata).",
    ),
    (
        "saml11_consumer_producer",
        {"sso_bindings": ["artifact"]},
        ("artifact_resolution", SOAP1, "https://producer.partner.org/ars"),
        "sso_bindings",
        "HTTP-Artifact SSO needs an artifact resolution service URL with the SOAP binding on the remote entity "
        "“partner1”: add one to the entity (or import its metadata).",
    ),
    (
        "wsfed_ip_rp",
        {"signout_enabled": True},
        ("slo", "", "https://rp.partner.org/signout"),
        "signout_url",
        "Sign-out needs the partner's sign-out URL: enter it here or on the remote entity “partner1”.",
    ),
]


@pytest.mark.parametrize(("kind", "values", "endpoint", "field", "message"), ENDPOINT_CASES)
def test_every_enabled_binding_needs_an_endpoint_of_that_binding(kind, values, endpoint, field, message):
    config = with_values(kind, sso_slo=values)
    if kind.startswith("saml2") and values.get("slo_enabled"):
        config["signature"]["verification_certificate" if kind == "saml2_idp_sp" else "signing_key"] = (
            "partner" if kind == "saml2_idp_sp" else "sp-signing"
        )
    without = only_blocking(config, context(kind))
    assert without == [Problem("sso_slo", field, message)]
    assert only_blocking(config, context(kind, endpoints=REMOTE_ENDPOINTS[kind] + (endpoint,))) == []


def test_an_endpoint_of_another_binding_does_not_count():
    config = with_values("saml2_idp_sp", sso_slo={"sso_bindings": ["artifact"]})
    problems = only_blocking(config, context("saml2_idp_sp"))  # the remote SP only has a POST ACS
    assert [p.field for p in problems] == ["sso_bindings"]


# --- back channel ----------------------------------------------------------------------------------------------------


def test_client_certificate_back_channel_needs_https_endpoints():
    kind = "saml2_sp_idp"
    config = with_values(
        kind,
        sso_slo={"sso_bindings": ["artifact"], "backchannel_out_auth": "client_cert", "backchannel_out_client_key": "sp-signing"},
    )
    plain = (("sso", REDIRECT2, "https://idp.partner.org/sso"), ("artifact_resolution", SOAP2, "http://idp.partner.org:9090/ars"))
    assert only_blocking(config, context(kind, endpoints=plain)) == [
        Problem(
            "sso_slo",
            "backchannel_out_auth",
            "A client-certificate back channel needs https:// for every URL of the partnership, and "
            "http://idp.partner.org:9090/ars is not https.",
        )
    ]
    secure = (plain[0], ("artifact_resolution", SOAP2, "https://idp.partner.org:9443/ars"))
    assert only_blocking(config, context(kind, endpoints=secure)) == []
    config["configure"]["base_url"] = "http://sp.example.org"
    assert [p.message for p in only_blocking(config, context(kind, endpoints=secure))] == [
        "A client-certificate back channel needs https:// for every URL of the partnership, and http://sp.example.org is not https."
    ]


def test_no_back_channel_authentication_is_a_test_setting_warning():
    kind = "saml2_idp_sp"
    endpoints = REMOTE_ENDPOINTS[kind] + (("acs", ARTIFACT2, "https://sp.partner.org/acs"),)
    problems = catalog.validate(with_values(kind, sso_slo={"sso_bindings": ["artifact"]}), context(kind, endpoints=endpoints))
    assert problems == [
        Problem(
            "sso_slo",
            "backchannel_in_auth",
            "No back-channel authentication: anyone who can reach the SOAP endpoints can use them. Use it for tests, or "
            "behind a proxy that checks client certificates.",
            False,
        )
    ]
    config = with_values(
        kind, sso_slo={"sso_bindings": ["artifact"], "backchannel_in_auth": "basic", "backchannel_in_password": "s3cret"}
    )
    assert catalog.validate(config, context(kind, endpoints=endpoints)) == []


# --- session store ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "step", "values", "field", "what"),
    [
        ("saml2_idp_sp", "sso_slo", {"slo_enabled": True}, "slo_enabled", "Single logout"),
        ("saml2_sp_idp", "sso_slo", {"slo_enabled": True}, "slo_enabled", "Single logout"),
        ("wsfed_ip_rp", "sso_slo", {"signout_enabled": True}, "signout_enabled", "Sign-out"),
        (
            "saml11_producer_consumer",
            "sso_slo",
            {"sso_bindings": ["artifact"]},
            "sso_bindings",
            "HTTP-Artifact SSO (the assertion waits there until the partner fetches it)",
        ),
    ],
)
def test_logout_and_artifact_need_the_session_store(kind, step, values, field, what):
    config = with_values(kind, **{step: values})
    problem = Problem(
        step,
        field,
        f"{what} needs the session store, which is off on this site: ask an operator to turn it on, or turn this off.",
    )
    assert problem in catalog.validate(config, context(kind, session_store_enabled=False))
    assert problem not in catalog.validate(config, context(kind, session_store_enabled=True))


def test_persist_attributes_needs_the_session_store():
    config = with_values("saml2_sp_idp", application={"redirect_mode": "persist_attributes"})
    assert only_blocking(config, context("saml2_sp_idp", session_store_enabled=False)) == [
        Problem(
            "application",
            "redirect_mode",
            "Persist attributes needs the session store, which is off on this site: ask an operator to turn it on, or "
            "choose another redirect mode.",
        )
    ]
    assert only_blocking(config, context("saml2_sp_idp")) == []


# --- SSO and SLO details -------------------------------------------------------------------------------------------


def test_slo_needs_a_binding_when_enabled():
    config = with_values(
        "saml2_sp_idp", sso_slo={"slo_enabled": True, "slo_bindings": []}, signature={"signing_key": "sp-signing"}
    )
    assert Problem("sso_slo", "slo_bindings", "SLO bindings is required.") in catalog.validate(config, context("saml2_sp_idp"))


def test_manage_name_id_needs_delete_or_notification():
    kind = "saml2_idp_sp"
    ctx = context(kind, endpoints=REMOTE_ENDPOINTS[kind] + (("manage_name_id", SOAP2, "https://sp.partner.org/nid"),))
    config = with_values(kind, sso_slo={"mni_enabled": True, "mni_delete_name_id": False, "mni_notification": False})
    assert only_blocking(config, ctx) == [
        Problem(
            "sso_slo",
            "mni_delete_name_id",
            "Choose Delete Name ID, Enable notification or both: with neither, Manage Name ID does nothing.",
        )
    ]
    config["sso_slo"].update(mni_notification=True, mni_notification_url="https://hr.example.org/notify")
    assert only_blocking(config, ctx) == []
    config["sso_slo"]["mni_notification_auth"] = "basic"
    assert {p.field for p in only_blocking(config, ctx)} == {"mni_notification_user", "mni_notification_password"}


def test_attribute_service_needs_a_user_lookup_row():
    kind = "saml2_idp_sp"
    config = with_values(kind, sso_slo={"attribute_service_enabled": True})
    assert only_blocking(config, context(kind)) == [
        Problem(
            "sso_slo",
            "attribute_search_specs",
            "Add at least one user lookup row, such as uid=%s, so the attribute service can find the user of a query.",
        )
    ]
    config["sso_slo"]["attribute_search_specs"] = [{"directory": "corp", "search_spec": "uid"}]
    assert [p.field for p in only_blocking(config, context(kind))] == ["attribute_search_specs.0.search_spec"]
    config["sso_slo"]["attribute_search_specs"] = [{"directory": "corp", "search_spec": "uid=%s"}]
    assert only_blocking(config, context(kind)) == []


def test_idp_discovery_service_must_be_in_the_common_domain():
    kind = "saml2_sp_idp"
    values = {
        "idp_discovery_enabled": True,
        "idp_discovery_service_url": "https://disco.other.org/affwebservices/public/saml2ipd",
        "idp_discovery_common_domain": ".example.org",
    }
    assert only_blocking(with_values(kind, sso_slo=values), context(kind)) == [
        Problem(
            "sso_slo",
            "idp_discovery_service_url",
            "The discovery service's host disco.other.org is not in the common domain .example.org; the cookie would not "
            "be readable there.",
        )
    ]
    values["idp_discovery_service_url"] = "https://disco.example.org/affwebservices/public/saml2ipd"
    assert only_blocking(with_values(kind, sso_slo=values), context(kind)) == []
    values["idp_discovery_common_domain"] = "example org"
    assert [p.message for p in only_blocking(with_values(kind, sso_slo=values), context(kind))] == [
        "Enter a domain name such as .example.org."
    ]


@pytest.mark.parametrize(
    ("kind", "step"), [("saml2_idp_sp", "sso_slo"), ("saml2_sp_idp", "application"), ("wsfed_rp_ip", "application")]
)
def test_each_status_redirect_condition_once(kind, step):
    condition = "server_error" if kind == "saml2_idp_sp" else "user_not_found"
    rows = [
        {"condition": condition, "url": "https://www.example.org/error", "method": "302"},
        {"condition": condition, "url": "https://www.example.org/other", "method": "post"},
    ]
    problems = only_blocking(with_values(kind, **{step: {"status_redirects": rows}}), context(kind))
    label = "Server error (500)" if kind == "saml2_idp_sp" else "User not found"
    assert problems == [Problem(step, "status_redirects.1.condition", f"{label} already has a redirect in row 1.")]
    assert only_blocking(with_values(kind, **{step: {"status_redirects": rows[:1]}}), context(kind)) == []


def test_status_redirect_url_is_checked():
    rows = [{"condition": "server_error", "url": "/error.html", "method": "302"}]
    problems = only_blocking(with_values("saml2_idp_sp", sso_slo={"status_redirects": rows}), context("saml2_idp_sp"))
    assert [p.field for p in problems] == ["status_redirects.0.url"]


def test_query_string_delegated_authentication_is_a_warning():
    values = {
        "authn_mode": "delegated",
        "delegated_type": "query_string",
        "delegated_url": "https://wam.example.org/login",
        "delegated_hash_secret": "FederatedAuth1",
    }
    problems = catalog.validate(with_values("saml11_producer_consumer", sso_slo=values), context("saml11_producer_consumer"))
    assert problems == [
        Problem(
            "sso_slo",
            "delegated_type",
            "The query string carries the login ID in clear text with a SHA-1 check: use it for tests and proofs of concept "
            "only, never in production.",
            False,
        )
    ]


@pytest.mark.parametrize(
    ("kind", "step", "values", "field"),
    [
        ("saml2_idp_sp", "sso_slo", {"authn_context_mode": "auto_detect", "authn_template": "Bank grades"}, "authn_template"),
        ("saml2_sp_idp", "authn_context", {"enabled": True, "template": "Bank grades"}, "template"),
    ],
)
def test_an_authn_context_template_must_exist(kind, step, values, field):
    problems = only_blocking(with_values(kind, **{step: values}), context(kind))
    assert problems == [
        Problem(
            step,
            field,
            "There is no authentication context template “Bank grades”: create it under AuthnContext templates, or choose "
            "another.",
        )
    ]
    values = {**values, field: "Corporate strengths"}
    assert only_blocking(with_values(kind, **{step: values}), context(kind)) == []


def test_authn_context_classes_are_used_somehow_and_are_uris():
    kind = "saml2_sp_idp"
    values = {"enabled": True, "template": "Corporate strengths", "include_in_request": False, "validate_response": False}
    assert only_blocking(with_values(kind, authn_context=values), context(kind)) == [
        Problem(
            "authn_context",
            "include_in_request",
            "Choose what to do with the classes: include them in AuthnRequests, validate the returned context, or both.",
        )
    ]
    values = {
        "enabled": True,
        "template": "Corporate strengths",
        "use_template_classes": False,
        "requested_classes": "urn:oasis:names:tc:SAML:2.0:ac:classes:X509\nPassword Protected",
    }
    assert only_blocking(with_values(kind, authn_context=values), context(kind)) == [
        Problem(
            "authn_context",
            "requested_classes",
            "Line 2 is not a class URI: use URIs such as urn:oasis:names:tc:SAML:2.0:ac:classes:Password.",
        )
    ]


# --- signatures --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["saml2_idp_sp", "saml11_producer_consumer"])
def test_post_sso_needs_a_signed_assertion_at_the_asserting_party(kind):
    message = "With HTTP-POST the assertion must be signed: choose Assertion, or Assertion and response."
    config = with_values(kind, signature={"sign_post": "response"})
    assert only_blocking(config, context(kind)) == [Problem("signature", "sign_post", message)]
    config["signature"]["sign_post"] = "both"
    assert only_blocking(config, context(kind)) == []
    # Artifact only: the POST options do not matter.
    config = with_values(kind, signature={"sign_post": "response"}, sso_slo={"sso_bindings": ["artifact"]})
    endpoint = ("acs", ARTIFACT2 if kind.startswith("saml2") else ARTIFACT1, "https://sp.partner.org/acs")
    assert only_blocking(config, context(kind, endpoints=(endpoint,))) == []


@pytest.mark.parametrize("kind", ["saml2_sp_idp", "saml11_consumer_producer"])
def test_post_sso_needs_a_signed_assertion_at_the_relying_party(kind):
    config = with_values(kind, signature={"require_signed_assertions": False, "require_signed_responses": False})
    assert only_blocking(config, context(kind)) == [
        Problem(
            "signature",
            "require_signed_assertions",
            "With HTTP-POST the assertion must be signed: tick Require signed assertions (or Require signed responses, "
            "whose signature covers the assertion).",
        )
    ]
    config["signature"]["require_signed_responses"] = True
    assert only_blocking(config, context(kind)) == []


def test_disabling_signature_processing_is_allowed_with_warnings():
    config = with_values(
        "saml2_idp_sp", signature={"disable_signature_processing": True, "signing_key": "", "sign_post": "response"}
    )
    problems = catalog.validate(config, context("saml2_idp_sp"))
    assert blocking(problems) == []
    assert problems == [
        Problem(
            "signature",
            "disable_signature_processing",
            "Signature processing is disabled: nothing is signed or verified, so anyone can forge an assertion. Keep it "
            "for tests; never activate such a partnership in production.",
            False,
        ),
        Problem(
            "signature",
            "sign_post",
            "With HTTP-POST the assertion must be signed: choose Assertion, or Assertion and response. (Ignored while "
            "signature processing is disabled.)",
            False,
        ),
    ]
    problems = catalog.validate(
        with_values("wsfed_rp_ip", signature={"disable_signature_processing": True, "verification_certificate": ""}),
        context("wsfed_rp_ip"),
    )
    assert [(p.field, p.blocking) for p in problems] == [("disable_signature_processing", False)]


@pytest.mark.parametrize(
    ("setting_kind", "field", "alias", "message"),
    [
        (
            "saml2_idp_sp",
            "signing_key",
            "nobody",
            "The keystore has no entry “nobody”: import or generate it, or choose another.",
        ),
        (
            "saml2_idp_sp",
            "signing_key",
            "partner",
            "“partner” is a certificate without its private key; signing key pair must be a key pair this site holds the "
            "private key of.",
        ),
        (
            "saml2_sp_idp",
            "verification_certificate",
            "root-ca",
            "“root-ca” is a CA certificate; choose the partner's own certificate.",
        ),
        (
            "saml11_consumer_producer",
            "verification_certificate",
            "old-partner",
            "The certificate of “old-partner” has expired: renew it (or import the partner's new one) first.",
        ),
    ],
)
def test_key_aliases_must_exist_have_the_right_kind_and_not_be_expired(setting_kind, field, alias, message):
    problems = only_blocking(with_values(setting_kind, signature={field: alias}), context(setting_kind))
    assert problems == [Problem("signature", field, message)]


def test_a_back_channel_client_key_is_checked_like_every_alias():
    kind = "saml11_consumer_producer"
    values = {"sso_bindings": ["artifact"], "backchannel_out_auth": "client_cert", "backchannel_out_client_key": "partner"}
    endpoints = (("artifact_resolution", SOAP1, "https://producer.partner.org/ars"),)
    problems = only_blocking(with_values(kind, sso_slo=values), context(kind, endpoints=endpoints))
    assert problems == [
        Problem(
            "sso_slo",
            "backchannel_out_client_key",
            "“partner” is a certificate without its private key; outgoing client certificate must be a key pair this "
            "site holds the private key of.",
        )
    ]


def test_keys_are_required_when_what_needs_them_is_on():
    sp = with_values("saml2_sp_idp", signature={"sign_authn_requests": True})
    assert only_blocking(sp, context("saml2_sp_idp")) == [
        Problem("signature", "signing_key", "Choose the signing key pair: AuthnRequests are signed.")
    ]
    sp["signature"]["signing_key"] = "sp-signing"
    assert only_blocking(sp, context("saml2_sp_idp")) == []
    idp = with_values("saml2_idp_sp", signature={"require_signed_authn_requests": True})
    assert only_blocking(idp, context("saml2_idp_sp")) == [
        Problem(
            "signature",
            "verification_certificate",
            "Choose the SP's verification certificate: signed AuthnRequests are required.",
        )
    ]
    idp["signature"]["verification_certificate"] = "partner"
    assert only_blocking(idp, context("saml2_idp_sp")) == []
    sp = with_values("saml2_sp_idp", signature={"require_encrypted_assertion": True})
    assert only_blocking(sp, context("saml2_sp_idp")) == [
        Problem("signature", "decryption_key", "Choose the decryption key pair: encryption is required from the IdP.")
    ]


def test_signature_algorithm_suits_the_signing_key_and_sha1_is_a_warning():
    kind = "saml2_idp_sp"
    problems = only_blocking(with_values(kind, signature={"signing_key": "ec-signing"}), context(kind))
    assert problems == [
        Problem(
            "signature", "signature_algorithm", "The signing key “ec-signing” is an EC key: choose an ECDSA signature algorithm."
        )
    ]
    config = with_values(kind, signature={"signing_key": "ec-signing", "signature_algorithm": "ecdsa-sha256"})
    assert only_blocking(config, context(kind)) == []
    problems = catalog.validate(with_values(kind, signature={"signature_algorithm": "rsa-sha1"}), context(kind))
    assert problems == [
        Problem(
            "signature", "signature_algorithm", "SHA-1 is broken: choose it only for a partner that cannot verify SHA-256.", False
        )
    ]


# --- encryption ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", ["tripledes-cbc", "aes256-cbc", "aes128-gcm"])
def test_rsa_oaep_needs_an_rsa_key_of_at_least_1024_bits(block):
    kind = "saml2_idp_sp"
    values = {"encrypt_assertion": True, "encryption_certificate": "partner-512", "encryption_block_algorithm": block}
    problems = only_blocking(with_values(kind, signature=values), context(kind))
    assert problems == [
        Problem(
            "signature", "encryption_certificate", "RSA-OAEP needs an RSA key of at least 1024 bits, and “partner-512” has 512."
        )
    ]
    values["encryption_certificate"] = "partner"
    assert only_blocking(with_values(kind, signature=values), context(kind)) == []


def test_encryption_needs_an_rsa_certificate():
    values = {"encrypt_name_id": True, "encryption_certificate": "partner-ec"}
    assert only_blocking(with_values("saml2_idp_sp", signature=values), context("saml2_idp_sp")) == [
        Problem(
            "signature",
            "encryption_certificate",
            "Encryption needs an RSA certificate to transport the key, and “partner-ec” holds an EC key.",
        )
    ]


def test_encrypted_attributes_need_the_encryption_certificate():
    config = with_values("saml2_idp_sp", assertion={"attributes": [{"name": "ssn", "value": "ssn", "encrypt": True}]})
    assert only_blocking(config, context("saml2_idp_sp")) == [
        Problem("signature", "encryption_certificate", "Choose the SP's encryption certificate: encrypted attributes needs it.")
    ]
    config["signature"]["encryption_certificate"] = "partner"
    assert only_blocking(config, context("saml2_idp_sp")) == []


def test_legacy_encryption_algorithms_are_warnings():
    values = {"encrypt_assertion": True, "encryption_certificate": "partner", "encryption_key_transport": "rsa-1_5"}
    problems = catalog.validate(with_values("saml2_idp_sp", signature=values), context("saml2_idp_sp"))
    assert [(p.field, p.blocking) for p in problems] == [("encryption_key_transport", False)]
    problems = catalog.validate(
        with_values("saml2_sp_idp", signature={"accept_legacy_encryption": True}), context("saml2_sp_idp")
    )
    assert [(p.field, p.blocking) for p in problems] == [("accept_legacy_encryption", False)]


# --- application integration -------------------------------------------------------------------------------------------


def test_relay_state_override_allows_an_empty_target_otherwise_target_required():
    kind = "saml2_sp_idp"
    assert only_blocking(with_values(kind, application={"target": ""}), context(kind)) == [
        Problem("application", "target", "Enter the target URL, or tick Relay state overrides target.")
    ]
    config = with_values(kind, application={"target": "", "relay_state_overrides_target": True})
    assert only_blocking(config, context(kind)) == [
        Problem(
            "application",
            "allowed_targets",
            "With an empty target, list at least one allowed target URL: a RelayState is only followed to an allowed URL.",
        )
    ]
    config["application"]["allowed_targets"] = [{"url": "https://app.example.org/"}]
    assert only_blocking(config, context(kind)) == []
    assert only_blocking(with_values("wsfed_rp_ip", application={"target": ""}), context("wsfed_rp_ip")) == [
        Problem("application", "target", "Enter the target URL.")
    ]


def test_header_names_that_differ_only_by_case_are_refused():
    kind = "saml2_sp_idp"
    rows = [
        {"name": "address", "expression": '#{attr["address"]}'},
        {"name": "Address", "expression": '#{attr["postalAddress"]}'},
    ]
    values = {"redirect_mode": "http_headers", "attribute_mapping_enabled": True, "attribute_mappings": rows}
    assert only_blocking(with_values(kind, application=values), context(kind)) == [
        Problem(
            "application",
            "attribute_mappings.1.name",
            "“Address” and the attribute of row 1 differ only by letter case; HTTP header names ignore case, so both "
            "cannot be passed as headers.",
        )
    ]
    values["redirect_mode"] = "open_format_cookie"
    values["cookie_password"] = "pw"
    assert only_blocking(with_values(kind, application=values), context(kind)) == []
    values = {**values, "redirect_mode": "no_data", "provisioning_type": "remote", "provisioning_url": "https://sp.example.org/p"}
    values["provisioning_delivery"] = "http_headers"
    assert [p.field for p in only_blocking(with_values(kind, application=values), context(kind))] == ["attribute_mappings.1.name"]


def test_header_names_are_tokens():
    rows = [{"name": "Acme Address", "expression": '#{attr["acmeidkey"]}@acme.com'}]
    values = {"redirect_mode": "http_headers", "attribute_mapping_enabled": True, "attribute_mappings": rows}
    assert only_blocking(with_values("saml11_consumer_producer", application=values), context("saml11_consumer_producer")) == [
        Problem(
            "application",
            "attribute_mappings.0.name",
            "“Acme Address” cannot be an HTTP header name: use letters, digits, “-” and “_” only (no spaces).",
        )
    ]
    values = {"redirect_mode": "http_headers", "header_prefix": "Fed:"}
    assert only_blocking(with_values("saml2_sp_idp", application=values), context("saml2_sp_idp")) == [
        Problem("application", "header_prefix", "A header prefix may use letters, digits and “-” only, such as Fed-.")
    ]


def test_remote_attributes_that_clash_as_headers_are_a_warning_without_mapping():
    kind = "saml2_sp_idp"
    base = context(kind)
    ctx = ValidationContext(
        **{**base.__dict__, "remote": EntityFacts("idp1", "idp1", "", (), REMOTE_ENDPOINTS[kind], ("mail", "Mail"))}
    )
    problems = catalog.validate(with_values(kind, application={"redirect_mode": "http_headers"}), ctx)
    assert [(p.field, p.blocking) for p in problems] == [("redirect_mode", False)]
    assert "“mail” and “Mail” differ only by letter case" in problems[0].message


def test_mapping_expressions_compile_and_names_appear_once():
    rows = [
        {"name": "FullName", "expression": '#{attr["lastname"]}, #{attr["firstname"]}'},
        {"name": "Price", "expression": '#{attr["amount"]}#{attr["currency"]'},
        {"name": "FullName", "expression": '#{attr["name"]}'},
    ]
    values = {"attribute_mapping_enabled": True, "attribute_mappings": rows}
    problems = only_blocking(with_values("saml2_sp_idp", application=values), context("saml2_sp_idp"))
    assert [p.field for p in problems] == ["attribute_mappings.1.expression", "attribute_mappings.2.name"]
    assert problems[0].message.startswith("This expression does not compile: ") and "at position" in problems[0].message
    assert problems[1].message == "“FullName” is already in row 1; each application attribute once."


def test_mapping_on_without_rows_is_a_warning():
    problems = catalog.validate(
        with_values("saml2_sp_idp", application={"attribute_mapping_enabled": True}), context("saml2_sp_idp")
    )
    assert problems == [
        Problem(
            "application", "attribute_mappings", "With mapping on and no rows, the application receives no attributes.", False
        )
    ]


def test_session_idle_timeout_not_longer_than_maximum():
    config = with_values("saml2_sp_idp", application={"session_idle_minutes": 90, "session_max_minutes": 60})
    assert only_blocking(config, context("saml2_sp_idp")) == [
        Problem(
            "application",
            "session_idle_minutes",
            "The idle timeout (90 min) cannot be longer than the maximum lifetime (60 min).",
        )
    ]


def test_open_format_cookie_provisioning_needs_a_shared_cookie_domain():
    kind = "saml2_sp_idp"
    values = {
        "provisioning_type": "remote",
        "provisioning_url": "https://accounts.example.org/signup",
        "provisioning_delivery": "open_format_cookie",
        "cookie_password": "pw",
    }
    assert only_blocking(with_values(kind, application=values), context(kind)) == [
        Problem(
            "application",
            "cookie_domain",
            "The provisioning application (accounts.example.org) is on another host than this site (sp.example.org): set "
            "a cookie domain both share, such as .example.org, or deliver by HTTP headers.",
        )
    ]
    assert only_blocking(with_values(kind, application={**values, "cookie_domain": ".example.org"}), context(kind)) == []
    assert only_blocking(with_values(kind, application={**values, "cookie_domain": "other.org"}), context(kind)) == [
        Problem(
            "application",
            "provisioning_url",
            "With open-format cookie delivery the provisioning application must be in the cookie domain other.org, and "
            "accounts.example.org is not.",
        )
    ]
    assert only_blocking(with_values(kind, application={**values, "provisioning_delivery": "http_headers"}), context(kind)) == []


def test_validate_reports_shape_problems_too():
    config = complete("saml2_idp_sp")
    config["sso_slo"]["colour"] = "blue"
    problems = catalog.validate(config, context("saml2_idp_sp"))
    assert problems == [Problem("sso_slo", "colour", "Unknown field “colour”.")]
