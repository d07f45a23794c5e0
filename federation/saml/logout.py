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

from .assertions import NameID, name_id_element
from .common import (
    DEFAULT_RELAY_STATE_LIMIT,
    InvalidMessage,
    IssuedMessage,
    MessageExpired,
    ProtocolError,
    Status,
    build_status,
    check_issue_instant,
    expect_root,
    format_instant,
    instant_attribute,
    new_id,
    read_header,
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
    NAMEID_UNSPECIFIED,
    NS_SAML,
    NS_SAMLP,
    RSA_OAEP_MGF1P,
    STATUS_SUCCESS,
    STATUS_UNKNOWN_PRINCIPAL,
)
from .encryption import decrypt, encrypt_name_id
from .xml import children, is_element, local_name

_S = f"{{{NS_SAML}}}"
_P = f"{{{NS_SAMLP}}}"
_NSMAP = {"samlp": NS_SAMLP, "saml": NS_SAML}

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
    attributes = {
        "ID": request_id or new_id(),
        "Version": "2.0",
        "IssueInstant": format_instant(now),
        "NotOnOrAfter": format_instant(not_on_or_after),
    }
    if settings.destination:
        attributes["Destination"] = settings.destination
    if settings.reason:
        attributes["Reason"] = settings.reason
    element = etree.Element(_P + "LogoutRequest", attributes, nsmap=_NSMAP)
    etree.SubElement(element, _S + "Issuer").text = settings.issuer
    name_id = name_id_element(element, settings.name_id)
    if settings.encryption_certificate is not None:
        encrypt_name_id(name_id, settings.encryption_certificate, settings.block_algorithm, settings.key_transport)
    for session_index in settings.session_indexes:
        etree.SubElement(element, _P + "SessionIndex").text = session_index
    return IssuedMessage(element, attributes["ID"], now, not_on_or_after)


def build_logout_response(*, issuer, destination, in_response_to, status=STATUS_SUCCESS, sub_status=None, message=None, now=None):
    """An unsigned `samlp:LogoutResponse` (Success, or e.g. Responder/PartialLogout when some
    participant could not be logged out). Answer on the binding the request came on."""
    now = now or utc_now()
    attributes = {"ID": new_id(), "Version": "2.0", "IssueInstant": format_instant(now)}
    if destination:
        attributes["Destination"] = destination
    if in_response_to:
        attributes["InResponseTo"] = in_response_to
    element = etree.Element(_P + "LogoutResponse", attributes, nsmap=_NSMAP)
    etree.SubElement(element, _S + "Issuer").text = issuer
    if status == STATUS_SUCCESS and not sub_status and not message:
        etree.SubElement(etree.SubElement(element, _P + "Status"), _P + "StatusCode", {"Value": STATUS_SUCCESS})
    else:
        element.append(build_status(status, sub_status, message))
    return IssuedMessage(element, attributes["ID"], now)


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
        if not message.issuer:
            raise InvalidMessage(f"the {name} has no Issuer, so the partner cannot be identified")
        policy = policy(message.issuer)
    inbound = message.verify(
        policy.verification_certificates,
        require_signed=policy.require_signed,
        allowed_algorithms=policy.allowed_algorithms,
        relay_state_limit=policy.relay_state_limit,
    )
    header = read_header(inbound.element)
    if not header.issuer:
        raise InvalidMessage(f"the {name} has no Issuer")
    if policy.partner_entity_id and header.issuer != policy.partner_entity_id:
        raise InvalidMessage(f"the {name} comes from {header.issuer!r}, not from {policy.partner_entity_id!r}")
    if policy.slo_urls:
        if header.destination is None and inbound.signed and message.binding != BINDING_SOAP:
            raise InvalidMessage(f"the signed {name} has no Destination")
        if header.destination is not None and header.destination not in policy.slo_urls:
            raise InvalidMessage(f"the {name} is addressed to {header.destination!r}, which is not our SLO service URL")
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
    identifiers = [
        child
        for child in element
        if isinstance(child.tag, str) and child.tag in (_S + "NameID", _S + "EncryptedID", _S + "BaseID")
    ]
    if len(identifiers) != 1:
        raise InvalidMessage(f"the LogoutRequest must name exactly one subject (NameID or EncryptedID), not {len(identifiers)}")
    identifier = identifiers[0]
    if is_element(identifier, NS_SAML, "BaseID"):
        raise LogoutError(
            "the LogoutRequest identifies the user with a BaseID, which is not supported", sub_status=STATUS_UNKNOWN_PRINCIPAL
        )
    if is_element(identifier, NS_SAML, "EncryptedID"):
        if policy.decryption_key is None:
            raise LogoutError(
                "the LogoutRequest carries an encrypted NameID, and no decryption key is configured for this partner"
            )
        identifier = decrypt(identifier, policy.decryption_key, policy.allowed_encryption_algorithms)
        if not is_element(identifier, NS_SAML, "NameID"):
            raise InvalidMessage(f"the EncryptedID holds a {local_name(identifier)}, not a NameID")
    value = (identifier.text or "").strip()
    if not value:
        raise InvalidMessage("the LogoutRequest NameID is empty")
    return NameID(
        value=value,
        format=identifier.get("Format") or NAMEID_UNSPECIFIED,
        name_qualifier=identifier.get("NameQualifier"),
        sp_name_qualifier=identifier.get("SPNameQualifier"),
        sp_provided_id=identifier.get("SPProvidedID"),
    )


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
