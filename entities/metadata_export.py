"""SAML metadata export: the `md:EntityDescriptor` partners import to configure us (PRODUCT.md §4.2,
reference ch20-22 §2, ch01-08 F6.7).

Three layers, so the console, the CLI, the live endpoint and (later) partnership-level export share
one builder:

1. `MetadataContent`: plain data, everything that goes into the document (entity ID, endpoints,
   certificates, NameID formats, attributes, the signing flags). `content_for_entity(entity)` fills
   it from an entity: a local entity's service URLs come from its base URL and the runtime path map
   (federation.runtime_paths), a remote entity's from its endpoint rows. Partnership-level export
   (partnerships.metadata) fills it from a partnership's own values (its keys, bindings, NameID
   format, signing flags) with the same helpers, and shares layer 3 through `export_content`.
2. `build_entity_descriptor(content, ...)`: pure, returns an lxml element (no Django, no I/O).
   `sign_entity_descriptor` signs it with federation.saml.signing.sign, the product's one signing
   helper (enveloped, exc-c14n, RSA-SHA256 unless asked otherwise).
3. `export_entity_metadata(entity, ExportOptions(...))` and `live_metadata(entity)`: check the keys
   (absent, expired, wrong type: `MetadataExportError` in plain words), build, sign, serialise.
   `audit_export` writes the audit event for console and CLI downloads.

Per protocol (SAML 1.1 uses SAML 2.0 metadata terms with the SAML 1.1 protocol URI, as the SAML
specification requires):

| entity | role descriptor |
|---|---|
| SAML2 IdP | `IDPSSODescriptor` (SSO Redirect/POST, SLO Redirect/POST/SOAP, artifact resolution SOAP index 0, ManageNameID SOAP, NameIDFormat, saml:Attribute) + `AttributeAuthorityDescriptor` (AttributeService SOAP) |
| SAML2 SP | `SPSSODescriptor` (ACS POST index 0 default + Artifact index 1, SLO Redirect/POST/SOAP, ManageNameID SOAP, NameIDFormat) |
| SAML1.1 Producer | `IDPSSODescriptor` with protocol `urn:oasis:names:tc:SAML:1.1:protocol`, SSO binding `urn:mace:shibboleth:1.0:profiles:AuthnRequest` at the intersite transfer URL |
| SAML1.1 Consumer | `SPSSODescriptor` with the SAML 1.1 protocol, ACS browser/POST index 0 default + browser/artifact index 1 |
| WS-Fed IP | `RoleDescriptor xsi:type="fed:SecurityTokenServiceType"`: TokenTypesOffered, ClaimTypesOffered, SecurityTokenServiceEndpoint and PassiveRequestorEndpoint (the dispatcher URL) |
| WS-Fed RP | `RoleDescriptor xsi:type="fed:ApplicationServiceType"`: TargetScopes (the realm), ApplicationServiceEndpoint and PassiveRequestorEndpoint |
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from lxml import etree

from federation import runtime_paths
from federation.saml import signing
from federation.saml.constants import (
    AES128_CBC,
    AES128_GCM,
    AES192_CBC,
    AES192_GCM,
    AES256_CBC,
    AES256_GCM,
    BINDING_HTTP_ARTIFACT,
    BINDING_HTTP_POST,
    BINDING_HTTP_REDIRECT,
    BINDING_SOAP,
    ECDSA_SHA256,
    ECDSA_SHA384,
    ECDSA_SHA512,
    NS_AUTH,
    NS_DS,
    NS_FED,
    NS_MD,
    NS_SAML,
    NS_WSA,
    NS_XSI,
    PROTOCOL_SAML2,
    PROTOCOL_SAML11,
    PROTOCOL_WSFED,
    RSA_OAEP,
    RSA_OAEP_MGF1P,
    RSA_SHA1,
    RSA_SHA256,
    RSA_SHA384,
    RSA_SHA512,
    SAML1_PROFILE_ARTIFACT,
    SAML1_PROFILE_BROWSER_POST,
    SHA1,
    SHA256,
    SHA384,
    SHA512,
    TOKEN_TYPE_SAML11,
    TOKEN_TYPE_SAML20,
)
from federation.saml.keys import certificate_base64, certificate_der, key_type
from federation.saml.xml import to_bytes

log = logging.getLogger("entities.metadata_export")

CONTENT_TYPE = "application/samlmetadata+xml"

# Protocol and role names as entities.models stores them (Protocol / Role values).
SAML2, SAML11, WSFED = runtime_paths.SAML2, runtime_paths.SAML11, runtime_paths.WSFED
ASSERTING, RELYING = runtime_paths.ASSERTING, runtime_paths.RELYING

# The Shibboleth 1.x AuthnRequest profile: how SAML 2.0 metadata names a SAML 1.1 producer's
# single sign-on service (entities.models.Binding.SAML11_AUTHN_REQUEST).
SAML11_BINDING_AUTHN_REQUEST = "urn:mace:shibboleth:1.0:profiles:AuthnRequest"

# Endpoint kinds (entities.models.EndpointKind values).
SSO, SLO, ACS = "sso", "slo", "acs"
ARTIFACT_RESOLUTION, ATTRIBUTE_SERVICE, MANAGE_NAME_ID = "artifact_resolution", "attribute_service", "manage_name_id"

# Signature algorithms offered for signing the document: name -> (SignatureMethod, DigestMethod).
# SHA-1 only when asked for by name (a partner that cannot do SHA-2).
SIGNATURE_ALGORITHMS = {
    "rsa-sha256": (RSA_SHA256, SHA256),
    "rsa-sha384": (RSA_SHA384, SHA384),
    "rsa-sha512": (RSA_SHA512, SHA512),
    "rsa-sha1": (RSA_SHA1, SHA1),
    "ecdsa-sha256": (ECDSA_SHA256, SHA256),
    "ecdsa-sha384": (ECDSA_SHA384, SHA384),
    "ecdsa-sha512": (ECDSA_SHA512, SHA512),
}
SIGNATURE_ALGORITHM_CHOICES = [
    ("rsa-sha256", "RSA-SHA256 (default for RSA keys)"),
    ("rsa-sha384", "RSA-SHA384"),
    ("rsa-sha512", "RSA-SHA512"),
    ("rsa-sha1", "RSA-SHA1 (legacy partners only)"),
    ("ecdsa-sha256", "ECDSA-SHA256 (default for EC keys)"),
    ("ecdsa-sha384", "ECDSA-SHA384"),
    ("ecdsa-sha512", "ECDSA-SHA512"),
]
DEFAULT_ALGORITHM = {"rsa": "rsa-sha256", "ec": "ecdsa-sha256"}

# What partners may encrypt to us with: what federation.saml.encryption decrypts by default
# (DEFAULT_ENCRYPTION_ALGORITHMS), most preferred first. RSA PKCS#1 v1.5 and 3DES are left out
# (accepted only when a partnership allows them; pass them in `encryption_methods` then).
ENCRYPTION_METHODS = (AES256_GCM, AES192_GCM, AES128_GCM, AES256_CBC, AES192_CBC, AES128_CBC, RSA_OAEP_MGF1P, RSA_OAEP)

# Export limits.
MAX_VALID_DAYS = 3650
PARTNERSHIP_NAME_PATTERN = r"[A-Za-z0-9._-]+"
PARTNERSHIP_NAME_MAX = 100
ENTITY_ID_MAX = 1024

# The live endpoint (federation.views.runtime_metadata): documents valid for a week, partners asked
# to refresh every 6 hours. Settings FEDERATION_METADATA_VALID_DAYS / FEDERATION_METADATA_CACHE_SECONDS
# override them.
LIVE_VALID_DAYS = 7
LIVE_CACHE_SECONDS = 6 * 3600


class MetadataExportError(Exception):
    """A problem an administrator can fix, in plain words, with the form field it belongs to."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.message = message
        self.field = field


# ====================================================================== plain data


@dataclass(frozen=True)
class EndpointSpec:
    """One service URL: an md:*Service element."""

    kind: str
    binding: str
    location: str
    response_location: str = ""
    index: int | None = None
    is_default: bool = False


@dataclass(frozen=True)
class AttributeSpec:
    """An attribute the entity asserts. SAML 2.0: name and NameFormat; SAML 1.1: name and namespace
    (written as NameFormat, as the SAML 1.x metadata profile maps AttributeNamespace)."""

    name: str
    name_format: str = ""
    namespace: str = ""


@dataclass(frozen=True)
class MetadataContent:
    """Everything one md:EntityDescriptor says. Certificates are `cryptography` objects (or PEM/DER).

    `signing_certificates` lists the current signing certificate first, then the next (rollover)
    one; `encryption_certificates` the decryption key's certificate. The three signing flags are
    written only when not None."""

    entity_id: str
    protocol: str
    role: str
    endpoints: tuple[EndpointSpec, ...] = ()
    signing_certificates: tuple = ()
    encryption_certificates: tuple = ()
    encryption_methods: tuple[str, ...] = ENCRYPTION_METHODS
    name_id_formats: tuple[str, ...] = ()
    attributes: tuple[AttributeSpec, ...] = ()
    want_authn_requests_signed: bool | None = None
    authn_requests_signed: bool | None = None
    want_assertions_signed: bool | None = None
    # WS-Federation
    token_type: str = ""
    wsfed_url: str = ""

    @property
    def protocol_uri(self):
        return {SAML2: PROTOCOL_SAML2, SAML11: PROTOCOL_SAML11, WSFED: PROTOCOL_WSFED}[self.protocol]


def local_endpoints(base_url, protocol, role):
    """The SAML endpoints a local entity of this protocol and role serves at `base_url`, built from
    the runtime path map (the same constants the runtime URL conf serves). WS-Federation has none
    (see `local_wsfed_url`)."""
    if not base_url:
        return ()

    def at(path):
        return runtime_paths.join(base_url, path)

    slo = [
        EndpointSpec(SLO, BINDING_HTTP_REDIRECT, at(runtime_paths.SAML2_SLO)),
        EndpointSpec(SLO, BINDING_HTTP_POST, at(runtime_paths.SAML2_SLO)),
        EndpointSpec(SLO, BINDING_SOAP, at(runtime_paths.SAML2_SLO_SOAP)),
    ]
    manage_name_id = [EndpointSpec(MANAGE_NAME_ID, BINDING_SOAP, at(runtime_paths.SAML2_MANAGE_NAME_ID_SOAP))]
    if protocol == SAML2 and role == ASSERTING:
        return (
            EndpointSpec(SSO, BINDING_HTTP_REDIRECT, at(runtime_paths.SAML2_SSO)),
            EndpointSpec(SSO, BINDING_HTTP_POST, at(runtime_paths.SAML2_SSO)),
            *slo,
            EndpointSpec(
                ARTIFACT_RESOLUTION, BINDING_SOAP, at(runtime_paths.SAML2_ARTIFACT_RESOLUTION), index=0, is_default=True
            ),
            *manage_name_id,
            EndpointSpec(ATTRIBUTE_SERVICE, BINDING_SOAP, at(runtime_paths.SAML2_ATTRIBUTE_SERVICE)),
        )
    if protocol == SAML2 and role == RELYING:
        acs = at(runtime_paths.SAML2_ASSERTION_CONSUMER)
        return (
            EndpointSpec(ACS, BINDING_HTTP_POST, acs, index=0, is_default=True),
            EndpointSpec(ACS, BINDING_HTTP_ARTIFACT, acs, index=1),
            *slo,
            *manage_name_id,
        )
    if protocol == SAML11 and role == ASSERTING:
        # SAML 1.1 artifact resolution has no runtime path yet (runtime_paths lists none), so no
        # ArtifactResolutionService is published for a local producer.
        return (EndpointSpec(SSO, SAML11_BINDING_AUTHN_REQUEST, at(runtime_paths.SAML11_INTERSITE_TRANSFER)),)
    if protocol == SAML11 and role == RELYING:
        acs = at(runtime_paths.SAML11_CONSUMER)
        return (
            EndpointSpec(ACS, SAML1_PROFILE_BROWSER_POST, acs, index=0, is_default=True),
            EndpointSpec(ACS, SAML1_PROFILE_ARTIFACT, acs, index=1),
        )
    return ()


def local_wsfed_url(base_url, specific_id=""):
    """A local WS-Fed entity's passive requestor (dispatcher) URL."""
    return runtime_paths.join(base_url, runtime_paths.wsfed_dispatcher_path(specific_id)) if base_url else ""


def token_type_uri(saml_token_type):
    """The WS-Trust token type of a WS-Fed entity's SAML token type (Legacy is a SAML 1.1 assertion)."""
    return TOKEN_TYPE_SAML20 if saml_token_type == "saml2" else TOKEN_TYPE_SAML11


# ====================================================================== building the document


def _md(local):
    return f"{{{NS_MD}}}{local}"


def _bool(value):
    return "true" if value else "false"


def xml_datetime(moment):
    """xs:dateTime in UTC without fractions, e.g. 2026-05-01T12:00:00Z."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def xml_duration(delta):
    """xs:duration of a timedelta, e.g. PT6H, P1DT12H, PT90S."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        raise ValueError("a cache duration must be positive")
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = "P" + (f"{days}D" if days else "")
    time_part = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{seconds}S" if seconds else "")
    return text + ("T" + time_part if time_part else "")


def new_document_id():
    """A fresh XML ID for the EntityDescriptor (the signature's reference)."""
    return "_" + secrets.token_hex(20)


def build_entity_descriptor(content, *, valid_until=None, cache_duration=None, document_id=None):
    """The md:EntityDescriptor of `content` (a MetadataContent), unsigned.

    `valid_until`: an aware datetime or None (no validUntil); `cache_duration`: a timedelta or None.
    The element carries an `ID` (given or fresh) so it can be signed."""
    nsmap = {"md": NS_MD, "ds": NS_DS}
    if content.attributes and content.protocol != WSFED:
        nsmap["saml"] = NS_SAML
    if content.protocol == WSFED:
        nsmap.update({"fed": NS_FED, "wsa": NS_WSA, "xsi": NS_XSI})
        if content.attributes:
            nsmap["auth"] = NS_AUTH
    root = etree.Element(_md("EntityDescriptor"), nsmap=nsmap)
    root.set("entityID", content.entity_id)
    root.set("ID", document_id or new_document_id())
    if valid_until is not None:
        root.set("validUntil", xml_datetime(valid_until))
    if cache_duration is not None:
        root.set("cacheDuration", xml_duration(cache_duration))

    if content.protocol == WSFED:
        _wsfed_descriptor(root, content)
    elif content.role == ASSERTING:
        _idp_descriptor(root, content)
        if any(endpoint.kind == ATTRIBUTE_SERVICE for endpoint in content.endpoints):
            _attribute_authority_descriptor(root, content)
    else:
        _sp_descriptor(root, content)
    # Indented for people reading the file; done before signing, so the whitespace is signed too.
    etree.indent(root, space="  ")
    return root


def _key_descriptors(parent, content, *, encryption=True):
    for certificate in _unique(content.signing_certificates):
        _key_descriptor(parent, "signing", certificate)
    if encryption:
        for certificate in _unique(content.encryption_certificates):
            descriptor = _key_descriptor(parent, "encryption", certificate)
            for algorithm in content.encryption_methods:
                etree.SubElement(descriptor, _md("EncryptionMethod"), Algorithm=algorithm)


def _unique(certificates):
    seen, unique = set(), []
    for certificate in certificates:
        der = certificate_der(certificate)
        if der not in seen:
            seen.add(der)
            unique.append(certificate)
    return unique


def _key_descriptor(parent, use, certificate):
    descriptor = etree.SubElement(parent, _md("KeyDescriptor"), use=use)
    key_info = etree.SubElement(descriptor, f"{{{NS_DS}}}KeyInfo")
    x509_data = etree.SubElement(key_info, f"{{{NS_DS}}}X509Data")
    etree.SubElement(x509_data, f"{{{NS_DS}}}X509Certificate").text = certificate_base64(certificate)
    return descriptor


def _endpoints(parent, content, kind, element):
    rows = [endpoint for endpoint in content.endpoints if endpoint.kind == kind]
    for endpoint in rows:
        service = etree.SubElement(parent, _md(element), Binding=endpoint.binding, Location=endpoint.location)
        if endpoint.response_location:
            service.set("ResponseLocation", endpoint.response_location)
        if endpoint.index is not None:
            service.set("index", str(endpoint.index))
            if endpoint.is_default:
                service.set("isDefault", "true")
    return rows


def _name_id_formats(parent, content):
    for uri in content.name_id_formats:
        etree.SubElement(parent, _md("NameIDFormat")).text = uri


def _saml_attributes(parent, content):
    for attribute in content.attributes:
        element = etree.SubElement(parent, f"{{{NS_SAML}}}Attribute", Name=attribute.name)
        name_format = attribute.name_format if content.protocol == SAML2 else attribute.namespace
        if name_format:
            element.set("NameFormat", name_format)


def _idp_descriptor(root, content):
    descriptor = etree.SubElement(root, _md("IDPSSODescriptor"), protocolSupportEnumeration=content.protocol_uri)
    if content.want_authn_requests_signed is not None:
        descriptor.set("WantAuthnRequestsSigned", _bool(content.want_authn_requests_signed))
    _key_descriptors(descriptor, content, encryption=content.protocol == SAML2)
    _endpoints(descriptor, content, ARTIFACT_RESOLUTION, "ArtifactResolutionService")
    _endpoints(descriptor, content, SLO, "SingleLogoutService")
    _endpoints(descriptor, content, MANAGE_NAME_ID, "ManageNameIDService")
    _name_id_formats(descriptor, content)
    if not _endpoints(descriptor, content, SSO, "SingleSignOnService"):
        raise MetadataExportError("An asserting party needs a single sign-on service URL (set the entity's base URL).")
    _saml_attributes(descriptor, content)
    return descriptor


def _attribute_authority_descriptor(root, content):
    descriptor = etree.SubElement(root, _md("AttributeAuthorityDescriptor"), protocolSupportEnumeration=content.protocol_uri)
    _key_descriptors(descriptor, content, encryption=False)
    _endpoints(descriptor, content, ATTRIBUTE_SERVICE, "AttributeService")
    _name_id_formats(descriptor, content)
    _saml_attributes(descriptor, content)
    return descriptor


def _sp_descriptor(root, content):
    descriptor = etree.SubElement(root, _md("SPSSODescriptor"), protocolSupportEnumeration=content.protocol_uri)
    if content.authn_requests_signed is not None:
        descriptor.set("AuthnRequestsSigned", _bool(content.authn_requests_signed))
    if content.want_assertions_signed is not None:
        descriptor.set("WantAssertionsSigned", _bool(content.want_assertions_signed))
    _key_descriptors(descriptor, content, encryption=content.protocol == SAML2)
    _endpoints(descriptor, content, ARTIFACT_RESOLUTION, "ArtifactResolutionService")
    _endpoints(descriptor, content, SLO, "SingleLogoutService")
    _endpoints(descriptor, content, MANAGE_NAME_ID, "ManageNameIDService")
    _name_id_formats(descriptor, content)
    if not _endpoints(descriptor, content, ACS, "AssertionConsumerService"):
        raise MetadataExportError("A relying party needs an assertion consumer service URL (set the entity's base URL).")
    return descriptor


def _endpoint_reference(parent, local, address):
    holder = etree.SubElement(parent, f"{{{NS_FED}}}{local}")
    reference = etree.SubElement(holder, f"{{{NS_WSA}}}EndpointReference")
    etree.SubElement(reference, f"{{{NS_WSA}}}Address").text = address
    return holder


def claim_type_uri(attribute):
    """The WS-Fed claim type URI of an attribute: its name when that is a URI, else namespace/name
    (e.g. http://schemas.xmlsoap.org/claims/UPN); "" when neither gives a URI."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+\Z", attribute.name):
        return attribute.name
    if attribute.namespace:
        return attribute.namespace.rstrip("/") + "/" + attribute.name
    return ""


def _wsfed_descriptor(root, content):
    if not content.wsfed_url:
        raise MetadataExportError("A WS-Federation entity needs its passive requestor URL (set the entity's base URL).")
    asserting = content.role == ASSERTING
    descriptor = etree.SubElement(root, _md("RoleDescriptor"), protocolSupportEnumeration=PROTOCOL_WSFED)
    descriptor.set(f"{{{NS_XSI}}}type", "fed:SecurityTokenServiceType" if asserting else "fed:ApplicationServiceType")
    _key_descriptors(descriptor, content, encryption=False)
    if asserting:
        if content.token_type:
            offered = etree.SubElement(descriptor, f"{{{NS_FED}}}TokenTypesOffered")
            etree.SubElement(offered, f"{{{NS_FED}}}TokenType", Uri=content.token_type)
        claims = [uri for uri in (claim_type_uri(attribute) for attribute in content.attributes) if uri]
        if claims:
            offered = etree.SubElement(descriptor, f"{{{NS_FED}}}ClaimTypesOffered")
            for uri in dict.fromkeys(claims):
                etree.SubElement(offered, f"{{{NS_AUTH}}}ClaimType", Uri=uri, Optional="true")
        # The passive requestor URL is also where tokens are issued: published as the STS endpoint
        # too, which the WS-Federation schema requires at least once.
        _endpoint_reference(descriptor, "SecurityTokenServiceEndpoint", content.wsfed_url)
        _endpoint_reference(descriptor, "PassiveRequestorEndpoint", content.wsfed_url)
    else:
        _endpoint_reference(descriptor, "TargetScopes", content.entity_id)
        _endpoint_reference(descriptor, "ApplicationServiceEndpoint", content.wsfed_url)
        _endpoint_reference(descriptor, "PassiveRequestorEndpoint", content.wsfed_url)
    return descriptor


def signature_algorithm(name, private_key):
    """(SignatureMethod URI, DigestMethod URI) for an algorithm name, or the default for the key's
    type (RSA-SHA256 for RSA, ECDSA-SHA256 for EC) when `name` is empty."""
    kind = key_type(private_key)
    if not name:
        if kind not in DEFAULT_ALGORITHM:
            raise MetadataExportError(f"A {kind.upper()} key cannot sign metadata; choose an RSA or EC key pair.", "sign_with")
        name = DEFAULT_ALGORITHM[kind]
    if name not in SIGNATURE_ALGORITHMS:
        names = ", ".join(SIGNATURE_ALGORITHMS)
        raise MetadataExportError(f"Unknown signature algorithm '{name}'; choose one of {names}.", "algorithm")
    wanted = "ec" if name.startswith("ecdsa") else "rsa"
    if kind != wanted:
        suggestion = DEFAULT_ALGORITHM.get(kind, "another key")
        raise MetadataExportError(
            f"{name.upper()} needs {'an EC' if wanted == 'ec' else 'an RSA'} key, but the chosen key is "
            f"{'an EC' if kind == 'ec' else 'an RSA' if kind == 'rsa' else 'a ' + kind.upper()} key; choose {suggestion}.",
            "algorithm",
        )
    return SIGNATURE_ALGORITHMS[name]


def sign_entity_descriptor(element, private_key, certificate, algorithm=""):
    """Sign the EntityDescriptor in place (enveloped signature first in the element, the signing
    certificate in KeyInfo) with federation.saml.signing.sign; returns the element."""
    method, digest = signature_algorithm(algorithm, private_key)
    return signing.sign(element, private_key, certificate, algorithm=method, digest=digest)


def serialize(element):
    """The document as UTF-8 bytes with an XML declaration (exactly as signed)."""
    return to_bytes(element, xml_declaration=True)


# ====================================================================== from entities


def checked_certificate(entry, label, now, field=None):
    """The entry's certificate; MetadataExportError when it has expired. `label` names the entry
    in the message, e.g. "The signing key 'idp-signing'"."""
    certificate = entry.certificate()
    if certificate.not_valid_after_utc <= now:
        raise MetadataExportError(
            f"{label} has a certificate that expired on {certificate.not_valid_after_utc:%Y-%m-%d}; "
            "partners would refuse it. Renew it (or make the next signing key current) before exporting.",
            field,
        )
    return certificate


def checked_decryption_certificate(entry, now, field=None):
    """The certificate of a decryption key pair, published as `use="encryption"`: not expired, and
    RSA (partners encrypt the content key with RSA-OAEP key transport)."""
    certificate = checked_certificate(entry, f"The decryption key '{entry.alias}'", now, field)
    if key_type(certificate.public_key()) != "rsa":
        raise MetadataExportError(
            f"The decryption key '{entry.alias}' is not an RSA key; partners encrypt with RSA-OAEP "
            "key transport, so choose an RSA key pair as the decryption key.",
            field,
        )
    return certificate


def content_for_entity(entity, *, now=None, **overrides):
    """The MetadataContent of an entity, with `overrides` (MetadataContent field names) replacing
    what the entity says: an exported entity ID, a partnership's NameID formats or signing flags
    (pass only what is overridden; None for a signing flag means "do not state it").

    Local entities: the service URLs follow from the base URL; the signing key (and the next
    signing key, for rollover) are published for signing, the decryption key for encryption.
    An asserting party without a signing key, and an expired certificate, are refused with a plain
    message. Remote entities are re-emitted from what is stored (endpoints, verification and
    encryption certificates) as they are, expired or not, for debugging and re-distribution."""
    now = now or datetime.now(UTC)
    local = entity.location == "local"
    protocol, role = entity.protocol, entity.role
    signing_certificates, encryption_certificates = [], []
    if local:
        if entity.signing_key_id:
            signing_certificates.append(
                checked_certificate(entity.signing_key, f"The signing key '{entity.signing_key.alias}'", now)
            )
        elif role == ASSERTING:
            raise MetadataExportError(
                f"The entity '{entity.name}' has no signing key, so partners could not verify its assertions. "
                "Set a signing key on the entity first."
            )
        if entity.next_signing_key_id:
            signing_certificates.append(
                checked_certificate(entity.next_signing_key, f"The next signing key '{entity.next_signing_key.alias}'", now)
            )
        if entity.decryption_key_id:
            encryption_certificates.append(checked_decryption_certificate(entity.decryption_key, now))
        endpoints = local_endpoints(entity.base_url, protocol, role)
        wsfed_url = local_wsfed_url(entity.base_url, entity.wsfed_specific_id) if protocol == WSFED else ""
    else:
        if entity.verification_certificate_id:
            signing_certificates.append(entity.verification_certificate.certificate())
        if entity.encryption_certificate_id:
            encryption_certificates.append(entity.encryption_certificate.certificate())
        endpoints = tuple(
            EndpointSpec(row.kind, row.binding, row.location, row.response_location, row.index, row.is_default)
            for row in entity.endpoints.all()
        )
        wsfed_url = entity.wsfed_service_url if protocol == WSFED else ""
    attributes = ()
    if role == ASSERTING:
        attributes = tuple(AttributeSpec(row.name, row.name_format, row.namespace) for row in entity.attributes.all())
    content = MetadataContent(
        entity_id=entity.entity_id,
        protocol=protocol,
        role=role,
        endpoints=endpoints,
        signing_certificates=tuple(signing_certificates),
        encryption_certificates=tuple(encryption_certificates),
        name_id_formats=tuple(entity.name_id_formats or ()),
        attributes=attributes,
        # The runtime requires signed assertions on POST (PRODUCT.md §5), so a local SAML 2.0 SP says so.
        want_assertions_signed=True if (local and protocol == SAML2 and role == RELYING) else None,
        token_type=token_type_uri(entity.saml_token_type) if protocol == WSFED else "",
        wsfed_url=wsfed_url,
    )
    if not overrides.get("entity_id", True):
        del overrides["entity_id"]  # an empty override keeps the entity's own ID
    return replace(content, **overrides) if overrides else content


def signing_material(entry, algorithm="", now=None):
    """(private key, certificate, algorithm name) to sign a document with the keystore entry `entry`,
    or MetadataExportError: not a key pair, expired, or an algorithm that does not fit the key."""
    now = now or datetime.now(UTC)
    if entry is None:
        raise MetadataExportError("Choose the key pair to sign the metadata with.", "sign_with")
    if entry.kind != "key_pair" or not entry.has_private_key:
        raise MetadataExportError(
            f"'{entry.alias}' is a {entry.get_kind_display().lower()}, not a key pair; signing needs a private key.", "sign_with"
        )
    certificate = checked_certificate(entry, f"The key pair '{entry.alias}' chosen to sign the metadata", now, "sign_with")
    private_key = entry.private_key_object()
    signature_algorithm(algorithm, private_key)  # refuse a mismatch before any work
    return private_key, certificate, algorithm or DEFAULT_ALGORITHM[key_type(private_key)]


def check_partnership_name(name):
    """The partnership name an entity-level export is for: letters, digits, '_', '-', '.'; new.

    An existing partnership's name is refused (the reference product asks for a new name; an existing
    partnership exports its own metadata, partnerships.metadata)."""
    name = (name or "").strip()
    if not name:
        raise MetadataExportError("Enter the name of the new partnership this metadata is for.", "partnership_name")
    if len(name) > PARTNERSHIP_NAME_MAX or not re.fullmatch(PARTNERSHIP_NAME_PATTERN, name):
        raise MetadataExportError(
            f"Use only letters, digits, '_', '-' and '.' in a partnership name (at most {PARTNERSHIP_NAME_MAX}, no spaces).",
            "partnership_name",
        )
    from partnerships.models import Partnership

    if Partnership.objects.filter(name__iexact=name).exists():
        raise MetadataExportError(
            f"A partnership named '{name}' already exists; entity-level export is for a new partnership. "
            "Export from that partnership instead.",
            "partnership_name",
        )
    return name


def check_entity_id(value):
    value = (value or "").strip()
    if value and (any(ch.isspace() for ch in value) or len(value) > ENTITY_ID_MAX):
        raise MetadataExportError(
            f"An entity ID has no spaces or line breaks and at most {ENTITY_ID_MAX} characters.", "entity_id"
        )
    return value


@dataclass
class ExportOptions:
    """What the export dialog (or the CLI) asks.

    `sign_with`: a KeystoreEntry key pair, or None for an unsigned document. `algorithm`: a name of
    SIGNATURE_ALGORITHMS or "" for the key's default. `valid_days`: 0/None means no validUntil.
    `cache_duration`: a timedelta or None. `overrides`: MetadataContent fields to replace (what a
    partnership overrides; None for a signing flag leaves the flag out of the document)."""

    partnership_name: str = ""
    entity_id: str = ""
    valid_days: int | None = None
    cache_duration: timedelta | None = None
    sign_with: object = None
    algorithm: str = ""
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ExportResult:
    xml: bytes
    filename: str
    entity_id: str
    document_id: str
    valid_until: datetime | None
    signed_with: str  # alias, "" when unsigned
    algorithm: str  # name, "" when unsigned


def check_validity(options):
    """Refuse a validity outside 0..MAX_VALID_DAYS days or a cache duration that is not positive."""
    valid_days = options.valid_days or 0
    if valid_days < 0 or valid_days > MAX_VALID_DAYS:
        raise MetadataExportError(f"Enter a validity from 0 (no expiry) to {MAX_VALID_DAYS} days.", "valid_days")
    if options.cache_duration is not None and options.cache_duration.total_seconds() <= 0:
        raise MetadataExportError("A cache duration must be positive (or leave it empty).", "cache_hours")


def export_content(content, options, *, filename, now=None):
    """Build, sign (when `options.sign_with` is set) and serialise a ready MetadataContent; returns an
    ExportResult named `filename`. The part every export shares: entity-level export below and
    partnership-level export (partnerships.metadata). `options.entity_id`, `partnership_name` and
    `overrides` are the caller's business (they shape `content`)."""
    now = now or datetime.now(UTC)
    check_validity(options)
    material = signing_material(options.sign_with, options.algorithm, now) if options.sign_with is not None else None
    valid_days = options.valid_days or 0
    valid_until = now + timedelta(days=valid_days) if valid_days else None
    element = build_entity_descriptor(content, valid_until=valid_until, cache_duration=options.cache_duration)
    algorithm = ""
    if material is not None:
        private_key, certificate, algorithm = material
        sign_entity_descriptor(element, private_key, certificate, algorithm)
    return ExportResult(
        xml=serialize(element),
        filename=filename,
        entity_id=content.entity_id,
        document_id=element.get("ID"),
        valid_until=valid_until,
        signed_with=options.sign_with.alias if material is not None else "",
        algorithm=algorithm,
    )


def export_entity_metadata(entity, options=None, now=None):
    """Build (and sign when asked) the metadata of `entity`; returns an ExportResult.

    Refuses, with MetadataExportError: a bad partnership name or entity ID, a validity outside
    0..MAX_VALID_DAYS days, a missing or expired signing key of a local asserting party, an expired
    key, a signing key that is not a key pair, an algorithm that does not fit the key."""
    options = options or ExportOptions()
    now = now or datetime.now(UTC)
    entity_id = check_entity_id(options.entity_id)
    partnership = options.partnership_name.strip()
    if partnership:
        partnership = check_partnership_name(partnership)
    check_validity(options)
    content = content_for_entity(entity, now=now, **{**options.overrides, **({"entity_id": entity_id} if entity_id else {})})
    return export_content(content, options, filename=f"{partnership or entity.name}-metadata.xml", now=now)


def serves_live_metadata(entity):
    """Whether /affwebservices/public/saml2metadata/<name> serves this entity: local SAML 2.0 and
    SAML 1.1 entities (WS-Fed metadata is per partnership at FederationMetadata/<partnership>)."""
    return entity is not None and entity.location == "local" and entity.protocol in (SAML2, SAML11)


def live_settings():
    from django.conf import settings

    valid_days = int(getattr(settings, "FEDERATION_METADATA_VALID_DAYS", LIVE_VALID_DAYS))
    cache_seconds = int(getattr(settings, "FEDERATION_METADATA_CACHE_SECONDS", LIVE_CACHE_SECONDS))
    return valid_days, cache_seconds


def live_metadata(entity, now=None):
    """The live document of a local SAML entity: signed with its signing key when it has one
    (the key type's default algorithm), validUntil and cacheDuration from `live_settings()`.
    Returns (ExportResult, cache seconds)."""
    valid_days, cache_seconds = live_settings()
    options = ExportOptions(
        valid_days=valid_days,
        cache_duration=timedelta(seconds=cache_seconds) if cache_seconds > 0 else None,
        sign_with=entity.signing_key if entity.signing_key_id else None,
    )
    return export_entity_metadata(entity, options, now=now), cache_seconds


def audit_export(entity, result, channel):
    """One audit event for a console or CLI export (the live endpoint is not audited: partners
    fetch it on their schedule and nothing changes)."""
    from federation import audit

    details = [f"metadata exported ({channel})", f"entityID {result.entity_id}"]
    if result.signed_with:
        details.append(f"signed with {result.signed_with} ({result.algorithm})")
    else:
        details.append("unsigned")
    if result.valid_until:
        details.append(f"valid until {xml_datetime(result.valid_until)}")
    audit.record(
        "other",
        entity,
        summary="; ".join(details),
        changes={
            "file": [None, result.filename],
            "entity_id": [None, result.entity_id],
            "signed_with": [None, result.signed_with],
            "algorithm": [None, result.algorithm],
            "valid_until": [None, xml_datetime(result.valid_until) if result.valid_until else ""],
            "document_id": [None, result.document_id],
        },
    )
    log.info("metadata of '%s' exported (%s): %s", entity.name, channel, result.filename, extra={"checkpoint": "METADATA_EXPORT"})


__all__ = [
    "CONTENT_TYPE",
    "ENCRYPTION_METHODS",
    "SIGNATURE_ALGORITHMS",
    "AttributeSpec",
    "EndpointSpec",
    "ExportOptions",
    "ExportResult",
    "MetadataContent",
    "MetadataExportError",
    "audit_export",
    "build_entity_descriptor",
    "check_validity",
    "checked_certificate",
    "checked_decryption_certificate",
    "content_for_entity",
    "export_content",
    "export_entity_metadata",
    "live_metadata",
    "local_endpoints",
    "serialize",
    "serves_live_metadata",
    "sign_entity_descriptor",
    "signing_material",
]
