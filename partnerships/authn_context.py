"""Authentication context templates and the decisions the runtime takes with them (SAML 2.0 only).

A *template* is an ordered list of AuthnContext class URIs, strongest at the top, weakest at the bottom
(reference ch15-20 part B3). Rows can be *grouped*: a row marked ``grouped`` shares the strength of the row
above it (the reference's "indent under the URI above"). Strengths are numbered from 1 (the bottom group) to
the number of groups (the top group), as in B4.

Optionally the template carries *protection levels* (B3.6, B4): every row has a maximum level; the minimum is
computed from the maximum of the row below plus one (1 for the bottom row), and the top row always reaches
1000. So the rows cover 1–1000 with no gaps and no overlaps exactly when the maxima are whole numbers from 1
to 1000 that strictly fall down the list, which is what `validate_entries` checks (and says so at the row).
Grouping does not change the levels: grouped URIs keep their own ranges but share one strength.

Decisions (B5–B7):

* `decide_idp_context` — the IdP: predefined class or auto-detection from the template, the "Ignore
  RequestedAuthnContext" switch, and the SP's `RequestedAuthnContext`; the result is the class to put in the
  assertion or a failure status (``NoAuthnContext``, or ``RequestUnsupported`` when a predefined-class IdP is
  asked for a context it does not process).
* `build_requested_context` / `validate_assertion_context` — the SP: the `RequestedAuthnContext` an
  AuthnRequest carries, and the check of the `AuthnContextClassRef` the assertion brings back.

Comparison semantics (SAML core 3.3.2.2.1, with strength taken only from the template order, B2 and B6):
``exact`` — the same URI; ``minimum`` — at least as strong; ``maximum`` — no stronger; ``better`` — strictly
stronger. A URI the template does not list has no strength, so it can only be matched by ``exact``. Several
requested URIs are tried one at a time, in order; the first that is satisfied wins (B6).

This module imports nothing from Django: the console, the runtime and the CLI share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from federation.saml.constants import (
    AC_PASSWORD,
    AC_PASSWORD_PROTECTED_TRANSPORT,
    AC_TLS_CLIENT,
    AC_UNSPECIFIED,
    AC_X509,
    NS_SAML,
    NS_SAMLP,
    STATUS_NO_AUTHN_CONTEXT,
    STATUS_REQUEST_UNSUPPORTED,
    STATUS_RESPONDER,
    STATUS_SUCCESS,
)

# --- Class URIs -------------------------------------------------------------------------------

AC_CLASSES_PREFIX = "urn:oasis:names:tc:SAML:2.0:ac:classes:"
AC_INTERNET_PROTOCOL = AC_CLASSES_PREFIX + "InternetProtocol"
AC_INTERNET_PROTOCOL_PASSWORD = AC_CLASSES_PREFIX + "InternetProtocolPassword"
AC_KERBEROS = AC_CLASSES_PREFIX + "Kerberos"
AC_MOBILE_ONE_FACTOR_UNREGISTERED = AC_CLASSES_PREFIX + "MobileOneFactorUnregistered"
AC_MOBILE_TWO_FACTOR_UNREGISTERED = AC_CLASSES_PREFIX + "MobileTwoFactorUnregistered"
AC_MOBILE_ONE_FACTOR_CONTRACT = AC_CLASSES_PREFIX + "MobileOneFactorContract"
AC_MOBILE_TWO_FACTOR_CONTRACT = AC_CLASSES_PREFIX + "MobileTwoFactorContract"
AC_PREVIOUS_SESSION = AC_CLASSES_PREFIX + "PreviousSession"
AC_PGP = AC_CLASSES_PREFIX + "PGP"
AC_SPKI = AC_CLASSES_PREFIX + "SPKI"
AC_XMLDSIG = AC_CLASSES_PREFIX + "XMLDSig"
AC_SMARTCARD = AC_CLASSES_PREFIX + "Smartcard"
AC_SMARTCARD_PKI = AC_CLASSES_PREFIX + "SmartcardPKI"
AC_SOFTWARE_PKI = AC_CLASSES_PREFIX + "SoftwarePKI"
AC_TELEPHONY = AC_CLASSES_PREFIX + "Telephony"
AC_NOMAD_TELEPHONY = AC_CLASSES_PREFIX + "NomadTelephony"
AC_PERSONAL_TELEPHONY = AC_CLASSES_PREFIX + "PersonalTelephony"
AC_AUTHENTICATED_TELEPHONY = AC_CLASSES_PREFIX + "AuthenticatedTelephony"
AC_SECURE_REMOTE_PASSWORD = AC_CLASSES_PREFIX + "SecureRemotePassword"
AC_TIME_SYNC_TOKEN = AC_CLASSES_PREFIX + "TimeSyncToken"

# "Load default URIs": the SAML 2.0 authentication context classes (saml-authn-context-2.0-os §3.4), in the
# order the reference lists them (B3). This is an alphabet of classes, not a strength order.
DEFAULT_CLASS_URIS: tuple[str, ...] = (
    AC_INTERNET_PROTOCOL,
    AC_INTERNET_PROTOCOL_PASSWORD,
    AC_KERBEROS,
    AC_MOBILE_ONE_FACTOR_UNREGISTERED,
    AC_MOBILE_TWO_FACTOR_UNREGISTERED,
    AC_MOBILE_ONE_FACTOR_CONTRACT,
    AC_MOBILE_TWO_FACTOR_CONTRACT,
    AC_PASSWORD,
    AC_PASSWORD_PROTECTED_TRANSPORT,
    AC_PREVIOUS_SESSION,
    AC_X509,
    AC_PGP,
    AC_SPKI,
    AC_XMLDSIG,
    AC_SMARTCARD,
    AC_SMARTCARD_PKI,
    AC_SOFTWARE_PKI,
    AC_TELEPHONY,
    AC_NOMAD_TELEPHONY,
    AC_PERSONAL_TELEPHONY,
    AC_AUTHENTICATED_TELEPHONY,
    AC_SECURE_REMOTE_PASSWORD,
    AC_TLS_CLIENT,
    AC_TIME_SYNC_TOKEN,
    AC_UNSPECIFIED,
)

MIN_LEVEL = 1
MAX_LEVEL = 1000
MAX_URI_LENGTH = 1024
MAX_ENTRIES = 200


def short_name(uri: str) -> str:
    """``…:ac:classes:X509`` → ``X509``; any other URI unchanged (for tables and messages)."""
    return uri[len(AC_CLASSES_PREFIX) :] if uri.startswith(AC_CLASSES_PREFIX) else uri


# --- Templates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One validation message; ``row`` is 0-based (None: the template as a whole), ``field`` names the column."""

    message: str
    row: int | None = None
    field: str | None = None


class TemplateError(ValueError):
    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(p.message if p.row is None else f"row {p.row + 1}: {p.message}" for p in self.problems))


@dataclass(frozen=True)
class Entry:
    """A validated row as stored: the URI, whether it shares the strength of the row above, its maximum level."""

    uri: str
    grouped: bool = False
    max_level: int | None = None

    def as_data(self) -> dict:
        return {"uri": self.uri, "grouped": self.grouped, "max_level": self.max_level}


@dataclass(frozen=True)
class Row:
    """A row of a built template, with what the console shows and the runtime uses."""

    position: int  # 0-based, from the top (strongest)
    uri: str
    grouped: bool
    strength: int  # 1 = the weakest group
    min_level: int | None
    max_level: int | None

    @property
    def short_name(self) -> str:
        return short_name(self.uri)

    @property
    def range_label(self) -> str:
        if self.min_level is None:
            return ""
        return f"{self.min_level}–{self.max_level}"


def _parse_level(value) -> int | None | str:
    """An int, None for blank, or the error message."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return "Enter a whole number from 1 to 1000."
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not text.lstrip("-").isdigit():
            return f"“{text}” is not a whole number; enter a protection level from 1 to 1000."
        number = int(text)
    if not MIN_LEVEL <= number <= MAX_LEVEL:
        return f"{number} is out of range: protection levels run from {MIN_LEVEL} to {MAX_LEVEL}."
    return number


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "on", "yes")
    return bool(value)


def _uri_problem(uri: str) -> str | None:
    if not uri:
        return "Enter a class URI, or remove this row."
    if len(uri) > MAX_URI_LENGTH:
        return f"This URI is {len(uri)} characters long; at most {MAX_URI_LENGTH} are allowed."
    if any(ch.isspace() for ch in uri):
        return "A class URI cannot contain spaces."
    scheme, sep, rest = uri.partition(":")
    if not sep or not rest or not scheme or not scheme[0].isalpha() or not all(c.isalnum() or c in "+-." for c in scheme):
        return "This is not a URI; class URIs look like urn:oasis:names:tc:SAML:2.0:ac:classes:Password."
    return None


def validate_entries(rows: Iterable[Mapping], protection_levels: bool) -> tuple[list[Entry], list[Problem]]:
    """Check raw rows (``uri``, ``grouped``, ``max_level`` as typed or stored) and return them normalised.

    Rows come top (strongest) to bottom (weakest). With protection levels on, the top row's maximum is 1000
    (blank means 1000) and every other row needs a maximum strictly below the one above it; with them off,
    levels are dropped.
    """
    rows = list(rows)
    problems: list[Problem] = []
    entries: list[Entry] = []
    if not rows:
        problems.append(Problem("Add at least one class URI (type one and click Add URI, or Load default URIs)."))
    if len(rows) > MAX_ENTRIES:
        problems.append(Problem(f"A template holds at most {MAX_ENTRIES} URIs; this one has {len(rows)}."))
    first_seen: dict[str, int] = {}
    level_above: int | None = None  # the row above's maximum when it was valid
    for index, raw in enumerate(rows):
        uri = str(raw.get("uri") or "").strip()
        grouped = _truthy(raw.get("grouped"))
        uri_error = _uri_problem(uri)
        if uri_error:
            problems.append(Problem(uri_error, index, "uri"))
        elif uri in first_seen:
            problems.append(
                Problem(f"{short_name(uri)} is already in row {first_seen[uri] + 1}; each URI may appear once.", index, "uri")
            )
        else:
            first_seen[uri] = index
        if index == 0 and grouped:
            problems.append(
                Problem("The first URI cannot share the strength of a URI above it: there is none.", index, "grouped")
            )
            grouped = False
        level = None
        if protection_levels:
            parsed = _parse_level(raw.get("max_level"))
            if isinstance(parsed, str):
                problems.append(Problem(parsed, index, "max_level"))
            elif index == 0:
                if parsed is not None and parsed != MAX_LEVEL:
                    problems.append(
                        Problem(
                            f"The strongest URI's range must reach {MAX_LEVEL} (no gap at the top); "
                            f"leave its maximum blank or enter {MAX_LEVEL}.",
                            index,
                            "max_level",
                        )
                    )
                else:
                    level = MAX_LEVEL
            elif parsed is None:
                problems.append(Problem("Enter this URI's maximum protection level (1–1000).", index, "max_level"))
            else:
                if level_above is not None and parsed >= level_above:
                    problems.append(
                        Problem(
                            f"Must be lower than {level_above}, the maximum of the URI above: levels fall strictly "
                            "from the strongest URI to the weakest, otherwise the ranges would overlap.",
                            index,
                            "max_level",
                        )
                    )
                level = parsed
            level_above = level
        entries.append(Entry(uri=uri, grouped=grouped, max_level=level))
    return entries, problems


@dataclass(frozen=True)
class Template:
    """A validated template: rows top (strongest) to bottom, with strengths and level ranges computed."""

    rows: tuple[Row, ...]
    protection_levels: bool = False

    @property
    def uris(self) -> tuple[str, ...]:
        return tuple(row.uri for row in self.rows)

    @property
    def group_count(self) -> int:
        return self.rows[0].strength if self.rows else 0

    def row_for(self, uri: str) -> Row | None:
        for row in self.rows:
            if row.uri == uri:
                return row
        return None

    def strength_of(self, uri: str | None) -> int | None:
        row = self.row_for(uri) if uri else None
        return row.strength if row else None

    def class_for_level(self, level: int) -> str | None:
        """The URI whose protection-level range holds ``level`` (None without levels or outside 1–1000)."""
        if not self.protection_levels or isinstance(level, bool) or not isinstance(level, int):
            return None
        for row in self.rows:
            if row.min_level <= level <= row.max_level:
                return row.uri
        return None

    def groups(self) -> list[tuple[int, list[Row]]]:
        """[(strength, rows)] from the strongest group down."""
        result: list[tuple[int, list[Row]]] = []
        for row in self.rows:
            if result and result[-1][0] == row.strength:
                result[-1][1].append(row)
            else:
                result.append((row.strength, [row]))
        return result

    def as_data(self) -> list[dict]:
        return [{"uri": r.uri, "grouped": r.grouped, "max_level": r.max_level} for r in self.rows]


def build_template(rows: Iterable[Mapping | Entry], protection_levels: bool = False) -> Template:
    """Validate ``rows`` and compute strengths and ranges; raises `TemplateError` with every problem."""
    raw = [r.as_data() if isinstance(r, Entry) else r for r in rows]
    entries, problems = validate_entries(raw, protection_levels)
    if problems:
        raise TemplateError(problems)
    group_count = sum(1 for e in entries if not e.grouped)
    built = []
    strength = group_count + 1
    for index, entry in enumerate(entries):
        if not entry.grouped:
            strength -= 1
        if protection_levels:
            below = entries[index + 1].max_level if index + 1 < len(entries) else 0
            min_level, max_level = below + 1, entry.max_level
        else:
            min_level = max_level = None
        built.append(Row(index, entry.uri, entry.grouped, strength, min_level, max_level))
    return Template(tuple(built), protection_levels)


def default_rows() -> list[dict]:
    return [{"uri": uri, "grouped": False, "max_level": None} for uri in DEFAULT_CLASS_URIS]


# --- Comparison -------------------------------------------------------------------------------


class Comparison(StrEnum):
    EXACT = "exact"
    MINIMUM = "minimum"
    MAXIMUM = "maximum"
    BETTER = "better"


COMPARISON_HELP = {
    Comparison.EXACT: "The IdP must authenticate with one of the requested classes exactly.",
    Comparison.MINIMUM: "The IdP's class must be at least as strong as one of the requested classes.",
    Comparison.MAXIMUM: "The IdP's class must be no stronger than one of the requested classes.",
    Comparison.BETTER: "The IdP's class must be stronger than one of the requested classes.",
}


def satisfies(template: Template, actual: str, requested: str, comparison: Comparison | str) -> bool:
    """Whether the class ``actual`` satisfies ``requested`` under ``comparison``, by the template's strengths."""
    comparison = Comparison(comparison)
    if comparison is Comparison.EXACT:
        return actual == requested
    have, want = template.strength_of(actual), template.strength_of(requested)
    if have is None or want is None:
        return False
    if comparison is Comparison.MINIMUM:
        return have >= want
    if comparison is Comparison.MAXIMUM:
        return have <= want
    return have > want


@dataclass(frozen=True)
class RequestedAuthnContext:
    """``<samlp:RequestedAuthnContext Comparison="…">`` with its ``<saml:AuthnContextClassRef>`` values."""

    class_refs: tuple[str, ...]
    comparison: Comparison = Comparison.EXACT  # the SAML default when the attribute is absent

    def __post_init__(self):
        object.__setattr__(self, "class_refs", tuple(self.class_refs))
        object.__setattr__(self, "comparison", Comparison(self.comparison))

    def first_match(self, template: Template, actual: str | None) -> str | None:
        """The first requested class (in request order) that ``actual`` satisfies, or None (B6)."""
        if not actual:
            return None
        for ref in self.class_refs:
            if satisfies(template, actual, ref, self.comparison):
                return ref
        return None

    def to_element(self):
        """The lxml element for an AuthnRequest."""
        from lxml import etree

        element = etree.Element(f"{{{NS_SAMLP}}}RequestedAuthnContext", nsmap={"samlp": NS_SAMLP, "saml": NS_SAML})
        element.set("Comparison", self.comparison.value)
        for ref in self.class_refs:
            etree.SubElement(element, f"{{{NS_SAML}}}AuthnContextClassRef").text = ref
        return element

    @classmethod
    def from_element(cls, element) -> RequestedAuthnContext:
        """Read a parsed ``<samlp:RequestedAuthnContext>``; raises ValueError for a bad comparison or no class."""
        comparison = element.get("Comparison") or Comparison.EXACT.value
        if comparison not in Comparison._value2member_map_:
            raise ValueError(f"Unknown Comparison “{comparison}”: expected exact, minimum, maximum or better.")
        refs = tuple((child.text or "").strip() for child in element.findall(f"{{{NS_SAML}}}AuthnContextClassRef"))
        if not refs:
            # AuthnContextDeclRef is allowed by the schema but names no class; we only process class refs.
            raise ValueError("RequestedAuthnContext carries no AuthnContextClassRef; only class references are supported.")
        return cls(refs, Comparison(comparison))


# --- IdP --------------------------------------------------------------------------------------


class IdpMode(StrEnum):
    PREDEFINED = "predefined"
    AUTO_DETECT = "auto_detect"


class Outcome(StrEnum):
    SUCCESS = "success"
    NO_AUTHN_CONTEXT = "no_authn_context"
    REQUEST_UNSUPPORTED = "request_unsupported"


_STATUS = {
    Outcome.SUCCESS: (STATUS_SUCCESS, None),
    Outcome.NO_AUTHN_CONTEXT: (STATUS_RESPONDER, STATUS_NO_AUTHN_CONTEXT),
    Outcome.REQUEST_UNSUPPORTED: (STATUS_RESPONDER, STATUS_REQUEST_UNSUPPORTED),
}


@dataclass(frozen=True)
class IdpDecision:
    outcome: Outcome
    class_ref: str | None  # what goes into <saml:AuthnContextClassRef> on success
    reason: str  # one line for the trace
    matched: str | None = None  # the requested class that was satisfied, if a request was evaluated

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS

    @property
    def status(self) -> tuple[str, str | None]:
        """(top-level status code, second-level status code or None) for the Response."""
        return _STATUS[self.outcome]


def detect_session_class(template: Template, *, protection_level: int | None = None, session_class: str | None = None):
    """Auto-detection (B5/B6): the session's class from its protection level through the template's ranges;
    without levels in the template (or without a level), the class the authentication recorded, if the
    template lists it. Returns (class or None, reason)."""
    if protection_level is not None and template.protection_levels:
        found = template.class_for_level(protection_level)
        if found:
            row = template.row_for(found)
            return found, f"protection level {protection_level} is in {short_name(found)}'s range {row.range_label}"
        return None, f"protection level {protection_level!r} is outside the template's ranges ({MIN_LEVEL}–{MAX_LEVEL})"
    if session_class:
        if template.row_for(session_class):
            return session_class, f"the session was authenticated with {short_name(session_class)}"
        return None, f"the session's class {short_name(session_class)} is not in the template"
    if protection_level is not None:
        return None, "the template has no protection levels, so a session's level cannot be mapped to a class"
    return None, "the session has neither a protection level nor an authentication class"


def decide_idp_context(
    *,
    mode: IdpMode | str,
    predefined_class: str | None = None,
    template: Template | None = None,
    ignore_requested: bool = False,
    requested: RequestedAuthnContext | None = None,
    protection_level: int | None = None,
    session_class: str | None = None,
) -> IdpDecision:
    """The IdP's answer for one assertion, following the B5 decision table and the B6 flow.

    ``requested`` is the AuthnRequest's RequestedAuthnContext (None for IdP-initiated SSO or when absent).
    """
    mode = IdpMode(mode)
    use_request = requested is not None and not ignore_requested
    if mode is IdpMode.PREDEFINED:
        if not predefined_class:
            raise ValueError("A predefined-class IdP partnership needs its authentication class URI.")
        if use_request:
            return IdpDecision(
                Outcome.REQUEST_UNSUPPORTED,
                None,
                "the SP sent a RequestedAuthnContext but this partnership uses a predefined class and does not ignore "
                "requests, so it cannot process the request",
            )
        why = "ignoring the SP's RequestedAuthnContext; " if requested is not None else ""
        return IdpDecision(Outcome.SUCCESS, predefined_class, f"{why}predefined class {short_name(predefined_class)}")
    if template is None:
        raise ValueError("An auto-detect IdP partnership needs an authentication context template.")
    actual, why = detect_session_class(template, protection_level=protection_level, session_class=session_class)
    if actual is None:
        return IdpDecision(Outcome.NO_AUTHN_CONTEXT, None, why)
    if not use_request:
        prefix = "ignoring the SP's RequestedAuthnContext; " if requested is not None else ""
        return IdpDecision(Outcome.SUCCESS, actual, prefix + why)
    matched = requested.first_match(template, actual)
    if matched is None:
        asked = ", ".join(short_name(r) for r in requested.class_refs)
        return IdpDecision(
            Outcome.NO_AUTHN_CONTEXT,
            None,
            f"{why}; {short_name(actual)} does not satisfy comparison {requested.comparison.value} against {asked}",
        )
    return IdpDecision(Outcome.SUCCESS, actual, f"{why}; satisfies {requested.comparison.value} {short_name(matched)}", matched)


# --- SP ---------------------------------------------------------------------------------------


def build_requested_context(
    template: Template, selected: Iterable[str] | None, comparison: Comparison | str
) -> RequestedAuthnContext:
    """The RequestedAuthnContext of an SP-to-IdP partnership (B7): the selected URIs in the template's order
    (strongest first) with the comparison. ``selected`` None means every URI of the template.
    Raises `TemplateError` when the selection cannot work."""
    try:
        comparison = Comparison(comparison)
    except ValueError:
        raise TemplateError([Problem("Choose a comparison: exact, minimum, maximum or better.", field="comparison")]) from None
    wanted = list(template.uris) if selected is None else [s.strip() for s in selected if s and s.strip()]
    problems = []
    unknown = [uri for uri in wanted if template.row_for(uri) is None]
    if unknown:
        problems.append(
            Problem(
                "Not in the template: " + ", ".join(short_name(u) for u in unknown) + ". Choose URIs the template lists.",
                field="uris",
            )
        )
    if not wanted:
        problems.append(Problem("Select at least one URI to request.", field="uris"))
    if not problems and comparison is Comparison.BETTER and all(template.strength_of(u) == template.group_count for u in wanted):
        problems.append(
            Problem(
                "With “better” the IdP must answer with a stronger class, but the template has nothing stronger than "
                "the URIs selected; select a weaker URI or another comparison.",
                field="comparison",
            )
        )
    if problems:
        raise TemplateError(problems)
    chosen = set(wanted)
    return RequestedAuthnContext(tuple(uri for uri in template.uris if uri in chosen), comparison)


@dataclass(frozen=True)
class SpValidation:
    ok: bool
    reason: str
    matched: str | None = None


def validate_assertion_context(template: Template, requested: RequestedAuthnContext, received: str | None) -> SpValidation:
    """Whether the assertion's AuthnContextClassRef satisfies what the SP requested (B6 step 5, B7)."""
    received = (received or "").strip()
    if not received:
        return SpValidation(False, "the assertion has no AuthnContextClassRef")
    matched = requested.first_match(template, received)
    if matched is None:
        asked = ", ".join(short_name(r) for r in requested.class_refs)
        return SpValidation(
            False, f"{short_name(received)} does not satisfy comparison {requested.comparison.value} against {asked}"
        )
    return SpValidation(True, f"{short_name(received)} satisfies {requested.comparison.value} {short_name(matched)}", matched)
