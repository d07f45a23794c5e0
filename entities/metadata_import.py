"""Metadata import, bulk import and scheduled refresh: the services the console, the CLI and the
Celery tasks share.

Reading and verifying a document is entities.metadata_parser (pure); downloading is
entities.metadata_fetch. This module turns what was read into entities through
entities.entity_services (`create_entity` / `update_entity`, every rule and the audit log) and
certificates through entities.services (`import_trusted_certificate`). A bulk import writes its new
entities in batches instead: each checked with the same rules (`check_new_entities`), then written
together (`create_entities`, bulk inserts) with one audit event per batch; see `_import_batch`.

Operations (reference F5.8): create a remote entity, update an existing remote entity, create a
local entity. One import is atomic: the certificates, the entity with its rows, the source link
and the audit events are written in one transaction, so any error stores nothing. Nothing is
written before the whole document has been read and its signature verified.

Certificate rules (F5.8): one row per KeyDescriptor certificate; in SAML 1.1 and WS-Federation
metadata every certificate is for signing; a KeyDescriptor without `use` is for signing and
encryption; the same certificate selected twice (signing and encryption) becomes one keystore
entry "Signing and Encryption" under the first alias given; expired or broken certificates are
listed but cannot be chosen; a certificate already in the keystore (same SHA-256 fingerprint) is
reused rather than stored twice.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import pickle
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from entities import entity_services, metadata_parser, services
from entities.entity_services import EntityError
from entities.keystore import KeystoreError
from entities.metadata_fetch import DEFAULT_TIMEOUT, FetchError, fetch_metadata
from entities.metadata_parser import (
    DEFAULT_MAX_BYTES,
    TOKEN_TYPE_SAML2,
    CertificateData,
    EntityData,
    MetadataError,
    TrustAnchor,
    format_bytes,
)
from entities.models import (
    SAML2_ONLY_NAME_ID_FORMATS,
    AttributeNameFormat,
    Binding,
    EndpointKind,
    Entity,
    EntityType,
    KeystoreEntry,
    Location,
    MetadataImportJob,
    MetadataScanEntry,
    MetadataSource,
    MetadataUpload,
    MetadataUploadChunk,
    Protocol,
    Role,
    SamlTokenType,
    assertion_version,
    endpoint_bindings,
    has_attributes,
    is_uri,
    type_protocol,
    type_role,
)
from federation import audit

log = logging.getLogger("entities.metadata")

CREATE_REMOTE = "create-remote"
UPDATE_REMOTE = "update-remote"
CREATE_LOCAL = "create-local"
OPERATIONS = {
    CREATE_REMOTE: "Create a new remote entity",
    UPDATE_REMOTE: "Update an existing remote entity",
    CREATE_LOCAL: "Create a new local entity",
}
UPLOAD_CHUNK_BYTES = 1024 * 1024
MAX_JOB_ERRORS = 1000
MIN_REFRESH = timedelta(minutes=5)
RETRY_AFTER_FAILURE = timedelta(minutes=15)
KEEP_JOBS_FOR = timedelta(days=2)
REFRESH_LEASE = timedelta(minutes=30)
BULK_BATCH_SIZE = 500  # entities written per transaction by a bulk import
IN_QUERY_SIZE = 500  # values per IN (…) lookup, well under SQLite's limit of 999 parameters
AUDIT_NAMES = 100  # entity names listed in a bulk import batch's audit event
SPOOL_MEMORY_BYTES = 16 * 1024 * 1024  # a bulk import's kept entities beyond this go to a temporary file
SHARED_CERTIFICATES = 2000  # distinct certificates a bulk import keeps parsed (see _BulkRun.share_certificates)


class MetadataImportError(Exception):
    """Something an administrator can fix; `field` names the form field it belongs to (or None)."""

    def __init__(self, message, field=None, messages=None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.messages = messages or [message]


def _now(now=None):
    return now or timezone.now()


# ---------------------------------------------------------------- trust anchors


TRUST_KINDS = (KeystoreEntry.Kind.TRUSTED_CERTIFICATE, KeystoreEntry.Kind.TRUSTED_CA, KeystoreEntry.Kind.KEY_PAIR)


def trust_anchor(entry_or_alias):
    """A TrustAnchor from a keystore entry: a trusted certificate (or key pair) is the signer's
    own certificate, pinned; a trusted CA (with its chain) must have issued the signing certificate
    the metadata's signature carries."""
    entry = entry_or_alias
    if not isinstance(entry, KeystoreEntry):
        entry = KeystoreEntry.objects.filter(alias=str(entry_or_alias or "").strip()).first()
        if entry is None:
            raise MetadataImportError(f"No keystore entry has the alias '{entry_or_alias}'.", "trust_anchor")
    if entry.kind == KeystoreEntry.Kind.TRUSTED_CA:
        return TrustAnchor(entry.alias, cas=[entry.certificate(), *entry.chain()])
    return TrustAnchor(entry.alias, certificates=[entry.certificate()])


def trust_anchor_choices():
    return KeystoreEntry.objects.filter(kind__in=TRUST_KINDS).order_by("alias")


# ---------------------------------------------------------------- uploaded documents


class UploadReader:
    """A binary file object over an upload's chunks, fetched from the database one at a time."""

    def __init__(self, upload):
        self.upload = upload
        self._seq = 0
        self._buffer = b""

    def read(self, size=-1):
        while size < 0 or len(self._buffer) < size:
            chunk = MetadataUploadChunk.objects.filter(upload=self.upload, seq=self._seq).values_list("data", flat=True).first()
            if chunk is None:
                break
            self._buffer += bytes(chunk)
            self._seq += 1
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def close(self):
        pass


def store_upload(name, chunks, *, max_bytes=None, uploaded_by=""):
    """Keep an uploaded document (an iterable of byte chunks) in the database; refused over `max_bytes`."""
    max_bytes = max_bytes or getattr(settings, "METADATA_MAX_UPLOAD_BYTES", 512 * 1024 * 1024)
    digest = hashlib.sha256()
    with transaction.atomic():
        upload = MetadataUpload.objects.create(name=(name or "metadata.xml")[:255], uploaded_by=uploaded_by[:150])
        buffer, seq, size = b"", 0, 0
        for piece in chunks:
            size += len(piece)
            if size > max_bytes:
                raise MetadataImportError(f"The file is larger than the limit of {format_bytes(max_bytes)}.", "file")
            digest.update(piece)
            buffer += piece
            while len(buffer) >= UPLOAD_CHUNK_BYTES:
                MetadataUploadChunk.objects.create(upload=upload, seq=seq, data=buffer[:UPLOAD_CHUNK_BYTES])
                buffer, seq = buffer[UPLOAD_CHUNK_BYTES:], seq + 1
        if buffer:
            MetadataUploadChunk.objects.create(upload=upload, seq=seq, data=buffer)
        if size == 0:
            raise MetadataImportError("The file is empty.", "file")
        upload.size, upload.sha256 = size, digest.hexdigest()
        upload.save(update_fields=["size", "sha256"])
    return upload


# ---------------------------------------------------------------- sources


@dataclass
class Source:
    """Where a document comes from: exactly one of `path` (CLI), `upload` (console) or `url`."""

    path: str = ""
    upload: MetadataUpload | None = None
    url: str = ""
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = DEFAULT_TIMEOUT

    @property
    def name(self):
        if self.url:
            return self.url
        if self.upload is not None:
            return self.upload.name
        return self.path.rsplit("/", 1)[-1] if self.path else ""

    @property
    def kind(self):
        return MetadataSource.Kind.URL if self.url else MetadataSource.Kind.FILE

    @classmethod
    def parse(cls, text, **kwargs):
        """A path or an http(s) URL, as the CLI gets it."""
        text = (text or "").strip()
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
            return cls(url=text, **kwargs)
        return cls(path=text, **kwargs)


def ca_bundle():
    return getattr(settings, "METADATA_CA_BUNDLE", None) or None


@contextmanager
def open_source(source, *, etag="", last_modified=""):
    """Yield (binary stream or None when the URL answered 304 Not Modified, FetchResult or None)."""
    if source.url:
        try:
            result = fetch_metadata(
                source.url,
                max_bytes=source.max_bytes,
                timeout=source.timeout,
                etag=etag,
                last_modified=last_modified,
                ca_bundle=ca_bundle(),
            )
        except FetchError as exc:
            raise MetadataImportError(exc.message, "url") from None
        try:
            yield result.file, result
        finally:
            result.close()
    elif source.upload is not None:
        if source.max_bytes and source.upload.size > source.max_bytes:
            raise MetadataImportError(
                f"The file is {format_bytes(source.upload.size)}, over the size limit of {format_bytes(source.max_bytes)}.",
                "max_size",
            )
        yield UploadReader(source.upload), None
    else:
        try:
            handle = open(source.path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise MetadataImportError(f"Cannot read {source.path}: {exc.strerror or exc}.", "path") from None
        with handle:
            size = _file_size(handle)
            if source.max_bytes and size is not None and size > source.max_bytes:
                raise MetadataImportError(
                    f"The file is {format_bytes(size)}, over the size limit of {format_bytes(source.max_bytes)}.", "max_size"
                )
            yield handle, None


def _file_size(handle):
    try:
        import os

        return os.fstat(handle.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        return None


def read_document(
    stream, on_entity, *, trust=None, allow_unsigned=False, max_bytes=DEFAULT_MAX_BYTES, replay=None, progress=None, now=None
):
    """metadata_parser.read_metadata with its errors as MetadataImportError."""
    try:
        return metadata_parser.read_metadata(
            stream,
            on_entity,
            max_bytes=max_bytes,
            trust=trust,
            allow_unsigned=allow_unsigned,
            replay=replay,
            progress=progress,
            now=now,
        )
    except MetadataError as exc:
        raise MetadataImportError(exc.message) from None


# ---------------------------------------------------------------- certificates of one entity

USAGE_LABELS = {
    frozenset({"signing"}): "Signing",
    frozenset({"encryption"}): "Encryption",
    frozenset({"signing", "encryption"}): "Signing and Encryption",
}


@dataclass
class CertificateRow:
    """One certificate of the chosen role as the wizard lists it (one row per KeyDescriptor)."""

    number: int  # 1, 2, … in document order
    uses: frozenset  # after the usage rules
    data: metadata_parser.CertificateData
    problem: str = ""
    existing: KeystoreEntry | None = None

    @property
    def usage(self):
        return USAGE_LABELS[self.uses]

    @property
    def issued_to(self):
        return self.data.issued_to

    @property
    def selectable(self):
        return not self.problem

    @property
    def not_after(self):
        certificate = self.data.certificate
        return certificate.not_valid_after_utc if certificate is not None else None


@dataclass
class CertificateChoice:
    """A certificate to store (or reuse) for the new entity, after merging rows of the same certificate."""

    alias: str
    uses: set
    data: metadata_parser.CertificateData
    existing: KeystoreEntry | None = None
    rows: list = field(default_factory=list)

    @property
    def usage(self):
        return USAGE_LABELS[frozenset(self.uses)]

    @property
    def issued_to(self):
        return self.data.issued_to

    @property
    def pem(self):
        from cryptography.hazmat.primitives import serialization

        return self.data.certificate.public_bytes(serialization.Encoding.PEM)


def _row_uses(use, entity_type):
    if type_protocol(entity_type) != Protocol.SAML2:
        return frozenset({"signing"})  # SAML 1.1 has no encryption; WS-Fed keys sign
    if use in ("signing", "encryption"):
        return frozenset({use})
    return frozenset({"signing", "encryption"})  # no use given: both


class _KeystoreIndex:
    """Keystore entries by fingerprint (certificates that can be reused), loaded once per run (one query).

    A bulk import adds the entries a batch is about to store as *pending*, so the batch's later
    entities reuse them; they become part of the index when the batch commits and are forgotten
    when it rolls back."""

    def __init__(self):
        self._entries = None
        self._pending = {}

    def get(self, fingerprints):
        if self._entries is None:
            self._entries = {}
            rows = KeystoreEntry.objects.filter(
                kind__in=(KeystoreEntry.Kind.TRUSTED_CERTIFICATE, KeystoreEntry.Kind.KEY_PAIR)
            ).only("id", "alias", "kind", "fingerprint_sha256")
            for entry in rows.order_by("kind", "alias"):
                self._entries.setdefault(entry.fingerprint_sha256, entry)
        found = {}
        for fingerprint in fingerprints:
            entry = self._entries.get(fingerprint) or self._pending.get(fingerprint)
            if entry is not None:
                found[fingerprint] = entry
        return found

    def add(self, entry):
        if self._entries is not None:
            self._entries.setdefault(entry.fingerprint_sha256, entry)

    def add_pending(self, entry):
        self._pending.setdefault(entry.fingerprint_sha256, entry)

    def forget_unsaved(self):
        """Drop pending entries that were not stored (no entity of the batch kept them)."""
        self._pending = {fingerprint: entry for fingerprint, entry in self._pending.items() if entry.pk is not None}

    def commit(self):
        for entry in self._pending.values():
            if entry.pk is not None:
                self.add(entry)
        self._pending = {}

    def discard(self):
        self._pending = {}


def certificate_rows(data, entity_type, now=None, keystore_index=None, problems_cache=None):
    """The certificate rows of `data`'s role for `entity_type` ([] when it lists none)."""
    role = data.role_for(entity_type)
    if role is None:
        return []
    now = _now(now)
    certificates = list(role.certificates)
    valid = [cert for cert in certificates if cert.certificate is not None]
    existing = (keystore_index or _KeystoreIndex()).get({cert.fingerprint for cert in valid})
    rows = []
    for number, cert in enumerate(certificates, start=1):
        if problems_cache is not None and cert.base64 in problems_cache:
            problem = problems_cache[cert.base64]
        else:
            problem = cert.problem(now)
            if problems_cache is not None:
                problems_cache[cert.base64] = problem
        rows.append(
            CertificateRow(
                number,
                _row_uses(cert.use, entity_type),
                cert,
                problem,
                existing.get(cert.fingerprint) if not problem else None,
            )
        )
    return rows


def choose_certificates(rows, aliases):
    """Merge the selected rows ({row number: alias}) into CertificateChoices, F5.8's rules: the same
    certificate twice becomes one choice with the first alias and both usages. Raises
    MetadataImportError(field="alias_<n>") for a bad selection."""
    by_number = {row.number: row for row in rows}
    choices = {}
    for number in sorted(aliases):
        row = by_number.get(number)
        if row is None:
            raise MetadataImportError(f"There is no certificate #{number} in this entity's metadata.", f"alias_{number}")
        if row.problem:
            raise MetadataImportError(f"Certificate #{number} cannot be imported: it is {row.problem}.", f"alias_{number}")
        alias = (aliases[number] or "").strip()
        choice = choices.get(row.data.fingerprint)
        if choice is not None:
            choice.uses |= set(row.uses)
            choice.rows.append(number)
            continue
        if row.existing is None:
            if not alias:
                raise MetadataImportError(f"Enter an alias for certificate #{number}.", f"alias_{number}")
            try:
                alias = services.check_new_alias(alias)
            except KeystoreError as exc:
                raise MetadataImportError(exc.message, f"alias_{number}") from None
        else:
            alias = row.existing.alias
        choices[row.data.fingerprint] = CertificateChoice(alias, set(row.uses), row.data, row.existing, [number])
    seen = {}
    for choice in choices.values():
        if choice.existing is None:
            key = choice.alias.lower()
            if key in seen:
                raise MetadataImportError(
                    f"The alias '{choice.alias}' is given to two different certificates (#{seen[key]} and #{choice.rows[0]}).",
                    f"alias_{choice.rows[0]}",
                )
            seen[key] = choice.rows[0]
    return list(choices.values())


# ---------------------------------------------------------------- metadata → entity values


def _endpoint_rows(data, role, entity_type, notes):
    allowed = endpoint_bindings(Location.REMOTE, entity_type)
    endpoints = list(role.endpoints)
    if entity_type == EntityType.SAML2_IDP and data.attribute_authority() is not None:
        endpoints += data.attribute_authority().endpoints
    rows, defaults, non_indexed = [], set(), set()
    skipped = {}
    for endpoint in endpoints:
        kind = endpoint.kind
        if kind not in allowed or endpoint.binding not in allowed[kind]:
            skipped.setdefault(EndpointKind(kind).label if kind in EndpointKind.values else kind, set()).add(
                Binding(endpoint.binding).label if endpoint.binding in Binding.values else endpoint.binding
            )
            continue
        row = {
            "kind": kind,
            "binding": endpoint.binding,
            "location": endpoint.location,
            "response_location": endpoint.response_location,
            "index": endpoint.index,
            "is_default": endpoint.is_default,
        }
        if row["response_location"] and endpoint.binding == Binding.SOAP:
            row["response_location"] = ""
        if kind not in (EndpointKind.ACS, EndpointKind.ARTIFACT_RESOLUTION):
            row["index"], row["is_default"] = None, False
            if (kind, endpoint.binding) in non_indexed:
                notes.append(f"Only the first {EndpointKind(kind).label.lower()} for {Binding(endpoint.binding).label} was kept.")
                continue
            non_indexed.add((kind, endpoint.binding))
        elif row["is_default"]:
            if kind in defaults:
                row["is_default"] = False
                notes.append(f"Only the first default {EndpointKind(kind).label.lower()} was kept as the default.")
            defaults.add(kind)
        rows.append(row)
    for label, bindings in skipped.items():
        notes.append(
            f"Skipped {label.lower()} endpoints with bindings this entity type does not use: {', '.join(sorted(bindings))}."
        )
    return rows


def _name_id_formats(role, entity_type, saml_token_type, notes):
    formats = []
    for uri in role.name_id_formats:
        if not is_uri(uri) or uri in formats:
            continue
        if uri in SAML2_ONLY_NAME_ID_FORMATS and assertion_version(entity_type, saml_token_type) == Protocol.SAML11:
            notes.append(f"Skipped the SAML 2.0 NameID format {uri} (SAML 1.1 assertions cannot carry it).")
            continue
        formats.append(uri)
    return formats


def _attributes(role, entity_type, saml_token_type, notes):
    if not has_attributes(entity_type) or not role.attributes:
        return None
    if assertion_version(entity_type, saml_token_type) != Protocol.SAML2:
        notes.append("Attributes listed in the metadata were not imported (SAML 1.1 attributes need a namespace).")
        return None
    rows, names = [], set()
    for attribute in role.attributes[:200]:
        name = attribute["name"][:255]
        if name in names:
            continue
        names.add(name)
        name_format = attribute.get("name_format", "")
        if name_format not in AttributeNameFormat.values:
            name_format = ""
        if name_format == AttributeNameFormat.URI and not is_uri(name):
            name_format = ""
        rows.append({"name": name, "name_format": name_format})
    return rows


def _token_type(role):
    return SamlTokenType.SAML2 if any(uri in TOKEN_TYPE_SAML2 for uri in role.token_types) else SamlTokenType.SAML11


def derive_base_url(role):
    """A local entity's base URL from its metadata: the scheme, host and port of its first service URL."""
    urls = [endpoint.location for endpoint in role.endpoints] + [role.wsfed_service_url]
    for url in urls:
        parts = urlsplit(url or "")
        if parts.scheme in ("http", "https") and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}"
    return ""


@dataclass
class ImportPlan:
    """Everything one import will write, worked out before anything is written."""

    operation: str
    entity_type: str
    data: EntityData
    values: dict
    endpoints: list | None
    attributes: list | None
    certificates: list  # CertificateChoice
    target: Entity | None = None
    notes: list = field(default_factory=list)

    @property
    def location(self):
        return Location.LOCAL if self.operation == CREATE_LOCAL else Location.REMOTE


def plan_entity(
    data,
    *,
    operation,
    entity_type=None,
    name="",
    target=None,
    base_url="",
    certificate_aliases=None,
    now=None,
    keystore_index=None,
    problems_cache=None,
):
    """Work out an import of `data` (an EntityData): the entity values, endpoint and attribute rows
    and the certificates (`certificate_aliases` {row number: alias}). Raises MetadataImportError."""
    now = _now(now)
    if operation not in OPERATIONS:
        raise MetadataImportError("Choose create remote, update remote or create local.", "operation")
    if data.problems:
        raise MetadataImportError(f"The entity '{data.entity_id or '?'}' is malformed: {' '.join(data.problems)}", "entry")
    if data.expired(now):
        raise MetadataImportError(
            f"The entity '{data.entity_id}' expired on {data.valid_until:%Y-%m-%d %H:%M} UTC (validUntil); it cannot be imported.",
            "entry",
        )
    types = data.entity_types()
    if not types:
        raise MetadataImportError(
            f"The entity '{data.entity_id}' has no role this product supports (IdP, SP, STS or RP).", "entry"
        )
    if target is not None and not isinstance(target, Entity):
        found = Entity.objects.filter(name__iexact=str(target).strip()).first()
        if found is None:
            raise MetadataImportError(f"No entity is named '{target}'.", "target")
        target = found
    if operation == UPDATE_REMOTE:
        if target is None:
            target = Entity.objects.filter(location=Location.REMOTE, entity_id=data.entity_id).first()
            if target is None:
                raise MetadataImportError(
                    f"No remote entity has the entity ID '{data.entity_id}'; choose the entity to update, or create a new one.",
                    "target",
                )
        if target.location != Location.REMOTE:
            raise MetadataImportError(
                f"'{target.name}' is a local entity; import updates only remote entities (edit local ones).", "target"
            )
        if entity_type and entity_type != target.entity_type:
            raise MetadataImportError(
                f"'{target.name}' is a {target.get_entity_type_display()}; its type cannot change.", "entity_type"
            )
        entity_type = target.entity_type
        if entity_type not in types:
            raise MetadataImportError(
                f"'{target.name}' is a {target.get_entity_type_display()}, and the metadata of '{data.entity_id}' has no such role.",
                "target",
            )
    elif not entity_type:
        if len(types) > 1:
            labels = ", ".join(EntityType(t).label for t in types)
            raise MetadataImportError(
                f"The entity '{data.entity_id}' has several roles ({labels}); choose the entity type.", "entity_type"
            )
        entity_type = types[0]
    elif entity_type not in types:
        raise MetadataImportError(
            f"The metadata of '{data.entity_id}' has no {EntityType(entity_type).label} role.", "entity_type"
        )
    role = data.role_for(entity_type)
    notes = []
    location = Location.LOCAL if operation == CREATE_LOCAL else Location.REMOTE
    saml_token_type = _token_type(role) if type_protocol(entity_type) == Protocol.WSFED else ""
    if operation == UPDATE_REMOTE:
        saml_token_type = target.saml_token_type
    values = {
        "entity_id": data.entity_id,
        "name_id_formats": _name_id_formats(role, entity_type, saml_token_type, notes),
    }
    if operation != UPDATE_REMOTE:
        name = (name or "").strip()
        if not name:
            raise MetadataImportError("Enter a name for the new entity.", "name")
        values.update({"location": location, "entity_type": entity_type, "saml_token_type": saml_token_type, "name": name})
        label = data.label()
        values["description"] = (
            f"Imported from metadata. Display name: {label}." if label != data.entity_id else "Imported from metadata."
        )
    endpoints = attributes = None
    certificates = []
    if location == Location.REMOTE:
        if endpoint_bindings(Location.REMOTE, entity_type):
            endpoints = _endpoint_rows(data, role, entity_type, notes)
        attributes = _attributes(role, entity_type, saml_token_type, notes)
        if type_protocol(entity_type) == Protocol.WSFED:
            values["wsfed_service_url"] = role.wsfed_service_url
            if type_role(entity_type) == Role.RELYING:
                values["wsfed_signout_cleanup_url"] = role.wsfed_signout_url
        rows = certificate_rows(data, entity_type, now, keystore_index, problems_cache)
        if certificate_aliases:
            certificates = choose_certificates(rows, certificate_aliases)
        signing = next((choice for choice in certificates if "signing" in choice.uses), None)
        encryption = next((choice for choice in certificates if "encryption" in choice.uses), None)
        if signing is not None:
            values["verification_certificate"] = signing.existing or signing.alias
        if encryption is not None and type_protocol(entity_type) == Protocol.SAML2:
            values["encryption_certificate"] = encryption.existing or encryption.alias
        skipped = [row for row in rows if row.problem]
        for row in skipped:
            notes.append(f"Certificate #{row.number} ({row.issued_to}) was not imported: it is {row.problem}.")
    else:
        values["base_url"] = (base_url or "").strip() or derive_base_url(role)
        if not values["base_url"]:
            raise MetadataImportError("The metadata names no service URL; enter the base URL of the local entity.", "base_url")
        if role.certificates:
            notes.append("Certificates in local metadata are not imported: set the local entity's key pairs in the keystore.")
    return ImportPlan(operation, entity_type, data, values, endpoints, attributes, certificates, target, notes)


def auto_certificate_aliases(rows, name):
    """{row number: alias} choosing every valid certificate, named <name>-<usage>[-<n>] (the CLI's default)."""
    aliases, used = {}, set()
    for row in rows:
        if row.problem:
            continue
        base = f"{name}-{'-'.join(sorted(row.uses, reverse=True))}"
        alias, number = base, 2
        while alias.lower() in used:
            alias, number = f"{base}-{number}", number + 1
        used.add(alias.lower())
        aliases[row.number] = alias
    return aliases


def _entity_error(error):
    messages = error.messages()
    return MetadataImportError(messages[0] if messages else str(error), _entity_field(error), messages)


def _entity_field(error):
    for field_name in error.problems["entity"]:
        if field_name in ("name", "entity_id", "base_url"):
            return "name" if field_name == "name" else ("base_url" if field_name == "base_url" else "entry")
    return None


def check_plan(plan):
    """Run every entity rule on the plan without writing (the Confirm step); raises MetadataImportError."""
    values = _service_values(plan, placeholder=True)
    entity = Entity() if plan.target is None else Entity.objects.get(pk=plan.target.pk)
    try:
        entity_services.validate_entity(entity, values, plan.endpoints, plan.attributes, creating=plan.target is None)
    except EntityError as error:
        raise _entity_error(error) from None


def _service_values(plan, placeholder=False, entries=None):
    values = dict(plan.values)
    for field_name in ("verification_certificate", "encryption_certificate"):
        value = values.get(field_name)
        if isinstance(value, str):
            if entries is not None:
                values[field_name] = entries[value]
            elif placeholder:
                values.pop(field_name)  # not in the keystore yet: checked when it is stored
    return values


def apply_plan(plan, *, source=None, now=None, audit_summary=True, link=True):
    """Write the plan in one transaction: certificates, the entity and its rows, the source link and
    an audit summary. Returns the Entity. Raises MetadataImportError (nothing written).

    A bulk import passes link=False and audit_summary=False and links a whole batch at once; when
    such a plan also stores no certificate, create_entity's own transaction is the only one needed."""
    now = _now(now)
    new_certificates = any(choice.existing is None for choice in plan.certificates)
    single_write = not (new_certificates or link or audit_summary)
    try:
        with contextlib.nullcontext() if single_write else transaction.atomic():
            entries = {}
            for choice in plan.certificates:
                if choice.existing is not None:
                    entries[choice.alias] = choice.existing
                    continue
                try:
                    entries[choice.alias] = services.import_trusted_certificate(choice.alias, choice.pem)
                except KeystoreError as exc:
                    raise MetadataImportError(exc.message, f"alias_{choice.rows[0]}") from None
            values = _service_values(plan, entries=entries)
            if plan.target is not None:
                for fixed in entity_services.FIXED_AFTER_CREATE:
                    values.pop(fixed, None)
                entity = entity_services.update_entity(plan.target, values, plan.endpoints, plan.attributes)
            else:
                entity = entity_services.create_entity(values, plan.endpoints or (), plan.attributes or ())
            if link:
                link_entities([entity.pk], source, now)
                entity.metadata_source, entity.metadata_updated_at = source, now
                entity.metadata_revision = (plan.target.metadata_revision if plan.target is not None else 0) + 1
            if audit_summary:
                what = "updated from" if plan.target is not None else "created from"
                certificates = ", ".join(f"{c.alias} ({c.usage.lower()})" for c in plan.certificates) or "none"
                audit.record(
                    "other",
                    entity,
                    summary=f"{what} metadata {source or ''} (entity ID {plan.data.entity_id}); certificates: {certificates}",
                    changes={"metadata_source": str(source or ""), "notes": plan.notes},
                )
    except EntityError as error:
        raise _entity_error(error) from None
    # One line per entity for single imports; a bulk import logs its summary instead.
    log.log(
        logging.INFO if audit_summary else logging.DEBUG,
        "entity '%s' %s metadata (entity ID %s, %d certificate(s))",
        entity.name,
        "updated from" if plan.target is not None else "created from",
        plan.data.entity_id,
        len(plan.certificates),
        extra={"checkpoint": "METADATA_IMPORT"},
    )
    return entity


def link_entities(pks, source, now):
    """Record that metadata from `source` was applied to these entities (a new metadata revision)."""
    Entity.objects.filter(pk__in=pks).update(
        metadata_source=source, metadata_revision=F("metadata_revision") + 1, metadata_updated_at=now
    )


def record_source(source, *, trust_entry=None, require_signature=True, refresh_interval=None, info=None, fetch=None, now=None):
    """The MetadataSource for a URL or file (created or updated), with what was learnt of the document."""
    now = _now(now)
    source_row, _ = MetadataSource.objects.get_or_create(kind=source.kind, location=source.name[:1024])
    source_row.trust_anchor = trust_entry
    source_row.require_signature = require_signature
    if source.kind == MetadataSource.Kind.URL:
        source_row.refresh_interval = refresh_interval
        source_row.max_bytes = source.max_bytes
    _mark_success(source_row, info, fetch, now)
    source_row.save()
    return source_row


def _mark_success(source_row, info, fetch, now):
    source_row.last_fetched_at = now
    source_row.last_success_at = now
    source_row.last_error = ""
    source_row.last_error_at = None
    source_row.consecutive_failures = 0
    if info is not None:
        source_row.valid_until = info.valid_until
        source_row.cache_duration = info.cache_duration
        source_row.content_sha256 = info.sha256
    if fetch is not None:
        source_row.etag = fetch.etag[:255]
        source_row.last_modified = fetch.last_modified[:64]
    source_row.next_refresh_at = next_refresh(source_row, now)


def next_refresh(source_row, now):
    """When a URL source is due next: its interval, shortened by the metadata's cacheDuration and so
    that it is fetched again before validUntil; never sooner than MIN_REFRESH."""
    if source_row.kind != MetadataSource.Kind.URL or not source_row.refresh_interval:
        return None
    wait = source_row.refresh_interval
    if source_row.cache_duration:
        wait = min(wait, source_row.cache_duration)
    if source_row.valid_until:
        wait = min(wait, (source_row.valid_until - now) / 2)
    return now + max(wait, MIN_REFRESH)


# ---------------------------------------------------------------- one-shot import (CLI, tests)


@dataclass
class DocumentScan:
    info: metadata_parser.DocumentInfo
    entities: list


def scan_source(source, *, trust=None, allow_unsigned=False, keep=None, progress=None, now=None):
    """Read and verify a whole document; keep the EntityData for which `keep(data)` is true (all when None)."""
    kept = []

    def on_entity(data):
        if keep is None or keep(data):
            kept.append(data)

    with open_source(source) as (stream, _fetch):
        info = read_document(
            stream, on_entity, trust=trust, allow_unsigned=allow_unsigned, max_bytes=source.max_bytes, progress=progress, now=now
        )
    return DocumentScan(info, kept)


def pick_entity(entities, entity_id, now=None):
    """The EntityData to import: the one with `entity_id`, or the only one in the document."""
    if entity_id:
        found = [data for data in entities if data.entity_id == entity_id]
        if not found:
            raise MetadataImportError(f"The document has no entity with the entity ID '{entity_id}'.", "entry")
        return found[0]
    if len(entities) != 1:
        raise MetadataImportError(f"The document holds {len(entities)} entities; choose one by its entity ID.", "entry")
    return entities[0]


def import_entity(
    source,
    *,
    operation=CREATE_REMOTE,
    entity_id=None,
    entity_type=None,
    name="",
    target=None,
    base_url="",
    trust_alias=None,
    allow_unsigned=False,
    certificate_aliases=None,
    refresh_interval=None,
    progress=None,
    now=None,
):
    """Import one entity from a file or URL (the CLI's `metadata import`). `certificate_aliases`:
    {row number: alias}, or None to import every valid certificate with derived aliases.
    Returns (Entity, ImportPlan, DocumentInfo)."""
    now = _now(now)
    trust_entry = KeystoreEntry.objects.filter(alias=trust_alias).first() if trust_alias else None
    if trust_alias and trust_entry is None:
        raise MetadataImportError(f"No keystore entry has the alias '{trust_alias}'.", "trust_anchor")
    trust = trust_anchor(trust_entry) if trust_entry is not None else None
    if trust is None and not allow_unsigned:
        raise MetadataImportError(
            "Choose a trust anchor to verify the metadata signature, or explicitly allow unsigned metadata."
        )
    scan = scan_source(
        source,
        trust=trust,
        allow_unsigned=allow_unsigned,
        keep=(lambda data: data.entity_id == entity_id) if entity_id else None,
        progress=progress,
        now=now,
    )
    if not entity_id and scan.info.entity_count > 1:
        raise MetadataImportError(f"The document holds {scan.info.entity_count} entities; choose one by its entity ID.", "entry")
    data = pick_entity(scan.entities, entity_id, now)
    if operation != UPDATE_REMOTE and not name:
        name = unique_entity_name(derive_entity_name(data.entity_id))
    if certificate_aliases is None and operation != CREATE_LOCAL:
        resolved_type = entity_type
        if operation == UPDATE_REMOTE and not resolved_type:
            existing = target or Entity.objects.filter(location=Location.REMOTE, entity_id=data.entity_id).first()
            if isinstance(existing, Entity):
                resolved_type = existing.entity_type
        types = data.entity_types()
        resolved_type = resolved_type or (types[0] if len(types) == 1 else None)
        base_name = (
            name or (target.name if isinstance(target, Entity) else str(target or "")) or derive_entity_name(data.entity_id)
        )
        certificate_aliases = (
            auto_certificate_aliases(certificate_rows(data, resolved_type, now), base_name) if resolved_type else {}
        )
    plan = plan_entity(
        data,
        operation=operation,
        entity_type=entity_type,
        name=name,
        target=target,
        base_url=base_url,
        certificate_aliases=certificate_aliases,
        now=now,
    )
    with transaction.atomic():
        source_row = None
        if operation != CREATE_LOCAL:
            source_row = record_source(
                source,
                trust_entry=trust_entry,
                require_signature=not allow_unsigned,
                refresh_interval=refresh_interval,
                info=scan.info,
                now=now,
            )
        entity = apply_plan(plan, source=source_row, now=now)
    return entity, plan, scan.info


# ---------------------------------------------------------------- names for bulk import


def derive_entity_name(entity_id):
    """An entity name from an entity ID: https://sp.example.org/shibboleth → sp.example.org-shibboleth."""
    text = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", entity_id or "")
    text = re.sub(r"^urn:", "", text)
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return text[:90].rstrip("-._") or "entity"


def unique_entity_name(base):
    name, number = base, 2
    while Entity.objects.named(name).exists():
        name, number = f"{base[:90]}-{number}", number + 1
    return name


# ---------------------------------------------------------------- bulk import


@dataclass
class BulkFilter:
    """Which entities of an aggregate a bulk import takes: SPs, IdPs or both ("all"; an entity with
    both roles becomes an IdP) of SAML 2.0, whose entity ID matches `match` (a regular expression,
    searched) and whose mdrpi registrationAuthority equals `registration_authority` (when given)."""

    role: str = "sp"  # sp, idp or all
    match: str = ""
    registration_authority: str = ""

    def __post_init__(self):
        if self.role not in ("sp", "idp", "all"):
            raise MetadataImportError("Choose SPs, IdPs or all.", "role")
        try:
            self._regex = re.compile(self.match) if self.match else None
        except re.error as exc:
            raise MetadataImportError(f"The entity ID pattern is not a valid regular expression: {exc}.", "match") from None

    def entity_type_for(self, data):
        """The entity type `data` is imported as, or None when it has no role this filter takes."""
        if self.role in ("idp", "all") and data.role_for(EntityType.SAML2_IDP) is not None:
            return EntityType.SAML2_IDP
        if self.role in ("sp", "all") and data.role_for(EntityType.SAML2_SP) is not None:
            return EntityType.SAML2_SP
        return None

    def matches(self, data):
        if self.entity_type_for(data) is None:
            return False
        if self._regex is not None and not self._regex.search(data.entity_id or ""):
            return False
        if self.registration_authority and data.registration_authority != self.registration_authority:
            return False
        return True


@dataclass
class BulkResult:
    matched: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list = field(default_factory=list)  # {position, entity_id, message}
    info: metadata_parser.DocumentInfo | None = None

    def error(self, data, message):
        self.failed += 1
        if len(self.errors) < MAX_JOB_ERRORS:
            self.errors.append({"position": data.position, "entity_id": data.entity_id, "line": data.line, "message": message})

    def line(self):
        return f"{self.matched} matched: {self.created} created, {self.updated} updated, {self.skipped} skipped, {self.failed} failed"


def bulk_import(
    source,
    bulk_filter,
    *,
    trust=None,
    trust_entry=None,
    allow_unsigned=False,
    update_existing=True,
    batch_size=BULK_BATCH_SIZE,
    refresh_interval=None,
    progress=None,
    now=None,
):
    """Import every entity of an aggregate that `bulk_filter` matches, as remote entities.

    The document is read once: it is verified as a whole while the matching entities are kept aside
    (`_EntitySpool`), and only once all of it has been read and its signature verified (nothing is
    stored if the document is refused) are they imported, in batches of `batch_size`, one transaction
    per batch (see `_import_batch`): every entity is checked with the rules of a hand-made one, a bad
    one is reported and skipped, and the good ones are written together with one audit event that
    names them. Certificates are stored as `<entity name>-<usage>-<fingerprint>`, or reused when the
    keystore already has them. `progress(phase, done, total)` is called as it goes ("verify" with the
    bytes read, then "import" with the entities done). Returns a BulkResult."""
    now = _now(now)
    if trust is None and trust_entry is not None:
        trust = trust_anchor(trust_entry)
    if trust is None and not allow_unsigned:
        raise MetadataImportError(
            "Choose a trust anchor to verify the metadata signature, or explicitly allow unsigned metadata."
        )
    result = BulkResult()
    with _EntitySpool() as matched, _older_objects_frozen():

        def keep(data):
            if data.problems:
                if bulk_filter.matches(data) or not data.entity_types():
                    result.error(data, "malformed: " + " ".join(data.problems))
                return
            if bulk_filter.matches(data):
                if data.expired(now):
                    result.skipped += 1
                    return
                matched.add(data)

        def read_progress(done_bytes, entities):
            if progress:
                progress("verify", done_bytes, None)

        with open_source(source) as (stream, _fetch):
            info = read_document(
                stream,
                keep,
                trust=trust,
                allow_unsigned=allow_unsigned,
                max_bytes=source.max_bytes,
                progress=read_progress,
                now=now,
            )
        result.info = info
        result.matched = matched.count
        source_row = record_source(
            source,
            trust_entry=trust_entry,
            require_signature=not allow_unsigned,
            refresh_interval=refresh_interval,
            info=info,
            now=now,
        )
        run = _BulkRun(bulk_filter, source_row, update_existing, now, result) if matched.count else None
        batch, done = [], 0
        for data in matched:
            run.share_certificates(data)
            batch.append(data)
            if len(batch) >= batch_size or done + len(batch) == matched.count:
                _import_batch(run, batch)
                done += len(batch)
                batch = []
                if progress:
                    progress("import", done, matched.count)
    _bulk_audit(source_row, bulk_filter, result)
    log.info("bulk metadata import from %s: %s", source.name, result.line(), extra={"checkpoint": "METADATA_BULK_IMPORT"})
    return result


@contextmanager
def _older_objects_frozen():
    """Keep the objects that exist before a bulk import out of the garbage collector's scans while it
    runs. The import allocates enough objects to set off many full collections, and each one walked
    every object of the process (all of Django's): about a fifth of the import's time, measured.
    What the import itself creates is collected as usual; the older objects go back at the end.
    (Process-wide: two imports overlapping in one process only lose some of the gain.)"""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _EntitySpool:
    """The matching entities of a bulk import, kept from the one read of the document until the
    whole of it is verified, then handed back in document order. Kept compactly: pickled one after
    another into a private temporary file (written and read only by this process) that stays in
    memory up to SPOOL_MEMORY_BYTES and moves to disk beyond, so the import's memory does not grow
    with the document."""

    def __init__(self):
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 - closed by __exit__
        self.count = 0

    def add(self, data):
        # Only a certificate's text is kept: a certificate already parsed (cached) cannot be pickled.
        for role in data.roles:
            role.certificates = [CertificateData(cert.use, cert.base64, cert.key_name) for cert in role.certificates]
        pickle.dump(data, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1

    def __iter__(self):
        self._file.seek(0)
        for _number in range(self.count):
            yield pickle.load(self._file)  # noqa: S301 - our own objects, from our own private file

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._file.close()


class _KnownEntities:
    """Entity names in use, loaded once per bulk run (one query), so derived names are unique without a
    query per entity. Names a batch takes are pending until it commits. The entity checks still look
    at the database, so a name taken meanwhile by someone else is reported, never duplicated."""

    def __init__(self):
        self.names = {name.lower() for name in Entity.objects.values_list("name", flat=True)}
        self.pending = set()

    def unique_name(self, base):
        name, number = base, 2
        while name.lower() in self.names or name.lower() in self.pending:
            name, number = f"{base[:90]}-{number}", number + 1
        self.pending.add(name.lower())
        return name

    def commit(self, created):
        """The batch committed: the names of the entities it created are taken from now on."""
        self.names |= {entity.name.lower() for entity in created}
        self.pending = set()

    def discard(self):
        self.pending = set()


@dataclass
class _BulkRun:
    """What a bulk import carries from one batch to the next."""

    bulk_filter: BulkFilter
    source_row: MetadataSource
    update_existing: bool
    now: datetime
    result: BulkResult
    keystore_index: _KeystoreIndex = field(default_factory=_KeystoreIndex)
    known: _KnownEntities = field(default_factory=_KnownEntities)
    problems_cache: dict = field(default_factory=dict)  # certificate base64 → problem ('' when valid)
    certificates: dict = field(default_factory=dict)  # (use, base64, key name) → CertificateData
    first_position: dict = field(default_factory=dict)  # entity ID → position of its first EntityDescriptor
    batches: int = 0

    def share_certificates(self, data):
        """Let `data` use the run's CertificateData for certificates seen before, so each distinct
        certificate is decoded, fingerprinted and parsed once per run, not once per entity (a
        federation's entities often share a few certificates)."""
        if len(self.certificates) >= SHARED_CERTIFICATES:  # mostly distinct certificates: keep memory bounded
            self.certificates.clear()
            self.problems_cache.clear()
        for role in data.roles:
            role.certificates = [
                self.certificates.setdefault((cert.use, cert.base64, cert.key_name), cert) for cert in role.certificates
            ]


@dataclass
class _NewEntity:
    """An entity of a batch that does not exist yet: its metadata, plan, certificate rows and checked rows."""

    data: EntityData
    plan: ImportPlan
    rows: list  # CertificateRow
    checked: entity_services.CheckedEntity | None = None


@dataclass
class _BatchOutcome:
    created: list = field(default_factory=list)  # Entity
    updated: list = field(default_factory=list)  # Entity
    errors: list = field(default_factory=list)  # (EntityData, message)
    certificates: list = field(default_factory=list)  # aliases of the keystore entries stored


def _import_batch(run, batch):
    """Import one batch (EntityData that pass the filter) in one transaction.

    New entities are planned and checked with every rule of create_entity
    (entity_services.check_new_entities: the rules' database lookups answered for the whole batch by
    a few queries), then written together: their new certificates, the entities, endpoints and
    attributes with bulk inserts, and one audit event naming them. Entities that already
    exist are updated one by one (update_entity: each changed row keeps its audit diff). An entity
    that breaks a rule is reported and left out; the rest of the batch goes on. Should the batch
    write fail anyway (say, a name someone took in the meantime), the batch is rolled back and
    written again one entity at a time, so one bad row cannot lose the others."""
    run.batches += 1
    creates, updates = _sort_batch(run, batch)
    try:
        with transaction.atomic():
            outcome = _write_batch(run, creates, updates)
            _batch_audit(run, outcome)
    except DatabaseError as exc:
        run.keystore_index.discard()
        run.known.discard()
        log.warning(
            "bulk metadata import: batch %d could not be written at once (%s); writing its entities one at a time",
            run.batches,
            exc,
            extra={"checkpoint": "METADATA_BULK_BATCH_RETRY"},
        )
        with transaction.atomic():
            outcome = _write_one_by_one(run, creates, updates)
            _batch_audit(run, outcome)
    except BaseException:
        run.keystore_index.discard()
        run.known.discard()
        raise
    run.keystore_index.commit()
    run.known.commit(outcome.created)
    run.result.created += len(outcome.created)
    run.result.updated += len(outcome.updated)
    for data, message in outcome.errors:
        run.result.error(data, message)
    log.info(
        "bulk metadata import batch %d: %d created, %d updated, %d failed",
        run.batches,
        len(outcome.created),
        len(outcome.updated),
        len(outcome.errors),
        extra={"checkpoint": "METADATA_BULK_BATCH"},
    )


def _sort_batch(run, batch):
    """(EntityData to create, [(EntityData, Entity to update)]); the remote entities with the batch's
    entity IDs are fetched in one query. An entity ID listed twice in the document is imported
    from its first EntityDescriptor only; the later ones are reported."""
    ids = sorted({data.entity_id for data in batch})
    existing = {}
    for start in range(0, len(ids), IN_QUERY_SIZE):
        chunk = ids[start : start + IN_QUERY_SIZE]
        existing.update(
            (entity.entity_id, entity) for entity in Entity.objects.filter(location=Location.REMOTE, entity_id__in=chunk)
        )
    creates, updates = [], []
    for data in batch:
        first = run.first_position.setdefault(data.entity_id, data.position)
        if first != data.position:
            run.result.error(
                data, f"The document lists this entity ID again (first as entity #{first}); only the first one is imported."
            )
            continue
        target = existing.get(data.entity_id)
        if target is None:
            creates.append(data)
        elif not run.update_existing or target.entity_type != run.bulk_filter.entity_type_for(data):
            run.result.skipped += 1
        else:
            updates.append((data, target))
    return creates, updates


def _write_batch(run, creates, updates):
    outcome = _BatchOutcome()
    planned = []
    for data in creates:
        try:
            planned.append(_plan_new(run, data))
        except MetadataImportError as exc:
            outcome.errors.append((data, "; ".join(exc.messages)))
    checked = []
    answers = entity_services.check_new_entities(
        (_service_values(item.plan), item.plan.endpoints, item.plan.attributes) for item in planned
    )
    for item, answer in zip(planned, answers, strict=True):
        if isinstance(answer, EntityError):
            outcome.errors.append((item.data, "; ".join(_entity_error(answer).messages)))
            continue
        item.checked = answer
        checked.append(item)
    entries = _name_new_certificates(run, checked, outcome)
    KeystoreEntry.objects.bulk_create(entries)
    run.keystore_index.forget_unsaved()
    outcome.certificates += [entry.alias for entry in entries]
    for item in checked:
        entity = item.checked.entity
        entity.metadata_source, entity.metadata_revision, entity.metadata_updated_at = run.source_row, 1, run.now
    outcome.created = entity_services.create_entities([item.checked for item in checked])
    for data, target in updates:
        try:
            with transaction.atomic():
                outcome.updated.append(_apply_one(run, data, target, outcome))
        except MetadataImportError as exc:
            outcome.errors.append((data, "; ".join(exc.messages)))
        except DatabaseError as exc:
            outcome.errors.append((data, f"database error: {exc}"))
    link_entities([entity.pk for entity in outcome.updated], run.source_row, run.now)
    return outcome


def _plan_new(run, data):
    """Plan a new entity of a batch: a unique name derived from its entity ID and every valid
    certificate, reused from the keystore or, when new, as a pending (unsaved) keystore entry."""
    entity_type = run.bulk_filter.entity_type_for(data)
    name = run.known.unique_name(derive_entity_name(data.entity_id))
    rows = certificate_rows(data, entity_type, run.now, run.keystore_index, run.problems_cache)
    for row in rows:
        if not row.problem and not run.keystore_index.get({row.data.fingerprint}):
            entry = KeystoreEntry(alias="", kind=KeystoreEntry.Kind.TRUSTED_CERTIFICATE)
            try:
                entry.apply_certificate(row.data.certificate)
            except ValueError as exc:  # e.g. a key type or an extension the cryptography library cannot read
                raise MetadataImportError(f"Certificate #{row.number} ({row.issued_to}) cannot be stored: {exc}") from None
            run.keystore_index.add_pending(entry)
    plan = plan_entity(
        data,
        operation=CREATE_REMOTE,
        entity_type=entity_type,
        name=name,
        certificate_aliases={row.number: "" for row in rows if not row.problem},  # every one is in the index now
        now=run.now,
        keystore_index=run.keystore_index,
        problems_cache=run.problems_cache,
    )
    return _NewEntity(data, plan, rows)


def _bulk_alias(name, row):
    usage = "-".join(sorted(row.uses, reverse=True))
    return f"{name[:60]}-{usage}-{row.data.fingerprint.replace(':', '')[:8].lower()}"


def _name_new_certificates(run, items, outcome):
    """The pending keystore entries the checked entities use, each named after the first entity (in
    document order) that lists it, `<entity name>-<usage>-<fingerprint8>` as a one-by-one import
    names it. The names are checked against the keystore in one query; an entity whose certificate
    name is taken is reported and left out (as check_new_alias would refuse it), and the certificate
    goes to the next entity that lists it. Removes such entities from `items`."""
    alias_field = KeystoreEntry._meta.get_field("alias")
    while True:
        owners = {}  # fingerprint → (item, alias)
        for item in items:
            by_number = {row.number: row for row in item.rows}
            for choice in item.plan.certificates:
                if choice.existing.pk is None and choice.data.fingerprint not in owners:
                    owners[choice.data.fingerprint] = (item, _bulk_alias(item.plan.values["name"], by_number[choice.rows[0]]))
        wanted = {}
        refused = {}  # id(item) → (item, message)
        for item, alias in owners.values():
            try:
                alias_field.run_validators(alias)
            except ValidationError:
                refused[id(item)] = (item, _alias_problem(alias))
                continue
            if alias.lower() in wanted:
                refused[id(item)] = (item, f"An entry with the alias '{alias}' already exists.")
            wanted[alias.lower()] = alias
        names = list(wanted)
        for start in range(0, len(names), IN_QUERY_SIZE):
            taken = (
                KeystoreEntry.objects.annotate(lower_alias=Lower("alias"))
                .filter(lower_alias__in=names[start : start + IN_QUERY_SIZE])
                .values_list("lower_alias", flat=True)
            )
            for lower_alias in taken:
                for item, alias in owners.values():
                    if alias.lower() == lower_alias:
                        refused[id(item)] = (item, _alias_problem(alias))
        if not refused:
            break
        for item, message in refused.values():
            outcome.errors.append((item.data, message))
            items.remove(item)
    entries = []
    for fingerprint, (_item, alias) in owners.items():
        entry = run.keystore_index.get({fingerprint})[fingerprint]
        entry.alias = alias
        entries.append(entry)
    for item in items:
        for choice in item.plan.certificates:
            choice.alias = choice.existing.alias
    return entries


def _alias_problem(alias):
    """What check_new_alias says about an alias it refuses."""
    try:
        services.check_new_alias(alias)
    except KeystoreError as exc:
        return exc.message
    return f"An entry with the alias '{alias}' already exists."


def _write_one_by_one(run, creates, updates):
    """The batch again, each entity on its own (apply_plan, in a savepoint), after its bulk write failed."""
    outcome = _BatchOutcome()
    targets = {id(data): target for data, target in updates}  # EntityData is not hashable
    for data in sorted([*creates, *(data for data, _target in updates)], key=lambda item: item.position):
        target = targets.get(id(data))
        try:
            with transaction.atomic():
                entity = _apply_one(run, data, target, outcome)
        except MetadataImportError as exc:
            outcome.errors.append((data, "; ".join(exc.messages)))
            continue
        except DatabaseError as exc:
            outcome.errors.append((data, f"database error: {exc}"))
            continue
        (outcome.updated if target is not None else outcome.created).append(entity)
    link_entities([entity.pk for entity in outcome.created + outcome.updated], run.source_row, run.now)
    return outcome


def _apply_one(run, data, target, outcome):
    """Import one entity of a bulk run through apply_plan (create_entity / update_entity, each row with
    its own audit event): how existing entities are updated, and how a batch is written when its
    bulk write failed. Returns the Entity; raises MetadataImportError or DatabaseError."""
    entity_type = run.bulk_filter.entity_type_for(data)
    name = target.name if target is not None else run.known.unique_name(derive_entity_name(data.entity_id))
    rows = certificate_rows(data, entity_type, run.now, run.keystore_index, run.problems_cache)
    aliases = {
        row.number: row.existing.alias if row.existing is not None else _bulk_alias(name, row) for row in rows if not row.problem
    }
    plan = plan_entity(
        data,
        operation=UPDATE_REMOTE if target is not None else CREATE_REMOTE,
        entity_type=entity_type,
        name=name,
        target=target,
        certificate_aliases=aliases,
        now=run.now,
        keystore_index=run.keystore_index,
        problems_cache=run.problems_cache,
    )
    entity = apply_plan(plan, source=run.source_row, now=run.now, audit_summary=False, link=False)
    for choice in plan.certificates:
        if choice.existing is None:
            run.keystore_index.add_pending(
                KeystoreEntry.objects.only("id", "alias", "kind", "fingerprint_sha256").get(alias=choice.alias)
            )
            outcome.certificates.append(choice.alias)
    return entity


def _batch_audit(run, outcome):
    """One audit event per batch: how many entities were created and updated, and their names."""
    created = [entity.name for entity in outcome.created]
    updated = [entity.name for entity in outcome.updated]
    if not created and not updated:
        return
    location = run.source_row.location
    names = created + updated
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    audit.record(
        "other",
        object_type=Entity._meta.label,
        object_repr=f"{len(names)} entities from {location}",
        summary=f"bulk import, batch {run.batches}: {len(created)} created, {len(updated)} updated, "
        f"{len(outcome.errors)} failed: {shown}",
        changes={
            "metadata_source": location,
            "batch": run.batches,
            "created_count": len(created),
            "created": created[:AUDIT_NAMES],
            "updated_count": len(updated),
            "updated": updated[:AUDIT_NAMES],
            "certificates_stored": outcome.certificates[:AUDIT_NAMES],
            "failed": [{"entity_id": data.entity_id, "message": message} for data, message in outcome.errors[:20]],
        },
    )


def _bulk_audit(source_row, bulk_filter, result):
    what = {"sp": "SPs", "idp": "IdPs"}.get(bulk_filter.role, "SPs and IdPs")
    detail = f" matching {bulk_filter.match!r}" if bulk_filter.match else ""
    audit.record(
        "other",
        source_row,
        summary=f"bulk import of {what}{detail}: {result.line()}",
        changes={"errors": result.errors[:50]},
    )


# ---------------------------------------------------------------- background jobs (console)


def job_key(options):
    import json

    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()


def _job_source(options):
    upload = MetadataUpload.objects.filter(pk=options["upload"]).first() if options.get("upload") else None
    if options.get("upload") and upload is None:
        raise MetadataImportError("The uploaded file is no longer available; upload it again.", "document")
    return Source(url=options.get("url", ""), upload=upload, max_bytes=int(options.get("max_bytes") or DEFAULT_MAX_BYTES))


def _trust_from_options(options):
    alias = options.get("trust_anchor") or ""
    entry = KeystoreEntry.objects.filter(alias=alias).first() if alias else None
    if alias and entry is None:
        raise MetadataImportError(f"The trust anchor '{alias}' is no longer in the keystore.", "trust_anchor")
    return entry, (trust_anchor(entry) if entry is not None else None)


class _JobProgress:
    """Writes progress to the job row at most every half second."""

    def __init__(self, job):
        self.job = job
        self.last = 0.0

    def __call__(self, **fields):
        import time

        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        MetadataImportJob.objects.filter(pk=self.job.pk).update(**fields)


def run_scan_job(job_id):
    """Read and verify the document of a wizard scan job; list its entities as MetadataScanEntry rows."""
    job = MetadataImportJob.objects.get(pk=job_id)
    if job.done:
        return job
    MetadataImportJob.objects.filter(pk=job.pk).update(
        state=MetadataImportJob.State.RUNNING, started_at=timezone.now(), phase="Reading"
    )
    job.refresh_from_db()
    progress = _JobProgress(job)
    entries = []
    now = timezone.now()

    def flush():
        MetadataScanEntry.objects.bulk_create(entries, batch_size=500)
        entries.clear()

    def on_entity(data):
        problem = " ".join(data.problems) if data.problems else ("" if data.entity_types() else "No role this product supports.")
        entries.append(
            MetadataScanEntry(
                job=job,
                position=data.position,
                entity_id=data.entity_id[:1088],
                display_name=data.label()[:255] if data.label() != data.entity_id else "",
                entity_types=",".join(data.entity_types()),
                expired=data.expired(now),
                valid_until=data.valid_until,
                problem=problem,
                certificate_count=data.certificate_count(),
                data=data.to_json(),
            )
        )
        if len(entries) >= 500:
            flush()

    # No transaction around the read: progress must be visible to the polling page meanwhile. The
    # entries are shown only once the job has succeeded (the whole document verified); a failed
    # job's entries are deleted.
    try:
        source = _job_source(job.options)
        _entry, trust = _trust_from_options(job.options)
        with open_source(source) as (stream, fetch):
            size = source.upload.size if source.upload else (fetch.size if fetch else 0)
            MetadataImportJob.objects.filter(pk=job.pk).update(bytes_total=size, phase="Reading and verifying")
            info = read_document(
                stream,
                on_entity,
                trust=trust,
                allow_unsigned=bool(job.options.get("allow_unsigned")),
                max_bytes=source.max_bytes,
                progress=lambda done, count: progress(bytes_read=done, processed=count),
                now=now,
            )
            flush()
        job.document = info.summary()
        job.document["etag"] = fetch.etag if fetch else ""
        job.document["last_modified"] = fetch.last_modified if fetch else ""
        job.total = job.processed = info.entity_count
        job.bytes_read = job.bytes_total = info.size
        job.state = MetadataImportJob.State.SUCCEEDED
        job.phase = "Done"
        job.finished_at = timezone.now()
        job.save()
    except MetadataImportError as exc:
        job.entries.all().delete()
        _fail_job(job, exc.message)
    except Exception as exc:  # noqa: BLE001 - the job must end in a state the console can show
        log.exception("metadata scan job %s failed", job.pk, extra={"checkpoint": "METADATA_SCAN_ERROR"})
        job.entries.all().delete()
        _fail_job(job, f"Unexpected error: {type(exc).__name__}: {exc}")
    job.refresh_from_db()
    return job


def _fail_job(job, message):
    MetadataImportJob.objects.filter(pk=job.pk).update(
        state=MetadataImportJob.State.FAILED, message=message, phase="Failed", finished_at=timezone.now()
    )
    log.warning("metadata job %s failed: %s", job.pk, message, extra={"checkpoint": "METADATA_JOB_FAILED"})


def run_bulk_job(job_id):
    """A console bulk import (see `bulk_import`) with its progress written to the job row."""
    job = MetadataImportJob.objects.get(pk=job_id)
    if job.done:
        return job
    MetadataImportJob.objects.filter(pk=job.pk).update(
        state=MetadataImportJob.State.RUNNING, started_at=timezone.now(), phase="Reading and verifying"
    )
    writer = _JobProgress(job)
    options = job.options

    def progress(phase, done, total):
        if phase == "verify":
            writer(bytes_read=done, phase="Reading and verifying")
        else:
            writer(processed=done, total=total, phase="Importing")

    try:
        source = _job_source(options)
        if source.upload is not None:
            MetadataImportJob.objects.filter(pk=job.pk).update(bytes_total=source.upload.size)
        trust_entry, trust = _trust_from_options(options)
        bulk_filter = BulkFilter(options.get("role", "sp"), options.get("match", ""), options.get("registration_authority", ""))
        with audit.acting_as(job.owner or "system"):
            result = bulk_import(
                source,
                bulk_filter,
                trust=trust,
                trust_entry=trust_entry,
                allow_unsigned=bool(options.get("allow_unsigned")),
                update_existing=bool(options.get("update_existing", True)),
                refresh_interval=timedelta(hours=options["refresh_hours"]) if options.get("refresh_hours") else None,
                progress=progress,
            )
    except MetadataImportError as exc:
        _fail_job(job, exc.message)
        job.refresh_from_db()
        return job
    except Exception as exc:  # noqa: BLE001
        log.exception("metadata bulk job %s failed", job.pk, extra={"checkpoint": "METADATA_BULK_ERROR"})
        _fail_job(job, f"Unexpected error: {type(exc).__name__}: {exc}")
        job.refresh_from_db()
        return job
    MetadataImportJob.objects.filter(pk=job.pk).update(
        state=MetadataImportJob.State.SUCCEEDED,
        phase="Done",
        processed=result.matched,
        total=result.matched,
        created_count=result.created,
        updated_count=result.updated,
        skipped_count=result.skipped,
        failed_count=result.failed,
        errors=result.errors,
        document=result.info.summary() if result.info else {},
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    return job


def prune_jobs(now=None):
    """Delete finished jobs, their scan entries and uploads older than KEEP_JOBS_FOR."""
    cutoff = _now(now) - KEEP_JOBS_FOR
    jobs = MetadataImportJob.objects.filter(created_at__lt=cutoff).delete()[0]
    uploads = MetadataUpload.objects.filter(created_at__lt=cutoff).delete()[0]
    return jobs + uploads


# ---------------------------------------------------------------- scheduled refresh


@dataclass
class RefreshResult:
    source: MetadataSource
    fetched: bool = False
    not_modified: bool = False
    changed: list = field(default_factory=list)  # entity names changed
    unchanged: int = 0
    errors: list = field(default_factory=list)  # messages
    failed: bool = False

    def line(self):
        if self.failed:
            return f"failed: {'; '.join(self.errors)}"
        if self.not_modified:
            return "not modified"
        text = f"{len(self.changed)} entity(ies) updated, {self.unchanged} unchanged"
        if self.errors:
            text += f", {len(self.errors)} problem(s): {'; '.join(self.errors)}"
        return text


def due_sources(now=None):
    """URL sources whose refresh is due and that some entity still comes from."""
    now = _now(now)
    return (
        MetadataSource.objects.filter(kind=MetadataSource.Kind.URL, refresh_interval__isnull=False)
        .filter(Q(next_refresh_at__isnull=True) | Q(next_refresh_at__lte=now))
        .annotate(entity_count=Count("entities"))
        .filter(entity_count__gt=0)
        .order_by("next_refresh_at", "id")
    )


def refresh_source(source_row, *, now=None, force=False):
    """Fetch a URL source again, verify it, and apply what changed to each remote entity that came from
    it (endpoints, NameID formats, certificates, WS-Fed URLs). A failure keeps every entity as it was
    (the last good copy) and is recorded on the source; a problem with one entity of an aggregate
    does not stop the others. Returns a RefreshResult."""
    now = _now(now)
    result = RefreshResult(source_row)
    entities = list(
        source_row.entities.filter(location=Location.REMOTE).select_related("verification_certificate", "encryption_certificate")
    )
    wanted = {entity.entity_id for entity in entities}
    found = {}
    source = Source(url=source_row.location, max_bytes=source_row.max_bytes)
    try:
        if source_row.trust_anchor_id is None and source_row.require_signature:
            raise MetadataImportError("No trust anchor is set and unsigned metadata is not allowed for this source.")
        trust = trust_anchor(source_row.trust_anchor) if source_row.trust_anchor_id else None
        headers = {} if force else {"etag": source_row.etag, "last_modified": source_row.last_modified}
        with open_source(source, **headers) as (stream, fetch):
            if fetch is not None and fetch.not_modified:
                result.not_modified = True
                _mark_success(source_row, None, fetch, now)
                source_row.save()
                log.info("metadata %s not modified", source_row.location, extra={"checkpoint": "METADATA_REFRESH_NOT_MODIFIED"})
                return result
            info = read_document(
                stream,
                lambda data: found.__setitem__(data.entity_id, data) if data.entity_id in wanted else None,
                trust=trust,
                allow_unsigned=not source_row.require_signature,
                max_bytes=source_row.max_bytes,
                now=now,
            )
        result.fetched = True
    except MetadataImportError as exc:
        _record_refresh_failure(source_row, exc.message, now)
        result.failed = True
        result.errors.append(exc.message)
        return result

    keystore_index = _KeystoreIndex()
    for entity in entities:
        data = found.get(entity.entity_id)
        if data is None:
            result.errors.append(f"'{entity.name}': entity ID {entity.entity_id} is no longer in the metadata; kept as it was.")
            continue
        try:
            changes = _refresh_entity(entity, data, source_row, keystore_index, now)
        except MetadataImportError as exc:
            result.errors.append(f"'{entity.name}': {exc.message} Kept as it was.")
            continue
        if changes:
            result.changed.append(entity.name)
        else:
            result.unchanged += 1
    _mark_success(source_row, info, fetch, now)
    if result.errors:
        source_row.last_error = " ".join(result.errors)[:4000]
        source_row.last_error_at = now
        log.warning(
            "metadata refresh of %s: %s",
            source_row.location,
            "; ".join(result.errors),
            extra={"checkpoint": "METADATA_REFRESH_PARTIAL"},
        )
    source_row.save()
    log.info("metadata refresh of %s: %s", source_row.location, result.line(), extra={"checkpoint": "METADATA_REFRESH"})
    return result


def _record_refresh_failure(source_row, message, now):
    source_row.last_fetched_at = now
    source_row.last_error = message[:4000]
    source_row.last_error_at = now
    source_row.consecutive_failures += 1
    retry = RETRY_AFTER_FAILURE * (2 ** min(source_row.consecutive_failures - 1, 6))
    if source_row.refresh_interval:
        retry = min(retry, source_row.refresh_interval)
    source_row.next_refresh_at = now + max(retry, MIN_REFRESH)
    source_row.save()
    log.warning(
        "metadata refresh of %s failed (%d in a row); the entities keep their last good copy: %s",
        source_row.location,
        source_row.consecutive_failures,
        message,
        extra={"checkpoint": "METADATA_REFRESH_FAILED"},
    )


def _endpoint_key(row):
    return (row["kind"], row["binding"], row["location"], row["response_location"] or "", row["index"], bool(row["is_default"]))


def _stored_endpoints(entity):
    return [
        _endpoint_key(
            {
                "kind": e.kind,
                "binding": e.binding,
                "location": e.location,
                "response_location": e.response_location,
                "index": e.index,
                "is_default": e.is_default,
            }
        )
        for e in entity.endpoints.order_by("position", "id")
    ]


def _refresh_certificate(entity, rows, usage, field_name, keystore_index, choices):
    """Keep the entity's certificate for `usage` while the metadata still lists it; otherwise switch to
    the metadata's first valid certificate for that usage (imported as <entity>-<usage>-<fingerprint8>)."""
    current = getattr(entity, field_name)
    candidates = [row for row in rows if usage in row.uses and not row.problem]
    if not candidates:
        return None
    if current is not None and any(row.data.fingerprint == current.fingerprint_sha256 for row in candidates):
        return None
    row = candidates[0]
    choice = choices.get(row.data.fingerprint)
    if choice is None:
        existing = row.existing or keystore_index.get({row.data.fingerprint}).get(row.data.fingerprint)
        alias = existing.alias if existing else f"{entity.name[:60]}-{usage}-{row.data.fingerprint.replace(':', '')[:8].lower()}"
        choice = CertificateChoice(alias, {usage}, row.data, existing, [row.number])
        choices[row.data.fingerprint] = choice
    else:
        choice.uses.add(usage)
    return choice


def _refresh_entity(entity, data, source_row, keystore_index, now):
    """Diff the entity against its new metadata and apply the changes; returns the changes ({} when none)."""
    if data.problems:
        raise MetadataImportError(f"the entity is malformed in the new metadata: {' '.join(data.problems)}")
    if data.expired(now):
        raise MetadataImportError(
            f"the entity expired on {data.valid_until:%Y-%m-%d %H:%M} UTC (validUntil) in the new metadata."
        )
    plan = plan_entity(data, operation=UPDATE_REMOTE, target=entity, now=now, keystore_index=keystore_index)
    rows = certificate_rows(data, entity.entity_type, now, keystore_index)
    choices = {}
    signing = _refresh_certificate(entity, rows, "signing", "verification_certificate", keystore_index, choices)
    encryption = None
    if type_protocol(entity.entity_type) == Protocol.SAML2:
        encryption = _refresh_certificate(entity, rows, "encryption", "encryption_certificate", keystore_index, choices)
    plan.certificates = list(choices.values())
    plan.values.pop("verification_certificate", None)
    plan.values.pop("encryption_certificate", None)
    if signing is not None:
        plan.values["verification_certificate"] = signing.existing or signing.alias
    if encryption is not None:
        plan.values["encryption_certificate"] = encryption.existing or encryption.alias

    changes = {}
    if plan.values.get("name_id_formats", []) != list(entity.name_id_formats or []):
        changes["NameID formats"] = [list(entity.name_id_formats or []), plan.values.get("name_id_formats", [])]
    if plan.endpoints is not None:
        old, new = _stored_endpoints(entity), [_endpoint_key(row) for row in plan.endpoints]
        if old != new:
            added = [f"{k[0]} {k[2]}" for k in new if k not in old]
            removed = [f"{k[0]} {k[2]}" for k in old if k not in new]
            changes["endpoints"] = {"added": added, "removed": removed, "reordered_or_flags": not added and not removed}
    for name in ("wsfed_service_url", "wsfed_signout_cleanup_url"):
        if name in plan.values and plan.values[name] != getattr(entity, name):
            changes[name] = [getattr(entity, name), plan.values[name]]
    if signing is not None:
        changes["verification certificate"] = [getattr(entity.verification_certificate, "alias", None), signing.alias]
    if encryption is not None:
        changes["encryption certificate"] = [getattr(entity.encryption_certificate, "alias", None), encryption.alias]
    if plan.attributes is not None:
        stored = [(a.name, a.name_format) for a in entity.attributes.order_by("position", "id")]
        if stored != [(a["name"], a["name_format"]) for a in plan.attributes]:
            changes["attributes"] = {"before": len(stored), "after": len(plan.attributes)}
        else:
            plan.attributes = None
    if not changes:
        return {}
    plan.values = {key: value for key, value in plan.values.items() if key not in ("entity_id",)}
    with transaction.atomic():
        apply_plan(plan, source=source_row, now=now, audit_summary=False)
        audit.record("other", entity, summary=_change_summary(source_row, changes), changes=changes)
    for choice in plan.certificates:
        if choice.existing is None:
            keystore_index.add(KeystoreEntry.objects.get(alias=choice.alias))
    return changes


def _change_summary(source_row, changes):
    parts = []
    for key, value in changes.items():
        if key == "endpoints":
            parts.append(f"endpoints +{len(value['added'])} −{len(value['removed'])}")
        elif key.endswith("certificate"):
            parts.append(f"{key} {value[0] or '—'} → {value[1]}")
        else:
            parts.append(f"{key} changed")
    return f"metadata refresh from {source_row.location}: " + ", ".join(parts)


def refresh_due_sources(now=None, enqueue=None):
    """Start a refresh of every due URL source (each on its own, via `enqueue(source_id)` or inline)."""
    now = _now(now)
    started = []
    for source_row in due_sources(now):
        # Claim the source (a lease until the refresh sets the real next time), so overlapping beat
        # runs and several workers never refresh it twice at once.
        claimed = MetadataSource.objects.filter(pk=source_row.pk, next_refresh_at=source_row.next_refresh_at).update(
            next_refresh_at=now + REFRESH_LEASE
        )
        if not claimed:
            continue
        source_row.next_refresh_at = now + REFRESH_LEASE
        if enqueue is not None:
            enqueue(source_row.pk)
        else:
            refresh_source(source_row, now=now)
        started.append(source_row.pk)
    return started


def metadata_failures():
    """URL sources whose last refresh failed (the dashboard lists them): the entities keep the last good copy."""
    return list(
        MetadataSource.objects.filter(kind=MetadataSource.Kind.URL)
        .exclude(last_error="")
        .annotate(entity_count=Count("entities"))
        .order_by("-last_error_at")
    )


def utc(value):
    return value.astimezone(UTC) if isinstance(value, datetime) else value
