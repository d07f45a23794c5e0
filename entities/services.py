"""Keystore actions shared by the console, the `keystore` command and the Celery tasks.

Each action checks everything before it writes, and runs in one transaction, so bad input
changes nothing (and writes no audit event). Problems are raised as `KeystoreError` with the
form field they belong to. Key material is never logged.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, Q, RestrictedError
from django.utils import timezone

from entities import keystore, references
from entities.keystore import KeystoreError
from entities.models import (
    LEVEL_BADGES,
    CertificateExpiryWarning,
    ExpiryLevel,
    KeystoreEntry,
    alias_validator,
    days_left,
    expiry_level,
    level_windows,
    warning_thresholds,
)
from federation import audit

log = logging.getLogger("entities.keystore")

EXPORT_FORMATS = ("pem", "der")
_ALIAS_MAX = KeystoreEntry._meta.get_field("alias").max_length


# ---------------------------------------------------------------- lookups


def get_entry(alias, kind=None):
    """The entry with this alias (of this kind, when given), or a KeystoreError at the alias field."""
    entry = KeystoreEntry.objects.filter(alias=alias).first()
    if entry is None:
        raise KeystoreError(f"No keystore entry has the alias '{alias}'.", "alias")
    if kind and entry.kind != kind:
        raise KeystoreError(
            f"'{alias}' is a {entry.get_kind_display().lower()}, not a {KeystoreEntry.Kind(kind).label.lower()}.", "alias"
        )
    return entry


def _key_pair(alias):
    return get_entry(alias, KeystoreEntry.Kind.KEY_PAIR)


def check_new_alias(alias):
    """A usable alias that no entry has yet (compared without regard to case, so 'IdP' and 'idp' cannot both exist)."""
    alias = (alias or "").strip()
    if not alias:
        raise KeystoreError("Enter an alias.", "alias")
    if len(alias) > _ALIAS_MAX:
        raise KeystoreError(f"An alias has at most {_ALIAS_MAX} characters.", "alias")
    try:
        alias_validator(alias)
    except ValidationError as exc:
        raise KeystoreError(exc.messages[0], "alias") from None
    existing = KeystoreEntry.objects.filter(alias__iexact=alias).values_list("alias", flat=True).first()
    if existing:
        raise KeystoreError(
            f"An entry with the alias '{existing}' already exists; choose another alias or delete that entry first.", "alias"
        )
    return alias


def _insert(entry):
    """Save a new entry; a concurrent insert of the same alias becomes the same plain error."""
    try:
        with transaction.atomic():
            entry.save()
    except IntegrityError:
        raise KeystoreError(f"An entry with the alias '{entry.alias}' already exists.", "alias") from None
    return entry


# ---------------------------------------------------------------- key pairs


def generate_key_pair(alias, algorithm="rsa2048", subject="", days=365, san=()):
    """A new key pair with a self-signed certificate (make a CSR next to have a CA sign it)."""
    alias, _, name, general_names, days = keystore.check_all(
        lambda: check_new_alias(alias),
        lambda: keystore.check_algorithm(algorithm),
        lambda: keystore.parse_subject(subject),
        lambda: keystore.parse_san_list(san),
        lambda: keystore.check_validity_days(days),
    )
    key = keystore.generate_private_key(algorithm)
    certificate = keystore.self_signed_certificate(key, name, days, general_names)
    entry = KeystoreEntry(alias=alias, kind=KeystoreEntry.Kind.KEY_PAIR)
    entry.set_private_key(key)
    entry.apply_certificate(certificate)
    with transaction.atomic():
        _insert(entry)
    log.info(
        "key pair '%s' generated (%s, %s)", alias, entry.key_description, entry.subject, extra={"checkpoint": "KEYSTORE_GENERATE"}
    )
    return entry


def create_csr(alias, subject=None, san=None):
    """A certificate signing request for the key pair's key, stored on the entry; returns the PEM.

    Subject and SANs default to those of the current certificate."""
    entry = _key_pair(alias)
    certificate = entry.certificate()
    name = keystore.parse_subject(subject) if subject and subject.strip() else certificate.subject
    if san is None or (isinstance(san, str) and not san.strip()) or (not isinstance(san, str) and not any(san)):
        general_names = keystore.subject_alt_names(certificate)
    else:
        general_names = keystore.parse_san_list(san)
    csr = keystore.create_csr(entry.private_key_object(), name, general_names)
    with transaction.atomic():
        entry.csr_pem = keystore.csr_to_pem(csr)
        entry.save()
    log.info(
        "certificate signing request created for '%s' (%s)", alias, name.rfc4514_string(), extra={"checkpoint": "KEYSTORE_CSR"}
    )
    return entry.csr_pem


def import_signed_certificate(alias, data):
    """Put the certificate a CA issued (from our CSR) onto the key pair, with any chain in the file.

    A certificate for another key is refused and the current certificate kept."""
    entry = _key_pair(alias)
    certificates = keystore.load_certificates(data)
    key = entry.private_key_object()
    leaf = next((cert for cert in certificates if keystore.public_key_matches(cert, key)), None)
    if leaf is None:
        raise KeystoreError(f"The certificate's public key does not match the key pair '{alias}'.", "file")
    if leaf.not_valid_after_utc <= timezone.now():
        raise KeystoreError(f"This certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}; ask the CA for a new one.", "file")
    chain = keystore.order_chain(leaf, [cert for cert in certificates if cert is not leaf])
    with transaction.atomic():
        entry.apply_certificate(leaf, chain)
        entry.save()
    log.info(
        "CA-signed certificate imported onto '%s' (issuer %s, serial %s)",
        alias,
        entry.issuer,
        entry.serial_number,
        extra={"checkpoint": "KEYSTORE_IMPORT_SIGNED"},
    )
    return entry


def import_key_pair(alias, data, password=None):
    """A key pair from a PEM file (key and certificate, maybe a chain) or a PKCS#12 file."""
    alias, bundle = keystore.check_all(lambda: check_new_alias(alias), lambda: keystore.load_key_pair(data, password))
    entry = KeystoreEntry(alias=alias, kind=KeystoreEntry.Kind.KEY_PAIR)
    entry.set_private_key(bundle.private_key)
    entry.apply_certificate(bundle.certificate, bundle.chain)
    with transaction.atomic():
        _insert(entry)
    log.info(
        "key pair '%s' imported (%s, %s)", alias, entry.key_description, entry.subject, extra={"checkpoint": "KEYSTORE_IMPORT"}
    )
    return entry


# ---------------------------------------------------------------- trusted certificates and CAs


def import_trusted_certificate(alias, data):
    """One partner certificate (PEM, DER or PKCS#7), e.g. to verify a partner's signatures."""
    alias, certificates = keystore.check_all(lambda: check_new_alias(alias), lambda: _certificates_without_keys(data))
    if len(certificates) > 1:
        raise KeystoreError(
            f"This file holds {len(certificates)} certificates; import them as a trusted CA chain, or one file per certificate.",
            "file",
        )
    entry = KeystoreEntry(alias=alias, kind=KeystoreEntry.Kind.TRUSTED_CERTIFICATE)
    entry.apply_certificate(certificates[0])
    with transaction.atomic():
        _insert(entry)
    log.info("trusted certificate '%s' imported (%s)", alias, entry.subject, extra={"checkpoint": "KEYSTORE_IMPORT"})
    return entry


def chain_aliases(alias, count):
    """Aliases for the certificates of one CA file: alias, alias-2, alias-3, ..."""
    return [alias if number == 1 else f"{alias}-{number}" for number in range(1, count + 1)]


def import_trusted_ca_chain(alias, data):
    """Every CA certificate in a file becomes a trusted CA entry, named alias, alias-2, ... in file order.

    Certificates already trusted as CAs (same fingerprint) are skipped, so importing a bundle again is harmless.
    Returns the new entries."""
    _, certificates = keystore.check_all(lambda: check_new_alias(alias), lambda: _certificates_without_keys(data))
    for certificate in certificates:
        facts = keystore.certificate_facts(certificate)
        constraints = _basic_constraints(certificate)
        if constraints is not None and not constraints.ca:
            raise KeystoreError(
                f"{facts.subject} is not a CA certificate (its Basic Constraints say CA:FALSE); import it as a trusted certificate.",
                "file",
            )
    known = set(KeystoreEntry.objects.filter(kind=KeystoreEntry.Kind.TRUSTED_CA).values_list("fingerprint_sha256", flat=True))
    new, seen = [], set()
    for certificate in certificates:
        fingerprint = keystore.fingerprint_sha256(certificate)
        if fingerprint not in known and fingerprint not in seen:
            new.append(certificate)
            seen.add(fingerprint)
    if not new:
        existing = KeystoreEntry.objects.filter(
            fingerprint_sha256__in=known & {keystore.fingerprint_sha256(c) for c in certificates}
        )
        names = ", ".join(sorted(existing.values_list("alias", flat=True)))
        raise KeystoreError(f"Every certificate in this file is already a trusted CA ({names}).", "file")
    aliases = chain_aliases(alias, len(new))
    for candidate in aliases:
        check_new_alias(candidate)
    entries = []
    with transaction.atomic():
        for candidate, certificate in zip(aliases, new, strict=True):
            entry = KeystoreEntry(alias=candidate, kind=KeystoreEntry.Kind.TRUSTED_CA)
            entry.apply_certificate(certificate)
            entries.append(_insert(entry))
    for entry in entries:
        log.info("trusted CA '%s' imported (%s)", entry.alias, entry.subject, extra={"checkpoint": "KEYSTORE_IMPORT"})
    return entries


def _basic_constraints(certificate):
    from cryptography import x509

    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _certificates_without_keys(data):
    # A trusted certificate holds no key; a key in the file means the wrong import was chosen.
    raw = data.encode() if isinstance(data, str) else (data or b"")
    if b"PRIVATE KEY-----" in raw or keystore.looks_like_pkcs12(raw):
        raise KeystoreError("This file contains a private key; import it as a key pair instead.", "file")
    return keystore.load_certificates(raw)


def trusted_ca_certificates():
    return [entry.certificate() for entry in KeystoreEntry.objects.filter(kind=KeystoreEntry.Kind.TRUSTED_CA)]


def verify_certificate(certificate, intermediates=(), at=None):
    """The chain from `certificate` to a trusted CA of the keystore (see keystore.verify_chain)."""
    return keystore.verify_chain(certificate, trusted_ca_certificates(), intermediates, at)


@dataclass
class ChainStatus:
    ok: bool
    message: str


def chain_status(entry):
    """What the detail page says about an entry's chain of trust."""
    if entry.kind == KeystoreEntry.Kind.TRUSTED_CA:
        return ChainStatus(True, "Trust anchor: certificates issued by this CA are trusted.")
    anchors = {e.fingerprint_sha256: e.alias for e in KeystoreEntry.objects.filter(kind=KeystoreEntry.Kind.TRUSTED_CA)}
    try:
        path = verify_certificate(entry.certificate(), entry.chain())
    except KeystoreError as exc:
        if entry.kind == KeystoreEntry.Kind.TRUSTED_CERTIFICATE:
            # Importing a partner certificate is itself the act of trusting it (pinning).
            reason = "self-signed" if entry.self_signed else f"no chain to a trusted CA: {exc.message}"
            return ChainStatus(True, f"Trusted directly, as an imported certificate ({reason}).")
        if entry.self_signed:
            return ChainStatus(
                True, "Self-signed: partners trust it once they have this certificate (from your metadata or an export)."
            )
        return ChainStatus(False, exc.message)
    anchor = anchors.get(keystore.fingerprint_sha256(path[-1]), path[-1].subject.rfc4514_string())
    return ChainStatus(True, f"Valid chain of {len(path)} certificate(s) up to the trusted CA '{anchor}'.")


# ---------------------------------------------------------------- export and delete


def export_certificate(alias, fmt="pem"):
    """The entry's certificate as PEM text (bytes) or DER."""
    if fmt not in EXPORT_FORMATS:
        raise KeystoreError("Export the certificate as pem or der.", "format")
    certificate = get_entry(alias).certificate()
    return keystore.certificate_to_pem(certificate).encode() if fmt == "pem" else keystore.certificate_to_der(certificate)


def export_pkcs12(alias, password):
    """The key pair (private key, certificate and chain) as a password-protected PKCS#12 file. Audited."""
    entry = _key_pair(alias)
    data = keystore.export_pkcs12(entry.private_key_object(), entry.certificate(), entry.chain(), password, alias)
    audit.record("other", entry, summary="exported as PKCS#12 (private key, certificate and chain)")
    log.warning("key pair '%s' exported as PKCS#12", alias, extra={"checkpoint": "KEYSTORE_EXPORT_PKCS12"})
    return data


def delete_entry(alias):
    """Delete an entry; refused while an entity (or later a partnership) uses it, naming the users."""
    entry = get_entry(alias)
    try:
        with transaction.atomic():
            entry.delete()
    except (ProtectedError, RestrictedError) as error:
        users = references.describe_all(references.blocking_objects(error), entry)
        raise KeystoreError(
            f"'{alias}' cannot be deleted: it is used by {users}. Choose another key for them first.", "alias"
        ) from None
    log.info("keystore entry '%s' deleted", alias, extra={"checkpoint": "KEYSTORE_DELETE"})


# ---------------------------------------------------------------- expiry


@dataclass
class ExpiryItem:
    alias: str
    kind: str
    kind_label: str
    subject: str
    not_after: datetime
    days_left: int
    level: str

    @property
    def badge(self):
        """The console.css badge class for the level."""
        return LEVEL_BADGES.get(self.level, "ok")


def expiry_overview(now=None):
    """Every certificate by expiry, soonest first, with counts: expired / warning (within the largest
    warning threshold) / valid. Used by the dashboard and /metrics."""
    now = now or timezone.now()
    kinds = dict(KeystoreEntry.Kind.choices)
    entries = []
    counts = {"expired": 0, "warning": 0, "valid": 0}
    rows = KeystoreEntry.objects.order_by("not_after", "alias").values_list("alias", "kind", "subject", "not_after")
    for alias, kind, subject, not_after in rows:
        level = expiry_level(not_after, now)
        entries.append(ExpiryItem(alias, kind, kinds.get(kind, kind), subject, not_after, days_left(not_after, now), level))
        if level == ExpiryLevel.EXPIRED:
            counts["expired"] += 1
        elif level == ExpiryLevel.OK:
            counts["valid"] += 1
        else:
            counts["warning"] += 1
    return {"counts": counts, "entries": entries}


def level_filter(level, now=None):
    """A Q selecting entries whose expiry level is `level` (for list filters done in the database)."""
    now = now or timezone.now()
    if level == ExpiryLevel.EXPIRED:
        return Q(not_after__lte=now)
    lower = now
    for window_level, days in level_windows():
        upper = now + timedelta(days=days)
        if window_level == level:
            return Q(not_after__gt=lower, not_after__lte=upper)
        lower = upper
    if level == ExpiryLevel.OK:
        return Q(not_after__gt=lower)
    return Q(pk__in=[])


def record_expiry_warnings(now=None):
    """Record (once) and log every crossed warning threshold; returns the warnings recorded now.

    Idempotent: the (entry, threshold, not-after) constraint means re-runs, and several workers
    running at once, add nothing new."""
    now = now or timezone.now()
    thresholds = warning_thresholds()
    horizon = now + timedelta(days=max(thresholds))
    recorded = []
    for entry in KeystoreEntry.objects.filter(not_after__lte=horizon).order_by("not_after"):
        left = entry.not_after - now
        for threshold in thresholds:
            if left > timedelta(days=threshold):
                continue
            warning, created = CertificateExpiryWarning.objects.get_or_create(
                entry=entry, threshold_days=threshold, not_after=entry.not_after
            )
            if not created:
                continue
            recorded.append(warning)
            if left <= timedelta(0):
                when = f"expired on {entry.not_after:%Y-%m-%d %H:%M} UTC"
            else:
                when = f"expires in {days_left(entry.not_after, now)} days (on {entry.not_after:%Y-%m-%d %H:%M} UTC)"
            log.warning(
                "certificate '%s' (%s, %s) %s; %d-day warning",
                entry.alias,
                entry.get_kind_display().lower(),
                entry.subject,
                when,
                threshold,
                extra={"checkpoint": "KEYSTORE_EXPIRY_WARNING"},
            )
    return recorded
