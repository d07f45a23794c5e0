"""Helpers every message family of the protocol core shares (SAML 2.0 IdP and SP, SAML 1.1,
WS-Federation): message IDs, time instants and the clock, the SAML 2.0 message header, SOAP 1.1
envelopes, `samlp:Status`, our signing credential (`SigningKey`, `sign_element`), the encoding
of outbound and the decoding of inbound messages on the Redirect, POST and SOAP bindings, and
the `ProtocolError` family that carries the SAML status to answer with.

Inbound messages are read in two steps, so that the caller can choose the partner (and with it
the certificates and rules) from the still-unverified Issuer:

    message = read_post(form["SAMLRequest"], form.get("RelayState"))     # or read_redirect / read_soap
    partner = lookup(message.issuer)                                     # unverified: a lookup key only
    inbound = message.verify(partner.certificates, require_signed=True)  # InboundMessage
    read everything from inbound.element (the verified copy when signed)
"""

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus, unquote_plus

from cryptography import x509
from lxml import etree

from .bindings import deflate_encode, inflate_decode
from .constants import (
    BINDING_HTTP_POST,
    BINDING_HTTP_REDIRECT,
    BINDING_SOAP,
    DEFAULT_SIGNATURE_ALGORITHMS,
    ECDSA_SHA1,
    ECDSA_SHA256,
    ECDSA_SHA384,
    ECDSA_SHA512,
    MAX_MESSAGE_BYTES,
    MAX_REDIRECT_MESSAGE_BYTES,
    NS_DS,
    NS_SAML,
    NS_SAMLP,
    NS_SOAP11,
    NS_SOAP12,
    RSA_SHA1,
    RSA_SHA256,
    RSA_SHA384,
    RSA_SHA512,
    SHA1,
    SHA256,
    SHA384,
    SHA512,
    STATUS_REQUEST_DENIED,
    STATUS_REQUEST_VERSION_TOO_HIGH,
    STATUS_REQUEST_VERSION_TOO_LOW,
    STATUS_REQUESTER,
    STATUS_RESPONDER,
    STATUS_SUCCESS,
    STATUS_VERSION_MISMATCH,
)
from .errors import BindingError, DecryptionError, MalformedXML, SAMLError, SignatureError, XMLSecurityError
from .signing import sign, sign_query, verify, verify_query
from .xml import child_elements, children, is_element, is_xml_id, local_name, parse_xml, to_bytes

# --- Errors that carry a SAML status ---------------------------------------------------------


class ProtocolError(SAMLError):
    """A message is refused for a protocol reason. `status` (top-level code) and `sub_status`
    (second-level code or None) are what a negative SAML response should carry. Errors raised
    after the request itself was read and authenticated carry it as `request`, so the runtime can
    answer the right partner at the right endpoint."""

    status = STATUS_REQUESTER
    sub_status = None

    def __init__(self, message, *, status=None, sub_status=None, request=None):
        super().__init__(message)
        if status is not None:
            self.status = status
        if sub_status is not None:
            self.sub_status = sub_status
        self.request = request


class InvalidMessage(ProtocolError):
    """Well-formed XML that is not an acceptable SAML message: wrong root element, a required
    attribute missing or malformed, values that contradict each other."""


class UnsupportedVersion(ProtocolError):
    """The message is not SAML 2.0."""

    status = STATUS_VERSION_MISMATCH


class MessageExpired(ProtocolError):
    """The message is outside its time window (too old, not yet valid, or expired)."""

    sub_status = STATUS_REQUEST_DENIED


class SignatureRequired(ProtocolError):
    """The partnership requires a signature and the message has none."""

    sub_status = STATUS_REQUEST_DENIED


class SOAPFault(ProtocolError):
    """The partner answered with a SOAP Fault instead of a SAML message."""

    status = STATUS_RESPONDER

    def __init__(self, fault_code, fault_string):
        self.fault_code = fault_code
        self.fault_string = fault_string
        super().__init__(f"the partner answered with a SOAP fault ({fault_code}): {fault_string or 'no reason given'}")


def status_for_error(error):
    """(status, sub_status) for a negative response to `error`: its own status for a
    `ProtocolError`; Requester/RequestDenied for a signature problem; Requester for anything
    else the sender got wrong (XML, binding, encryption); Responder otherwise (our fault)."""
    if isinstance(error, ProtocolError):
        return error.status, error.sub_status
    if isinstance(error, SignatureError):
        return STATUS_REQUESTER, STATUS_REQUEST_DENIED
    if isinstance(error, MalformedXML | XMLSecurityError | BindingError | DecryptionError):
        return STATUS_REQUESTER, None
    return STATUS_RESPONDER, None


# --- IDs and time ----------------------------------------------------------------------------

ID_RANDOM_BYTES = 20  # 160 bits, as SAML core §1.3.4 recommends at least


def new_id():
    """A fresh message or assertion ID: an `xs:ID` (an NCName, so it starts with "_") with 160
    random bits."""
    return "_" + secrets.token_hex(ID_RANDOM_BYTES)


def utc_now():
    """The one clock of the protocol core (aware, UTC). Functions take `now=None` and call this,
    so tests pass a fixed instant instead of patching time."""
    return datetime.now(UTC)


def format_instant(moment):
    """`xs:dateTime` in UTC with a `Z` and whole seconds, as SAML core §1.3.3 wants it
    (`2024-05-01T12:00:00Z`). A naive datetime is taken to be UTC."""
    if moment.tzinfo is not None and moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


_INSTANT = re.compile(r"^\s*(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:[.,](\d+))?(Z|[+-]\d\d:\d\d)?\s*$")


def parse_instant(text, what="time"):
    """An aware UTC datetime from an `xs:dateTime`. Tolerant of what real peers send: any number
    of fractional-second digits (cut to microseconds), `Z`, an explicit offset (converted), or no
    zone at all (taken as UTC, which SAML mandates). `InvalidMessage` for anything else;
    `what` names the value in the message."""
    match = _INSTANT.match(text or "")
    if not match:
        raise InvalidMessage(f"{what} {text!r} is not a valid date and time (expected e.g. 2024-05-01T12:00:00Z)")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), int((fraction or "0")[:6].ljust(6, "0")), UTC
        )
    except ValueError:
        raise InvalidMessage(f"{what} {text!r} is not a valid date and time") from None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        moment -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return moment


def instant_attribute(element, name, required=True):
    """The attribute `name` of `element` parsed with `parse_instant`; None when absent and not
    `required`."""
    value = element.get(name)
    if value is None:
        if required:
            raise InvalidMessage(f"{local_name(element)} has no {name}")
        return None
    return parse_instant(value, f"{local_name(element)} {name}")


def check_issue_instant(issue_instant, now, max_age_seconds, skew_seconds, what="the message"):
    """Refuse a message issued more than `max_age_seconds` (+ skew) ago or more than
    `skew_seconds` in the future, with `MessageExpired`."""
    if issue_instant > now + timedelta(seconds=skew_seconds):
        raise MessageExpired(
            f"{what} was issued in the future ({format_instant(issue_instant)}, now {format_instant(now)}); "
            "check the partner's clock or raise the skew time"
        )
    if issue_instant < now - timedelta(seconds=max_age_seconds + skew_seconds):
        raise MessageExpired(
            f"{what} is too old: issued {format_instant(issue_instant)}, now {format_instant(now)}, "
            f"accepted for {max_age_seconds} s plus {skew_seconds} s skew"
        )


# --- Our signing credential ------------------------------------------------------------------

# The digest that goes with each signature method unless the caller names one.
_DIGEST_FOR = {
    RSA_SHA1: SHA1,
    ECDSA_SHA1: SHA1,
    RSA_SHA256: SHA256,
    ECDSA_SHA256: SHA256,
    RSA_SHA384: SHA384,
    ECDSA_SHA384: SHA384,
    RSA_SHA512: SHA512,
    ECDSA_SHA512: SHA512,
}


@dataclass(frozen=True)
class SigningKey:
    """Our signing credential and algorithm for a partnership: a `cryptography` RSA or EC private
    key, its certificate, RSA-SHA256 by default (SHA-1 and SHA-512 when the partnership asks;
    ECDSA with an EC key). `digest` None means the digest of the signature method."""

    private_key: object
    certificate: object
    algorithm: str = RSA_SHA256
    digest: str | None = None
    include_certificate: bool = True

    @property
    def digest_algorithm(self):
        return self.digest or _DIGEST_FOR.get(self.algorithm, SHA256)


def sign_element(element, signing_key):
    """Sign `element` in place with an enveloped signature (the one `signing.sign`)."""
    return sign(
        element,
        signing_key.private_key,
        signing_key.certificate,
        signing_key.algorithm,
        signing_key.digest_algorithm,
        signing_key.include_certificate,
    )


@dataclass
class IssuedMessage:
    """A protocol message we built: the element (sign and encode it with the `encode_*`
    functions), its ID and IssueInstant, and its NotOnOrAfter when it has one."""

    element: etree._Element
    id: str
    issue_instant: datetime
    not_on_or_after: datetime | None = None

    def to_bytes(self):
        return to_bytes(self.element)


# --- The SAML 2.0 message header -------------------------------------------------------------


@dataclass(frozen=True)
class MessageHeader:
    """What every SAML 2.0 request and response starts with (SAML core §3.2.1, §3.2.2)."""

    id: str
    issue_instant: datetime
    issuer: str | None
    destination: str | None
    in_response_to: str | None
    consent: str | None


_MESSAGE_NSMAP = {"samlp": NS_SAMLP, "saml": NS_SAML}


def new_message(name, issuer, now, *, message_id=None, destination=None, in_response_to=None, attributes=None):
    """A `samlp:{name}` with the header every SAML 2.0 request and response starts with: ID,
    Version, IssueInstant, the message type's own `attributes` (e.g. NotOnOrAfter), Destination and
    InResponseTo when given, and the Issuer. The caller appends the rest of the message."""
    header = {"ID": message_id or new_id(), "Version": "2.0", "IssueInstant": format_instant(now)}
    header.update(attributes or {})
    if destination:
        header["Destination"] = destination
    if in_response_to:
        header["InResponseTo"] = in_response_to
    element = etree.Element(f"{{{NS_SAMLP}}}{name}", header, nsmap=_MESSAGE_NSMAP)
    etree.SubElement(element, f"{{{NS_SAML}}}Issuer").text = issuer
    return element


def check_version(element):
    """`Version` must be 2.0: `InvalidMessage` when missing, `UnsupportedVersion` otherwise."""
    version = element.get("Version")
    if version is None:
        raise InvalidMessage(f'{local_name(element)} has no Version (SAML 2.0 messages carry Version="2.0")')
    if version != "2.0":
        try:
            too_low = float(version) < 2.0
        except ValueError:
            raise InvalidMessage(f"{local_name(element)} Version {version!r} is not a version number") from None
        raise UnsupportedVersion(
            f"{local_name(element)} is SAML version {version!r}; only 2.0 is accepted here",
            sub_status=STATUS_REQUEST_VERSION_TOO_LOW if too_low else STATUS_REQUEST_VERSION_TOO_HIGH,
        )


def issuer_of(element):
    """The text of the direct `saml:Issuer` child, stripped; None when there is none."""
    found = children(element, NS_SAML, "Issuer")
    if len(found) > 1:
        raise InvalidMessage(f"{local_name(element)} has more than one Issuer")
    if not found:
        return None
    return (found[0].text or "").strip() or None


def read_header(element):
    """Check Version and the ID, parse IssueInstant, and return the `MessageHeader`."""
    check_version(element)
    message_id = element.get("ID")
    if not message_id:
        raise InvalidMessage(f"{local_name(element)} has no ID")
    if not is_xml_id(message_id):
        raise InvalidMessage(f"{local_name(element)} ID {message_id!r} is not a valid XML ID")
    return MessageHeader(
        id=message_id,
        issue_instant=instant_attribute(element, "IssueInstant"),
        issuer=issuer_of(element),
        destination=element.get("Destination") or None,  # some peers write Destination="" on SOAP
        in_response_to=element.get("InResponseTo"),
        consent=element.get("Consent"),
    )


# --- samlp:Status ----------------------------------------------------------------------------

TOP_LEVEL_STATUS_CODES = frozenset({STATUS_SUCCESS, STATUS_REQUESTER, STATUS_RESPONDER, STATUS_VERSION_MISMATCH})


@dataclass(frozen=True)
class Status:
    code: str
    sub_code: str | None = None
    message: str | None = None

    @property
    def success(self):
        return self.code == STATUS_SUCCESS

    def describe(self):
        """One line for logs and error pages: the short code names and the message."""
        parts = [self.code.rsplit(":", 1)[-1]]
        if self.sub_code:
            parts.append(self.sub_code.rsplit(":", 1)[-1])
        text = "/".join(parts)
        return f"{text}: {self.message}" if self.message else text


def build_status(code=STATUS_SUCCESS, sub_code=None, message=None):
    """A `samlp:Status` with a top-level code, an optional second-level code and an optional
    StatusMessage. The top-level code must be one SAML core §3.2.2.2 allows there."""
    if code not in TOP_LEVEL_STATUS_CODES:
        raise ValueError(f"{code} is not a top-level status code")
    status = etree.Element(f"{{{NS_SAMLP}}}Status", nsmap={"samlp": NS_SAMLP})
    top = etree.SubElement(status, f"{{{NS_SAMLP}}}StatusCode", Value=code)
    if sub_code:
        etree.SubElement(top, f"{{{NS_SAMLP}}}StatusCode", Value=sub_code)
    if message:
        etree.SubElement(status, f"{{{NS_SAMLP}}}StatusMessage").text = message
    return status


def build_status_response(name, issuer, destination, in_response_to, status, now=None):
    """An unsigned `samlp:{name}` that carries nothing but its `Status` (LogoutResponse,
    ManageNameIDResponse)."""
    now = now or utc_now()
    element = new_message(name, issuer, now, destination=destination, in_response_to=in_response_to)
    element.append(build_status(status.code, status.sub_code, status.message))
    return IssuedMessage(element, element.get("ID"), now)


def read_status(element):
    """The `Status` of a response (or of a `samlp:Status` element itself)."""
    status = element if is_element(element, NS_SAMLP, "Status") else None
    if status is None:
        found = children(element, NS_SAMLP, "Status")
        if len(found) != 1:
            raise InvalidMessage(f"{local_name(element)} must have exactly one Status")
        status = found[0]
    codes = children(status, NS_SAMLP, "StatusCode")
    if len(codes) != 1 or not codes[0].get("Value"):
        raise InvalidMessage("Status must have exactly one StatusCode with a Value")
    top = codes[0]
    inner = children(top, NS_SAMLP, "StatusCode")
    message = children(status, NS_SAMLP, "StatusMessage")
    return Status(
        code=top.get("Value"),
        sub_code=inner[0].get("Value") if inner else None,
        message=(message[0].text or "").strip() or None if message else None,
    )


# --- SOAP 1.1 --------------------------------------------------------------------------------

_SOAP_ENVELOPE = f"{{{NS_SOAP11}}}Envelope"
_SOAP_BODY = f"{{{NS_SOAP11}}}Body"


def soap_envelope(body_element):
    """A SOAP 1.1 Envelope whose Body holds `body_element` (moved into it). Serialise with
    `xml.to_bytes`."""
    envelope = etree.Element(_SOAP_ENVELOPE, nsmap={"SOAP-ENV": NS_SOAP11})
    etree.SubElement(envelope, _SOAP_BODY).append(body_element)
    return envelope


def soap_fault(fault_string, fault_code="Server"):
    """A SOAP 1.1 Envelope holding a Fault (`Client` when the caller sent something wrong,
    `Server` when we failed), for a SOAP endpoint that cannot produce a SAML answer at all."""
    envelope = etree.Element(_SOAP_ENVELOPE, nsmap={"SOAP-ENV": NS_SOAP11})
    fault = etree.SubElement(etree.SubElement(envelope, _SOAP_BODY), f"{{{NS_SOAP11}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"SOAP-ENV:{fault_code}"
    etree.SubElement(fault, "faultstring").text = fault_string
    return envelope


def unwrap_soap(data, max_bytes=MAX_MESSAGE_BYTES):
    """The single element in the Body of a SOAP 1.1 message (still inside the parsed envelope).

    Refuses input over `max_bytes`, DTDs (via `parse_xml`), SOAP 1.2, an envelope without
    exactly one Body, a Body without exactly one element, and a header block marked
    mustUnderstand (the SAML SOAP binding defines none we would understand). A Fault raises
    `SOAPFault` with the partner's fault code and string."""
    envelope = parse_xml(data, max_bytes=max_bytes)
    if is_element(envelope, NS_SOAP12, "Envelope"):
        raise InvalidMessage("the partner sent SOAP 1.2; the SAML SOAP binding uses SOAP 1.1")
    if not is_element(envelope, NS_SOAP11, "Envelope"):
        raise InvalidMessage(f"expected a SOAP 1.1 Envelope, got {local_name(envelope)}")
    for header in children(envelope, NS_SOAP11, "Header"):
        for block in child_elements(header):
            if block.get(f"{{{NS_SOAP11}}}mustUnderstand") in ("1", "true"):
                raise InvalidMessage(f"the SOAP header {local_name(block)} must be understood, and we do not support it")
    bodies = children(envelope, NS_SOAP11, "Body")
    if len(bodies) != 1:
        raise InvalidMessage(f"the SOAP Envelope must have exactly one Body, not {len(bodies)}")
    content = child_elements(bodies[0])
    if len(content) != 1:
        raise InvalidMessage(f"the SOAP Body must hold exactly one element, not {len(content)}")
    if is_element(content[0], NS_SOAP11, "Fault"):
        fault = content[0]
        raise SOAPFault((fault.findtext("faultcode") or "").strip(), (fault.findtext("faultstring") or "").strip())
    return content[0]


# --- Inbound messages on the three bindings --------------------------------------------------

DEFAULT_RELAY_STATE_LIMIT = 1024  # bytes; SAML bindings §3.4.3 says 80, real SPs send more


@dataclass(frozen=True)
class InboundMessage:
    """A decoded inbound message after its signature check. Read SAML data only from `element`:
    when `signed`, it is the verified, self-contained copy `signing.verify` returned."""

    element: etree._Element
    binding: str
    signed: bool
    relay_state: str | None = None
    certificate: x509.Certificate | None = None  # the trusted certificate that verified it
    signature_algorithm: str | None = None  # Redirect binding only


class UnverifiedMessage:
    """A decoded inbound message whose signature has not been checked yet. `issuer` and
    `element` are for choosing the partner only; call `verify` before using anything else."""

    def __init__(self, element, binding, relay_state=None, raw_query=None):
        self.element = element
        self.binding = binding
        self.relay_state = relay_state
        self._raw_query = raw_query

    @property
    def issuer(self):
        return issuer_of(self.element)

    @property
    def name(self):
        return local_name(self.element)

    @property
    def has_signature(self):
        if self.binding == BINDING_HTTP_REDIRECT:
            return _query_has(self._raw_query, "Signature")
        return bool(children(self.element, NS_DS, "Signature"))

    def verify(
        self,
        certificates,
        *,
        require_signed=False,
        allowed_algorithms=DEFAULT_SIGNATURE_ALGORITHMS,
        relay_state_limit=DEFAULT_RELAY_STATE_LIMIT,
    ):
        """Check the signature (the query signature on the Redirect binding, the enveloped
        signature of the message element on POST and SOAP) and return an `InboundMessage`.

        A signature is verified whenever `certificates` are given; an invalid one is always
        refused (`SignatureError`), also when signing is optional. Without a signature, or with
        one but no certificates to check it, the message counts as unsigned, which
        `require_signed` turns into `SignatureRequired`. RelayState over `relay_state_limit`
        bytes is refused; otherwise it is passed through untouched."""
        if self.relay_state is not None and len(self.relay_state.encode("utf-8")) > relay_state_limit:
            raise InvalidMessage(f"RelayState is longer than {relay_state_limit} bytes")
        certificates = [] if certificates is None else certificates
        if isinstance(certificates, x509.Certificate | bytes | str):
            certificates = [certificates]
        certificates = list(certificates)
        if self.has_signature and certificates:
            if self.binding == BINDING_HTTP_REDIRECT:
                verified = verify_query(self._raw_query, certificates, allowed_algorithms)
                return InboundMessage(
                    self.element, self.binding, True, verified.relay_state, verified.certificate, verified.algorithm
                )
            root = self.element.getroottree().getroot()
            element = verify(root, self.element, certificates, allowed_algorithms)
            return InboundMessage(element, self.binding, True, self.relay_state)
        if require_signed:
            if self.has_signature:
                raise SignatureRequired(
                    f"the {self.name} is signed but no verification certificate is configured for this partner"
                )
            raise SignatureRequired(f"the partnership requires signed {self.name}s and this one is not signed")
        return InboundMessage(self.element, self.binding, False, self.relay_state)


_REDIRECT_PARAMETERS = ("SAMLRequest", "SAMLResponse", "RelayState", "SigAlg", "Signature")


def _split_query(raw_query):
    values = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition("=")
        name = unquote_plus(raw_name)
        if name in _REDIRECT_PARAMETERS:
            if name in values:
                raise BindingError(f"parameter {name} appears more than once")
            values[name] = unquote_plus(raw_value)
    return values


def _query_has(raw_query, name):
    return name in _split_query(raw_query)


def read_redirect(raw_query, parameter="SAMLRequest", max_bytes=MAX_REDIRECT_MESSAGE_BYTES):
    """Decode an HTTP-Redirect message from the raw query string exactly as received (still
    URL-encoded: the query signature is checked over those octets). `parameter` is SAMLRequest
    or SAMLResponse. Any ds:Signature inside the XML is ignored: on this binding only the query
    signature counts (bindings §3.4.4.1)."""
    if isinstance(raw_query, bytes):
        raw_query = raw_query.decode("ascii", "replace")
    raw_query = raw_query[1:] if raw_query.startswith("?") else raw_query
    if not raw_query.isascii():
        raise BindingError("the query string is not URL-encoded ASCII")
    # The base64 of DEFLATE data is never longer than 4/3 of the inflated size limit plus slack.
    if len(raw_query) > 2 * max_bytes + 8192:
        raise BindingError(f"the query string is too long ({len(raw_query)} characters)")
    values = _split_query(raw_query)
    if parameter not in values:
        raise BindingError(f"the query has no {parameter}")
    element = parse_xml(inflate_decode(values[parameter], max_bytes=max_bytes), max_bytes=max_bytes)
    return UnverifiedMessage(element, BINDING_HTTP_REDIRECT, values.get("RelayState"), raw_query)


def read_post(value, relay_state=None, max_bytes=MAX_MESSAGE_BYTES):
    """Decode an HTTP-POST message: the form field (base64 text) and the RelayState field."""
    if isinstance(value, str):
        value = value.encode("ascii", "replace")
    if not value:
        raise BindingError("the POST form carries no SAML message")
    if len(value) > max_bytes * 4 // 3 + 4096:
        raise XMLSecurityError(f"the POSTed message is larger than the limit of {max_bytes} bytes")
    try:
        data = base64.b64decode(b"".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BindingError("the POSTed message is not valid base64") from None
    return UnverifiedMessage(parse_xml(data, max_bytes=max_bytes), BINDING_HTTP_POST, relay_state)


def read_soap(data, max_bytes=MAX_MESSAGE_BYTES):
    """Decode a SAML message sent over the SOAP binding (the request body as bytes)."""
    return UnverifiedMessage(unwrap_soap(data, max_bytes=max_bytes), BINDING_SOAP)


def policy_for_issuer(message, choose_policy):
    """The partner's rules as `choose_policy(issuer)` picks them from the still-unverified Issuer
    (a lookup key only, until `message.verify` has checked the signature)."""
    if not message.issuer:
        raise InvalidMessage(f"the {message.name} has no Issuer, so the partner cannot be identified")
    return choose_policy(message.issuer)


def read_partner_header(element, *, partner_entity_id, our_urls, service):
    """`read_header` of a verified message from a partner, with the checks every such message
    gets: it has an Issuer, that Issuer is `partner_entity_id` (when one is named), and a present
    Destination is one of `our_urls` (when any) for our `service` (e.g. "SLO service")."""
    name = local_name(element)
    header = read_header(element)
    if not header.issuer:
        raise InvalidMessage(f"the {name} has no Issuer")
    if partner_entity_id and header.issuer != partner_entity_id:
        raise InvalidMessage(f"the {name} comes from {header.issuer!r}, not from {partner_entity_id!r}")
    if our_urls and header.destination is not None and header.destination not in our_urls:
        raise InvalidMessage(f"the {name} is addressed to {header.destination!r}, which is not our {service} URL")
    return header


def expect_root(element, namespace, local):
    """`InvalidMessage` unless `element` is `{namespace}local`."""
    if not is_element(element, namespace, local):
        found = local_name(element) if isinstance(element.tag, str) else "something else"
        raise InvalidMessage(f"expected a {local} message, got {found}")


# --- Outbound messages on the three bindings -------------------------------------------------


def _parameter_for(element):
    return "SAMLResponse" if local_name(element).endswith("Response") else "SAMLRequest"


def encode_redirect(location, element, *, relay_state=None, signing=None, parameter=None):
    """The URL that sends `element` over HTTP-Redirect: DEFLATE + base64 in SAMLRequest or
    SAMLResponse (by the element's name unless `parameter` says), RelayState, and with `signing`
    the query signature (SigAlg, Signature). The element must carry no enveloped signature on
    this binding (bindings §3.4.4.1)."""
    if children(element, NS_DS, "Signature"):
        raise ValueError("a message sent on the Redirect binding carries no XML signature; sign the query instead")
    parameter = parameter or _parameter_for(element)
    params = [(parameter, deflate_encode(to_bytes(element)))]
    if relay_state is not None:
        params.append(("RelayState", relay_state))
    if signing is not None:
        query = sign_query(params, signing.private_key, signing.algorithm)
    else:
        query = "&".join(f"{name}={quote_plus(value)}" for name, value in params)
    return f"{location}{'&' if '?' in location else '?'}{query}"


def encode_post(element, *, signing=None):
    """The base64 form value that sends `element` over HTTP-POST, signed (enveloped) first when
    `signing` is given."""
    if signing is not None:
        sign_element(element, signing)
    return base64.b64encode(to_bytes(element, xml_declaration=True)).decode("ascii")


def encode_soap(element, *, signing=None):
    """The SOAP 1.1 request or response body (bytes) that carries `element`, signed (enveloped)
    first when `signing` is given."""
    if signing is not None:
        sign_element(element, signing)
    return to_bytes(soap_envelope(element), xml_declaration=True)
