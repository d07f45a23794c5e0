"""SAML 2.0 Single Logout messages (core §3.7, profiles §4.4) on the Redirect, POST and SOAP
bindings: LogoutRequest and LogoutResponse, built and parsed.

Building returns the unsigned element in an `IssuedMessage`; the binding decides how it is
signed: `common.encode_redirect(location, element, relay_state=…, signing=key)` signs the
query, `common.encode_post(element, signing=key)` and `common.encode_soap(element,
signing=key)` sign the element itself.

Parsing takes the message as it arrived (the raw query string, the POST field, the SOAP body)
and a `LogoutPolicy`, or a function of the still-unverified Issuer that returns one.

Time window (the reference's SLO rule): a LogoutRequest we issue is valid until NotOnOrAfter =
IssueInstant + skew + SLO validity duration; one we receive is refused once now is past its
NotOnOrAfter plus our skew, and when its IssueInstant is outside the accepted window.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from lxml import etree

from .assertions import NameID
from .common import (
    DEFAULT_RELAY_STATE_LIMIT,
    InvalidMessage,
    IssuedMessage,
    MessageExpired,
    ProtocolError,
    Status,
    build_status_response,
    check_issue_instant,
    expect_root,
    format_instant,
    instant_attribute,
    new_message,
    policy_for_issuer,
    read_partner_header,
    read_post,
    read_redirect,
    read_soap,
    read_status,
    utc_now,
)
from .constants import (
    AES256_GCM,
    BINDING_SOAP,
    DEFAULT_ENCRYPTION_ALGORITHMS,
    DEFAULT_SIGNATURE_ALGORITHMS,
    MAX_MESSAGE_BYTES,
    MAX_REDIRECT_MESSAGE_BYTES,
    NS_SAMLP,
    RSA_OAEP_MGF1P,
    STATUS_SUCCESS,
)
from .subjects import append_subject, read_subject, subject_identifiers
from .xml import children

_P = f"{{{NS_SAMLP}}}"

REASON_USER = "urn:oasis:names:tc:SAML:2.0:logout:user"
REASON_ADMIN = "urn:oasis:names:tc:SAML:2.0:logout:admin"


class LogoutError(ProtocolError):
    """A logout message cannot be used (no usable NameID, an undecryptable EncryptedID)."""


# --- Building --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogoutRequestSettings:
    """A LogoutRequest to one partner. `validity_seconds` is the partnership's SLO validity
    duration; `encryption_certificate` (the partner's) turns the NameID into an EncryptedID,
    the "Encrypt NameID in SOAP messages" option."""

    issuer: str
    destination: str | None
    name_id: NameID
    session_indexes: tuple = ()
    reason: str | None = REASON_USER
    validity_seconds: int = 60
    skew_seconds: int = 30
    encryption_certificate: object = None
    block_algorithm: str = AES256_GCM
    key_transport: str = RSA_OAEP_MGF1P


def build_logout_request(settings, now=None, *, request_id=None):
    """An unsigned `samlp:LogoutRequest` (sign it through the binding's `encode_*`)."""
    now = now or utc_now()
    if settings.validity_seconds < 0 or settings.skew_seconds < 0:
        raise ValueError("SLO validity duration and skew time must not be negative")
    not_on_or_after = now + timedelta(seconds=settings.skew_seconds + settings.validity_seconds)
    attributes = {"NotOnOrAfter": format_instant(not_on_or_after)}
    if settings.reason:
        attributes["Reason"] = settings.reason
    element = new_message(
        "LogoutRequest", settings.issuer, now, message_id=request_id, destination=settings.destination, attributes=attributes
    )
    append_subject(element, settings.name_id, settings.encryption_certificate, settings.block_algorithm, settings.key_transport)
    for session_index in settings.session_indexes:
        etree.SubElement(element, _P + "SessionIndex").text = session_index
    return IssuedMessage(element, element.get("ID"), now, not_on_or_after)


def build_logout_response(*, issuer, destination, in_response_to, status=STATUS_SUCCESS, sub_status=None, message=None, now=None):
    """An unsigned `samlp:LogoutResponse` (Success, or e.g. Responder/PartialLogout when some
    participant could not be logged out). Answer on the binding the request came on."""
    outcome = Status(status, sub_status, message)
    return build_status_response("LogoutResponse", issuer, destination, in_response_to, outcome, now)


# --- Parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogoutPolicy:
    """Rules for logout messages from one partner: its entity ID (None: any), its verification
    certificates, whether signatures are required, our SLO URLs (a present Destination must be
    one of them), our RSA key for an EncryptedID, and the time window."""

    partner_entity_id: str | None = None
    verification_certificates: tuple = ()
    require_signed: bool = False
    allowed_algorithms: frozenset = DEFAULT_SIGNATURE_ALGORITHMS
    slo_urls: tuple = ()
    decryption_key: object = None
    allowed_encryption_algorithms: frozenset = DEFAULT_ENCRYPTION_ALGORITHMS
    max_age_seconds: int = 300
    skew_seconds: int = 60
    relay_state_limit: int = DEFAULT_RELAY_STATE_LIMIT
    max_bytes: int = MAX_MESSAGE_BYTES
    max_redirect_bytes: int = MAX_REDIRECT_MESSAGE_BYTES


@dataclass(frozen=True)
class LogoutRequest:
    id: str
    issuer: str
    issue_instant: datetime
    not_on_or_after: datetime | None
    destination: str | None
    name_id: NameID
    session_indexes: tuple
    reason: str | None
    signed: bool
    binding: str
    relay_state: str | None
    element: object = None


@dataclass(frozen=True)
class LogoutResponse:
    id: str
    issuer: str
    issue_instant: datetime
    destination: str | None
    in_response_to: str | None
    status: Status
    signed: bool
    binding: str
    relay_state: str | None
    element: object = None


def parse_logout_request_redirect(raw_query, policy, now=None):
    return _request(read_redirect(raw_query, "SAMLRequest", _limit(policy, "max_redirect_bytes")), policy, now)


def parse_logout_request_post(saml_request, relay_state, policy, now=None):
    return _request(read_post(saml_request, relay_state, _limit(policy, "max_bytes")), policy, now)


def parse_logout_request_soap(body, policy, now=None):
    return _request(read_soap(body, _limit(policy, "max_bytes")), policy, now)


def parse_logout_response_redirect(raw_query, policy, now=None):
    return _response(read_redirect(raw_query, "SAMLResponse", _limit(policy, "max_redirect_bytes")), policy, now)


def parse_logout_response_post(saml_response, relay_state, policy, now=None):
    return _response(read_post(saml_response, relay_state, _limit(policy, "max_bytes")), policy, now)


def parse_logout_response_soap(body, policy, now=None):
    return _response(read_soap(body, _limit(policy, "max_bytes")), policy, now)


def _limit(policy, name):
    if isinstance(policy, LogoutPolicy):
        return getattr(policy, name)
    return getattr(LogoutPolicy, name)


def _verified(message, policy, name):
    expect_root(message.element, NS_SAMLP, name)
    if not isinstance(policy, LogoutPolicy):
        policy = policy_for_issuer(message, policy)
    inbound = message.verify(
        policy.verification_certificates,
        require_signed=policy.require_signed,
        allowed_algorithms=policy.allowed_algorithms,
        relay_state_limit=policy.relay_state_limit,
    )
    header = read_partner_header(
        inbound.element, partner_entity_id=policy.partner_entity_id, our_urls=policy.slo_urls, service="SLO service"
    )
    # Bindings §3.4.5.2 and §3.5.5.2: a signed message on the Redirect or POST binding names its Destination.
    if policy.slo_urls and header.destination is None and inbound.signed and message.binding != BINDING_SOAP:
        raise InvalidMessage(f"the signed {name} has no Destination")
    return inbound, header, policy


def _request(message, policy, now):
    now = now or utc_now()
    inbound, header, policy = _verified(message, policy, "LogoutRequest")
    element = inbound.element
    not_on_or_after = instant_attribute(element, "NotOnOrAfter", required=False)
    if not_on_or_after is not None and now >= not_on_or_after + timedelta(seconds=policy.skew_seconds):
        raise MessageExpired(
            f"the LogoutRequest expired at {format_instant(not_on_or_after)} (now {format_instant(now)}, "
            f"skew {policy.skew_seconds} s)"
        )
    check_issue_instant(header.issue_instant, now, policy.max_age_seconds, policy.skew_seconds, "the LogoutRequest")
    name_id = _subject(element, policy)
    session_indexes = tuple((index.text or "").strip() for index in children(element, NS_SAMLP, "SessionIndex"))
    return LogoutRequest(
        id=header.id,
        issuer=header.issuer,
        issue_instant=header.issue_instant,
        not_on_or_after=not_on_or_after,
        destination=header.destination,
        name_id=name_id,
        session_indexes=session_indexes,
        reason=element.get("Reason"),
        signed=inbound.signed,
        binding=inbound.binding,
        relay_state=inbound.relay_state,
        element=element,
    )


def _subject(element, policy):
    identifiers = subject_identifiers(element)
    if len(identifiers) != 1:
        raise InvalidMessage(f"the LogoutRequest must name exactly one subject (NameID or EncryptedID), not {len(identifiers)}")
    return read_subject(identifiers[0], policy, "LogoutRequest", LogoutError)


def _response(message, policy, now):
    now = now or utc_now()
    inbound, header, policy = _verified(message, policy, "LogoutResponse")
    check_issue_instant(header.issue_instant, now, policy.max_age_seconds, policy.skew_seconds, "the LogoutResponse")
    return LogoutResponse(
        id=header.id,
        issuer=header.issuer,
        issue_instant=header.issue_instant,
        destination=header.destination,
        in_response_to=header.in_response_to,
        status=read_status(inbound.element),
        signed=inbound.signed,
        binding=inbound.binding,
        relay_state=inbound.relay_state,
        element=inbound.element,
    )
