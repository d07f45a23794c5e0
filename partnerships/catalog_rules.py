"""The validation of a partnership configuration: every field rule and cross-field rule of the reference, with the
message the administrator sees next to the field, and the live previews of the validity windows.

`validate` returns every Problem; a configuration with no blocking Problem is complete ("Defined"). Non-blocking
Problems are warnings the console shows (signature processing disabled, SHA-1, a test-only back channel, …).

Rules only look at settings that are shown (`visible`): a value left behind in a hidden field never blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from federation.saml.constants import NSMAP
from federation.saml.encryption import MIN_RSA_KEY_BITS
from partnerships import catalog_choices as ch
from partnerships.catalog_config import columns_for, normalize, settings_for, steps_for, tables_for, visible
from partnerships.catalog_schema import EntityFacts, KindInfo, Problem, Setting, TableSpec, ValidationContext
from partnerships.expressions import ExpressionSyntaxError, compile_expression

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
NAME_MAX = 100
URL_MAX = 1024
PLUGIN_CLASS_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
HEADER_NAME_PATTERN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # an HTTP token (RFC 9110 §5.6.2)
COOKIE_NAME_PATTERN = HEADER_NAME_PATTERN
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"

# entities.models.EndpointKind values (repeated so this module stays free of Django models; a test checks them).
ACS, SSO, SLO, ARTIFACT_RESOLUTION, ATTRIBUTE_SERVICE, MANAGE_NAME_ID = (
    "acs",
    "sso",
    "slo",
    "artifact_resolution",
    "attribute_service",
    "manage_name_id",
)
_BINDING_LABELS = {"redirect": "HTTP-Redirect", "post": "HTTP-POST", "artifact": "HTTP-Artifact", "soap": "SOAP", "paos": "PAOS"}
_ENDPOINT_NAMES = {
    ACS: "assertion consumer service URL",
    SSO: "single sign-on service URL",
    SLO: "single logout service URL",
    ARTIFACT_RESOLUTION: "artifact resolution service URL",
    ATTRIBUTE_SERVICE: "attribute service URL",
    MANAGE_NAME_ID: "Manage Name ID service URL",
}


def validate_name(name) -> str | None:
    """Why ``name`` cannot be a partnership name, or None when it can. The name appears in metadata and URLs."""
    name = name if isinstance(name, str) else ""
    if not name.strip():
        return "Enter a partnership name."
    if len(name) > NAME_MAX:
        return f"A partnership name has at most {NAME_MAX} characters."
    if not NAME_PATTERN.fullmatch(name):
        allowed = "use only letters, digits, “_”, “-” and “.”, as in Partner_SP-1"
        if any(ch.isspace() for ch in name):
            return f"A partnership name cannot contain spaces: {allowed}."
        bad = next(char for char in name if not NAME_PATTERN.fullmatch(char))
        return f"“{bad}” is not allowed in a partnership name: {allowed}."
    return None


def url_problem(value: str) -> str | None:
    """Why ``value`` is not an absolute http(s) URL, in plain words, or None (the rules of entities.models.url_problem,
    without the site-wide https switch, which is a Django setting)."""
    if any(char.isspace() for char in value):
        return "A URL cannot contain spaces; encode them as %20."
    if len(value) > URL_MAX:
        return f"A URL has at most {URL_MAX} characters."
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "This is not a valid URL."
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "Enter an absolute URL starting with https:// (or http://), such as https://app.example.org/."
    if parts.username is not None or parts.password is not None:
        return "Do not put a user name or password in the URL."
    if parts.fragment:
        return "Remove the #fragment; browsers do not send it to the server."
    return None


# --- previews ------------------------------------------------------------------------------------------------------

_PREVIEW_ISSUE = datetime(2000, 1, 1, 12, 0, 0)


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S")


def _non_negative(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def validity_window(skew_seconds: int, validity_seconds: int) -> str:
    """The window of an assertion this site issues (NotBefore = issue − skew, NotOnOrAfter = issue + validity + skew;
    reference ch09-10 B7), as one sentence for the SSO step's live preview."""
    if not _non_negative(skew_seconds) or not _non_negative(validity_seconds):
        return "Enter the skew and the validity duration as whole numbers of seconds to see the assertion's validity window."
    start = _PREVIEW_ISSUE - timedelta(seconds=skew_seconds)
    end = _PREVIEW_ISSUE + timedelta(seconds=validity_seconds + skew_seconds)
    return (
        f"An assertion issued at {_clock(_PREVIEW_ISSUE)} is valid from {_clock(start)} to {_clock(end)} "
        f"(issue − {skew_seconds} s … issue + {validity_seconds} s + {skew_seconds} s): "
        f"{validity_seconds + 2 * skew_seconds} s in all."
    )


def acceptance_window(skew_seconds: int, sender_skew_seconds: int | None = None, validity_seconds: int | None = None) -> str:
    """How a relying party widens the window it receives by its own skew (ch09-10 B7), for the RP's live preview.

    With the partner's skew and validity (when known) the sentence follows one assertion through both ends: the
    partner writes issue − its skew … issue + validity + its skew, and this site accepts that window widened by its
    own skew at both ends (2 × partner skew + validity + 2 × own skew in all)."""
    if not _non_negative(skew_seconds):
        return "Enter the skew as a whole number of seconds to see how received assertions are accepted."
    if not (_non_negative(sender_skew_seconds) and _non_negative(validity_seconds)):
        return (
            f"A received assertion is accepted from its NotBefore − {skew_seconds} s until its NotOnOrAfter + {skew_seconds} s."
        )
    not_before = _PREVIEW_ISSUE - timedelta(seconds=sender_skew_seconds)
    not_on_or_after = _PREVIEW_ISSUE + timedelta(seconds=validity_seconds + sender_skew_seconds)
    start = not_before - timedelta(seconds=skew_seconds)
    end = not_on_or_after + timedelta(seconds=skew_seconds)
    total = 2 * sender_skew_seconds + validity_seconds + 2 * skew_seconds
    return (
        f"An assertion issued at {_clock(_PREVIEW_ISSUE)} and valid from {_clock(not_before)} to "
        f"{_clock(not_on_or_after)} is accepted here from {_clock(start)} to {_clock(end)} (its window − {skew_seconds} s "
        f"… + {skew_seconds} s): {total} s in all."
    )


def slo_window(skew_seconds: int, validity_seconds: int) -> str:
    """The window of a logout request this site issues (NotOnOrAfter = issue + skew + SLO validity; ch15-20 A4)."""
    if not _non_negative(skew_seconds) or not _non_negative(validity_seconds):
        return "Enter the skew and the SLO validity duration as whole numbers of seconds to see the logout request's window."
    end = _PREVIEW_ISSUE + timedelta(seconds=skew_seconds + validity_seconds)
    return (
        f"A logout request issued at {_clock(_PREVIEW_ISSUE)} is valid from {_clock(_PREVIEW_ISSUE)} to {_clock(end)} "
        f"(issue + {skew_seconds} s + {validity_seconds} s): it expires {skew_seconds + validity_seconds} s after it is issued."
    )


# --- validation ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Directory:
    """What partnerships.federation_users needs of a directory: its name and whether it is the embedded one."""

    name: str
    is_embedded: bool


class _Checker:
    def __init__(self, values: dict, context: ValidationContext):
        self.info: KindInfo = context.kind
        self.values = values
        self.context = context
        self.problems: list[Problem] = []
        self.directories = [name for name, _type in context.directories]
        self.directory_kinds = dict(context.directories)

    # -- access

    def step(self, step: str) -> dict:
        return self.values.get(step, {})

    def get(self, step: str, key: str, default=None):
        return self.step(step).get(key, default)

    def setting(self, step: str, key: str) -> Setting | None:
        if step not in self.values:
            return None
        for setting in settings_for(self.info, step):
            if setting.key == key:
                return setting
        return None

    def shown(self, step: str, key: str) -> bool:
        setting = self.setting(step, key)
        return setting is not None and visible(setting, self.step(step))

    def on(self, step: str, key: str) -> bool:
        """A ticked checkbox that is shown."""
        return self.shown(step, key) and bool(self.get(step, key))

    def chosen(self, step: str, key: str) -> list:
        """The choices of a shown multichoice (empty when hidden)."""
        return list(self.get(step, key) or []) if self.shown(step, key) else []

    def table(self, step: str, key: str) -> TableSpec | None:
        if step not in self.values:
            return None
        for table in tables_for(self.info, step):
            if table.key == key:
                return table
        return None

    def rows(self, step: str, key: str) -> list[dict]:
        table = self.table(step, key)
        if table is None or not visible(table, self.step(step)):
            return []
        return list(self.get(step, key) or [])

    def add(self, step: str, field: str, message: str, blocking: bool = True) -> None:
        problem = Problem(step, field, message, blocking)
        if problem not in self.problems:
            self.problems.append(problem)

    def warn(self, step: str, field: str, message: str) -> None:
        self.add(step, field, message, blocking=False)

    # -- facts

    def base_url(self) -> str:
        return self.get("configure", "base_url") or (self.context.local.base_url if self.context.local else "")

    def endpoint_urls(self, entity: EntityFacts | None, kind: str, binding: str | None = None) -> list[str]:
        if entity is None:
            return []
        return [
            url for ep_kind, ep_binding, url in entity.endpoints if ep_kind == kind and (binding is None or ep_binding == binding)
        ]

    def binding_uri(self, short: str) -> str | None:
        return ch.BINDING_URIS.get(self.info.protocol, {}).get(short)


def validate(config: dict, context: ValidationContext) -> list[Problem]:
    """Every problem of ``config`` for the partnership described by ``context``: shape problems from `normalize`,
    missing required values, field rules and cross-field rules, each with the message the administrator sees."""
    values, problems = normalize(context.kind, config)
    checker = _Checker(values, context)
    checker.problems.extend(problems)
    for rule in _RULES:
        rule(checker)
    return checker.problems


# --- generic field rules ---------------------------------------------------------------------------------------------


def _fields(c: _Checker) -> Iterable[tuple[str, str, Setting, object]]:
    """(step, field path, setting, value) of every shown setting and every cell of every shown table."""
    for step in steps_for(c.info):
        step_values = c.step(step.key)
        for setting in settings_for(c.info, step.key):
            if visible(setting, step_values):
                yield step.key, setting.key, setting, step_values.get(setting.key)
        for table in tables_for(c.info, step.key):
            if not visible(table, step_values):
                continue
            for index, row in enumerate(step_values.get(table.key) or []):
                for column in columns_for(c.info, table):
                    if visible(column, row):
                        yield step.key, f"{table.key}.{index}.{column.key}", column, row.get(column.key)


def _empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def _field_rules(c: _Checker) -> None:
    """Required values, number ranges, URL syntax, keystore aliases and template names, wherever they are shown."""
    for step, path, setting, value in _fields(c):
        if _empty(value):
            if setting.required:
                c.add(step, path, f"{setting.label} is required.")
            continue
        if setting.type == "int":
            if setting.min_value is not None and value < setting.min_value:
                what = "a whole number, 0 or more" if setting.min_value == 0 else f"at least {setting.min_value}"
                c.add(step, path, f"{setting.label} must be {what} (not {value}).")
            if setting.max_value is not None and value > setting.max_value:
                c.add(step, path, f"{setting.label} must be at most {setting.max_value} (not {value}).")
        elif setting.type == "url":
            problem = url_problem(value)
            if problem:
                c.add(step, path, problem)
        elif setting.type in ("key_pair", "certificate"):
            _alias_rule(c, step, path, setting, value)
        elif setting.type == "authn_template" and value not in c.context.authn_templates:
            c.add(
                step,
                path,
                f"There is no authentication context template “{value}”: create it under AuthnContext templates, or "
                "choose another.",
            )


def _alias_rule(c: _Checker, step: str, path: str, setting: Setting, alias: str) -> None:
    facts = c.context.keys.get(alias)
    if facts is None:
        c.add(step, path, f"The keystore has no entry “{alias}”: import or generate it, or choose another.")
        return
    if setting.type == "key_pair" and facts.kind != "key_pair":
        c.add(
            step,
            path,
            f"“{alias}” is a certificate without its private key; {setting.label.lower()} must be a key pair this site "
            "holds the private key of.",
        )
    elif setting.type == "certificate" and facts.kind == "trusted_ca":
        c.add(step, path, f"“{alias}” is a CA certificate; choose the partner's own certificate.")
    if facts.expired:
        c.add(step, path, f"The certificate of “{alias}” has expired: renew it (or import the partner's new one) first.")


# --- entities and directories ----------------------------------------------------------------------------------------


def _entity_rules(c: _Checker) -> None:
    if c.context.local is None:
        c.add("configure", "local_entity", "Choose the local entity.")
    if c.context.remote is None:
        c.add(
            "configure",
            "remote_entity",
            "Choose the remote entity (or import it from the partner's metadata): the partnership stays Incomplete "
            "until it has one.",
        )
    if not c.context.directories:
        c.add("configure", "directories", "Select at least one user directory.")


# federation.directories' rule for the embedded directory's specs (repeated: that module needs Django).
EMBEDDED_SEARCH_SPEC = re.compile(r"\(?\s*([A-Za-z_][\w.:-]*)\s*=\s*%s\s*\)?")


def _search_spec_problem(spec: str, directory_kind: str | None) -> str | None:
    if "%s" not in spec:
        return f"The search specification must contain %s where the value goes, such as uid=%s (not “{spec}”)."
    if directory_kind == "embedded":
        if not EMBEDDED_SEARCH_SPEC.fullmatch(spec):
            return "For the embedded directory write name=%s, such as username=%s or email=%s."
        return None
    from partnerships.federation_users import FilterSyntaxError, parse_filter  # imports python-ldap

    try:
        parse_filter(spec.replace("%s", "value"))
    except FilterSyntaxError as exc:
        return f"“{spec}” is not an LDAP filter with %s in it, such as uid=%s or (mail=%s): {exc.message}."
    return None


def _search_spec_rows(c: _Checker, step: str, table: str, *, each_directory: bool) -> None:
    """Rows of (directory, search specification): a selected directory, a %s, one row per directory."""
    rows = c.rows(step, table)
    if c.table(step, table) is None or (not rows and not each_directory):
        return
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        directory, spec = row.get("directory") or "", row.get("search_spec") or ""
        if directory and directory not in c.directories:
            c.add(
                step,
                f"{table}.{index}.directory",
                f"“{directory}” is not one of the partnership's selected directories; select it in the Configure "
                "partnership step or remove this row.",
            )
        elif directory in seen:
            c.add(
                step,
                f"{table}.{index}.directory",
                f"Directory “{directory}” already has a search specification in row {seen[directory] + 1}; one per directory.",
            )
        elif directory:
            seen[directory] = index
        if spec.strip():
            message = _search_spec_problem(spec.strip(), c.directory_kinds.get(directory))
            if message:
                c.add(step, f"{table}.{index}.search_spec", message)
    if each_directory:
        for directory in c.directories:
            if directory not in seen:
                c.add(step, table, f"Add a search specification for directory “{directory}”, such as uid=%s.")


# --- steps ---------------------------------------------------------------------------------------------------------------


def _federation_user_rules(c: _Checker) -> None:
    rows = c.rows("federation_users", "rules")
    if not rows:
        return
    from partnerships.federation_users import FederationUserRule  # imports python-ldap and the directory layer

    selected = [_Directory(name, kind == "embedded") for name, kind in c.context.directories]
    for index, row in enumerate(rows):
        try:
            rule = FederationUserRule(row["directory"], row["kind"], row["value"], row["exclude"])
        except ValueError as exc:
            c.add("federation_users", f"rules.{index}.kind", str(exc))
            continue
        if not row["value"].strip() or not row["directory"]:
            continue  # the required-field rule already says so
        for message in rule.validate(selected):
            field = "directory" if "selected directories" in message else "value"
            if "organizational units" in message:
                field = "kind"
            c.add("federation_users", f"rules.{index}.{field}", message)


def _expression_problem(text: str) -> str | None:
    try:
        compile_expression(text)
    except ExpressionSyntaxError as exc:
        text = str(exc)
        return f"This expression does not compile: {text}" + ("" if text.endswith(".") else ".")
    return None


def _assertion_rules(c: _Checker) -> None:
    if "assertion" not in c.values:
        return
    name_id_format = c.get("assertion", "name_id_format")
    if c.on("assertion", "allow_create") and name_id_format != PERSISTENT:
        c.add(
            "assertion",
            "allow_create",
            "Allow IdP to create a persistent identifier needs the Name ID format Persistent: choose it above, or untick this.",
        )
    remote = c.context.remote
    if remote and remote.name_id_formats and name_id_format and name_id_format not in remote.name_id_formats:
        if name_id_format != UNSPECIFIED:
            c.warn(
                "assertion",
                "name_id_format",
                f"The remote entity “{remote.name}” does not list this Name ID format among the formats it supports.",
            )
    plugin = c.get("assertion", "plugin_class")
    if plugin and not PLUGIN_CLASS_PATTERN.fullmatch(plugin):
        c.add(
            "assertion",
            "plugin_class",
            "Enter the plugin's dotted Python path, module and class, such as mycompany.federation.AddCostCentre.",
        )
    attribute_service = c.on("sso_slo", "attribute_service_enabled")
    seen: dict[tuple, int] = {}
    for index, row in enumerate(c.rows("assertion", "attributes")):
        where = f"attributes.{index}"
        name = (row.get("name") or "").strip()
        key = (name, row.get("name_format", ""), row.get("namespace", ""))
        if name and key in seen:
            c.add("assertion", f"{where}.name", f"“{name}” is already in row {seen[key] + 1}; each attribute once.")
        elif name:
            seen[key] = index
        value = row.get("value") or ""
        if row.get("value_type") == "expression" and value.strip():
            problem = _expression_problem(value)
            if problem:
                c.add("assertion", f"{where}.value", problem)
        elif "#{" in value:
            c.warn("assertion", f"{where}.value", "This looks like an expression: choose the type Expression to evaluate it.")
        if row.get("retrieval") in ("attribute_service", "both") and not attribute_service:
            c.warn(
                "assertion",
                f"{where}.retrieval",
                "The attribute service is off (SSO and SLO step), so this attribute is only sent in SSO assertions.",
            )


def _user_identification_rules(c: _Checker) -> None:
    if "user_identification" not in c.values:
        return
    _search_spec_rows(c, "user_identification", "search_specs", each_directory=True)
    remote = c.context.remote
    attribute = c.get("user_identification", "identity_attribute") if c.shown("user_identification", "identity_attribute") else ""
    if attribute and remote and remote.attributes and attribute not in remote.attributes:
        c.warn(
            "user_identification",
            "identity_attribute",
            f"“{attribute}” is not one of the attributes the remote entity “{remote.name}” declares; check the spelling "
            "(case matters).",
        )
    xpath = c.get("user_identification", "identity_xpath") if c.shown("user_identification", "identity_xpath") else ""
    if xpath.strip():
        from lxml import etree

        try:
            etree.XPath(xpath, namespaces={prefix: NSMAP[prefix] for prefix in ("saml", "saml1", "ds")})
        except etree.XPathSyntaxError as exc:
            c.add("user_identification", "identity_xpath", f"This is not an XPath 1.0 query: {exc}.")
    if c.on("user_identification", "allow_create"):
        formats = remote.name_id_formats if remote else ()
        if formats and PERSISTENT not in formats:
            c.add(
                "user_identification",
                "allow_create",
                f"AllowCreate needs the IdP to use the Persistent Name ID format, and the remote entity “{remote.name}” "
                "does not list it: add it to the entity, or untick this.",
            )
    if c.on("user_identification", "allow_create_query_override") and not c.on("user_identification", "allow_create"):
        c.add(
            "user_identification",
            "allow_create_query_override",
            "The query parameter can only override AllowCreate when “Allow IdP to create a new user identifier” is ticked.",
        )


def _endpoint_rule(c: _Checker, field: str, kind: str, short: str | None, what: str) -> None:
    """The remote entity needs an endpoint of ``kind`` with the binding ``short`` (any binding when None)."""
    remote = c.context.remote
    if remote is None:
        return
    binding = c.binding_uri(short) if short else None
    if c.endpoint_urls(remote, kind, binding):
        return
    with_binding = f" with the {_BINDING_LABELS[short]} binding" if short else ""
    name = _ENDPOINT_NAMES[kind]
    article = "an" if name[0] in "aeiou" else "a"
    c.add(
        "sso_slo",
        field,
        f"{what} needs {article} {name}{with_binding} on the remote entity “{remote.name}”: add one to the entity (or "
        "import its metadata).",
    )


def _binding_endpoint_rules(c: _Checker) -> None:
    """Every enabled binding needs an endpoint of that binding on the remote entity (ch10-14 §2 and §9, ch15-20 A6)."""
    info = c.info
    if "sso_slo" not in c.values:
        return
    sso_bindings = c.chosen("sso_slo", "sso_bindings")
    if info.protocol in ("saml2", "saml11"):
        if info.asserting:
            for short in sso_bindings:
                _endpoint_rule(c, "sso_bindings", ACS, short, f"{_BINDING_LABELS[short]} SSO")
        else:
            if "artifact" in sso_bindings:
                _endpoint_rule(c, "sso_bindings", ARTIFACT_RESOLUTION, "soap", "HTTP-Artifact SSO")
            for short in c.chosen("sso_slo", "authn_request_bindings"):
                _endpoint_rule(c, "authn_request_bindings", SSO, short, f"Sending AuthnRequests by {_BINDING_LABELS[short]}")
    if c.on("sso_slo", "ecp_enabled"):
        if info.asserting:
            _endpoint_rule(c, "ecp_enabled", ACS, "paos", "ECP")
        else:
            _endpoint_rule(c, "ecp_enabled", SSO, "soap", "ECP")
    if c.on("sso_slo", "slo_enabled"):
        for short in c.chosen("sso_slo", "slo_bindings"):
            _endpoint_rule(c, "slo_bindings", SLO, short, f"{_BINDING_LABELS[short]} single logout")
    if c.on("sso_slo", "mni_enabled"):
        _endpoint_rule(c, "mni_enabled", MANAGE_NAME_ID, "soap", "Manage Name ID")
    if c.on("sso_slo", "attribute_requester_enabled"):
        _endpoint_rule(c, "attribute_requester_enabled", ATTRIBUTE_SERVICE, "soap", "The attribute requester")
    if info.protocol == "wsfed" and c.on("sso_slo", "signout_enabled") and not c.get("sso_slo", "signout_url"):
        # The partner's service URL is required on every remote WS-Fed entity (entities.models), so only the optional
        # sign-out URL is checked here; EntityFacts lists it as an "slo" endpoint (any binding).
        remote = c.context.remote
        if remote and not c.endpoint_urls(remote, SLO):
            c.add(
                "sso_slo",
                "signout_url",
                f"Sign-out needs the partner's sign-out URL: enter it here or on the remote entity “{remote.name}”.",
            )


def _sso_rules(c: _Checker) -> None:
    if "sso_slo" not in c.values:
        return
    info = c.info
    if c.shown("sso_slo", "delegated_type") and c.get("sso_slo", "delegated_type") == "query_string":
        c.warn(
            "sso_slo",
            "delegated_type",
            "The query string carries the login ID in clear text with a SHA-1 check: use it for tests and proofs of "
            "concept only, never in production.",
        )
    # The session store (ch01-08 F3.1, ch15-20 A1).
    if not c.context.session_store_enabled:
        needs = []
        if c.on("sso_slo", "slo_enabled"):
            needs.append(("slo_enabled", "Single logout"))
        if c.on("sso_slo", "signout_enabled"):
            needs.append(("signout_enabled", "Sign-out"))
        if info.asserting and "artifact" in c.chosen("sso_slo", "sso_bindings"):
            needs.append(("sso_bindings", "HTTP-Artifact SSO (the assertion waits there until the partner fetches it)"))
        for field, what in needs:
            c.add(
                "sso_slo",
                field,
                f"{what} needs the session store, which is off on this site: ask an operator to turn it on, or turn this off.",
            )
    _backchannel_rules(c)
    if c.on("sso_slo", "mni_enabled") and not c.get("sso_slo", "mni_delete_name_id") and not c.get("sso_slo", "mni_notification"):
        c.add(
            "sso_slo",
            "mni_delete_name_id",
            "Choose Delete Name ID, Enable notification or both: with neither, Manage Name ID does nothing.",
        )
    if c.on("sso_slo", "attribute_service_enabled"):
        if not c.rows("sso_slo", "attribute_search_specs"):
            c.add(
                "sso_slo",
                "attribute_search_specs",
                "Add at least one user lookup row, such as uid=%s, so the attribute service can find the user of a query.",
            )
        _search_spec_rows(c, "sso_slo", "attribute_search_specs", each_directory=False)
    if c.on("sso_slo", "idp_discovery_enabled"):
        _idp_discovery_rule(c)
    _status_redirect_rows(c, "sso_slo")


def _backchannel_rules(c: _Checker) -> None:
    for prefix in ("backchannel_in", "backchannel_out"):
        field = f"{prefix}_auth"
        if not c.shown("sso_slo", field):
            continue
        method = c.get("sso_slo", field)
        if method == "none":
            c.warn(
                "sso_slo",
                field,
                "No back-channel authentication: anyone who can reach the SOAP endpoints can use them. Use it for tests, "
                "or behind a proxy that checks client certificates.",
            )
        elif method == "client_cert":
            for url in _https_candidates(c):
                if urlsplit(url).scheme.lower() != "https":
                    c.add(
                        "sso_slo",
                        field,
                        f"A client-certificate back channel needs https:// for every URL of the partnership, and {url} "
                        "is not https.",
                    )
                    break


def _https_candidates(c: _Checker) -> list[str]:
    urls = []
    if c.base_url():
        urls.append(c.base_url())
    if c.context.remote:
        urls.extend(url for _kind, _binding, url in c.context.remote.endpoints)
    return urls


def _idp_discovery_rule(c: _Checker) -> None:
    url = c.get("sso_slo", "idp_discovery_service_url") or ""
    domain = (c.get("sso_slo", "idp_discovery_common_domain") or "").strip().lower()
    if domain and not re.fullmatch(r"\.?[a-z0-9-]+(\.[a-z0-9-]+)+", domain):
        c.add("sso_slo", "idp_discovery_common_domain", "Enter a domain name such as .example.org.")
        return
    host = (urlsplit(url).hostname or "").lower() if url and not url_problem(url) else ""
    bare = domain.lstrip(".")
    if host and bare and host != bare and not host.endswith("." + bare):
        c.add(
            "sso_slo",
            "idp_discovery_service_url",
            f"The discovery service's host {host} is not in the common domain {domain}; the cookie would not be readable there.",
        )


def _status_redirect_rows(c: _Checker, step: str) -> None:
    table = c.table(step, "status_redirects")
    if table is None:
        return
    column = next(column for column in columns_for(c.info, table) if column.key == "condition")
    seen: dict[str, int] = {}
    for index, row in enumerate(c.rows(step, "status_redirects")):
        condition = row.get("condition")
        if condition in seen:
            c.add(
                step,
                f"status_redirects.{index}.condition",
                f"{column.choice_label(condition)} already has a redirect in row {seen[condition] + 1}.",
            )
        elif condition:
            seen[condition] = index


def _authn_context_rules(c: _Checker) -> None:
    if not c.on("authn_context", "enabled"):
        return
    if not c.get("authn_context", "include_in_request") and not c.get("authn_context", "validate_response"):
        c.add(
            "authn_context",
            "include_in_request",
            "Choose what to do with the classes: include them in AuthnRequests, validate the returned context, or both.",
        )
    if c.shown("authn_context", "requested_classes"):
        for number, line in enumerate((c.get("authn_context", "requested_classes") or "").splitlines(), 1):
            uri = line.strip()
            if uri and (any(char.isspace() for char in uri) or not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:\S", uri)):
                c.add(
                    "authn_context",
                    "requested_classes",
                    f"Line {number} is not a class URI: use URIs such as urn:oasis:names:tc:SAML:2.0:ac:classes:Password.",
                )


def _signature_rules(c: _Checker) -> None:
    info = c.info
    if "signature" not in c.values:
        return
    disabled = bool(c.get("signature", "disable_signature_processing"))
    post = "post" in c.chosen("sso_slo", "sso_bindings")
    if disabled:
        c.warn(
            "signature",
            "disable_signature_processing",
            "Signature processing is disabled: nothing is signed or verified, so anyone can forge an assertion. Keep it "
            "for tests; never activate such a partnership in production.",
        )
    # SAML POST needs a signed assertion (ch15-20 C6), unless signature processing is disabled (then only a warning).
    if post:
        if c.shown("signature", "sign_post") and c.get("signature", "sign_post") == "response":
            message = "With HTTP-POST the assertion must be signed: choose Assertion, or Assertion and response."
            if disabled:
                c.warn("signature", "sign_post", message + " (Ignored while signature processing is disabled.)")
            else:
                c.add("signature", "sign_post", message)
        if c.shown("signature", "require_signed_assertions") and not (
            c.get("signature", "require_signed_assertions") or c.get("signature", "require_signed_responses")
        ):
            message = (
                "With HTTP-POST the assertion must be signed: tick Require signed assertions (or Require signed "
                "responses, whose signature covers the assertion)."
            )
            if disabled:
                c.warn("signature", "require_signed_assertions", message + " (Ignored while signature processing is disabled.)")
            else:
                c.add("signature", "require_signed_assertions", message)
    if not disabled:
        _needed_keys(c)
    _algorithm_rules(c)
    if info.protocol == "saml2" and info.asserting:
        _encryption_rules(c)
    if info.protocol == "saml2" and not info.asserting:
        wants = c.get("signature", "require_encrypted_assertion") or c.get("signature", "require_encrypted_name_id")
        if wants and not c.get("signature", "decryption_key"):
            c.add("signature", "decryption_key", "Choose the decryption key pair: encryption is required from the IdP.")
        if c.get("signature", "accept_legacy_encryption"):
            c.warn(
                "signature",
                "accept_legacy_encryption",
                "RSA v1.5 key transport and 3DES have practical attacks; accept them only from an IdP that can do nothing else.",
            )


def _needed_keys(c: _Checker) -> None:
    """Keys that are optional on their own but needed by what else is ticked."""
    slo = c.on("sso_slo", "slo_enabled")
    if c.info.protocol == "saml2" and not c.info.asserting:
        if (c.get("signature", "sign_authn_requests") or slo) and not c.get("signature", "signing_key"):
            why = "AuthnRequests are signed" if c.get("signature", "sign_authn_requests") else "single logout messages are signed"
            c.add("signature", "signing_key", f"Choose the signing key pair: {why}.")
    if c.info.protocol == "saml2" and c.info.asserting and not c.get("signature", "verification_certificate"):
        reasons = []
        if c.get("signature", "require_signed_authn_requests"):
            reasons.append("signed AuthnRequests are required")
        if slo:
            reasons.append("single logout messages are verified")
        if c.on("sso_slo", "attribute_require_signed_queries"):
            reasons.append("signed attribute queries are required")
        if reasons:
            c.add("signature", "verification_certificate", f"Choose the SP's verification certificate: {' and '.join(reasons)}.")


def _algorithm_rules(c: _Checker) -> None:
    algorithm = c.get("signature", "signature_algorithm") if c.shown("signature", "signature_algorithm") else ""
    digest = c.get("signature", "digest_algorithm") if c.shown("signature", "digest_algorithm") else ""
    if algorithm.endswith("sha1") or digest == "sha1":
        c.warn(
            "signature",
            "signature_algorithm" if algorithm.endswith("sha1") else "digest_algorithm",
            "SHA-1 is broken: choose it only for a partner that cannot verify SHA-256.",
        )
    key = c.context.keys.get(c.get("signature", "signing_key") or "")
    if algorithm and key is not None and key.kind == "key_pair" and c.shown("signature", "signing_key"):
        family = "EC" if algorithm.startswith("ecdsa") else "RSA"
        if key.algorithm.upper() != family:
            wanted = "an ECDSA" if key.algorithm.upper() == "EC" else "an RSA"
            c.add(
                "signature",
                "signature_algorithm",
                f"The signing key “{key.alias}” is an {key.algorithm} key: choose {wanted} signature algorithm.",
            )


def _encryption_rules(c: _Checker) -> None:
    encrypted_rows = [row for row in c.rows("assertion", "attributes") if row.get("encrypt")]
    encrypting = c.get("signature", "encrypt_assertion") or c.get("signature", "encrypt_name_id") or encrypted_rows
    alias = c.get("signature", "encryption_certificate")
    block = c.get("signature", "encryption_block_algorithm")
    transport = c.get("signature", "encryption_key_transport")
    if not encrypting:
        return
    if not alias:
        what = "encrypted attributes" if encrypted_rows and not c.get("signature", "encrypt_assertion") else "encryption"
        c.add("signature", "encryption_certificate", f"Choose the SP's encryption certificate: {what} needs it.")
        return
    if block == "tripledes-cbc" or transport == "rsa-1_5":
        c.warn(
            "signature",
            "encryption_block_algorithm" if block == "tripledes-cbc" else "encryption_key_transport",
            "3DES and RSA v1.5 are legacy algorithms with known attacks: choose them only for an SP that can do nothing else.",
        )
    facts = c.context.keys.get(alias)
    if facts is None:
        return  # the alias rule says so
    if facts.algorithm.upper() != "RSA":
        c.add(
            "signature",
            "encryption_certificate",
            f"Encryption needs an RSA certificate to transport the key, and “{alias}” holds an {facts.algorithm} key.",
        )
    elif transport in ch.RSA_OAEP_TRANSPORTS and facts.bits < MIN_RSA_KEY_BITS:
        c.add(
            "signature",
            "encryption_certificate",
            f"RSA-OAEP needs an RSA key of at least {MIN_RSA_KEY_BITS} bits, and “{alias}” has {facts.bits}.",
        )


def _application_rules(c: _Checker) -> None:
    if "application" not in c.values:
        return
    target = c.get("application", "target") or ""
    overrides = c.on("application", "relay_state_overrides_target")
    allowed = c.rows("application", "allowed_targets")
    if not target:
        if overrides:
            if not allowed:
                c.add(
                    "application",
                    "allowed_targets",
                    "With an empty target, list at least one allowed target URL: a RelayState is only followed to an "
                    "allowed URL.",
                )
        elif c.shown("application", "relay_state_overrides_target"):
            c.add("application", "target", "Enter the target URL, or tick Relay state overrides target.")
        else:
            c.add("application", "target", "Enter the target URL.")
    headers = _header_delivery(c)
    if c.shown("application", "header_prefix"):
        prefix = c.get("application", "header_prefix") or ""
        if prefix and not HEADER_NAME_PATTERN.fullmatch(prefix):
            c.add("application", "header_prefix", "A header prefix may use letters, digits and “-” only, such as Fed-.")
    if c.shown("application", "cookie_name"):
        name = c.get("application", "cookie_name") or ""
        if name and not COOKIE_NAME_PATTERN.fullmatch(name):
            c.add("application", "cookie_name", "A cookie name may use letters, digits, “-” and “_” only, such as FEDATTR.")
    _mapping_rules(c, headers)
    if c.get("application", "redirect_mode") == "persist_attributes" and not c.context.session_store_enabled:
        c.add(
            "application",
            "redirect_mode",
            "Persist attributes needs the session store, which is off on this site: ask an operator to turn it on, or "
            "choose another redirect mode.",
        )
    _provisioning_cookie_domain(c)
    idle, maximum = c.get("application", "session_idle_minutes"), c.get("application", "session_max_minutes")
    if isinstance(idle, int) and isinstance(maximum, int) and idle > maximum:
        c.add(
            "application",
            "session_idle_minutes",
            f"The idle timeout ({idle} min) cannot be longer than the maximum lifetime ({maximum} min).",
        )
    _status_redirect_rows(c, "application")


def _header_delivery(c: _Checker) -> bool:
    mode = c.get("application", "redirect_mode")
    provisioning = c.get("application", "provisioning_type") == "remote" and c.shown("application", "provisioning_delivery")
    return mode == "http_headers" or (provisioning and c.get("application", "provisioning_delivery") == "http_headers")


def _mapping_rules(c: _Checker, headers: bool) -> None:
    mapping = c.on("application", "attribute_mapping_enabled")
    rows = c.rows("application", "attribute_mappings") if mapping else []
    exact: dict[str, int] = {}
    folded: dict[str, int] = {}
    for index, row in enumerate(rows):
        where = f"attribute_mappings.{index}"
        name = (row.get("name") or "").strip()
        if name in exact:
            c.add(
                "application", f"{where}.name", f"“{name}” is already in row {exact[name] + 1}; each application attribute once."
            )
        elif name:
            exact[name] = index
            if headers:
                if not HEADER_NAME_PATTERN.fullmatch(name):
                    c.add(
                        "application",
                        f"{where}.name",
                        f"“{name}” cannot be an HTTP header name: use letters, digits, “-” and “_” only (no spaces).",
                    )
                first = folded.get(name.casefold())
                if first is not None:
                    c.add(
                        "application",
                        f"{where}.name",
                        f"“{name}” and the attribute of row {first + 1} differ only by letter case; HTTP header names "
                        "ignore case, so both cannot be passed as headers.",
                    )
                else:
                    folded[name.casefold()] = index
        expression = row.get("expression") or ""
        if expression.strip():
            problem = _expression_problem(expression)
            if problem:
                c.add("application", f"{where}.expression", problem)
    if mapping and not rows:
        c.warn("application", "attribute_mappings", "With mapping on and no rows, the application receives no attributes.")
    remote = c.context.remote
    if headers and not mapping and remote:
        seen: dict[str, str] = {}
        for name in remote.attributes:
            other = seen.setdefault(name.casefold(), name)
            if other != name:
                c.warn(
                    "application",
                    "redirect_mode",
                    f"The remote entity's attributes “{other}” and “{name}” differ only by letter case; HTTP header names "
                    "ignore case, so only one of them can reach the application. Map them to distinct names.",
                )


def _provisioning_cookie_domain(c: _Checker) -> None:
    if not (c.shown("application", "provisioning_url") and c.shown("application", "provisioning_delivery")):
        return
    if c.get("application", "provisioning_delivery") != "open_format_cookie":
        return
    url = c.get("application", "provisioning_url") or ""
    if not url or url_problem(url):
        return
    host = (urlsplit(url).hostname or "").lower()
    domain = (c.get("application", "cookie_domain") or "").strip().lower().lstrip(".")
    if domain:
        if host != domain and not host.endswith("." + domain):
            c.add(
                "application",
                "provisioning_url",
                f"With open-format cookie delivery the provisioning application must be in the cookie domain {domain}, "
                f"and {host} is not.",
            )
        return
    base_host = (urlsplit(c.base_url()).hostname or "").lower() if c.base_url() else ""
    if base_host and host != base_host:
        c.add(
            "application",
            "cookie_domain",
            f"The provisioning application ({host}) is on another host than this site ({base_host}): set a cookie domain "
            "both share, such as .example.org, or deliver by HTTP headers.",
        )


_RULES = (
    _field_rules,
    _entity_rules,
    _federation_user_rules,
    _assertion_rules,
    _user_identification_rules,
    _binding_endpoint_rules,
    _sso_rules,
    _authn_context_rules,
    _signature_rules,
    _application_rules,
)


# What the rules above check, step by step, in words: the generated reference (docs/partnership-settings.md) lists it
# under each step. Every rule here has a test in tests/test_partnership_catalog_rules.py.
RULES_DOC: dict[str, tuple[str, ...]] = {
    "configure": (
        "The partnership name (a model column) uses letters, digits, “_”, “-” and “.” only, at most 100 characters "
        "(`validate_name`).",
        "The local and remote entities are chosen (a remote entity put off leaves the partnership Incomplete) and at "
        "least one directory is selected.",
        "Every number is a whole number within its range: skew and validity durations are 0 or more.",
        "Every URL is absolute http(s), without spaces, credentials or #fragment.",
    ),
    "federation_users": (
        "Each row names a selected directory and a value that fits its user class: a DN for User, Group and OU; an "
        "LDAP filter for the filter classes; a username or group name for the embedded directory, which has no OUs "
        "(partnerships.federation_users).",
    ),
    "assertion": (
        "Allow IdP to create a persistent identifier needs the Persistent Name ID format.",
        "A Name ID format the remote entity does not list is a warning.",
        "Expressions must compile; the message gives the position of the error.",
        "An attribute (same name and format or namespace) appears once.",
        "The plugin is a dotted Python path.",
    ),
    "user_identification": (
        "Every selected directory has exactly one search specification, and it contains %s (LDAP: a valid filter; "
        "embedded: name=%s).",
        "The XPath query compiles; an attribute the remote entity does not declare is a warning.",
        "AllowCreate needs the remote IdP to list the Persistent format; the query-parameter override needs AllowCreate.",
    ),
    "sso_slo": (
        "Every enabled binding has an endpoint of that binding on the remote entity: ACS (POST, Artifact, PAOS for "
        "ECP) on a remote SP or consumer; SSO (Redirect/POST for AuthnRequests, SOAP for ECP) and artifact resolution "
        "(SOAP) on a remote IdP or producer; SLO for each SLO binding; Manage Name ID (SOAP); attribute service (SOAP) "
        "for the attribute requester. WS-Federation: the partner's sign-out URL when sign-out is on.",
        "Single logout, WS-Fed sign-out, HTTP-Artifact at the asserting party need the session store.",
        "A client-certificate back channel needs https:// for the base URL and every remote endpoint; no "
        "authentication is a warning.",
        "Manage Name ID needs Delete Name ID, notification or both.",
        "The attribute service needs at least one user lookup row.",
        "The IdP discovery service's host is in the common domain.",
        "Each status redirect condition appears once. The query-string delegated authentication is a warning.",
        "An authentication context template must exist.",
    ),
    "authn_context": (
        "The template must exist; the requested classes are URIs; the classes are used for the request, the validation or both.",
    ),
    "signature": (
        "With HTTP-POST the assertion is signed (Sign POST: not Response only; SP: require signed assertions or "
        "responses); with signature processing disabled this is a warning, and disabling is itself a warning.",
        "Key aliases exist in the keystore, have the right kind (a key pair where a private key is needed; not a CA "
        "certificate where the partner's certificate is needed) and have not expired.",
        "The signature algorithm suits the signing key (RSA or EC); SHA-1 is a warning.",
        "Signing key (SP: signed AuthnRequests or SLO) and verification certificate (IdP: signed requests, SLO, signed "
        "attribute queries) are required when what needs them is on.",
        "Encryption (assertion, Name ID or any encrypted attribute) needs an RSA encryption certificate; RSA-OAEP "
        f"needs at least {MIN_RSA_KEY_BITS} bits. 3DES and RSA v1.5 are warnings. Required encryption needs a decryption key.",
    ),
    "application": (
        "The target is required unless the relay state overrides it; then at least one allowed target URL is needed.",
        "Application attribute names appear once and their expressions compile; with HTTP headers, names are header "
        "tokens and names that differ only by letter case are refused.",
        "The header prefix and cookie name are HTTP tokens; persist attributes needs the session store; an "
        "open-format cookie to a provisioning application needs a shared cookie domain.",
        "The idle timeout is not longer than the maximum lifetime; each status redirect condition appears once.",
    ),
}
