"""Keystore state: key pairs, trusted certificates and trusted CAs, and the expiry warnings recorded for them.

The parsed certificate facts are stored as columns so list pages can filter and sort on them; the
certificate PEM stays the source of truth (`apply_certificate` keeps both in step). The private key
is a sealed PKCS#8 PEM (federation.secretbox) and is opened only when something needs to sign,
decrypt or export it.
"""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from entities import keystore
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
