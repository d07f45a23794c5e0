"""SAML metadata → plain data: pure functions and dataclasses, no Django models, no HTTP.

`read_metadata(stream, on_entity, ...)` reads a metadata document from a binary file object:

* a single `md:EntityDescriptor`, or an aggregate `md:EntitiesDescriptor` (nested ones too);
* **streaming**: the document is fed to libxml2 in 64 KiB chunks, every entity is handed to
  `on_entity` as an `EntityData` as soon as its `</EntityDescriptor>` is read, and the elements
  already handled are cleared and removed, so a 10,000-entity, 60 MB aggregate is read in a few
  tens of MB of memory;
* with the protections of `federation.saml.xml.parse_xml`: no DTD or entity declaration (refused
  in the bytes before the parser sees them, and again from the parsed document information), no
  entity expansion, no network, libxml2's size and depth limits on, comments dropped, and a size
  cap counted while reading;
* **signatures**: a single EntityDescriptor is verified with `federation.saml.signing.verify`
  (the whole document is small and in memory anyway). An aggregate's enveloped signature covers the
  whole document, so it is verified while streaming (`entities.metadata_signature`): the
  SignedInfo is checked and its signature verified with the trust anchor as soon as the
  `ds:Signature` (the first child, as the schema requires) has been read, and the digest of the
  exclusive-canonical document is computed piece by piece and compared at the end. Entities
  handed to `on_entity` before the end are therefore **provisional**: the caller must not store
  anything until `read_metadata` has returned (it raises on a bad digest). For a second pass
  (bulk import), `replay=info` makes the reader recompute each piece's canonical hash and compare
  it with the first pass, so what is imported is exactly what was verified.

One malformed entity (no entityID, an endpoint without a Location, a bad index, a broken
certificate…) is returned with `problems` filled in and does not stop the rest. Problems with the
document as a whole (not XML, a DTD, the wrong root element, an invalid or missing signature, an
expired validUntil, over the size limit) raise `MetadataError` with a message for an administrator.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property

from lxml import etree

from federation.saml.constants import (
    NS_DS,
    NS_FED,
    NS_MD,
    NS_MDATTR,
    NS_MDRPI,
    NS_MDUI,
    NS_SAML,
    NS_WSA,
    NS_XML,
    NS_XSI,
    PROTOCOL_SAML2,
    PROTOCOL_SAML11,
)

PROTOCOL_SAML10 = "urn:oasis:names:tc:SAML:1.0:protocol"
SAML11_PROTOCOLS = frozenset({PROTOCOL_SAML11, PROTOCOL_SAML10})

MD_ENTITY = f"{{{NS_MD}}}EntityDescriptor"
MD_ENTITIES = f"{{{NS_MD}}}EntitiesDescriptor"
MD_EXTENSIONS = f"{{{NS_MD}}}Extensions"
DS_SIGNATURE = f"{{{NS_DS}}}Signature"

CHUNK_BYTES = 64 * 1024
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
ENTITY_ID_MAX = 1024

# Entity types (the values of entities.models.EntityType; repeated here so this module stays pure).
SAML2_IDP, SAML2_SP = "saml2_idp", "saml2_sp"
SAML11_PRODUCER, SAML11_CONSUMER = "saml11_producer", "saml11_consumer"
WSFED_IP, WSFED_RP = "wsfed_ip", "wsfed_rp"

TOKEN_TYPE_SAML2 = frozenset(
    {
        "urn:oasis:names:tc:SAML:2.0:assertion",
        "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0",
    }
)

_FORBIDDEN_MARKUP = tuple(
    marker.encode(codec) for marker in ("<!DOCTYPE", "<!ENTITY") for codec in ("ascii", "utf-16-le", "utf-16-be")
)
_OVERLAP = max(len(marker) for marker in _FORBIDDEN_MARKUP) - 1
_LIMIT_MESSAGES = ("Excessive depth", "Resource limit", "XML_PARSE_HUGE", "Huge input lookup", "Maximum entity", "huge text")


class MetadataError(Exception):
    """The document as a whole cannot be used; the message is for an administrator."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------- the data


@dataclass
class CertificateData:
    """One certificate of a KeyDescriptor. `use` is "signing", "encryption" or "" (no use given:
    both, SAML metadata §2.4.1.1)."""

    use: str
    base64: str
    key_name: str = ""

    @cached_property
    def der(self):
        return base64.b64decode(self.base64)

    @cached_property
    def fingerprint(self):
        """SHA-256 of the DER, as the keystore writes it (AA:BB:…)."""
        return hashlib.sha256(self.der).digest().hex(":").upper()

    @cached_property
    def certificate(self):
        """The parsed `x509.Certificate`, or None when the bytes are not one."""
        from cryptography import x509

        try:
            return x509.load_der_x509_certificate(self.der)
        except ValueError:
            return None

    def problem(self, now=None):
        """Why this certificate cannot be imported (not a certificate, expired, not yet valid), or ''."""
        certificate = self.certificate
        if certificate is None:
            return "not a valid X.509 certificate"
        now = now or datetime.now(UTC)
        if certificate.not_valid_after_utc <= now:
            return f"expired on {certificate.not_valid_after_utc:%Y-%m-%d}"
        if certificate.not_valid_before_utc > now:
            return f"not valid before {certificate.not_valid_before_utc:%Y-%m-%d}"
        return ""

    @property
    def issued_to(self):
        """The subject's common name (else the whole subject), for the "Issued To" column."""
        from cryptography.x509.oid import NameOID

        certificate = self.certificate
        if certificate is None:
            return "?"
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else certificate.subject.rfc4514_string()


@dataclass
class EndpointData:
    kind: str  # acs, sso, slo, artifact_resolution, attribute_service, manage_name_id (entities.models.EndpointKind)
    binding: str
    location: str
    response_location: str = ""
    index: int | None = None
    is_default: bool = False


@dataclass
class RoleData:
    """One role descriptor. `descriptor` is idp, sp, attribute_authority (SAML) or sts, application (WS-Fed)."""

    descriptor: str
    protocols: list[str] = field(default_factory=list)
    endpoints: list[EndpointData] = field(default_factory=list)
    name_id_formats: list[str] = field(default_factory=list)
    certificates: list[CertificateData] = field(default_factory=list)
    attributes: list[dict] = field(default_factory=list)  # IdP: [{name, name_format, friendly_name}]
    display_name: str = ""
    wsfed_service_url: str = ""  # fed:PassiveRequestorEndpoint
    wsfed_signout_url: str = ""  # fed:SingleSignOutNotificationEndpoint
    token_types: list[str] = field(default_factory=list)


@dataclass
class EntityData:
    """One EntityDescriptor. `problems` lists why it is malformed (then it is not importable)."""

    position: int
    entity_id: str
    line: int | None = None
    valid_until: datetime | None = None
    cache_duration: timedelta | None = None
    roles: list[RoleData] = field(default_factory=list)
    display_name: str = ""
    organization: str = ""
    registration_authority: str = ""
    entity_attributes: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    # -- derived facts

    def expired(self, now=None):
        return self.valid_until is not None and self.valid_until <= (now or datetime.now(UTC))

    def _role(self, descriptor, protocols=None):
        for role in self.roles:
            if role.descriptor == descriptor and (protocols is None or protocols & set(role.protocols)):
                return role
        return None

    def role_for(self, entity_type):
        """The role descriptor an entity of this type is made from (None when the entity has no such role)."""
        if entity_type == SAML2_IDP:
            return self._role("idp", {PROTOCOL_SAML2})
        if entity_type == SAML2_SP:
            return self._role("sp", {PROTOCOL_SAML2})
        if entity_type == SAML11_PRODUCER:
            return self._role("idp", SAML11_PROTOCOLS)
        if entity_type == SAML11_CONSUMER:
            return self._role("sp", SAML11_PROTOCOLS)
        if entity_type == WSFED_IP:
            return self._role("sts")
        if entity_type == WSFED_RP:
            return self._role("application")
        return None

    def attribute_authority(self):
        return self._role("attribute_authority", {PROTOCOL_SAML2})

    def entity_types(self):
        """The entity types this entity can be imported as, in the console's order."""
        types = (SAML2_IDP, SAML2_SP, SAML11_PRODUCER, SAML11_CONSUMER, WSFED_IP, WSFED_RP)
        return [entity_type for entity_type in types if self.role_for(entity_type) is not None]

    @property
    def importable(self):
        return not self.problems and bool(self.entity_types())

    def label(self):
        return self.display_name or self.organization or self.entity_id

    def certificate_count(self):
        return sum(len(role.certificates) for role in self.roles)

    # -- JSON (the import wizard keeps scanned entities in the database)

    def to_json(self):
        data = asdict(self)
        data["valid_until"] = self.valid_until.isoformat() if self.valid_until else None
        data["cache_duration"] = self.cache_duration.total_seconds() if self.cache_duration is not None else None
        return data

    @classmethod
    def from_json(cls, data):
        data = dict(data)
        data["valid_until"] = datetime.fromisoformat(data["valid_until"]) if data.get("valid_until") else None
        seconds = data.get("cache_duration")
        data["cache_duration"] = timedelta(seconds=seconds) if seconds is not None else None
        roles = []
        for role in data.get("roles", []):
            role = dict(role)
            role["endpoints"] = [EndpointData(**endpoint) for endpoint in role.get("endpoints", [])]
            role["certificates"] = [
                CertificateData(cert["use"], cert["base64"], cert.get("key_name", "")) for cert in role.get("certificates", [])
            ]
            roles.append(RoleData(**role))
        data["roles"] = roles
        return cls(**data)


@dataclass
class TrustAnchor:
    """What a metadata signature is verified with: pinned `certificates` (the signer's own), and/or
    `cas` (the signing certificate in the signature's KeyInfo must chain to one of them). `name`
    (the keystore alias) is for messages."""

    name: str
    certificates: list = field(default_factory=list)
    cas: list = field(default_factory=list)


@dataclass
class DocumentInfo:
    """What was learnt about the document as a whole."""

    root: str = ""  # EntityDescriptor or EntitiesDescriptor
    name: str = ""
    id: str = ""
    valid_until: datetime | None = None
    cache_duration: timedelta | None = None
    signed: bool = False
    verified: bool = False
    verified_with: str = ""  # subject of the certificate that verified the signature
    signature_algorithm: str = ""
    entity_count: int = 0
    malformed_count: int = 0
    size: int = 0
    sha256: str = ""
    notes: list[str] = field(default_factory=list)
    unit_digests: list[bytes] = field(default_factory=list, repr=False)

    def summary(self):
        """A JSON-ready summary (no digests)."""
        return {
            "root": self.root,
            "name": self.name,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "cache_duration": self.cache_duration.total_seconds() if self.cache_duration is not None else None,
            "signed": self.signed,
            "verified": self.verified,
            "verified_with": self.verified_with,
            "entity_count": self.entity_count,
            "malformed_count": self.malformed_count,
            "size": self.size,
            "sha256": self.sha256,
            "notes": self.notes,
        }


# ---------------------------------------------------------------- dates and durations


_DURATION = re.compile(
    r"^(?P<sign>-)?P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text):
    """An xs:duration (cacheDuration, e.g. PT6H or P1D) as a timedelta; a year counts 365 days and a
    month 30. Raises ValueError for anything else."""
    text = (text or "").strip()
    match = _DURATION.match(text)
    if not match or text in ("P", "-P") or text.endswith("T"):
        raise ValueError(f"'{text}' is not an xs:duration such as PT6H or P1D")
    parts = {name: float(value) for name, value in match.groupdict().items() if value and name != "sign"}
    delta = timedelta(
        days=parts.get("years", 0) * 365 + parts.get("months", 0) * 30 + parts.get("days", 0),
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )
    if match.group("sign"):
        raise ValueError(f"'{text}' is a negative duration")
    return delta


def parse_datetime(text):
    """An xs:dateTime (validUntil) as an aware UTC datetime; no time zone means UTC. Raises ValueError."""
    text = (text or "").strip()
    if not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", text):
        raise ValueError(f"'{text}' is not an xs:dateTime such as 2030-01-31T12:00:00Z")
    value = text[:-1] + "+00:00" if text.endswith("Z") else text
    # Python accepts at most 6 fractional digits.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _earliest(*values):
    present = [value for value in values if value is not None]
    return min(present) if present else None


# ---------------------------------------------------------------- one EntityDescriptor → EntityData


def _local(element):
    tag = element.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _ns(element):
    tag = element.tag
    return tag[1:].partition("}")[0] if isinstance(tag, str) and tag.startswith("{") else ""


def _md_children(element, local):
    return [child for child in element if isinstance(child.tag, str) and child.tag == f"{{{NS_MD}}}{local}"]


def _text(element):
    return "".join(element.itertext()).strip() if element is not None else ""


def _lang_pick(elements):
    """The English text among xml:lang variants, else the first."""
    texts = [(element.get(f"{{{NS_XML}}}lang", ""), _text(element)) for element in elements]
    texts = [(lang, text) for lang, text in texts if text]
    for lang, text in texts:
        if lang.lower().startswith("en"):
            return text
    return texts[0][1] if texts else ""


# Endpoint elements per role descriptor: local name → (kind, indexed)
_ENDPOINTS = {
    "idp": {
        "SingleSignOnService": ("sso", False),
        "SingleLogoutService": ("slo", False),
        "ArtifactResolutionService": ("artifact_resolution", True),
        "ManageNameIDService": ("manage_name_id", False),
    },
    "sp": {
        "AssertionConsumerService": ("acs", True),
        "SingleLogoutService": ("slo", False),
        "ArtifactResolutionService": ("artifact_resolution", True),
        "ManageNameIDService": ("manage_name_id", False),
    },
    "attribute_authority": {"AttributeService": ("attribute_service", False)},
}
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _endpoints(role_element, descriptor, problems):
    found = []
    counters = {}
    for child in role_element:
        if not isinstance(child.tag, str) or _ns(child) != NS_MD:
            continue
        spec = _ENDPOINTS.get(descriptor, {}).get(_local(child))
        if spec is None:
            continue
        kind, indexed = spec
        name = _local(child)
        counters[name] = counters.get(name, 0) + 1
        where = f"{name} #{counters[name]}"
        binding = (child.get("Binding") or "").strip()
        location = (child.get("Location") or "").strip()
        if not binding:
            problems.append(f"{where} has no Binding.")
            continue
        if not location:
            problems.append(f"{where} has no Location.")
            continue
        endpoint = EndpointData(kind, binding, location, (child.get("ResponseLocation") or "").strip())
        if indexed:
            index = (child.get("index") or "").strip()
            if not index.isdigit() or len(index) > 5:
                problems.append(f"{where} has no valid index (a whole number 0–65535 is required).")
                continue
            endpoint.index = int(index)
            default = (child.get("isDefault") or "").strip().lower()
            if default and default not in _BOOLEANS:
                problems.append(f"{where}: isDefault must be true or false.")
                continue
            endpoint.is_default = _BOOLEANS.get(default, False)
        found.append(endpoint)
    return found


def _certificates(role_element, problems):
    found = []
    for number, key_descriptor in enumerate(_md_children(role_element, "KeyDescriptor"), start=1):
        use = (key_descriptor.get("use") or "").strip()
        if use not in ("", "signing", "encryption"):
            problems.append(f"KeyDescriptor #{number} has use='{use}'; only signing or encryption are defined.")
            continue
        key_info = key_descriptor.find(f"{{{NS_DS}}}KeyInfo")
        if key_info is None:
            continue
        key_name = _text(key_info.find(f"{{{NS_DS}}}KeyName"))
        node = key_info.find(f"{{{NS_DS}}}X509Data/{{{NS_DS}}}X509Certificate")
        if node is None:
            continue  # a bare key (KeyValue) without a certificate: nothing the keystore can hold
        body = "".join((node.text or "").split())
        try:
            der = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"KeyDescriptor #{number}: the X509Certificate is not valid base64.")
            continue
        if not der:
            problems.append(f"KeyDescriptor #{number}: the X509Certificate is empty.")
            continue
        found.append(CertificateData(use, body, key_name))
    return found


def _ui_display_name(role_element):
    extensions = _md_children(role_element, "Extensions")
    for ext in extensions:
        for ui in ext.iterchildren(f"{{{NS_MDUI}}}UIInfo"):
            name = _lang_pick(list(ui.iterchildren(f"{{{NS_MDUI}}}DisplayName")))
            if name:
                return name
    return ""


def _saml_role(element, descriptor, problems):
    role = RoleData(descriptor, protocols=(element.get("protocolSupportEnumeration") or "").split())
    role.endpoints = _endpoints(element, descriptor, problems)
    role.name_id_formats = [text for text in (_text(node) for node in _md_children(element, "NameIDFormat")) if text]
    role.certificates = _certificates(element, problems)
    role.display_name = _ui_display_name(element)
    if descriptor == "idp":
        for attribute in element.iterchildren(f"{{{NS_SAML}}}Attribute"):
            name = (attribute.get("Name") or "").strip()
            if name:
                role.attributes.append(
                    {
                        "name": name,
                        "name_format": (attribute.get("NameFormat") or "").strip(),
                        "friendly_name": (attribute.get("FriendlyName") or "").strip(),
                    }
                )
    return role


def _xsi_type(element):
    """The (namespace, local name) of an xsi:type QName, resolved with the element's namespaces."""
    value = (element.get(f"{{{NS_XSI}}}type") or "").strip()
    if not value:
        return None, ""
    prefix, _, local = value.rpartition(":")
    return element.nsmap.get(prefix or None), local


def _address(element, local):
    node = element.find(f"{{{NS_FED}}}{local}")
    if node is None:
        return ""
    return _text(node.find(f"{{{NS_WSA}}}EndpointReference/{{{NS_WSA}}}Address"))


def _wsfed_role(element, descriptor, problems):
    role = RoleData(descriptor, protocols=(element.get("protocolSupportEnumeration") or "").split())
    role.certificates = [
        CertificateData("signing", cert.base64, cert.key_name) for cert in _certificates(element, problems)
    ]  # WS-Federation keys are for signing only
    role.wsfed_service_url = _address(element, "PassiveRequestorEndpoint")
    role.wsfed_signout_url = _address(element, "SingleSignOutNotificationEndpoint")
    role.token_types = [
        (node.get("Uri") or "").strip()
        for node in element.iterfind(f"{{{NS_FED}}}TokenTypesOffered/{{{NS_FED}}}TokenType")
        if node.get("Uri")
    ]
    role.display_name = _ui_display_name(element)
    if not role.wsfed_service_url:
        problems.append(f"The WS-Federation {descriptor} role has no PassiveRequestorEndpoint address.")
    return role


def parse_entity(element, position=0, valid_until=None, cache_duration=None):
    """An `EntityData` from an md:EntityDescriptor element. `valid_until` / `cache_duration` are the
    enclosing EntitiesDescriptors' (the earliest / shortest wins). Never raises for content problems:
    they are listed in `problems`."""
    problems = []
    entity_id = (element.get("entityID") or "").strip()
    line = element.sourceline if element.sourceline and element.sourceline < 65535 else None
    data = EntityData(position=position, entity_id=entity_id, line=line)
    if not entity_id:
        problems.append("The EntityDescriptor has no entityID.")
    elif len(entity_id) > ENTITY_ID_MAX:
        problems.append(f"The entityID is longer than {ENTITY_ID_MAX} characters.")
    elif any(ch.isspace() for ch in entity_id):
        problems.append("The entityID contains spaces or line breaks.")
    own_until = None
    if element.get("validUntil"):
        try:
            own_until = parse_datetime(element.get("validUntil"))
        except ValueError as exc:
            problems.append(f"validUntil: {exc}.")
    own_cache = None
    if element.get("cacheDuration"):
        try:
            own_cache = parse_duration(element.get("cacheDuration"))
        except ValueError as exc:
            problems.append(f"cacheDuration: {exc}.")
    data.valid_until = _earliest(valid_until, own_until)
    data.cache_duration = _earliest(cache_duration, own_cache)

    for child in element:
        if not isinstance(child.tag, str):
            continue
        namespace, local = _ns(child), _local(child)
        if namespace != NS_MD:
            continue
        if local == "IDPSSODescriptor":
            data.roles.append(_saml_role(child, "idp", problems))
        elif local == "SPSSODescriptor":
            data.roles.append(_saml_role(child, "sp", problems))
        elif local == "AttributeAuthorityDescriptor":
            data.roles.append(_saml_role(child, "attribute_authority", problems))
        elif local == "RoleDescriptor":
            type_ns, type_local = _xsi_type(child)
            if type_ns == NS_FED and type_local == "SecurityTokenServiceType":
                data.roles.append(_wsfed_role(child, "sts", problems))
            elif type_ns == NS_FED and type_local == "ApplicationServiceType":
                data.roles.append(_wsfed_role(child, "application", problems))
        elif local == "Extensions":
            _entity_extensions(child, data)
        elif local == "Organization":
            data.organization = _lang_pick(_md_children(child, "OrganizationDisplayName")) or _lang_pick(
                _md_children(child, "OrganizationName")
            )
    if not data.display_name:
        data.display_name = next((role.display_name for role in data.roles if role.display_name), "")
    data.problems = problems
    return data


def _entity_extensions(extensions, data):
    for child in extensions:
        if not isinstance(child.tag, str):
            continue
        if child.tag == f"{{{NS_MDRPI}}}RegistrationInfo":
            data.registration_authority = (child.get("registrationAuthority") or "").strip()
        elif child.tag == f"{{{NS_MDATTR}}}EntityAttributes":
            for attribute in child.iterchildren(f"{{{NS_SAML}}}Attribute"):
                name = (attribute.get("Name") or "").strip()
                if name:
                    values = [_text(value) for value in attribute.iterchildren(f"{{{NS_SAML}}}AttributeValue")]
                    data.entity_attributes.setdefault(name, []).extend(value for value in values if value)
        elif child.tag == f"{{{NS_MDUI}}}UIInfo" and not data.display_name:
            data.display_name = _lang_pick(list(child.iterchildren(f"{{{NS_MDUI}}}DisplayName")))


# ---------------------------------------------------------------- reading a document


class _Input:
    """Chunks of the stream, refused before the parser sees them if they hold a DTD or pass the
    size limit; hashes what it reads."""

    def __init__(self, stream, max_bytes):
        self.stream = stream
        self.max_bytes = max_bytes
        self.size = 0
        self.sha256 = hashlib.sha256()
        self._tail = b""

    def chunks(self):
        while True:
            chunk = self.stream.read(CHUNK_BYTES)
            if not chunk:
                return
            if isinstance(chunk, str):
                raise TypeError("read the metadata as bytes (open the file in binary mode)")
            self.size += len(chunk)
            if self.max_bytes and self.size > self.max_bytes:
                raise MetadataError(f"The metadata is larger than the limit of {format_bytes(self.max_bytes)}.")
            window = self._tail + chunk
            if any(marker in window for marker in _FORBIDDEN_MARKUP):
                raise MetadataError("The document contains a DTD or an entity declaration, which are not allowed in metadata.")
            self._tail = window[-_OVERLAP:]
            self.sha256.update(chunk)
            yield chunk


def format_bytes(count):
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")
    if count >= 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count} bytes"


class _Frame:
    """An open EntitiesDescriptor while streaming."""

    def __init__(self, element, depth, valid_until, cache_duration):
        self.element = element
        self.depth = depth
        self.valid_until = valid_until
        self.cache_duration = cache_duration
        self.previous = None  # the last child element handled (removed once its tail is read)
        self.children_seen = 0
        self.shell = None  # entities.metadata_signature.Shell while digesting or replaying


def read_metadata(
    stream,
    on_entity,
    *,
    max_bytes=DEFAULT_MAX_BYTES,
    trust=None,
    allow_unsigned=False,
    now=None,
    replay=None,
    progress=None,
):
    """Read a metadata document from the binary file object `stream`; call `on_entity(EntityData)`
    for each EntityDescriptor in document order; return a `DocumentInfo`.

    `trust` (a TrustAnchor) verifies the signature; without a valid signature the document is
    refused unless `allow_unsigned` (a signed document read with allow_unsigned and no trust is read
    without checking the signature, and `info.notes` says so). `replay` is the DocumentInfo of an
    earlier verified read of the same document: each entity is then checked to be byte-for-byte
    (canonically) what was verified. `progress(bytes_read, entities)` is called after each chunk.
    Raises MetadataError.
    """
    from entities import metadata_signature

    if trust is None and not allow_unsigned and replay is None:
        raise MetadataError("Choose a trust anchor to verify the metadata signature, or explicitly allow unsigned metadata.")
    now = now or datetime.now(UTC)
    reader = _Reader(stream, on_entity, max_bytes, trust, allow_unsigned, now, replay, progress, metadata_signature)
    return reader.run()


class _Reader:
    def __init__(self, stream, on_entity, max_bytes, trust, allow_unsigned, now, replay, progress, signature_module):
        self.input = _Input(stream, max_bytes)
        self.on_entity = on_entity
        self.trust = trust
        self.allow_unsigned = allow_unsigned
        self.now = now
        self.replay = replay
        self.progress = progress
        self.sig = signature_module
        self.info = DocumentInfo()
        self.frames = []
        self.roles = []  # per open element: root, frame, unit, inner
        self.root = None
        self.digest = None  # metadata_signature.StreamingDigest once the root signature is checked
        self.checking = replay is not None and replay.verified  # compare each piece with the verified read
        self.prefixes = []  # InclusiveNamespaces PrefixList of the signature's exc-c14n transform
        self.unit_number = 0
        self.entity_position = 0
        self.signature_decided = False

    # -- driving the parser

    def run(self):
        parser = etree.XMLPullParser(
            events=("start", "end"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
        )
        try:
            for chunk in self.input.chunks():
                parser.feed(chunk)
                self._events(parser)
                if self.progress:
                    self.progress(self.input.size, self.entity_position)
            if self.input.size == 0:
                raise MetadataError("The document is empty; it is not XML.")
            root = parser.close()
            self._events(parser)
        except etree.XMLSyntaxError as error:
            message = str(error)
            if any(text in message for text in _LIMIT_MESSAGES):
                raise MetadataError(f"The document exceeds the XML parser's limits: {message}") from None
            raise MetadataError(f"The document is not well-formed XML: {message}") from None
        if self.root is None:
            raise MetadataError("The document has no root element; it is not SAML metadata.")
        if self.info.root == "EntityDescriptor":
            self._single(root)
        self.info.size = self.input.size
        self.info.sha256 = self.input.sha256.hexdigest()
        return self.info

    def _events(self, parser):
        for event, element in parser.read_events():
            if event == "start":
                self._start(element)
            else:
                self._end(element)

    # -- events

    def _start(self, element):
        if self.root is None:
            self._root_start(element)
            return
        parent_role = self.roles[-1]
        if parent_role != "frame":
            self.roles.append("inner")
            return
        frame = self.frames[-1]
        if frame.previous is None:
            if element.getprevious() is not None:
                raise MetadataError("Unexpected content before the first element of an EntitiesDescriptor.")
            self._emit_text(frame.element.text)
        else:
            if element.getprevious() is not frame.previous:
                raise MetadataError("Unexpected content between the elements of an EntitiesDescriptor.")
            self._emit_text(frame.previous.tail)
            frame.element.remove(frame.previous)
        frame.previous = element
        frame.children_seen += 1
        if element.tag == MD_ENTITIES:
            if self._digesting():
                self.sig.check_own_ids(element, self.digest.root_id)
            self._decide_signature(element)
            self._open_frame(element)
            self.roles.append("frame")
        else:
            self.roles.append("unit")

    def _end(self, element):
        role = self.roles.pop()
        if role == "unit":
            self._unit(element)
        elif role == "frame":
            self._close_frame(element)

    def _root_start(self, element):
        docinfo = element.getroottree().docinfo
        if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
            raise MetadataError("The document contains a DTD or an entity declaration, which are not allowed in metadata.")
        self.root = element
        if element.tag == MD_ENTITY:
            self.info.root = "EntityDescriptor"
            self.roles.append("root")
            self._document_times(element)
            return
        if element.tag != MD_ENTITIES:
            tag = etree.QName(element)
            where = f"{{{tag.namespace}}}{tag.localname}" if tag.namespace else tag.localname
            raise MetadataError(
                f"The root element is {where}; SAML metadata starts with md:EntityDescriptor or md:EntitiesDescriptor "
                f"(namespace {NS_MD})."
            )
        self.info.root = "EntitiesDescriptor"
        self.info.name = element.get("Name") or ""
        self.info.id = element.get("ID") or ""
        self._document_times(element)
        self._open_frame(element)
        self.roles.append("frame")

    def _document_times(self, element):
        try:
            until = parse_datetime(element.get("validUntil")) if element.get("validUntil") else None
            cache = parse_duration(element.get("cacheDuration")) if element.get("cacheDuration") else None
        except ValueError as exc:
            raise MetadataError(f"The document's validity is unreadable: {exc}.") from None
        if until is not None and until <= self.now:
            raise MetadataError(
                f"The metadata expired on {until:%Y-%m-%d %H:%M} UTC (validUntil); ask the partner or federation for a current copy."
            )
        self.info.valid_until = until
        self.info.cache_duration = cache

    # -- frames (EntitiesDescriptor)

    def _open_frame(self, element):
        parent = self.frames[-1] if self.frames else None
        until = parent.valid_until if parent else None
        cache = parent.cache_duration if parent else None
        if parent is not None:
            try:
                if element.get("validUntil"):
                    until = _earliest(until, parse_datetime(element.get("validUntil")))
                if element.get("cacheDuration"):
                    cache = _earliest(cache, parse_duration(element.get("cacheDuration")))
            except ValueError as exc:
                raise MetadataError(f"A nested EntitiesDescriptor's validity is unreadable: {exc}.") from None
        else:
            until, cache = self.info.valid_until, self.info.cache_duration
        frame = _Frame(element, len(self.frames), until, cache)
        # The root's shell is made once its signature says how to canonicalise (it comes first).
        if parent is not None and self._shells():
            frame.shell = self.sig.Shell(element, parent.shell, self.prefixes)
            if self._digesting():
                self.digest.update(frame.shell.open_part())
        self.frames.append(frame)

    def _close_frame(self, element):
        frame = self.frames.pop()
        if frame.previous is None:
            if len(element):
                raise MetadataError("Unexpected content in an EntitiesDescriptor.")
            self._emit_text(element.text)
        else:
            if len(element) != 1 or element[0] is not frame.previous:
                raise MetadataError("Unexpected content at the end of an EntitiesDescriptor.")
            self._emit_text(frame.previous.tail)
            element.remove(frame.previous)
        if frame.depth == 0:
            self._decide_signature(None)
        if self._digesting():
            self.digest.update(frame.shell.close_part())
        if frame.depth == 0:
            self._finish_aggregate()

    # -- units (children of an EntitiesDescriptor)

    def _unit(self, element):
        frame = self.frames[-1]
        if element.tag == DS_SIGNATURE and frame.depth == 0:
            self._root_signature(element, frame)
            element.clear(keep_tail=True)
            return
        self._decide_signature(element)
        if self._digesting():
            self.sig.check_subtree_ids(element, self.digest.root_id)
        source = element
        if self._shells():
            canonical, copy_of_unit = frame.shell.canonical_unit(element)
            self._record_unit(canonical)
            if self._digesting():
                self.digest.update(canonical)
            source = copy_of_unit
        if element.tag == MD_ENTITY:
            self.entity_position += 1
            entity = parse_entity(source, self.entity_position, frame.valid_until, frame.cache_duration)
            self.info.entity_count += 1
            if entity.problems:
                self.info.malformed_count += 1
            self.on_entity(entity)
        elif element.tag not in (MD_EXTENSIONS, DS_SIGNATURE):
            self.info.notes.append(f"Ignored an unexpected {etree.QName(element).localname} element in an EntitiesDescriptor.")
        element.clear(keep_tail=True)

    def _record_unit(self, canonical):
        unit_hash = hashlib.sha256(canonical).digest()
        if self.checking:
            expected = self.replay.unit_digests
            if self.unit_number >= len(expected) or expected[self.unit_number] != unit_hash:
                raise MetadataError("The document changed between its verification and the import; nothing more was imported.")
        else:
            self.info.unit_digests.append(unit_hash)
        self.unit_number += 1

    # -- the signature of an aggregate

    def _digesting(self):
        return self.digest is not None

    def _shells(self):
        return self.digest is not None or (self.checking and self.info.signed)

    def _root_signature(self, element, frame):
        if self.info.signed:
            raise MetadataError("The EntitiesDescriptor has more than one signature.")
        if frame.children_seen != 1:
            raise MetadataError("The metadata signature must be the first element of the EntitiesDescriptor.")
        self.info.signed = True
        self.signature_decided = True
        self.sig.check_subtree_ids(element, self.root.get("ID") or "")
        if self.replay is not None:
            if self.checking:
                self.prefixes = self.sig.reference_prefixes(element)
                frame.shell = self.sig.Shell(frame.element, None, self.prefixes)
            return
        if self.trust is None:
            self.info.notes.append("The metadata is signed, but no trust anchor was chosen: the signature was not checked.")
            return
        self.digest, certificate = self.sig.start_verification(element, self.root, self.trust, self.now)
        self.info.verified_with = certificate.subject.rfc4514_string()
        self.info.signature_algorithm = self.digest.signature_algorithm
        self.prefixes = self.digest.prefixes
        frame.shell = self.sig.Shell(frame.element, None, self.prefixes)
        self.digest.update(frame.shell.open_part())
        self._emit_text(frame.element.text)

    def _decide_signature(self, element):
        """Called at the first piece after where the root signature would be: an unsigned document
        is refused here (before reading on) unless unsigned metadata is allowed."""
        if self.signature_decided:
            return
        self.signature_decided = True
        if self.replay is not None:
            if self.checking:
                raise MetadataError("The document changed between its verification and the import; nothing was imported.")
            return
        if not self.info.signed and not self.allow_unsigned:
            raise MetadataError(
                "The metadata is not signed (its EntitiesDescriptor does not start with a ds:Signature). "
                "Import it only from a source you trust, and then explicitly allow unsigned metadata."
            )

    def _emit_text(self, text):
        if self._digesting() and text:
            self.digest.update(self.sig.canonical_text(text))

    def _finish_aggregate(self):
        if self._digesting():
            self.digest.finish()
            self.info.verified = True
        if self.checking and self.unit_number != len(self.replay.unit_digests):
            raise MetadataError("The document changed between its verification and the import.")
        if self.replay is not None:
            self.info.verified = self.replay.verified
            self.info.signed = self.replay.signed

    # -- a single EntityDescriptor

    def _single(self, root):
        from federation.saml.errors import SAMLError
        from federation.saml.signing import verify

        signatures = [child for child in root if isinstance(child.tag, str) and child.tag == DS_SIGNATURE]
        source = root
        if signatures:
            self.info.signed = True
            if self.trust is not None:
                certificates = self.sig.trusted_certificates(signatures[0], self.trust, self.now)
                try:
                    source = verify(root, root, certificates)
                except SAMLError as exc:
                    raise MetadataError(f"The metadata signature is not valid: {exc}.") from None
                self.info.verified = True
                self.info.verified_with = self.sig.verifying_subject(source, certificates)
            elif self.replay is None:
                self.info.notes.append("The metadata is signed, but no trust anchor was chosen: the signature was not checked.")
        elif not self.allow_unsigned and self.replay is None:
            raise MetadataError(
                "The metadata is not signed. Import it only from a source you trust, and then explicitly allow unsigned metadata."
            )
        digest = _digest_without_signature(source)
        if self.replay is not None:
            if self.checking and self.replay.unit_digests[:1] != [digest]:
                raise MetadataError("The document changed between its verification and the import.")
            self.info.signed, self.info.verified = self.replay.signed, self.replay.verified
        else:
            self.info.unit_digests = [digest]
        entity = parse_entity(source, 1)
        self.entity_position = 1
        self.info.entity_count = 1
        self.info.malformed_count = 1 if entity.problems else 0
        self.on_entity(entity)


def _digest_without_signature(element):
    """SHA-256 of the exclusive canonical form of an EntityDescriptor without its ds:Signature (the
    verified copy has no KeyInfo; both reads compare the part they share)."""
    duplicate = copy.deepcopy(element)
    for child in duplicate.findall(DS_SIGNATURE):
        duplicate.remove(child)
    return hashlib.sha256(etree.tostring(duplicate, method="c14n", exclusive=True, with_comments=False)).digest()


def shallow_copy(element):
    """`element` with its attributes and namespaces but without children, text or tail."""
    duplicate = copy.deepcopy(element)
    duplicate.text = None
    duplicate.tail = None
    for child in list(duplicate):
        duplicate.remove(child)
    return duplicate
