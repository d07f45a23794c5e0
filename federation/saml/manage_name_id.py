"""SAML 2.0 Name Identifier Management (core §3.6, profiles §4.5) over the SOAP binding:
ManageNameIDRequest (`<Terminate/>` or `<NewID>`) and ManageNameIDResponse, built and parsed.

Both directions use the same messages: an IdP ends (or changes) a user's federation with an SP, or
an SP ends (or changes) it with an IdP. The request names the user with the NameID the two sides
share (a `saml:NameID`, or a `saml:EncryptedID` when the partnership encrypts Name IDs) and says
what to do: `<samlp:Terminate/>` ends the link, `<samlp:NewID>` (or `<samlp:NewEncryptedID>`)
carries the identifier to use from now on.

Building returns the unsigned element in an `IssuedMessage`; `common.encode_soap(element,
signing=key)` signs it and wraps it in the SOAP envelope. Parsing takes the SOAP body as it
arrived and a `ManageNameIDPolicy`, or a function of the still-unverified Issuer that returns one,
so the caller can choose the partnership (and with it the certificates) from the Issuer first.

Time window: a request or response is refused when its IssueInstant is older than the policy's
max age plus skew or more than the skew in the future (`common.check_issue_instant`).
"""

from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from .assertions import NameID
from .common import (
    InvalidMessage,
    IssuedMessage,
    ProtocolError,
    Status,
    build_status_response,
    check_issue_instant,
    expect_root,
    new_message,
    policy_for_issuer,
    read_partner_header,
    read_soap,
    read_status,
    status_for_error,
    utc_now,
)
from .constants import (
    AES256_GCM,
    DEFAULT_ENCRYPTION_ALGORITHMS,
    DEFAULT_SIGNATURE_ALGORITHMS,
    MAX_MESSAGE_BYTES,
    NS_SAMLP,
    RSA_OAEP_MGF1P,
    STATUS_SUCCESS,
)
from .encryption import encrypt
from .errors import SAMLError
from .subjects import append_subject, decrypt_from_partner, read_subject, subject_identifiers
from .xml import child_elements, is_element, local_name

_P = f"{{{NS_SAMLP}}}"

TERMINATE = "terminate"
CHANGE = "change"

MAX_NEW_ID_LENGTH = 256  # the persistent identifier store's column; SAML core caps persistent IDs at 256 characters


class ManageNameIDError(ProtocolError):
    """A ManageNameID message cannot be used (no usable NameID, an undecryptable EncryptedID, no
    operation). Once the request itself was read it is attached as `request`."""


# --- Building --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManageNameIDRequestSettings:
    """A ManageNameIDRequest to one partner. `new_id` None asks to terminate the link; a value
    asks the partner to use it from now on. `encryption_certificate` (the partner's) sends the
    NameID as an EncryptedID and the NewID as a NewEncryptedID."""

    issuer: str
    destination: str | None
    name_id: NameID
    new_id: str | None = None
    encryption_certificate: object = None
    block_algorithm: str = AES256_GCM
    key_transport: str = RSA_OAEP_MGF1P

    @property
    def operation(self):
        return TERMINATE if self.new_id is None else CHANGE


def build_manage_name_id_request(settings, now=None, *, request_id=None):
    """An unsigned `samlp:ManageNameIDRequest` (sign it through `common.encode_soap`)."""
    now = now or utc_now()
    if settings.new_id is not None:
        _check_new_id(settings.new_id, ValueError)
    element = new_message("ManageNameIDRequest", settings.issuer, now, message_id=request_id, destination=settings.destination)
    append_subject(element, settings.name_id, settings.encryption_certificate, settings.block_algorithm, settings.key_transport)
    if settings.new_id is None:
        etree.SubElement(element, _P + "Terminate")
    elif settings.encryption_certificate is not None:
        plain = etree.Element(_P + "NewID", nsmap={"samlp": NS_SAMLP})
        plain.text = settings.new_id
        wrapper = etree.SubElement(element, _P + "NewEncryptedID")
        wrapper.append(encrypt(plain, settings.encryption_certificate, settings.block_algorithm, settings.key_transport))
    else:
        etree.SubElement(element, _P + "NewID").text = settings.new_id
    return IssuedMessage(element, element.get("ID"), now)


def build_manage_name_id_response(
    *, issuer, destination, in_response_to, status=STATUS_SUCCESS, sub_status=None, message=None, now=None
):
    """An unsigned `samlp:ManageNameIDResponse`: Success, or e.g. Requester/UnknownPrincipal when
    the NameID names no user we know. Over SOAP the answer goes back on the same connection, so
    `destination` is usually None."""
    outcome = Status(status, sub_status, message)
    return build_status_response("ManageNameIDResponse", issuer, destination, in_response_to, outcome, now)


# --- Parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManageNameIDPolicy:
    """Rules for ManageNameID messages from one partner: its entity ID (None: any), its
    verification certificates, whether signatures are required, our Manage NameID service URLs (a
    present Destination must be one of them), our RSA key for an EncryptedID / NewEncryptedID,
    and the time window."""

    partner_entity_id: str | None = None
    verification_certificates: tuple = ()
    require_signed: bool = True
    allowed_algorithms: frozenset = DEFAULT_SIGNATURE_ALGORITHMS
    service_urls: tuple = ()
    decryption_key: object = None
    allowed_encryption_algorithms: frozenset = DEFAULT_ENCRYPTION_ALGORITHMS
    max_age_seconds: int = 300
    skew_seconds: int = 60
    max_bytes: int = MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class ManageNameIDRequest:
    id: str
    issuer: str
    issue_instant: datetime
    destination: str | None
    name_id: NameID
    new_id: str | None  # None when the request terminates
    signed: bool
    binding: str
    element: object = None

    @property
    def operation(self):
        return TERMINATE if self.new_id is None else CHANGE


@dataclass(frozen=True)
class ManageNameIDResponse:
    id: str
    issuer: str
    issue_instant: datetime
    destination: str | None
    in_response_to: str | None
    status: Status
    signed: bool
    binding: str
    element: object = None


def parse_manage_name_id_request_soap(body, policy, now=None):
    """The `ManageNameIDRequest` in a SOAP body, verified under `policy` (or `policy(issuer)`)."""
    now = now or utc_now()
    max_bytes = policy.max_bytes if isinstance(policy, ManageNameIDPolicy) else MAX_MESSAGE_BYTES
    inbound, header, policy = _verified(read_soap(body, max_bytes), policy, "ManageNameIDRequest")
    check_issue_instant(header.issue_instant, now, policy.max_age_seconds, policy.skew_seconds, "the ManageNameIDRequest")
    element = inbound.element
    request = ManageNameIDRequest(
        id=header.id,
        issuer=header.issuer,
        issue_instant=header.issue_instant,
        destination=header.destination,
        name_id=None,
        new_id=None,
        signed=inbound.signed,
        binding=inbound.binding,
        element=element,
    )
    identifiers, operations = _request_parts(element)
    try:
        name_id = _name_id(identifiers, policy)
        new = _new_id(operations, policy)
    except ProtocolError as error:
        error.request = request
        raise
    except SAMLError as error:  # e.g. an EncryptedID we cannot decrypt: answer the partner, do not drop it
        status, sub_status = status_for_error(error)
        raise ManageNameIDError(str(error), status=status, sub_status=sub_status, request=request) from error
    return ManageNameIDRequest(**{**request.__dict__, "name_id": name_id, "new_id": new})


def parse_manage_name_id_response_soap(body, policy, now=None, *, in_response_to=None):
    """The `ManageNameIDResponse` in a SOAP body, verified under `policy`. With `in_response_to`
    (the ID of the request we sent) the response must answer exactly that request."""
    now = now or utc_now()
    max_bytes = policy.max_bytes if isinstance(policy, ManageNameIDPolicy) else MAX_MESSAGE_BYTES
    inbound, header, policy = _verified(read_soap(body, max_bytes), policy, "ManageNameIDResponse")
    check_issue_instant(header.issue_instant, now, policy.max_age_seconds, policy.skew_seconds, "the ManageNameIDResponse")
    if in_response_to is not None and header.in_response_to != in_response_to:
        raise InvalidMessage(f"the ManageNameIDResponse answers {header.in_response_to!r}, not our request {in_response_to!r}")
    return ManageNameIDResponse(
        id=header.id,
        issuer=header.issuer,
        issue_instant=header.issue_instant,
        destination=header.destination,
        in_response_to=header.in_response_to,
        status=read_status(inbound.element),
        signed=inbound.signed,
        binding=inbound.binding,
        element=inbound.element,
    )


def _verified(message, policy, name):
    expect_root(message.element, NS_SAMLP, name)
    if not isinstance(policy, ManageNameIDPolicy):
        policy = policy_for_issuer(message, policy)
    inbound = message.verify(
        policy.verification_certificates, require_signed=policy.require_signed, allowed_algorithms=policy.allowed_algorithms
    )
    header = read_partner_header(
        inbound.element, partner_entity_id=policy.partner_entity_id, our_urls=policy.service_urls, service="Manage NameID service"
    )
    return inbound, header, policy


_OPERATIONS = (_P + "NewID", _P + "NewEncryptedID", _P + "Terminate")


def _request_parts(element):
    identifiers = subject_identifiers(element)
    operations = [child for child in child_elements(element) if child.tag in _OPERATIONS]
    return identifiers, operations


def _name_id(identifiers, policy):
    if len(identifiers) != 1:
        raise ManageNameIDError(
            f"the ManageNameIDRequest must name exactly one subject (NameID or EncryptedID), not {len(identifiers)}"
        )
    return read_subject(identifiers[0], policy, "ManageNameIDRequest", ManageNameIDError)


def _new_id(operations, policy):
    if len(operations) != 1:
        raise ManageNameIDError(
            f"the ManageNameIDRequest must carry exactly one of NewID, NewEncryptedID or Terminate, not {len(operations)}"
        )
    operation = operations[0]
    if is_element(operation, NS_SAMLP, "Terminate"):
        return None
    if is_element(operation, NS_SAMLP, "NewEncryptedID"):
        operation = decrypt_from_partner(operation, policy, "ManageNameIDRequest", "NewID", ManageNameIDError)
        if not is_element(operation, NS_SAMLP, "NewID"):
            raise InvalidMessage(f"the NewEncryptedID holds a {local_name(operation)}, not a NewID")
    return _check_new_id((operation.text or "").strip(), InvalidMessage)


def _check_new_id(value, error):
    if not value:
        raise error("the NewID is empty")
    if len(value) > MAX_NEW_ID_LENGTH:
        raise error(f"the NewID is {len(value)} characters long; at most {MAX_NEW_ID_LENGTH} are allowed")
    return value
