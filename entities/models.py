"""Keystore state: key pairs, trusted certificates and trusted CAs, and the expiry warnings recorded for them.

The parsed certificate facts are stored as columns so list pages can filter and sort on them; the
certificate PEM stays the source of truth (`apply_certificate` keeps both in step). The private key
is a sealed PKCS#8 PEM (federation.secretbox) and is opened only when something needs to sign,
decrypt or export it.
"""

import re
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from entities import keystore
from federation import runtime_paths
from federation.audit import Audited
from federation.secretbox import SealedTextField, seal_text, unseal_text

ALIAS_PATTERN = r"[A-Za-z0-9._-]+"
alias_validator = RegexValidator(
    rf"^{ALIAS_PATTERN}\Z",
    "Use only letters, digits, '.', '_' and '-' in an alias.",
)


class ExpiryLevel(models.TextChoices):
    EXPIRED = "expired", "Expired"
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"
    NOTICE = "notice", "Notice"
    OK = "ok", "OK"


# console.css badge classes per level.
LEVEL_BADGES = {"expired": "bad", "critical": "bad", "warning": "warn", "notice": "warn", "ok": "ok"}


def warning_thresholds():
    """The configured warning thresholds in days, largest first (default 90, 30, 7)."""
    days = sorted({int(d) for d in getattr(settings, "CERTIFICATE_EXPIRY_WARNING_DAYS", [90, 30, 7]) if int(d) > 0})
    return sorted(days or [90, 30, 7], reverse=True)


def level_windows():
    """[(level, days)] from the most urgent: a certificate with at most `days` left is at `level`.

    The smallest threshold is 'critical', the second smallest 'warning' and the largest 'notice'
    (with the default 90/30/7: critical ≤ 7, warning ≤ 30, notice ≤ 90 days)."""
    ascending = sorted(warning_thresholds())
    windows = [(ExpiryLevel.CRITICAL, ascending[0])]
    if len(ascending) >= 2:
        windows.append((ExpiryLevel.WARNING, ascending[1]))
    if len(ascending) >= 3:
        windows.append((ExpiryLevel.NOTICE, ascending[-1]))
    return windows


def expiry_level(not_after, now=None):
    now = now or timezone.now()
    left = not_after - now
    if left <= timedelta(0):
        return ExpiryLevel.EXPIRED
    for level, days in level_windows():
        if left <= timedelta(days=days):
            return level
    return ExpiryLevel.OK


def days_left(not_after, now=None):
    """Whole days until not_after, rounded down (negative once expired)."""
    return (not_after - (now or timezone.now())).days


class KeystoreEntry(Audited, models.Model):
    """One alias in the keystore. Partnerships and entities refer to entries by alias."""

    class Kind(models.TextChoices):
        KEY_PAIR = "key_pair", "Key pair"
        TRUSTED_CERTIFICATE = "trusted_certificate", "Trusted certificate"
        TRUSTED_CA = "trusted_ca", "Trusted CA"

    alias = models.CharField(
        max_length=100,
        unique=True,
        validators=[alias_validator],
        help_text="The name partnerships and entities use for this entry: letters, digits, '.', '_' and '-'.",
    )
    kind = models.CharField(max_length=24, choices=Kind.choices, db_index=True)
    certificate_pem = models.TextField(help_text="The certificate (PEM).")
    chain_pem = models.TextField(blank=True, help_text="Issuer certificates above the certificate (PEM), leaf's issuer first.")
    private_key = SealedTextField(help_text="The private key (PKCS#8 PEM), sealed; never shown.")
    csr_pem = models.TextField(blank=True, help_text="The last certificate signing request made for this key pair (PEM).")

    # Facts parsed from certificate_pem, kept as columns for lists, filters and sorting.
    subject = models.CharField(max_length=1000)
    issuer = models.CharField(max_length=1000)
    serial_number = models.CharField(max_length=100)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField(db_index=True)
    key_type = models.CharField(max_length=16)
    key_size = models.PositiveIntegerField(default=0)
    curve = models.CharField(max_length=32, blank=True)
    fingerprint_sha256 = models.CharField(max_length=95, db_index=True)
    key_usage = models.CharField(max_length=255, blank=True)
    extended_key_usage = models.CharField(max_length=500, blank=True)
    subject_alt_names = models.TextField(blank=True, help_text="One per line, e.g. DNS:idp.example.org.")
    is_ca = models.BooleanField(default=False)
    self_signed = models.BooleanField(default=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    audit_ignore_fields = ("updated_at",)

    class Meta:
        ordering = ["alias"]
        verbose_name = "keystore entry"
        verbose_name_plural = "keystore entries"

    def __str__(self):
        return self.alias

    def clean(self):
        if self.kind == self.Kind.KEY_PAIR and not self.private_key:
            raise ValidationError({"private_key": "A key pair needs its private key."})
        if self.kind != self.Kind.KEY_PAIR and self.private_key:
            raise ValidationError({"kind": "Only key pairs hold a private key."})

    # -- certificate and key objects

    def certificate(self):
        return keystore.load_certificate_pem(self.certificate_pem)

    def chain(self):
        return keystore.load_certificates_pem(self.chain_pem)

    def csr(self):
        from cryptography import x509

        return x509.load_pem_x509_csr(self.csr_pem.encode()) if self.csr_pem else None

    @property
    def has_private_key(self):
        return bool(self.private_key)

    def private_key_object(self):
        """The cryptography private key (opened from its sealed form); None for certificate-only entries."""
        if not self.private_key:
            return None
        return keystore.load_private_key_pem(unseal_text(self.private_key))

    def set_private_key(self, key):
        self.private_key = seal_text(keystore.private_key_to_pem(key))

    def apply_certificate(self, certificate, chain=()):
        """Store a certificate (and its chain) with its facts."""
        facts = keystore.certificate_facts(certificate)
        self.certificate_pem = keystore.certificate_to_pem(certificate)
        self.chain_pem = keystore.certificates_to_pem(chain)
        self.subject = facts.subject[:1000]
        self.issuer = facts.issuer[:1000]
        self.serial_number = facts.serial_number[:100]
        self.not_before = facts.not_before
        self.not_after = facts.not_after
        self.key_type = facts.key_type
        self.key_size = facts.key_size
        self.curve = facts.curve
        self.fingerprint_sha256 = facts.fingerprint_sha256
        self.key_usage = facts.key_usage[:255]
        self.extended_key_usage = facts.extended_key_usage[:500]
        self.subject_alt_names = "\n".join(facts.subject_alt_names)
        self.is_ca = facts.is_ca
        self.self_signed = facts.self_signed

    # -- presentation helpers

    @property
    def key_description(self):
        return keystore.describe_key(self.key_type, self.key_size, self.curve)

    @property
    def san_list(self):
        return [line for line in self.subject_alt_names.splitlines() if line]

    def expiry_level(self, now=None):
        return expiry_level(self.not_after, now)

    def days_left(self, now=None):
        return days_left(self.not_after, now)

    @property
    def expiry_badge(self):
        return LEVEL_BADGES[self.expiry_level()]


class CertificateExpiryWarning(models.Model):
    """A crossed expiry threshold of one certificate, recorded once (per threshold and not-after,
    so a renewed certificate is warned about again when its own thresholds come)."""

    entry = models.ForeignKey(KeystoreEntry, on_delete=models.CASCADE, related_name="expiry_warnings")
    threshold_days = models.PositiveIntegerField()
    not_after = models.DateTimeField()
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-recorded_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["entry", "threshold_days", "not_after"], name="expiry_warning_once"),
        ]

    def __str__(self):
        return f"{self.entry.alias}: {self.threshold_days} days before {self.not_after:%Y-%m-%d}"


# ====================================================================== federation entities
#
# An entity is one party of a federation: this site's own IdP/SP/Producer/Consumer/IP/RP (local)
# or a partner's (remote). Partnerships join one local and one remote entity and copy their values
# (entity → partnership, never back). A local entity's service URLs are not stored: they follow
# from its base URL and the runtime path map (federation.runtime_paths). A remote entity lists the
# partner's endpoints (Endpoint rows) and, for WS-Federation, its service URLs.
#
# Validation lives here (clean() of each model and `check_entity`, which also checks the rows
# against each other) so the console, the CLI and the later metadata import share one set of rules
# and messages. entities.entity_services runs it before every write.

ENTITY_NAME_PATTERN = r"[A-Za-z0-9._-]+"
ENTITY_NAME_MAX = 100
ENTITY_ID_MAX = 1024
URL_MAX = 1024
SPECIFIC_ID_PATTERN = r"[A-Za-z0-9]+"


def require_https():
    """Site-wide switch: every service URL (base URL, endpoints, WS-Fed URLs) must be https.

    Read from the Django setting FEDERATION_REQUIRE_HTTPS (default off); the settings module will
    take it from the environment variable of the same name."""
    return bool(getattr(settings, "FEDERATION_REQUIRE_HTTPS", False))


_WHITESPACE = re.compile(r"\s")  # the characters str.isspace() accepts


def url_problem(value):
    """Why `value` is not a usable service URL (plain words), or None when it is."""
    if _WHITESPACE.search(value):
        return "A URL cannot contain spaces; encode them as %20."
    if len(value) > URL_MAX:
        return f"A URL has at most {URL_MAX} characters."
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "This is not a valid URL."
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "Enter an absolute URL starting with https:// (or http://), such as https://idp.example.org/."
    if parts.username is not None or parts.password is not None:
        return "Do not put a user name or password in the URL."
    if parts.fragment:
        return "Remove the #fragment; partners do not send it to the server."
    if require_https() and parts.scheme.lower() != "https":
        return "This site requires https:// for every service URL (setting FEDERATION_REQUIRE_HTTPS)."
    return None


def is_uri(value):
    """A URI as SAML uses them (an absolute URI or URN): a scheme, no spaces."""
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+\Z", value or ""))


class Protocol(models.TextChoices):
    SAML2 = "saml2", "SAML 2.0"
    SAML11 = "saml11", "SAML 1.1"
    WSFED = "wsfed", "WS-Federation"


class Role(models.TextChoices):
    ASSERTING = "asserting", "Asserting party"
    RELYING = "relying", "Relying party"


class EntityType(models.TextChoices):
    SAML2_IDP = "saml2_idp", "SAML2 IdP"
    SAML2_SP = "saml2_sp", "SAML2 SP"
    SAML11_PRODUCER = "saml11_producer", "SAML1.1 Producer"
    SAML11_CONSUMER = "saml11_consumer", "SAML1.1 Consumer"
    WSFED_IP = "wsfed_ip", "WS-Fed IP"
    WSFED_RP = "wsfed_rp", "WS-Fed RP"


TYPE_PROTOCOL_ROLE = {
    EntityType.SAML2_IDP: (Protocol.SAML2, Role.ASSERTING),
    EntityType.SAML2_SP: (Protocol.SAML2, Role.RELYING),
    EntityType.SAML11_PRODUCER: (Protocol.SAML11, Role.ASSERTING),
    EntityType.SAML11_CONSUMER: (Protocol.SAML11, Role.RELYING),
    EntityType.WSFED_IP: (Protocol.WSFED, Role.ASSERTING),
    EntityType.WSFED_RP: (Protocol.WSFED, Role.RELYING),
}


class Location(models.TextChoices):
    LOCAL = "local", "Local"
    REMOTE = "remote", "Remote"


class SamlTokenType(models.TextChoices):
    """The SAML assertion a WS-Federation entity carries in its security token."""

    SAML11 = "saml11", "SAML 1.1"
    SAML2 = "saml2", "SAML 2.0"
    LEGACY = "legacy", "Legacy (WS-Federation 1.0 SAML token)"


class NameIdFormat(models.TextChoices):
    UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified", "Unspecified"
    EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress", "Email address"
    X509_SUBJECT = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName", "X.509 subject name"
    WINDOWS_DOMAIN = "urn:oasis:names:tc:SAML:1.1:nameid-format:WindowsDomainQualifiedName", "Windows domain qualified name"
    KERBEROS = "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos", "Kerberos principal name"
    ENTITY = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", "Entity identifier"
    PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent", "Persistent"
    TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient", "Transient"


# Formats SAML 1.1 assertions cannot carry.
SAML2_ONLY_NAME_ID_FORMATS = frozenset(
    {NameIdFormat.KERBEROS, NameIdFormat.ENTITY, NameIdFormat.PERSISTENT, NameIdFormat.TRANSIENT}
)


class Binding(models.TextChoices):
    HTTP_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect", "HTTP-Redirect"
    HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST", "HTTP-POST"
    HTTP_ARTIFACT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact", "HTTP-Artifact"
    SOAP = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP", "SOAP"
    PAOS = "urn:oasis:names:tc:SAML:2.0:bindings:PAOS", "PAOS (ECP)"
    SAML11_POST = "urn:oasis:names:tc:SAML:1.0:profiles:browser-post", "SAML 1.1 browser/POST"
    SAML11_ARTIFACT = "urn:oasis:names:tc:SAML:1.0:profiles:artifact-01", "SAML 1.1 browser/artifact"
    SAML11_SOAP = "urn:oasis:names:tc:SAML:1.0:bindings:SOAP-binding", "SAML 1.1 SOAP"
    SAML11_AUTHN_REQUEST = "urn:mace:shibboleth:1.0:profiles:AuthnRequest", "SAML 1.1 AuthnRequest (Shibboleth)"


class EndpointKind(models.TextChoices):
    ACS = "acs", "Assertion consumer service"
    SSO = "sso", "Single sign-on service"
    SLO = "slo", "Single logout service"
    ARTIFACT_RESOLUTION = "artifact_resolution", "Artifact resolution service"
    ATTRIBUTE_SERVICE = "attribute_service", "Attribute service"
    MANAGE_NAME_ID = "manage_name_id", "Manage NameID service"


# Endpoints with an index (SAML metadata's IndexedEndpointType).
INDEXED_ENDPOINT_KINDS = frozenset({EndpointKind.ACS, EndpointKind.ARTIFACT_RESOLUTION})
# The rules test these for every row of a bulk import; Django's `Choices.values` builds a new list on each use.
ENDPOINT_KIND_VALUES = frozenset(EndpointKind.values)
LOCATION_VALUES = frozenset(Location.values)
ENTITY_TYPE_VALUES = frozenset(EntityType.values)
# Endpoints that may name a separate location for responses.
RESPONSE_LOCATION_KINDS = frozenset({EndpointKind.SLO, EndpointKind.MANAGE_NAME_ID})

_FRONT_AND_SOAP = (Binding.HTTP_REDIRECT, Binding.HTTP_POST, Binding.SOAP)

# Which endpoints a remote entity of a (protocol, role) lists, and the bindings each may use, in
# the order the console offers them. WS-Federation has no SAML endpoints (it uses the WS-Fed URL
# fields), and a local entity's endpoints come from its base URL.
ENDPOINT_BINDINGS = {
    (Protocol.SAML2, Role.RELYING): {
        EndpointKind.ACS: (Binding.HTTP_POST, Binding.HTTP_ARTIFACT, Binding.PAOS),
        EndpointKind.SLO: _FRONT_AND_SOAP,
        EndpointKind.ARTIFACT_RESOLUTION: (Binding.SOAP,),
        EndpointKind.MANAGE_NAME_ID: _FRONT_AND_SOAP,
    },
    (Protocol.SAML2, Role.ASSERTING): {
        EndpointKind.SSO: (Binding.HTTP_REDIRECT, Binding.HTTP_POST, Binding.HTTP_ARTIFACT, Binding.SOAP),
        EndpointKind.SLO: _FRONT_AND_SOAP,
        EndpointKind.ARTIFACT_RESOLUTION: (Binding.SOAP,),
        EndpointKind.ATTRIBUTE_SERVICE: (Binding.SOAP,),
        EndpointKind.MANAGE_NAME_ID: _FRONT_AND_SOAP,
    },
    (Protocol.SAML11, Role.RELYING): {
        EndpointKind.ACS: (Binding.SAML11_POST, Binding.SAML11_ARTIFACT),
    },
    (Protocol.SAML11, Role.ASSERTING): {
        EndpointKind.SSO: (Binding.SAML11_AUTHN_REQUEST,),
        EndpointKind.ARTIFACT_RESOLUTION: (Binding.SAML11_SOAP,),
    },
}

# A remote entity of these kinds needs at least one endpoint of this kind (as SAML metadata does).
REQUIRED_ENDPOINTS = {
    (Protocol.SAML2, Role.RELYING): EndpointKind.ACS,
    (Protocol.SAML2, Role.ASSERTING): EndpointKind.SSO,
    (Protocol.SAML11, Role.RELYING): EndpointKind.ACS,
}


class AttributeNameFormat(models.TextChoices):
    UNSPECIFIED = "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified", "Unspecified"
    BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic", "Basic"
    URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri", "URI"


class AttributeValueType(models.TextChoices):
    STATIC = "static", "Static"
    USER = "user", "User attribute"
    EXPRESSION = "expression", "Expression"


def type_protocol(entity_type):
    return TYPE_PROTOCOL_ROLE[EntityType(entity_type)][0]


def type_role(entity_type):
    return TYPE_PROTOCOL_ROLE[EntityType(entity_type)][1]


def assertion_version(entity_type, saml_token_type=""):
    """The SAML version of this entity's assertions: "saml2" or "saml11" (WS-Fed: by its token type)."""
    protocol = type_protocol(entity_type)
    if protocol == Protocol.WSFED:
        return Protocol.SAML2 if saml_token_type == SamlTokenType.SAML2 else Protocol.SAML11
    return protocol


def entity_fields(location, entity_type):
    """The Entity fields that apply to an entity of this location and type. Fields not listed must
    stay empty; the console shows only these (see entities.entity_forms)."""
    protocol, role = TYPE_PROTOCOL_ROLE[EntityType(entity_type)]
    fields = {"entity_id", "name", "description", "name_id_formats"}
    if location == Location.LOCAL:
        fields |= {"base_url", "signing_key", "next_signing_key"}
        if protocol == Protocol.SAML2:
            fields.add("decryption_key")
    else:
        fields.add("verification_certificate")
        if protocol == Protocol.SAML2:
            fields.add("encryption_certificate")
    if protocol == Protocol.WSFED:
        if location == Location.LOCAL:
            fields.add("wsfed_specific_id")
            if role == Role.ASSERTING:
                fields.add("wsfed_signout_confirm_url")
        else:
            fields.add("wsfed_service_url")
            fields.add("wsfed_signout_url" if role == Role.ASSERTING else "wsfed_signout_cleanup_url")
    return fields


def endpoint_bindings(location, entity_type):
    """{kind: bindings} of the endpoints an entity of this location and type lists ({} when none)."""
    if location != Location.REMOTE:
        return {}
    return ENDPOINT_BINDINGS.get(TYPE_PROTOCOL_ROLE[EntityType(entity_type)], {})


def has_attributes(entity_type):
    """Entity-level assertion attributes belong to asserting parties (IdP, Producer, IP)."""
    return type_role(entity_type) == Role.ASSERTING


# Key references: which keystore kinds each key field accepts, and in plain words why.
KEY_FIELDS = {
    "signing_key": ((KeystoreEntry.Kind.KEY_PAIR,), "The signing key must be a key pair (a private key with its certificate)."),
    "next_signing_key": (
        (KeystoreEntry.Kind.KEY_PAIR,),
        "The next signing key must be a key pair (a private key with its certificate).",
    ),
    "decryption_key": (
        (KeystoreEntry.Kind.KEY_PAIR,),
        "The decryption key must be a key pair (a private key with its certificate).",
    ),
    "verification_certificate": (
        (KeystoreEntry.Kind.TRUSTED_CERTIFICATE, KeystoreEntry.Kind.KEY_PAIR),
        "The verification certificate must be the partner's certificate (a trusted certificate), not a CA.",
    ),
    "encryption_certificate": (
        (KeystoreEntry.Kind.TRUSTED_CERTIFICATE, KeystoreEntry.Kind.KEY_PAIR),
        "The encryption certificate must be the partner's certificate (a trusted certificate), not a CA.",
    ),
}


def _key_field(label, related_name, help_text):
    return models.ForeignKey(
        KeystoreEntry,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name=related_name,
        verbose_name=label,
        help_text=help_text,
    )


class EntityQuerySet(models.QuerySet):
    def named(self, name):
        """Entities with this name regardless of case, through the LOWER(name) unique index (a plain iexact
        lookup compiles to UPPER()/LIKE, which no index serves, and bulk imports pay for it per entity)."""
        return self.annotate(name_lower=Lower("name")).filter(name_lower=Lower(models.Value(name)))


class Entity(Audited, models.Model):
    """A federation party: local (this site) or remote (a partner), of one of six types."""

    Location = Location
    Type = EntityType
    TokenType = SamlTokenType

    location = models.CharField(
        max_length=8,
        choices=Location.choices,
        help_text="Local: this site (it signs with its own keys and serves the runtime URLs). Remote: a partner.",
    )
    entity_type = models.CharField(
        "entity type",
        max_length=20,
        choices=EntityType.choices,
        help_text="The protocol and the role: an asserting party (IdP, Producer, IP) issues assertions, "
        "a relying party (SP, Consumer, RP) consumes them.",
    )
    saml_token_type = models.CharField(
        "SAML token type",
        max_length=8,
        choices=SamlTokenType.choices,
        blank=True,
        help_text="WS-Federation only: the SAML assertion inside the security token. Choose Legacy only for a token "
        "that follows the WS-Federation 1.0 SAML token type.",
    )
    entity_id = models.CharField(
        "entity ID",
        max_length=ENTITY_ID_MAX,
        help_text="The identifier partners see (SAML entityID, WS-Fed realm), e.g. idp1 or https://idp.example.org/. "
        "It must match what the partner configured. Remote entity IDs are unique; local ones may repeat.",
    )
    name = models.CharField(
        "entity name",
        max_length=ENTITY_NAME_MAX,
        help_text="Internal name, never shown to partners; unique (without regard to case). Letters, digits, "
        "'_', '-' and '.'. It may equal the entity ID.",
    )
    description = models.TextField(blank=True, help_text="Optional note for administrators.")
    base_url = models.CharField(
        "base URL",
        max_length=URL_MAX,
        blank=True,
        help_text="Local entities: the scheme, host and port where this site's federation runtime answers, "
        "e.g. https://idp.example.org. The service URLs partners use are derived from it.",
    )
    signing_key = _key_field(
        "signing key",
        "entities_signing",
        "Key pair this local entity signs assertions, responses and requests with.",
    )
    next_signing_key = _key_field(
        "next signing key",
        "entities_next_signing",
        "Key rollover: a key pair published in this entity's metadata beside the signing key, so partners "
        "trust it before the switch. Make it the signing key once partners have refreshed.",
    )
    decryption_key = _key_field(
        "decryption key",
        "entities_decrypting",
        "SAML 2.0 local entities: key pair that decrypts what partners encrypt to this site.",
    )
    verification_certificate = _key_field(
        "verification certificate",
        "entities_verifying",
        "Remote entities: the partner's certificate that verifies its signatures.",
    )
    encryption_certificate = _key_field(
        "encryption certificate",
        "entities_encrypting",
        "SAML 2.0 remote entities: the partner's certificate this site encrypts assertions or NameIDs to.",
    )
    name_id_formats = models.JSONField(
        "supported NameID formats",
        default=list,
        blank=True,
        help_text="The NameID format URIs this entity supports, most preferred first.",
    )
    wsfed_specific_id = models.CharField(
        "specific ID",
        max_length=64,
        blank=True,
        help_text="Local WS-Fed entities, optional: letters and digits only. A path suffix of the service URL "
        "(…/wsfeddispatcher/<specific ID>), so several partnerships can share one partner realm (e.g. Office 365).",
    )
    wsfed_signout_confirm_url = models.CharField(
        "sign-out confirm URL",
        max_length=URL_MAX,
        blank=True,
        help_text="Local WS-Fed IP, optional: the page users see once sign-out has finished. It must not require a login.",
    )
    wsfed_service_url = models.CharField(
        "WS-Fed service URL",
        max_length=URL_MAX,
        blank=True,
        help_text="Remote WS-Fed IP: its single sign-on service URL. Remote WS-Fed RP: its security token consumer "
        "service URL, where this site posts the token.",
    )
    wsfed_signout_url = models.CharField(
        "sign-out URL",
        max_length=URL_MAX,
        blank=True,
        help_text="Remote WS-Fed IP, optional: where users are sent to sign out at the IP (wa=wsignout1.0).",
    )
    wsfed_signout_cleanup_url = models.CharField(
        "sign-out cleanup URL",
        max_length=URL_MAX,
        blank=True,
        help_text="Remote WS-Fed RP, optional: where this site sends the sign-out cleanup request "
        "(wa=wsignoutcleanup1.0). For Office 365 it is the same as the service URL.",
    )
    # Provenance of an entity made or updated from SAML metadata (entities.metadata_import). Not
    # configuration the administrator types: written by the import and the scheduled refresh only.
    metadata_source = models.ForeignKey(
        "MetadataSource",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="entities",
        verbose_name="metadata source",
        help_text="Remote entities imported from metadata: the file or URL they came from (URL sources are refreshed).",
    )
    metadata_revision = models.PositiveIntegerField(
        "metadata revision",
        default=0,
        help_text="Counts the changes applied from metadata (import and refresh). Partnerships remember the revision "
        "they copied, so a higher one here means 'entity updated: Get updates'.",
    )
    metadata_updated_at = models.DateTimeField(
        "metadata applied at", null=True, blank=True, help_text="When metadata last changed this entity."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EntityQuerySet.as_manager()

    audit_ignore_fields = ("updated_at",)
    # Fields clean() checks completely (with its own messages); Django's generic field checks skip them.
    clean_covers = (
        "location",
        "entity_type",
        "saml_token_type",
        "entity_id",
        "name",
        "base_url",
        "wsfed_signout_confirm_url",
        "wsfed_service_url",
        "wsfed_signout_url",
        "wsfed_signout_cleanup_url",
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "entity"
        verbose_name_plural = "entities"
        constraints = [
            models.UniqueConstraint(
                Lower("name"),
                name="entity_name_unique_ci",
                violation_error_message="Another entity already has this entity name.",
            ),
            models.UniqueConstraint(
                fields=["entity_id"],
                condition=models.Q(location="remote"),
                name="remote_entity_id_unique",
                violation_error_message="Another remote entity already has this entity ID.",
            ),
        ]
        indexes = [models.Index(fields=["entity_type", "location"], name="entity_type_location")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        from django.urls import reverse

        return reverse("entities:detail", args=[self.pk])

    # -- derived facts

    @property
    def protocol(self):
        return type_protocol(self.entity_type)

    @property
    def role(self):
        return type_role(self.entity_type)

    @property
    def is_local(self):
        return self.location == Location.LOCAL

    @property
    def is_asserting(self):
        return self.role == Role.ASSERTING

    @property
    def assertion_version(self):
        return assertion_version(self.entity_type, self.saml_token_type)

    def get_protocol_display(self):
        return Protocol(self.protocol).label

    def get_role_display(self):
        return Role(self.role).label

    @property
    def type_label(self):
        """E.g. 'Local SAML2 IdP' or 'Remote WS-Fed RP (SAML 1.1 token)'."""
        label = f"{self.get_location_display()} {self.get_entity_type_display()}"
        if self.saml_token_type:
            label += f" ({self.get_saml_token_type_display()} token)"
        return label

    def applicable_fields(self):
        return entity_fields(self.location, self.entity_type)

    def name_id_format_labels(self):
        labels = dict(NameIdFormat.choices)
        return [labels.get(uri, uri) for uri in self.name_id_formats or []]

    def runtime_urls(self):
        """The service URLs of a local entity (label, url, note), derived from its base URL; [] for remote ones."""
        if not self.is_local:
            return []
        return runtime_paths.local_service_urls(
            self.base_url, self.protocol, self.role, entity_name=self.name, specific_id=self.wsfed_specific_id
        )

    def key_references(self):
        """[(field label, KeystoreEntry)] of the keys set on this entity."""
        refs = []
        for name in KEY_FIELDS:
            entry = getattr(self, name)
            if entry is not None:
                refs.append((self._meta.get_field(name).verbose_name, entry))
        return refs

    # -- validation

    def clean(self, lookups=None):
        """The entity's own rules. `lookups` answers the rules' database questions (RuleLookups: one
        query each; a bulk import passes the answers it prefetched for its whole batch)."""
        lookups = lookups or DATABASE_LOOKUPS
        errors = {}

        def add(field, message):
            errors.setdefault(field, []).append(message)

        if self.location not in LOCATION_VALUES:
            add("location", "Choose Local or Remote.")
        if self.entity_type not in ENTITY_TYPE_VALUES:
            add("entity_type", "Choose one of the six entity types.")
        if errors:
            raise ValidationError(errors)
        protocol = self.protocol

        self.entity_id = (self.entity_id or "").strip()
        self.name = (self.name or "").strip()
        self.base_url = (self.base_url or "").strip()

        if protocol == Protocol.WSFED:
            if not self.saml_token_type:
                add("saml_token_type", "Choose the SAML token type of this WS-Federation entity.")
            elif self.saml_token_type not in SamlTokenType.values:
                add("saml_token_type", "Choose SAML 1.1, SAML 2.0 or Legacy.")
        elif self.saml_token_type:
            add("saml_token_type", "Only WS-Federation entities have a SAML token type.")

        if not self.entity_id:
            add("entity_id", "Enter the entity ID.")
        elif any(ch.isspace() for ch in self.entity_id):
            add("entity_id", "An entity ID cannot contain spaces or line breaks.")
        elif len(self.entity_id) > ENTITY_ID_MAX:
            add("entity_id", f"An entity ID has at most {ENTITY_ID_MAX} characters.")
        elif self.location == Location.REMOTE:
            other = lookups.remote_entity_id_owner(self)
            if other is not None:
                add("entity_id", f"The remote entity '{other}' already has this entity ID; remote entity IDs are unique.")

        if not self.name:
            add("name", "Enter an entity name.")
        elif len(self.name) > ENTITY_NAME_MAX:
            add("name", f"An entity name has at most {ENTITY_NAME_MAX} characters.")
        elif not re.fullmatch(ENTITY_NAME_PATTERN, self.name):
            add("name", "Use only letters, digits, '_', '-' and '.' in an entity name (no spaces).")
        else:
            other = lookups.name_owner(self)
            if other is not None:
                add("name", f"The entity name '{other}' is already used by another entity; entity names are unique.")

        applicable = self.applicable_fields()
        if self.location == Location.LOCAL:
            if not self.base_url:
                add("base_url", "Enter the base URL of this site's federation runtime, e.g. https://idp.example.org.")
            else:
                problem = url_problem(self.base_url)
                if problem is None and _url_has_query(self.base_url):
                    problem = "A base URL is a scheme, host, port and optional path, without ?query."
                if problem:
                    add("base_url", problem)
        elif self.base_url:
            add("base_url", "Only local entities have a base URL; a partner's URLs are its endpoints.")

        for field, (kinds, message) in KEY_FIELDS.items():
            entry = getattr(self, field)
            if entry is None:
                continue
            if field not in applicable:
                add(field, self._not_applicable(field))
            elif entry.kind not in kinds:
                add(field, f"'{entry.alias}' is a {entry.get_kind_display().lower()}. {message}")
        if self.next_signing_key_id and self.next_signing_key_id == self.signing_key_id:
            add("next_signing_key", "The next signing key must differ from the current signing key.")

        self._clean_name_id_formats(add)
        self._clean_wsfed(applicable, add)
        if errors:
            raise ValidationError(errors)

    def _not_applicable(self, field):
        label = self._meta.get_field(field).verbose_name
        kind = f"{self.get_location_display().lower()} {self.get_entity_type_display()}"
        return f"A {kind} entity has no {label}; leave it empty."

    def _clean_name_id_formats(self, add):
        formats = self.name_id_formats
        if formats in (None, ""):
            self.name_id_formats = formats = []
        if not isinstance(formats, list) or not all(isinstance(item, str) for item in formats):
            add("name_id_formats", "NameID formats are a list of format URIs.")
            return
        cleaned = []
        for uri in (item.strip() for item in formats):
            if uri and uri not in cleaned:
                cleaned.append(uri)
        self.name_id_formats = cleaned
        for uri in cleaned:
            if not is_uri(uri):
                add("name_id_formats", f"'{uri}' is not a NameID format URI.")
            elif uri in SAML2_ONLY_NAME_ID_FORMATS and self.assertion_version == Protocol.SAML11:
                add(
                    "name_id_formats",
                    f"{NameIdFormat(uri).label} is a SAML 2.0 NameID format; SAML 1.1 assertions cannot carry it.",
                )

    def _clean_wsfed(self, applicable, add):
        url_fields = ("wsfed_signout_confirm_url", "wsfed_service_url", "wsfed_signout_url", "wsfed_signout_cleanup_url")
        for field in ("wsfed_specific_id", *url_fields):
            value = (getattr(self, field) or "").strip()
            setattr(self, field, value)
            if not value:
                continue
            if field not in applicable:
                add(field, self._not_applicable(field))
            elif field == "wsfed_specific_id":
                if not re.fullmatch(SPECIFIC_ID_PATTERN, value):
                    add(field, "Use only letters and digits in the specific ID (no spaces or other characters).")
            else:
                problem = url_problem(value)
                if problem:
                    add(field, problem)
        if "wsfed_service_url" in applicable and not self.wsfed_service_url:
            what = "single sign-on service URL" if self.role == Role.ASSERTING else "security token consumer service URL"
            add("wsfed_service_url", f"Enter the partner's {what}.")


def _or_list(items):
    """'A', 'A or B', 'A, B or C'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _url_has_query(url):
    return bool(urlsplit(url).query)


class Endpoint(Audited, models.Model):
    """One service URL of a remote entity (SAML metadata's endpoint elements)."""

    Kind = EndpointKind
    Binding = Binding

    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="endpoints")
    kind = models.CharField(max_length=24, choices=EndpointKind.choices, help_text="Which service this URL is.")
    binding = models.CharField(
        max_length=100,
        choices=Binding.choices,
        help_text="How messages travel to this URL: through the browser (Redirect, POST, Artifact) or directly (SOAP).",
    )
    location = models.CharField(
        "location URL", max_length=URL_MAX, help_text="The partner's URL for this service (absolute http(s) URL)."
    )
    response_location = models.CharField(
        "response location URL",
        max_length=URL_MAX,
        blank=True,
        help_text="Single logout and manage NameID only, optional: where responses go when not to the location URL.",
    )
    index = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Assertion consumer and artifact resolution services: the endpoint's index (0, 1, …), unique per kind.",
    )
    is_default = models.BooleanField(
        "default", default=False, help_text="The endpoint used when a message names none; at most one per kind."
    )
    position = models.PositiveIntegerField(default=0, help_text="Order in the entity's table.")

    clean_covers = ("kind", "binding", "location", "response_location")

    class Meta:
        ordering = ["entity", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["entity", "kind", "index"],
                condition=models.Q(index__isnull=False),
                name="endpoint_index_unique",
                violation_error_message="Another endpoint of this kind already has this index.",
            ),
            models.UniqueConstraint(
                fields=["entity", "kind"],
                condition=models.Q(is_default=True),
                name="endpoint_one_default_per_kind",
                violation_error_message="Another endpoint of this kind is already the default.",
            ),
        ]

    def __str__(self):
        entity = self.entity.name if self.entity_id else "?"
        index = f" [{self.index}]" if self.index is not None else ""
        return f"{entity}: {self.get_kind_display()}{index} {self.get_binding_display()} {self.location}"

    def clean(self):
        # Rules that need only this row and its entity; rules across rows are in check_entity().
        errors = {}

        def add(field, message):
            errors.setdefault(field, []).append(message)

        self.location = (self.location or "").strip()
        self.response_location = (self.response_location or "").strip()
        entity = self.entity
        allowed = endpoint_bindings(entity.location, entity.entity_type)
        kind_label = EndpointKind(self.kind).label if self.kind in ENDPOINT_KIND_VALUES else "endpoint"
        if entity.location == Location.LOCAL:
            add(
                "kind",
                "A local entity's service URLs come from its base URL; endpoint rows are for remote entities.",
            )
        elif not allowed:
            add("kind", f"A {entity.get_entity_type_display()} entity has no SAML endpoints; use its WS-Federation URLs.")
        elif self.kind not in allowed:
            names = ", ".join(EndpointKind(kind).label.lower() for kind in allowed)
            add("kind", f"A remote {entity.get_entity_type_display()} lists only these endpoints: {names}.")
        elif self.binding not in allowed[self.kind]:
            names = _or_list([Binding(binding).label for binding in allowed[self.kind]])
            binding = Binding(self.binding).label if self.binding in Binding.values else (self.binding or "no binding")
            add(
                "binding",
                f"A {entity.get_entity_type_display()} {kind_label.lower()} cannot use {binding}; choose {names}.",
            )

        if not self.location:
            add("location", "Enter the location URL.")
        else:
            problem = url_problem(self.location)
            if problem:
                add("location", problem)

        if self.response_location:
            if self.kind not in RESPONSE_LOCATION_KINDS:
                add("response_location", "Only single logout and manage NameID services have a response location.")
            elif self.binding == Binding.SOAP:
                add("response_location", "SOAP answers on the same connection; leave the response location empty.")
            else:
                problem = url_problem(self.response_location)
                if problem:
                    add("response_location", problem)

        if self.kind in INDEXED_ENDPOINT_KINDS:
            if self.index is None:
                add("index", f"Enter an index (0, 1, …) for each {kind_label.lower()}.")
        elif self.index is not None:
            add("index", "Only assertion consumer and artifact resolution services have an index; leave it empty.")
        if errors:
            raise ValidationError(errors)


class EntityAttribute(Audited, models.Model):
    """An attribute an asserting entity puts into its assertions; partnerships built on the entity inherit it.

    On a local entity the value says where the attribute comes from; on a remote one the row only names
    what the partner sends (the relying partnership maps it)."""

    ValueType = AttributeValueType
    NameFormat = AttributeNameFormat

    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="attributes")
    name = models.CharField(max_length=255, help_text="The attribute name in the assertion, e.g. mail or groups.")
    name_format = models.CharField(
        "name format",
        max_length=100,
        choices=AttributeNameFormat.choices,
        blank=True,
        help_text="SAML 2.0 assertions: how the name is to be read (unspecified, basic or URI).",
    )
    namespace = models.CharField(
        max_length=URL_MAX,
        blank=True,
        help_text="SAML 1.1 assertions (and WS-Fed SAML 1.1 tokens): the attribute namespace URI, "
        "e.g. http://schemas.xmlsoap.org/claims.",
    )
    value_type = models.CharField(
        "value type",
        max_length=16,
        choices=AttributeValueType.choices,
        blank=True,
        help_text="Local entities: a fixed value, a user directory attribute, or an expression.",
    )
    value = models.CharField(
        max_length=4096,
        blank=True,
        help_text='Local entities: the value, the directory attribute name, or an expression such as #{attr["mail"]}.',
    )
    position = models.PositiveIntegerField(default=0, help_text="Order in the entity's table.")

    clean_covers = ("name", "name_format", "value_type")

    class Meta:
        ordering = ["entity", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["entity", "name"],
                name="entity_attribute_name_unique",
                violation_error_message="This entity already has an attribute with this name.",
            ),
        ]

    def __str__(self):
        entity = self.entity.name if self.entity_id else "?"
        return f"{entity}: attribute {self.name}"

    def clean(self):
        errors = {}

        def add(field, message):
            errors.setdefault(field, []).append(message)

        self.name = (self.name or "").strip()
        self.namespace = (self.namespace or "").strip()
        self.value = (self.value or "").strip()
        entity = self.entity
        if not has_attributes(entity.entity_type):
            add("name", "Only asserting entities (IdP, Producer, IP) have assertion attributes.")
        if not self.name:
            add("name", "Enter the attribute name.")
        elif len(self.name) > 255:
            add("name", "An attribute name has at most 255 characters.")
        elif any(ch in self.name for ch in "\r\n\t"):
            add("name", "An attribute name cannot contain line breaks or tabs.")

        if entity.assertion_version == Protocol.SAML2:
            if self.namespace:
                add("namespace", "SAML 2.0 attributes have a name format, not a namespace; leave it empty.")
            if self.name_format and self.name_format not in AttributeNameFormat.values:
                add("name_format", "Choose unspecified, basic or URI.")
            elif self.name_format == AttributeNameFormat.URI and self.name and not is_uri(self.name):
                add("name", "With the URI name format the name must be a URI, e.g. urn:oid:0.9.2342.19200300.100.1.3.")
        else:
            if self.name_format:
                add("name_format", "SAML 1.1 attributes have a namespace, not a name format; leave it empty.")
            if not self.namespace:
                add("namespace", "Enter the attribute namespace URI; SAML 1.1 requires one.")
            elif not is_uri(self.namespace):
                add("namespace", "The namespace must be a URI, e.g. http://schemas.xmlsoap.org/claims.")

        if entity.location == Location.LOCAL:
            if self.value_type not in AttributeValueType.values:
                add("value_type", "Choose where the value comes from: static, user attribute or expression.")
            elif not self.value:
                add("value", "Enter the value (for a user attribute: the directory attribute name).")
            elif self.value_type == AttributeValueType.EXPRESSION:
                from partnerships.expressions import ExpressionSyntaxError, compile_expression

                try:
                    compile_expression(self.value)
                except ExpressionSyntaxError as exc:
                    add("value", str(exc))
        elif self.value_type or self.value:
            add("value", "A remote entity's attributes only name what the partner sends; leave the value empty.")
        if errors:
            raise ValidationError(errors)


class RuleLookups:
    """The questions the entity rules ask the database, one query each: which other entity has this
    name (regardless of case), which other remote entity has this entity ID, and (Django's field
    validation) whether a referenced keystore entry exists. The answers are the other entity's name,
    or None."""

    def name_owner(self, entity):
        return Entity.objects.named(entity.name).exclude(pk=entity.pk).values_list("name", flat=True).first()

    def remote_entity_id_owner(self, entity):
        others = Entity.objects.filter(location=Location.REMOTE, entity_id=entity.entity_id).exclude(pk=entity.pk)
        return others.values_list("name", flat=True).first()

    def keystore_entry_exists(self, pk):
        """True when the entry is known to exist; False leaves the check to Django's own query."""
        return False


DATABASE_LOOKUPS = RuleLookups()


class PrefetchedLookups(RuleLookups):
    """The same answers for a batch of entities, fetched when it is made, in three queries (per 500
    values): the entities holding any of the batch's names or remote entity IDs, and which of the
    keystore entries it references exist. A question outside what was fetched is asked the database, as RuleLookups
    does. The answers are as of the fetch: the unique constraints on names and remote entity IDs (and
    the foreign keys) still refuse a row someone else wrote in the meantime."""

    CHUNK = 500  # values per IN (…), well under SQLite's limit of 999 parameters

    def __init__(self, names=(), entity_ids=(), keystore_ids=()):
        self._names = {}  # lower-case name → [(pk, name)] of the entities holding it
        self._entity_ids = {}  # remote entity ID → [(pk, name)]
        self._asked_names = {name.lower() for name in names}
        self._asked_entity_ids = set(entity_ids)
        self._keystore_ids = set()
        self._fetch(sorted(self._asked_names), sorted(self._asked_entity_ids), sorted(set(keystore_ids) - {None}))

    def _fetch(self, names, entity_ids, keystore_ids):
        for chunk in _chunks(names, self.CHUNK):
            holders = Entity.objects.annotate(name_lower=Lower("name")).filter(name_lower__in=chunk)
            for pk, name in holders.values_list("pk", "name"):
                self._names.setdefault(name.lower(), []).append((pk, name))
        for chunk in _chunks(entity_ids, self.CHUNK):
            holders = Entity.objects.filter(location=Location.REMOTE, entity_id__in=chunk)
            for pk, entity_id, name in holders.values_list("pk", "entity_id", "name"):
                self._entity_ids.setdefault(entity_id, []).append((pk, name))
        for chunk in _chunks(keystore_ids, self.CHUNK):
            self._keystore_ids.update(KeystoreEntry.objects.filter(pk__in=chunk).values_list("pk", flat=True))

    def name_owner(self, entity):
        if entity.name.lower() not in self._asked_names:
            return super().name_owner(entity)
        return _other(self._names.get(entity.name.lower(), ()), entity)

    def remote_entity_id_owner(self, entity):
        if entity.entity_id not in self._asked_entity_ids:
            return super().remote_entity_id_owner(entity)
        return _other(self._entity_ids.get(entity.entity_id, ()), entity)

    def keystore_entry_exists(self, pk):
        return pk in self._keystore_ids


def _other(holders, entity):
    """The name of the first holder that is not `entity` itself (None when there is none)."""
    return next((name for pk, name in holders if entity.pk is None or pk != entity.pk), None)


def _chunks(values, size):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def check_entity(entity, endpoints=(), attributes=(), lookups=None):
    """Every rule for an entity and its (unsaved or saved) endpoint and attribute rows.

    Returns the problems as {"entity": {field: [messages]}, "endpoints": {row: {field: [...]}},
    "attributes": {row: {field: [...]}}}, empty dicts when all is well. Row numbers are positions
    in the given lists. `lookups` (a RuleLookups) answers the rules' database questions; by
    default each is one query."""
    problems = {"entity": {}, "endpoints": {}, "attributes": {}}
    lookups = lookups or DATABASE_LOOKUPS
    # What Entity.full_clean(validate_unique=False, validate_constraints=False) does, with the lookups
    # passed to clean(). A keystore reference the lookups know exists skips Django's query for it.
    known_keys = [field for field in KEY_FIELDS if lookups.keystore_entry_exists(getattr(entity, f"{field}_id"))]
    errors = {}
    for step in (
        lambda: entity.clean_fields(exclude={*Entity.clean_covers, *known_keys}),
        lambda: entity.clean(lookups),
    ):
        try:
            step()
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
    if errors:
        problems["entity"] = ValidationError(errors).message_dict
    if "entity_type" in problems["entity"] or "location" in problems["entity"]:
        return problems

    def add(group, row, field, message):
        problems[group].setdefault(row, {}).setdefault(field, []).append(message)

    for row, endpoint in enumerate(endpoints):
        endpoint.entity = entity
        try:
            endpoint.full_clean(exclude=["entity", *Endpoint.clean_covers], validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                for message in messages:
                    add("endpoints", row, field, message)

    # Across rows: unique indexes, one default per kind, one row per binding of a non-indexed kind.
    seen_index, seen_default, seen_binding = {}, {}, {}
    for row, endpoint in enumerate(endpoints):
        label = EndpointKind(endpoint.kind).label.lower() if endpoint.kind in ENDPOINT_KIND_VALUES else "endpoint"
        if endpoint.kind in INDEXED_ENDPOINT_KINDS and endpoint.index is not None:
            key = (endpoint.kind, endpoint.index)
            if key in seen_index:
                add(
                    "endpoints",
                    row,
                    "index",
                    f"Index {endpoint.index} is already used by another {label} (row {seen_index[key] + 1}).",
                )
            else:
                seen_index[key] = row
        if endpoint.is_default:
            if endpoint.kind in seen_default:
                add(
                    "endpoints",
                    row,
                    "is_default",
                    f"Only one {label} can be the default (row {seen_default[endpoint.kind] + 1} is).",
                )
            else:
                seen_default[endpoint.kind] = row
        if endpoint.kind not in INDEXED_ENDPOINT_KINDS and endpoint.kind and endpoint.binding:
            key = (endpoint.kind, endpoint.binding)
            if key in seen_binding:
                binding = Binding(endpoint.binding).label if endpoint.binding in Binding.values else endpoint.binding
                add(
                    "endpoints",
                    row,
                    "binding",
                    f"Row {seen_binding[key] + 1} is already the {label} for {binding}; keep one row per binding.",
                )
            else:
                seen_binding[key] = row

    required = REQUIRED_ENDPOINTS.get((entity.protocol, entity.role)) if entity.location == Location.REMOTE else None
    if required and not any(endpoint.kind == required for endpoint in endpoints):
        problems["entity"].setdefault("endpoints", []).append(
            f"A remote {entity.get_entity_type_display()} needs at least one {EndpointKind(required).label.lower()} URL."
        )

    names = {}
    for row, attribute in enumerate(attributes):
        attribute.entity = entity
        try:
            attribute.full_clean(
                exclude=["entity", *EntityAttribute.clean_covers], validate_unique=False, validate_constraints=False
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                for message in messages:
                    add("attributes", row, field, message)
        if attribute.name:
            if attribute.name in names:
                add(
                    "attributes",
                    row,
                    "name",
                    f"Row {names[attribute.name] + 1} already defines the attribute '{attribute.name}'.",
                )
            else:
                names[attribute.name] = row
    return problems


# ====================================================================== metadata import and refresh
#
# Where remote entities came from (MetadataSource, refreshed on a schedule when it is a URL), the
# metadata documents administrators upload (stored in the database, so any web node or worker can
# read them), and the background jobs that scan or bulk-import them with their progress. The work
# itself is in entities.metadata_parser (pure) and entities.metadata_import (services).


class MetadataSource(Audited, models.Model):
    """A metadata document remote entities were imported from: a URL (refreshed on a schedule) or a file."""

    class Kind(models.TextChoices):
        URL = "url", "URL"
        FILE = "file", "File"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    location = models.CharField(
        max_length=URL_MAX, help_text="The metadata URL (https:// recommended), or the name of the file that was imported."
    )
    trust_anchor = models.ForeignKey(
        KeystoreEntry,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="metadata_sources",
        verbose_name="trust anchor",
        help_text="Keystore entry the metadata signature is verified with: the signer's certificate, or a CA that issued it.",
    )
    require_signature = models.BooleanField(
        "require a signature",
        default=True,
        help_text="Refuse the metadata unless it is signed and verifies with the trust anchor. "
        "Unsigned metadata is accepted only when this is off.",
    )
    refresh_interval = models.DurationField(
        null=True,
        blank=True,
        help_text="URL sources: how often the metadata is fetched again (a shorter cacheDuration in the metadata wins). "
        "Empty: never refreshed automatically.",
    )
    max_bytes = models.PositiveBigIntegerField(
        "size limit (bytes)", default=100 * 1024 * 1024, help_text="Larger documents are refused while downloading."
    )
    last_fetched_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_refresh_at = models.DateTimeField(null=True, blank=True, db_index=True)
    valid_until = models.DateTimeField(null=True, blank=True, help_text="validUntil of the last good copy.")
    cache_duration = models.DurationField(null=True, blank=True, help_text="cacheDuration of the last good copy.")
    etag = models.CharField(max_length=255, blank=True)
    last_modified = models.CharField(max_length=64, blank=True)
    content_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Fetch bookkeeping is not configuration: it changes on every refresh and is not audited.
    audit_ignore_fields = (
        "last_fetched_at",
        "last_success_at",
        "last_error",
        "last_error_at",
        "consecutive_failures",
        "next_refresh_at",
        "valid_until",
        "cache_duration",
        "etag",
        "last_modified",
        "content_sha256",
        "updated_at",
    )

    class Meta:
        ordering = ["location", "id"]
        verbose_name = "metadata source"
        constraints = [
            models.UniqueConstraint(fields=["kind", "location"], name="metadata_source_unique"),
        ]

    def __str__(self):
        return self.location

    @property
    def is_url(self):
        return self.kind == self.Kind.URL

    @property
    def failing(self):
        """The last fetch failed (the entities keep the last good copy); a success clears last_error."""
        return bool(self.last_error)


class MetadataUpload(models.Model):
    """A metadata file an administrator uploaded, kept in 1 MiB chunks until the import is done with it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    uploaded_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name


class MetadataUploadChunk(models.Model):
    upload = models.ForeignKey(MetadataUpload, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        ordering = ["upload", "seq"]
        constraints = [models.UniqueConstraint(fields=["upload", "seq"], name="metadata_upload_chunk_unique")]

    def __str__(self):
        return f"{self.upload_id} #{self.seq}"


class MetadataImportJob(models.Model):
    """A background metadata job and its progress: a scan (read and verify a document for the import
    wizard) or a bulk import (every entity of an aggregate that matches a filter)."""

    class Kind(models.TextChoices):
        SCAN = "scan", "Scan for the import wizard"
        BULK = "bulk", "Bulk import"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Finished"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED, db_index=True)
    phase = models.CharField(max_length=100, blank=True)
    key = models.CharField(max_length=64, blank=True, db_index=True, help_text="Hash of the options (finds a wizard's scan).")
    wizard_token = models.CharField(max_length=64, blank=True)
    owner = models.CharField(max_length=150, blank=True)
    options = models.JSONField(default=dict)
    document = models.JSONField(default=dict, help_text="What was learnt about the document (root, signature, counts).")
    bytes_read = models.PositiveBigIntegerField(default=0)
    bytes_total = models.PositiveBigIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, help_text="[{position, entity_id, message}] (the first 1000).")
    message = models.TextField(blank=True, help_text="Why the job failed as a whole.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.get_kind_display()} {self.id} ({self.state})"

    @property
    def done(self):
        return self.state in (self.State.SUCCEEDED, self.State.FAILED)

    @property
    def percent(self):
        """Progress 0–100: bytes while reading the document, entities while importing."""
        if self.state == self.State.SUCCEEDED:
            return 100
        if self.total:
            return min(99, int(100 * self.processed / self.total))
        if self.bytes_total:
            return min(99, int(100 * self.bytes_read / self.bytes_total))
        return 0


class MetadataScanEntry(models.Model):
    """One entity found by a scan job, listed in the import wizard's "Select entity" step."""

    job = models.ForeignKey(MetadataImportJob, on_delete=models.CASCADE, related_name="entries")
    position = models.PositiveIntegerField(help_text="1 for the document's first EntityDescriptor, and so on.")
    entity_id = models.CharField(max_length=ENTITY_ID_MAX + 64)
    display_name = models.CharField(max_length=255, blank=True)
    entity_types = models.CharField(max_length=200, blank=True, help_text="Comma-separated entity types it can become.")
    expired = models.BooleanField(default=False)
    valid_until = models.DateTimeField(null=True, blank=True)
    problem = models.TextField(blank=True, help_text="Why it cannot be imported (malformed); empty when it can.")
    certificate_count = models.PositiveIntegerField(default=0)
    data = models.JSONField(default=dict)

    class Meta:
        ordering = ["job", "position"]
        indexes = [models.Index(fields=["job", "position"], name="scan_entry_position")]

    def __str__(self):
        return f"{self.position}: {self.entity_id}"

    @property
    def selectable(self):
        return not self.expired and not self.problem and bool(self.entity_types)

    def type_list(self):
        return [value for value in self.entity_types.split(",") if value]

    def type_labels(self):
        labels = dict(EntityType.choices)
        return [labels.get(value, value) for value in self.type_list()]
