"""SAML 2.0 artifacts (bindings §3.6.4) and the artifact resolution protocol (core §3.5) over
SOAP, at the side that issued the artifact (the IdP, for Artifact SSO) and for the side that
resolves it.

An artifact of type 0x0004 is 44 bytes, sent base64-encoded:

    TypeCode (2 bytes, 0x0004) | EndpointIndex (2 bytes, big-endian) |
    SourceID (20 bytes: SHA-1 of the issuer's entity ID) | MessageHandle (20 random bytes)

The message the artifact stands for is stored by the runtime (shared store, one use, short
lifetime) under `artifact.value`; this module only builds and reads the protocol pieces.
"""

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from .common import (
    InvalidMessage,
    IssuedMessage,
    ProtocolError,
    check_issue_instant,
    expect_root,
    new_message,
    read_header,
    read_soap,
    read_status,
    sign_element,
    soap_envelope,
    utc_now,
)
from .constants import DEFAULT_SIGNATURE_ALGORITHMS, MAX_MESSAGE_BYTES, NS_DS, NS_SAML, NS_SAMLP, STATUS_SUCCESS
from .xml import child_elements, children, is_element, parse_xml, to_bytes

ARTIFACT_TYPE_CODE = 0x0004
ARTIFACT_BYTES = 44
SOURCE_ID_BYTES = 20
MESSAGE_HANDLE_BYTES = 20

_P = f"{{{NS_SAMLP}}}"


class ArtifactError(ProtocolError):
    """An artifact or an artifact resolution message is unusable."""


@dataclass(frozen=True)
class Artifact:
    value: str  # the base64 text as sent (the runtime's storage key)
    type_code: int
    endpoint_index: int
    source_id: bytes
    message_handle: bytes


def source_id(entity_id):
    """The SourceID of an entity: the SHA-1 digest of its entity ID (UTF-8), 20 bytes."""
    return hashlib.sha1(entity_id.encode("utf-8")).digest()


def build_artifact(issuer_entity_id, endpoint_index=0, message_handle=None):
    """A new type 0x0004 artifact for a message issued by `issuer_entity_id`;
    `endpoint_index` is the index of our artifact resolution service the receiver should call."""
    if not 0 <= endpoint_index <= 0xFFFF:
        raise ValueError("the endpoint index must be between 0 and 65535")
    message_handle = secrets.token_bytes(MESSAGE_HANDLE_BYTES) if message_handle is None else message_handle
    if len(message_handle) != MESSAGE_HANDLE_BYTES:
        raise ValueError(f"the message handle must be {MESSAGE_HANDLE_BYTES} bytes")
    raw = ARTIFACT_TYPE_CODE.to_bytes(2, "big") + endpoint_index.to_bytes(2, "big") + source_id(issuer_entity_id) + message_handle
    return Artifact(
        base64.b64encode(raw).decode("ascii"), ARTIFACT_TYPE_CODE, endpoint_index, source_id(issuer_entity_id), message_handle
    )


def parse_artifact(value):
    """An `Artifact` from its base64 text. Strict: valid base64, exactly 44 bytes, type 0x0004."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    text = (value or "").strip()
    if not text:
        raise ArtifactError("the SAMLart parameter is empty")
    if len(text) > 4 * ARTIFACT_BYTES:
        raise ArtifactError("the artifact is too long to be a SAML 2.0 artifact")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ArtifactError("the artifact is not valid base64") from None
    if len(raw) < 2:
        raise ArtifactError("the artifact is too short to carry a type code")
    type_code = int.from_bytes(raw[:2], "big")
    if type_code != ARTIFACT_TYPE_CODE:
        raise ArtifactError(f"artifact type 0x{type_code:04x} is not supported; SAML 2.0 artifacts are type 0x0004")
    if len(raw) != ARTIFACT_BYTES:
        raise ArtifactError(f"a type 0x0004 artifact is {ARTIFACT_BYTES} bytes long, this one is {len(raw)}")
    return Artifact(text, type_code, int.from_bytes(raw[2:4], "big"), raw[4:24], raw[24:44])


def source_id_index(entity_ids):
    """{SourceID: entity ID} for the entities an artifact may come from, built once and used with
    `entity_for_source_id`."""
    return {source_id(entity_id): entity_id for entity_id in entity_ids}


def entity_for_source_id(artifact_or_source_id, index):
    """The entity ID whose SourceID the artifact carries, from a `source_id_index` (or an
    iterable of entity IDs); None when no known entity matches."""
    wanted = artifact_or_source_id.source_id if isinstance(artifact_or_source_id, Artifact) else artifact_or_source_id
    if not isinstance(index, dict):
        index = source_id_index(index)
    return index.get(wanted)


# --- ArtifactResolve (the receiver asks for the message) -------------------------------------


@dataclass(frozen=True)
class ArtifactResolvePolicy:
    """Rules for an inbound ArtifactResolve from one partner: its entity ID (None: any),
    certificates, whether a signature is required, our resolution service URLs (checked against
    a present Destination), and the IssueInstant window."""

    requester_entity_id: str | None = None
    verification_certificates: tuple = ()
    require_signed: bool = False
    allowed_algorithms: frozenset = DEFAULT_SIGNATURE_ALGORITHMS
    resolution_urls: tuple = ()
    max_age_seconds: int = 300
    skew_seconds: int = 60
    max_bytes: int = MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class ArtifactResolve:
    id: str
    issuer: str
    issue_instant: datetime
    destination: str | None
    artifact: Artifact
    signed: bool
    element: object = None


def build_artifact_resolve(issuer, artifact, destination=None, *, signing=None, now=None):
    """An `ArtifactResolve` for `artifact` (an `Artifact` or its text), signed when `signing`
    is given; send it with `common.encode_soap`."""
    now = now or utc_now()
    value = artifact.value if isinstance(artifact, Artifact) else artifact
    element = new_message("ArtifactResolve", issuer, now, destination=destination)
    etree.SubElement(element, _P + "Artifact").text = value
    if signing is not None:
        sign_element(element, signing)
    return IssuedMessage(element, element.get("ID"), now)


def parse_artifact_resolve(body, policy, now=None):
    """An `ArtifactResolve` from the SOAP request body. `policy` is an `ArtifactResolvePolicy`
    or a function of the (unverified) Issuer returning one."""
    now = now or utc_now()
    message = read_soap(body, max_bytes=policy.max_bytes if isinstance(policy, ArtifactResolvePolicy) else MAX_MESSAGE_BYTES)
    expect_root(message.element, NS_SAMLP, "ArtifactResolve")
    if not isinstance(policy, ArtifactResolvePolicy):
        if not message.issuer:
            raise InvalidMessage("the ArtifactResolve has no Issuer, so the requester cannot be identified")
        policy = policy(message.issuer)
    inbound = message.verify(
        policy.verification_certificates, require_signed=policy.require_signed, allowed_algorithms=policy.allowed_algorithms
    )
    element = inbound.element
    header = read_header(element)
    if not header.issuer:
        raise InvalidMessage("the ArtifactResolve has no Issuer")
    if policy.requester_entity_id and header.issuer != policy.requester_entity_id:
        raise InvalidMessage(f"the ArtifactResolve comes from {header.issuer!r}, not from {policy.requester_entity_id!r}")
    check_issue_instant(header.issue_instant, now, policy.max_age_seconds, policy.skew_seconds, "the ArtifactResolve")
    if header.destination is not None and policy.resolution_urls and header.destination not in policy.resolution_urls:
        raise InvalidMessage(f"the ArtifactResolve is addressed to {header.destination!r}, not to our resolution service")
    values = children(element, NS_SAMLP, "Artifact")
    if len(values) != 1:
        raise InvalidMessage(f"the ArtifactResolve must carry exactly one Artifact, not {len(values)}")
    artifact = parse_artifact(values[0].text)
    return ArtifactResolve(header.id, header.issuer, header.issue_instant, header.destination, artifact, inbound.signed, element)


# --- ArtifactResponse (the issuer hands the message over) ------------------------------------


def build_artifact_response(
    *, issuer, in_response_to, message=None, destination=None, signing=None, status=STATUS_SUCCESS, now=None
):
    """The SOAP envelope (an element; serialise with `xml.to_bytes`) holding an ArtifactResponse
    to request `in_response_to`, with the stored `message` (an element or its bytes) inside.
    With `message` None (unknown, expired or already used artifact) the response carries no
    message, as core §3.5.3 prescribes. Signed when `signing` is given (the inner message keeps
    its own signatures)."""
    now = now or utc_now()
    element = new_message("ArtifactResponse", issuer, now, destination=destination, in_response_to=in_response_to)
    etree.SubElement(etree.SubElement(element, _P + "Status"), _P + "StatusCode", {"Value": status})
    if message is not None:
        if isinstance(message, bytes | str):
            message = parse_xml(message, max_bytes=max(MAX_MESSAGE_BYTES, len(message) + 1))
        element.append(message)
    if signing is not None:
        sign_element(element, signing)
    return soap_envelope(element)


@dataclass(frozen=True)
class ArtifactResponse:
    id: str
    issuer: str | None
    in_response_to: str | None
    status: object  # common.Status
    message: object  # the resolved message element, or None
    signed: bool


def parse_artifact_response(body, certificates=(), *, require_signed=False, allowed_algorithms=DEFAULT_SIGNATURE_ALGORITHMS):
    """Read an ArtifactResponse from the SOAP response body (the resolving side). The embedded
    message keeps its own signatures, which its consumer verifies; `message` is inside the
    verified copy when the ArtifactResponse is signed."""
    inbound = read_soap(body).verify(certificates, require_signed=require_signed, allowed_algorithms=allowed_algorithms)
    element = inbound.element
    expect_root(element, NS_SAMLP, "ArtifactResponse")
    header = read_header(element)
    status = read_status(element)
    content = [
        child
        for child in child_elements(element)
        if not (is_element(child, NS_SAML, "Issuer") or is_element(child, NS_SAMLP, "Status"))
        and not is_element(child, NS_DS, "Signature")
        and not is_element(child, NS_SAMLP, "Extensions")
    ]
    if len(content) > 1:
        raise InvalidMessage("the ArtifactResponse carries more than one message")
    return ArtifactResponse(
        header.id, header.issuer, header.in_response_to, status, content[0] if content else None, inbound.signed
    )


def artifact_response_bytes(envelope):
    """The HTTP body for an ArtifactResponse envelope."""
    return to_bytes(envelope, xml_declaration=True)
