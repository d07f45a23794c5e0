"""The SAML 2.0 assertion consumer (the SP's ACS): validate a `samlp:Response` from a partner IdP
and return what it vouches for as a `ValidatedAssertion`.

    settings = ConsumerSettings(sp_entity_id=…, acs_urls=(…,), idp_entity_id=…, idp_certificates=(…,), …)
    validated = consume_post(form["SAMLResponse"], settings, replay_cache=replay.remember_once)
    # or, for the Artifact binding, with the Response `sp_requests.read_artifact_response` returned:
    validated = consume_response(resolved.response, settings, signed_envelope=resolved.signed, replay_cache=…)

The checks run in a fixed order (docs/sp-protocol-core.md lists them with the messages an IdP
administrator may see). The rule that holds everything together: once a signature is verified,
data is read only from the self-contained copy `signing.verify` returned, never from the tree
that came in, so nothing outside what was signed can be read (signature wrapping). Every refusal
is a `SAMLError` with a plain message; a time-window refusal is a `MessageExpired`, a missing
signature a `SignatureRequired`, a bad one a `SignatureError`, the rest `ResponseRejected`
subclasses, `InvalidMessage` (shape) or the parser's errors.
"""

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from lxml import etree

from partnerships.authn_context import Comparison, RequestedAuthnContext, Template, validate_assertion_context

from .common import (
    InvalidMessage,
    MessageExpired,
    ProtocolError,
    SignatureRequired,
    Status,
    expect_root,
    format_instant,
    instant_attribute,
    issuer_of,
    read_header,
    read_post,
    read_status,
    utc_now,
)
from .constants import (
    CM_BEARER,
    DEFAULT_ENCRYPTION_ALGORITHMS,
    DEFAULT_SIGNATURE_ALGORITHMS,
    MAX_MESSAGE_BYTES,
    NAMEID_ENTITY,
    NS_DS,
    NS_SAML,
    NS_SAMLP,
    NS_XSI,
    STATUS_NO_AUTHN_CONTEXT,
    STATUS_REQUEST_DENIED,
    STATUS_RESPONDER,
)
from .encryption import decrypt
from .errors import DecryptionError
from .keys import load_certificates, load_private_key
from .signing import verify
from .xml import child_elements, children, local_name, parse_xml

# --- Errors ----------------------------------------------------------------------------------


class ResponseRejected(ProtocolError):
    """The response is well-formed and authentic enough to read, but fails a rule of this
    partnership (issuer, destination, audience, recipient, InResponseTo, replay, …)."""

    sub_status = STATUS_REQUEST_DENIED


class IdPStatusError(ResponseRejected):
    """The IdP answered with a status other than Success. `idp_status` holds its codes and
    message for the trace and the status-redirect page."""

    def __init__(self, idp_status: Status, what="the response"):
        self.idp_status = idp_status
        self.status_codes = tuple(code for code in (idp_status.code, idp_status.sub_code) if code)
        self.status_message = idp_status.message
        super().__init__(f"the IdP answered with an error status instead of an assertion in {what}: {idp_status.describe()}")


class IssuerMismatch(ResponseRejected):
    """The response or assertion names another issuer than the partner IdP."""


class DestinationMismatch(ResponseRejected):
    """The response was addressed to another URL than one of our ACS URLs."""


class AudienceMismatch(ResponseRejected):
    """The assertion is not meant for this SP."""


class RecipientMismatch(ResponseRejected):
    """No bearer subject confirmation names one of our ACS URLs as its recipient."""


class InResponseToMismatch(ResponseRejected):
    """The response answers a request we did not send, or is unsolicited where that is not allowed."""


class EncryptionRequired(ResponseRejected):
    """The partnership requires an encrypted assertion or NameID and got it in clear."""


class AuthnContextRejected(ResponseRejected):
    """The assertion's authentication context does not satisfy what we requested."""

    status = STATUS_RESPONDER
    sub_status = STATUS_NO_AUTHN_CONTEXT


class AssertionReplayed(ResponseRejected):
    """The assertion was already accepted once (replay cache)."""


# --- Settings and result ---------------------------------------------------------------------


class SignatureRequirement(StrEnum):
    """What the IdP must sign. Any signature that is present is verified, whatever is required."""

    ASSERTION = "assertion"  # the reference's rule for POST: the assertion must be signed
    RESPONSE = "response"
    BOTH = "both"
    EITHER = "either"  # the response or the assertion (or both)
    NONE = "none"  # "disable signature processing" (testing only, warned in the wizard): nothing required


ReplayCache = Callable[[str, str, datetime], bool]
InResponseToLookup = Callable[[str], bool]


@dataclass(frozen=True)
class ConsumerSettings:
    """The SP-to-IdP partnership as the consumer needs it (from the activated snapshot).

    `expected_in_response_to` is the ID of the AuthnRequest we sent (a string), several
    outstanding IDs (a collection), or a callable that answers whether an ID is one of ours (it
    is called once per response, so it may also consume the ID). None means we sent no request.
    `requested_authn_context` turns on the authn-context check; with a comparison other than
    exact it needs the `authn_context_template` that orders the classes by strength. A NameID's
    SPNameQualifier, when present, must be our entity ID or one of `sp_name_qualifiers` (an
    affiliation we asked for in NameIDPolicy).
    """

    sp_entity_id: str
    acs_urls: tuple[str, ...]
    idp_entity_id: str
    idp_certificates: tuple = ()
    require_signed: SignatureRequirement = SignatureRequirement.ASSERTION
    require_encrypted_assertion: bool = False
    require_encrypted_name_id: bool = False
    decryption_keys: tuple = ()
    skew_seconds: int = 30
    allow_unsolicited: bool = False
    expected_in_response_to: str | Collection[str] | InResponseToLookup | None = None
    requested_authn_context: RequestedAuthnContext | None = None
    authn_context_template: Template | None = None
    sp_name_qualifiers: tuple[str, ...] = ()
    allowed_signature_algorithms: frozenset = DEFAULT_SIGNATURE_ALGORITHMS
    allowed_encryption_algorithms: frozenset = DEFAULT_ENCRYPTION_ALGORITHMS
    max_bytes: int = MAX_MESSAGE_BYTES

    def __post_init__(self):
        acs_urls = (self.acs_urls,) if isinstance(self.acs_urls, str) else tuple(self.acs_urls)
        if not self.sp_entity_id or not self.idp_entity_id or not acs_urls:
            raise ValueError("the consumer needs our SP entity ID, at least one ACS URL and the IdP entity ID")
        certificates = tuple(load_certificates(self.idp_certificates))
        if not certificates and SignatureRequirement(self.require_signed) != SignatureRequirement.NONE:
            raise ValueError("the consumer needs at least one IdP verification certificate")
        keys = self.decryption_keys
        if keys is not None and not isinstance(keys, list | tuple):
            keys = (keys,)
        keys = tuple(load_private_key(key) for key in keys or ())
        if self.skew_seconds < 0:
            raise ValueError("the skew time cannot be negative")
        requested = self.requested_authn_context
        if requested is not None and requested.comparison is not Comparison.EXACT and self.authn_context_template is None:
            raise ValueError(f"comparison {requested.comparison.value} needs an authentication context template")
        object.__setattr__(self, "acs_urls", acs_urls)
        object.__setattr__(self, "idp_certificates", certificates)
        object.__setattr__(self, "decryption_keys", keys)
        object.__setattr__(self, "require_signed", SignatureRequirement(self.require_signed))


@dataclass(frozen=True, eq=False)
class ValidatedAssertion:
    """What a response that passed every check vouches for. `assertion` is the verified element
    (EncryptedID and EncryptedAttribute replaced by their decrypted content) for XPath-based user
    identification; it belongs to the consumer's own copy, never to the inbound tree."""

    issuer: str
    assertion_id: str
    response_id: str
    in_response_to: str | None
    name_id: str
    name_id_format: str | None
    name_qualifier: str | None
    sp_name_qualifier: str | None
    sp_provided_id: str | None
    attributes: dict[str, list[str]]
    attribute_name_formats: dict[str, str | None]
    attribute_friendly_names: dict[str, str | None]
    authn_instant: datetime
    session_index: str | None
    session_not_on_or_after: datetime | None
    authn_context_class: str | None
    not_on_or_after: datetime  # the earliest NotOnOrAfter of the conditions and the subject confirmation
    replay_expires_at: datetime  # not_on_or_after + our skew: keep the ID in the replay cache until then
    response_signed: bool
    assertion_signed: bool
    assertion_encrypted: bool
    assertion: etree._Element = field(repr=False)


# --- Entry points ----------------------------------------------------------------------------


def consume_post(saml_response, settings, *, now=None, replay_cache=None):
    """Validate the `SAMLResponse` form value of the HTTP-POST binding (base64 text)."""
    message = read_post(saml_response, max_bytes=settings.max_bytes)
    return consume_response(message.element, settings, now=now, replay_cache=replay_cache)


def consume_response(response, settings, *, now=None, signed_envelope=False, replay_cache=None):
    """Validate a `samlp:Response` (bytes, or an element already parsed by `parse_xml`, e.g. the
    Response inside an ArtifactResponse) and return a `ValidatedAssertion`.

    `signed_envelope` says the Response arrived inside an ArtifactResponse whose signature was
    verified: that signature then counts as the response signature. `replay_cache` is called
    last, as `replay_cache(assertion_id, issuer, replay_expires_at)`, and must return False for
    an ID it has seen (federation.replay.remember_once); without it no replay check is made.
    """
    now = now or utc_now()
    if isinstance(response, bytes | str):
        response = parse_xml(response, max_bytes=settings.max_bytes)
    expect_root(response, NS_SAMLP, "Response")
    read_header(response)
    status = read_status(response)
    if not status.success:
        raise IdPStatusError(status)

    # 1. The response signature. From here on `response` is the verified copy when it is signed.
    response_signed = False
    if children(response, NS_DS, "Signature"):
        response = verify(
            response.getroottree().getroot(), response, settings.idp_certificates, settings.allowed_signature_algorithms
        )
        response_signed = True
    elif settings.require_signed in (SignatureRequirement.RESPONSE, SignatureRequirement.BOTH) and not signed_envelope:
        raise SignatureRequired("the response is not signed, and this partnership requires a signed response")
    header = read_header(response)
    _check_issuer_format(response, "the response")
    _check_issuer(issuer_of(response), settings, "the response", required=False)
    if header.destination is not None and header.destination not in settings.acs_urls:
        raise DestinationMismatch(
            f"the response is addressed to {header.destination!r}, not to this SP's assertion consumer URL "
            f"({_listed(settings.acs_urls)})"
        )

    # 2. Exactly one assertion, decrypted, then its own signature.
    assertion, encrypted = _the_assertion(response, settings)
    assertion_signed = False
    if children(assertion, NS_DS, "Signature"):
        assertion = verify(
            assertion.getroottree().getroot(), assertion, settings.idp_certificates, settings.allowed_signature_algorithms
        )
        assertion_signed = True
    elif settings.require_signed in (SignatureRequirement.ASSERTION, SignatureRequirement.BOTH):
        raise SignatureRequired("the assertion is not signed, and this partnership requires a signed assertion")
    elif settings.require_signed != SignatureRequirement.NONE and not (response_signed or signed_envelope):
        raise SignatureRequired("neither the response nor the assertion is signed; this partnership requires one of them signed")

    # 3. The assertion itself, read only from `assertion` (a verified copy or part of one).
    assertion_header = read_header(assertion)
    _check_issuer_format(assertion, "the assertion")
    issuer = _check_issuer(issuer_of(assertion), settings, "the assertion", required=True)
    skew = timedelta(seconds=settings.skew_seconds)
    conditions_not_on_or_after = _check_conditions(assertion, settings, now, skew)
    subject = _only(assertion, "Subject", "the assertion")
    name_id, name_id_encrypted = _name_id(subject, settings)
    if settings.require_encrypted_name_id and not (name_id_encrypted or encrypted):
        raise EncryptionRequired("the NameID is not encrypted, and this partnership requires an encrypted NameID")
    confirmation_not_on_or_after, confirmation_in_response_to = _check_bearer_confirmation(subject, settings, now, skew)
    in_response_to = _check_in_response_to(header.in_response_to, confirmation_in_response_to, settings)
    authn = _authn_statement(assertion, now, skew)
    _check_authn_context(authn["class"], settings)
    attributes, name_formats, friendly_names = _attributes(assertion, settings)

    not_on_or_after = min(filter(None, (conditions_not_on_or_after, confirmation_not_on_or_after)))
    validated = ValidatedAssertion(
        issuer=issuer,
        assertion_id=assertion_header.id,
        response_id=header.id,
        in_response_to=in_response_to,
        name_id=name_id["value"],
        name_id_format=name_id["format"],
        name_qualifier=name_id["name_qualifier"],
        sp_name_qualifier=name_id["sp_name_qualifier"],
        sp_provided_id=name_id["sp_provided_id"],
        attributes=attributes,
        attribute_name_formats=name_formats,
        attribute_friendly_names=friendly_names,
        authn_instant=authn["instant"],
        session_index=authn["session_index"],
        session_not_on_or_after=authn["session_not_on_or_after"],
        authn_context_class=authn["class"],
        not_on_or_after=not_on_or_after,
        replay_expires_at=not_on_or_after + skew,
        response_signed=response_signed,
        assertion_signed=assertion_signed,
        assertion_encrypted=encrypted,
        assertion=assertion,
    )
    # 4. Last, so that only an assertion that passed everything takes a place in the cache.
    if replay_cache is not None and not replay_cache(validated.assertion_id, issuer, validated.replay_expires_at):
        raise AssertionReplayed(
            f"assertion {validated.assertion_id} from {issuer} was already used once; a second use is a replay and is refused"
        )
    return validated


# --- The steps -------------------------------------------------------------------------------


def _listed(values):
    return ", ".join(repr(value) for value in values)


def _only(parent, local, where, required=True):
    found = children(parent, NS_SAML, local)
    if len(found) > 1:
        raise InvalidMessage(f"{where} has more than one {local}")
    if not found:
        if required:
            raise InvalidMessage(f"{where} has no {local}")
        return None
    return found[0]


def _check_issuer(issuer, settings, where, required):
    if issuer is None:
        if required:
            raise IssuerMismatch(f"{where} names no Issuer; it must be {settings.idp_entity_id!r}")
        return None
    if issuer != settings.idp_entity_id:
        raise IssuerMismatch(f"{where} was issued by {issuer!r}, not by this partnership's IdP {settings.idp_entity_id!r}")
    return issuer


def _check_issuer_format(element, where):
    for found in children(element, NS_SAML, "Issuer"):
        if found.get("Format") not in (None, NAMEID_ENTITY):
            raise InvalidMessage(f"the Issuer of {where} has Format {found.get('Format')!r}; an IdP is named by its entity ID")


def _the_assertion(response, settings):
    """The single assertion of the response: (element, was_encrypted). Every Assertion and
    EncryptedAssertion anywhere in the response counts, so an extra one hidden in Extensions,
    Advice or a wrapper is refused rather than ignored."""
    plain = list(response.iter(f"{{{NS_SAML}}}Assertion"))
    encrypted = list(response.iter(f"{{{NS_SAML}}}EncryptedAssertion"))
    count = len(plain) + len(encrypted)
    if count != 1:
        raise InvalidMessage(f"the response must carry exactly one assertion, not {count}")
    if plain:
        if plain[0].getparent() is not response:
            raise InvalidMessage("the assertion is not a direct child of the response")
        if settings.require_encrypted_assertion:
            raise EncryptionRequired("the assertion is not encrypted, and this partnership requires an encrypted assertion")
        return plain[0], False
    if encrypted[0].getparent() is not response:
        raise InvalidMessage("the encrypted assertion is not a direct child of the response")
    assertion = _decrypt(encrypted[0], settings, "the assertion")
    if not (assertion.tag == f"{{{NS_SAML}}}Assertion"):
        raise InvalidMessage(f"the EncryptedAssertion holds a {local_name(assertion)}, not an Assertion")
    return assertion, True


def _decrypt(encrypted, settings, what):
    """Try each of our decryption keys (several during a key rollover)."""
    if not settings.decryption_keys:
        raise DecryptionError(f"{what} is encrypted, but this partnership has no decryption key")
    failure = None
    for key in settings.decryption_keys:
        try:
            return decrypt(encrypted, key, settings.allowed_encryption_algorithms, settings.max_bytes)
        except DecryptionError as error:
            failure = error
    raise DecryptionError(f"{what}: {failure}") from None


def _check_conditions(assertion, settings, now, skew):
    """The time window widened by our skew, the audience, and no condition we do not know.
    Returns the Conditions' NotOnOrAfter (or None)."""
    conditions = _only(assertion, "Conditions", "the assertion", required=False)
    if conditions is None:
        raise AudienceMismatch(
            f"the assertion has no Conditions, so no AudienceRestriction naming this SP ({settings.sp_entity_id!r})"
        )
    not_before = instant_attribute(conditions, "NotBefore", required=False)
    not_on_or_after = instant_attribute(conditions, "NotOnOrAfter", required=False)
    _check_window(not_before, not_on_or_after, now, skew, "the assertion")
    restrictions = children(conditions, NS_SAML, "AudienceRestriction")
    if not restrictions:
        raise AudienceMismatch(f"the assertion has no AudienceRestriction naming this SP ({settings.sp_entity_id!r})")
    for restriction in restrictions:
        audiences = [(audience.text or "").strip() for audience in children(restriction, NS_SAML, "Audience")]
        if settings.sp_entity_id not in audiences:
            raise AudienceMismatch(
                f"the assertion is meant for {_listed(audiences) or 'no audience'}, not for this SP ({settings.sp_entity_id!r})"
            )
    for condition in child_elements(conditions):
        known = condition.tag in (
            f"{{{NS_SAML}}}AudienceRestriction",
            f"{{{NS_SAML}}}OneTimeUse",
            f"{{{NS_SAML}}}ProxyRestriction",
        )
        if not known:
            kind = condition.get(f"{{{NS_XSI}}}type") or local_name(condition)
            raise InvalidMessage(f"the assertion has a condition this SP does not understand ({kind})")
    if len(children(conditions, NS_SAML, "OneTimeUse")) > 1:
        raise InvalidMessage("the assertion has more than one OneTimeUse condition")
    return not_on_or_after


def _check_window(not_before, not_on_or_after, now, skew, what):
    if not_before is not None and now < not_before - skew:
        raise MessageExpired(
            f"{what} is not valid yet: NotBefore {format_instant(not_before)}, now {format_instant(now)}, "
            f"skew {int(skew.total_seconds())} s; check the IdP's clock or raise the skew time"
        )
    if not_on_or_after is not None and now >= not_on_or_after + skew:
        raise MessageExpired(
            f"{what} has expired: NotOnOrAfter {format_instant(not_on_or_after)}, now {format_instant(now)}, "
            f"skew {int(skew.total_seconds())} s"
        )


def _name_id(subject, settings):
    """The NameID (decrypting an EncryptedID) as a dict; (dict, was_encrypted)."""
    name_ids = children(subject, NS_SAML, "NameID")
    encrypted_ids = children(subject, NS_SAML, "EncryptedID")
    if children(subject, NS_SAML, "BaseID"):
        raise InvalidMessage("the subject is identified by a BaseID, which this SP does not support")
    if len(name_ids) + len(encrypted_ids) != 1:
        raise InvalidMessage("the subject must have exactly one NameID or EncryptedID")
    encrypted = bool(encrypted_ids)
    if encrypted:
        name_id = _decrypt(encrypted_ids[0], settings, "the NameID")
        if name_id.tag != f"{{{NS_SAML}}}NameID":
            raise InvalidMessage(f"the EncryptedID holds a {local_name(name_id)}, not a NameID")
        subject.replace(encrypted_ids[0], name_id)
    else:
        name_id = name_ids[0]
    # The value is the element's whole text. parse_xml drops comments, so text split by a comment
    # (alice@example.org<!---->.evil.org) is read in full, never cut at the comment; anything
    # else inside a NameID (an element, a processing instruction) is refused.
    if len(name_id):
        raise InvalidMessage("the NameID must contain only text")
    value = (name_id.text or "").strip()
    if not value:
        raise InvalidMessage("the NameID is empty")
    qualifier = name_id.get("SPNameQualifier")
    if qualifier is not None and qualifier != settings.sp_entity_id and qualifier not in settings.sp_name_qualifiers:
        raise AudienceMismatch(f"the NameID is qualified for {qualifier!r}, not for this SP ({settings.sp_entity_id!r})")
    return {
        "value": value,
        "format": name_id.get("Format"),
        "name_qualifier": name_id.get("NameQualifier"),
        "sp_name_qualifier": name_id.get("SPNameQualifier"),
        "sp_provided_id": name_id.get("SPProvidedID"),
    }, encrypted


def _check_bearer_confirmation(subject, settings, now, skew):
    """At least one bearer SubjectConfirmation must be satisfied (SAML profiles §4.1.4.3):
    Recipient is one of our ACS URLs, NotOnOrAfter (required) not passed, NotBefore (if any)
    reached, and its InResponseTo consistent. Returns (NotOnOrAfter, InResponseTo) of the one
    that passed; otherwise raises the reason the first bearer confirmation failed."""
    bearers = [c for c in children(subject, NS_SAML, "SubjectConfirmation") if c.get("Method") == CM_BEARER]
    if not bearers:
        raise InvalidMessage("the assertion has no bearer SubjectConfirmation (only bearer assertions are accepted at the ACS)")
    first_failure = None
    for confirmation in bearers:
        try:
            data = children(confirmation, NS_SAML, "SubjectConfirmationData")
            if len(data) != 1:
                raise InvalidMessage("the bearer SubjectConfirmation must have one SubjectConfirmationData")
            data = data[0]
            recipient = data.get("Recipient")
            if recipient is None:
                raise RecipientMismatch("the bearer SubjectConfirmationData has no Recipient")
            if recipient not in settings.acs_urls:
                raise RecipientMismatch(
                    f"the assertion is confirmed for recipient {recipient!r}, not for this SP's assertion consumer URL "
                    f"({_listed(settings.acs_urls)})"
                )
            not_on_or_after = instant_attribute(data, "NotOnOrAfter", required=False)
            if not_on_or_after is None:
                raise InvalidMessage("the bearer SubjectConfirmationData has no NotOnOrAfter")
            _check_window(
                instant_attribute(data, "NotBefore", required=False), not_on_or_after, now, skew, "the subject confirmation"
            )
            return not_on_or_after, data.get("InResponseTo")
        except ProtocolError as error:
            first_failure = first_failure or error
    raise first_failure


def _check_in_response_to(response_value, confirmation_value, settings):
    """Solicited (an InResponseTo on the response or the confirmation): it must be a request we
    sent, and both must agree. Unsolicited: allowed only when the partnership says so."""
    if response_value is not None and confirmation_value is not None and response_value != confirmation_value:
        raise InResponseToMismatch(
            f"the response answers request {response_value!r} but its assertion answers {confirmation_value!r}"
        )
    value = response_value if response_value is not None else confirmation_value
    if value is None:
        if not settings.allow_unsolicited:
            raise InResponseToMismatch(
                "the response answers no request (IdP-initiated), and this partnership does not accept unsolicited responses"
            )
        return None
    expected = settings.expected_in_response_to
    if callable(expected):
        known = bool(expected(value))
    elif isinstance(expected, str):
        known = value == expected
    elif expected is None:
        known = False
    else:
        known = value in expected
    if not known:
        raise InResponseToMismatch(f"the response answers request {value!r}, which this SP did not send (or no longer waits for)")
    return value


def _authn_statement(assertion, now, skew):
    statements = children(assertion, NS_SAML, "AuthnStatement")
    if not statements:
        raise InvalidMessage("the assertion has no AuthnStatement")
    statement = statements[0]
    session_not_on_or_after = instant_attribute(statement, "SessionNotOnOrAfter", required=False)
    if session_not_on_or_after is not None and now >= session_not_on_or_after + skew:
        raise MessageExpired(
            f"the IdP session has ended: SessionNotOnOrAfter {format_instant(session_not_on_or_after)}, now {format_instant(now)}"
        )
    class_ref = None
    context = children(statement, NS_SAML, "AuthnContext")
    if len(context) == 1:
        refs = children(context[0], NS_SAML, "AuthnContextClassRef")
        class_ref = (refs[0].text or "").strip() or None if refs else None
    return {
        "instant": instant_attribute(statement, "AuthnInstant"),
        "session_index": statement.get("SessionIndex"),
        "session_not_on_or_after": session_not_on_or_after,
        "class": class_ref,
    }


_EMPTY_TEMPLATE = Template(())


def _check_authn_context(received, settings):
    requested = settings.requested_authn_context
    if requested is None:
        return
    result = validate_assertion_context(settings.authn_context_template or _EMPTY_TEMPLATE, requested, received)
    if not result.ok:
        raise AuthnContextRejected(f"the authentication context does not satisfy this SP's request: {result.reason}")


_ATTRIBUTE_VALUE = f"{{{NS_SAML}}}AttributeValue"
_XSI_NIL = f"{{{NS_XSI}}}nil"


def _attributes(assertion, settings):
    """{name: [values]} over every AttributeStatement, EncryptedAttribute decrypted (and put in
    place of the encrypted one in the returned assertion). Two Attribute elements with one name
    are refused: which one an application would see would depend on the reader."""
    values, name_formats, friendly_names = {}, {}, {}
    for statement in children(assertion, NS_SAML, "AttributeStatement"):
        for element in child_elements(statement):
            if element.tag == f"{{{NS_SAML}}}EncryptedAttribute":
                attribute = _decrypt(element, settings, "an attribute")
                if attribute.tag != f"{{{NS_SAML}}}Attribute":
                    raise InvalidMessage(f"an EncryptedAttribute holds a {local_name(attribute)}, not an Attribute")
                statement.replace(element, attribute)
            elif element.tag == f"{{{NS_SAML}}}Attribute":
                attribute = element
            else:
                continue
            name = attribute.get("Name")
            if not name:
                raise InvalidMessage("an Attribute has no Name")
            if name in values:
                raise InvalidMessage(f"the assertion has more than one Attribute named {name!r}")
            name_formats[name] = attribute.get("NameFormat")
            friendly_names[name] = attribute.get("FriendlyName")
            found = values[name] = []
            for value in attribute.iterchildren(_ATTRIBUTE_VALUE):  # lxml's own tag filter: the hot loop
                if value.get(_XSI_NIL) in ("true", "1"):
                    continue
                found.append("".join(value.itertext()) if len(value) else (value.text or ""))
    return values, name_formats, friendly_names
