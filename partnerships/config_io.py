"""Configuration export and import: one partnership with what it needs, or a whole deployment, as a versioned JSON or
YAML document (the format is described field by field in docs/config-format.md).

    document = export_deployment()                          # or export_partnerships([p1, p2])
    text = dump(document, "backup.yaml")                    # sorted keys, stable order: same state, same bytes
    document = load(Path("backup.yaml").read_bytes(), "backup.yaml")
    changes = plan(document)                                # what apply would do; writes nothing
    changes = apply(document)                               # all or nothing, in one transaction

`plan` checks the WHOLE document before anything is written and raises one `ConfigError` holding every problem,
each naming its path in the file (``partnerships[2].settings.configure.skew_seconds: must be a whole number``).
`apply` then writes in one transaction through the services the console uses (keystore, entity, template and
partnership services), so every model rule and the audit log apply; should a service still refuse something, the
whole transaction is rolled back. Objects are matched by name (keystore entries by alias); objects the document does
not mention are left alone; an object whose state already equals the document is not written at all, so applying the
same document twice writes nothing, and records no audit event, the second time.

Secrets (partnership password settings, LDAP bind passwords) are exported only when asked, encrypted with a key
derived (scrypt) from a password; private keys only when asked, as password-protected PKCS#12. An object the
document lists without its secret keeps the secret stored in the database.

Plain module, no HTTP: the `partnership` and `fedconfig` management commands are thin wrappers around it.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from entities import keystore
from entities import services as keystore_services
from entities.entity_services import ATTRIBUTE_FIELDS, ENDPOINT_FIELDS, EntityError, create_entity, update_entity, validate_entity
from entities.keystore import KeystoreError
from entities.models import ALIAS_PATTERN, KEY_FIELDS, Entity, EntityType, KeystoreEntry, Location, Protocol, entity_fields
from federation.models import UserDirectory
from federation.secretbox import seal_text, unseal_text
from partnerships import authn_context, catalog
from partnerships import services as partnership_services
from partnerships.authn_context_services import NAME_MAX as TEMPLATE_NAME_MAX
from partnerships.authn_context_services import AuthnContextTemplateError, create_template, update_template
from partnerships.models import AuthnContextTemplate, Partnership, PartnershipState
from partnerships.services import PartnershipError

log = logging.getLogger("partnerships.config")

FORMAT = "federation-config"
VERSION = 1
HEADER = ("format", "version", "encryption")
# Sections in the order they are written and applied: each may refer only to the ones before it.
SECTIONS = ("keystore", "directories", "authn_context_templates", "entities", "partnerships")
MIN_PASSWORD_LENGTH = keystore.MIN_PKCS12_PASSWORD_LENGTH
ALIAS_MAX = KeystoreEntry._meta.get_field("alias").max_length

ENTITY_KEY_FIELDS = tuple(KEY_FIELDS)
WSFED_FIELDS = (
    "wsfed_specific_id",
    "wsfed_signout_confirm_url",
    "wsfed_service_url",
    "wsfed_signout_url",
    "wsfed_signout_cleanup_url",
)
LDAP_FIELDS = (
    "hosts",
    "port",
    "security",
    "verify_tls",
    "tls_ca_alias",
    "bind_dn",
    "search_root",
    "scope",
    "user_dn_start",
    "user_dn_end",
    "user_filter",
    "group_search_root",
    "group_filter",
    "group_name_attribute",
    "connect_timeout",
    "operation_timeout",
)
REFERENCE_TYPES = ("key_pair", "certificate", "authn_template", "directory")

# scrypt cost of the key that encrypts secrets in a document (32 MiB, about 0.1 s), and the most a file may ask for.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_MAX_MEMORY = 256 * 1024 * 1024
CIPHER = "AES-256-GCM"
_AAD = b"federation-config"
_CHECK = "federation-config"


# ---------------------------------------------------------------------------------------------- problems and changes


@dataclass(frozen=True)
class ConfigProblem:
    path: str  # where in the document, e.g. "entities[0].keys.signing_key"; "" for the document as a whole
    message: str

    def __str__(self):
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """Every problem found in a document (or while writing it); nothing was applied."""

    def __init__(self, problems):
        self.problems = [p if isinstance(p, ConfigProblem) else ConfigProblem("", str(p)) for p in problems]
        super().__init__("; ".join(str(p) for p in self.problems))

    def messages(self):
        return [str(p) for p in self.problems]


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: object
    new: object
    secret: bool = False  # old/new are only "(set)", "(empty)", "(changed)": a secret is never shown

    def describe(self):
        if self.secret:
            return f"{self.field}: {self.old} → {self.new}"
        return f"{self.field}: {_show(self.old)} → {_show(self.new)}"


@dataclass
class Change:
    """What apply does to one object of the document: create, update (with the field differences) or nothing."""

    path: str
    kind: str
    name: str
    action: str  # "create" | "update" | "unchanged"
    fields: list[FieldChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    write: Callable[[], object] | None = field(default=None, repr=False, compare=False)

    def lines(self):
        lines = [f'{self.action:<9} {self.path} {self.kind} "{self.name}"']
        lines += [f"    {change.describe()}" for change in self.fields]
        lines += [f"    note: {note}" for note in self.notes]
        return lines


def summary(changes, applied=False):
    """Counts of the changes, e.g. "2 to create, 1 to update, 7 unchanged" ("2 created, …" once applied)."""
    counts = {action: sum(1 for c in changes if c.action == action) for action in ("create", "update", "unchanged")}
    if applied:
        return f"{counts['create']} created, {counts['update']} updated, {counts['unchanged']} unchanged"
    return f"{counts['create']} to create, {counts['update']} to update, {counts['unchanged']} unchanged"


_MISSING = object()


def _show(value):
    if value is _MISSING or value is None:
        return "(none)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 160 else text[:157] + "…"


def _diff(old, new, path=""):
    """[FieldChange] between two JSON-like values: per key for objects, per row for lists of objects."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key in sorted(set(old) | set(new), key=str):
            changes += _diff(old.get(key, _MISSING), new.get(key, _MISSING), f"{path}.{key}" if path else str(key))
        return changes
    if isinstance(old, list) and isinstance(new, list) and all(isinstance(row, dict) for row in old + new) and (old or new):
        changes = []
        for index in range(max(len(old), len(new))):
            changes += _diff(
                old[index] if index < len(old) else _MISSING, new[index] if index < len(new) else _MISSING, f"{path}[{index}]"
            )
        return changes
    if old != new:
        return [FieldChange(path, None if old is _MISSING else old, None if new is _MISSING else new)]
    return []


def _join(path, key):
    return f"{path}.{key}" if path else str(key)


# ---------------------------------------------------------------------------------------------- reading and writing files


def is_yaml(filename):
    return str(filename or "").lower().endswith((".yaml", ".yml"))


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicate_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def load(data, filename="", fmt=None):
    """The document in `data` (bytes or text): `fmt` ("json" or "yaml"), else YAML when the file name ends in
    .yaml/.yml and JSON otherwise.

    Raises ConfigError with one plain message when the file cannot be read at all."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(["The file is not UTF-8 text."]) from None
    if not data.strip():
        raise ConfigError(["The file is empty."])
    if (fmt or ("yaml" if is_yaml(filename) else "json")) == "yaml":
        try:
            return yaml.safe_load(data)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            raise ConfigError([f"The file is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}."]) from None
    try:
        return json.loads(data, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        hint = " (a .yaml or .yml file name reads it as YAML)" if data.lstrip()[:1] not in "{[" else ""
        raise ConfigError([f"The file is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}{hint}."]) from None
    except _DuplicateKey as exc:
        raise ConfigError([f'The file names the key "{exc.args[0]}" twice in one object.']) from None


def dump(document, filename="", fmt=None):
    """The document as text: JSON (indented) or YAML, with every key sorted except the header and sections, which come
    first in a fixed order; the same document always gives the same bytes."""
    fmt = fmt or ("yaml" if is_yaml(filename) else "json")
    ordered = {key: document[key] for key in (*HEADER, *SECTIONS) if key in document}
    ordered.update({key: document[key] for key in sorted(document) if key not in ordered})
    ordered = {key: _sorted(value) for key, value in ordered.items()}
    if fmt == "yaml":
        return yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
    return json.dumps(ordered, indent=2, ensure_ascii=False) + "\n"


def _sorted(value):
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------------- encrypted secrets


class SecretCipher:
    """Encrypts the secrets of one document: AES-256-GCM under a key derived from a password with scrypt.

    The parameters and salt are written in the document's "encryption" header together with an encrypted check value,
    so a wrong password is reported once, before any secret is read."""

    def __init__(self, password, salt=None, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P):
        self.salt = salt or os.urandom(16)
        self.n, self.r, self.p = n, r, p
        self._key = Scrypt(salt=self.salt, length=32, n=n, r=r, p=p).derive(password.encode())

    def header(self):
        return {
            "cipher": CIPHER,
            "kdf": "scrypt",
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "salt": base64.b64encode(self.salt).decode(),
            "check": self.seal(_CHECK)["encrypted"],
        }

    def seal(self, text):
        nonce = os.urandom(12)
        return {"encrypted": base64.b64encode(nonce + AESGCM(self._key).encrypt(nonce, text.encode(), _AAD)).decode()}

    def open(self, token):
        """The clear text of an "encrypted" value; ValueError when it is not base64 or does not decrypt."""
        try:
            raw = base64.b64decode(token, validate=True)
            return AESGCM(self._key).decrypt(raw[:12], raw[12:], _AAD).decode()
        except (binascii.Error, InvalidTag, UnicodeDecodeError) as exc:
            raise ValueError("does not decrypt") from exc

    @classmethod
    def from_header(cls, header, password):
        """The cipher for a document's header; ValueError(field, message) when the header is unusable."""
        if header.get("cipher") != CIPHER:
            raise ValueError("cipher", f'must be "{CIPHER}"')
        if header.get("kdf") != "scrypt":
            raise ValueError("kdf", 'must be "scrypt"')
        params = {}
        for name, low, high in (("n", 2, 2**20), ("r", 1, 64), ("p", 1, 16)):
            value = header.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(name, f"must be a whole number from {low} to {high}")
            params[name] = value
        if params["n"] & (params["n"] - 1):
            raise ValueError("n", "must be a power of two")
        if 128 * params["n"] * params["r"] * params["p"] > SCRYPT_MAX_MEMORY:
            raise ValueError("n", "asks for more scrypt memory than allowed (256 MiB)")
        try:
            salt = base64.b64decode(str(header.get("salt") or ""), validate=True)
        except binascii.Error:
            salt = b""
        if len(salt) < 16:
            raise ValueError("salt", "must be at least 16 bytes, base64-encoded")
        cipher = cls(password, salt, **params)
        try:
            if cipher.open(str(header.get("check") or "")) != _CHECK:
                raise ValueError("does not decrypt")
        except ValueError:
            raise ValueError("", "the password does not open this file's secrets and private keys") from None
        return cipher


def check_password(password):
    if not password or len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError([f"Use a password of at least {MIN_PASSWORD_LENGTH} characters to protect secrets and private keys."])
    return password


# ---------------------------------------------------------------------------------------------- what an object looks like


def _order(name):
    return (name.lower(), name)


def keystore_data(entry):
    """A keystore entry as the document holds it (without its private key)."""
    return {
        "alias": entry.alias,
        "kind": entry.kind,
        "certificate_pem": entry.certificate_pem,
        "chain_pem": entry.chain_pem or "",
    }


def directory_data(directory):
    """A user directory as the document holds it (without its bind password)."""
    data = {"name": directory.name, "kind": directory.kind, "description": directory.description or ""}
    if directory.kind == UserDirectory.Kind.LDAP:
        data.update({name: getattr(directory, name) for name in LDAP_FIELDS})
    return data


def template_data(template):
    return {
        "name": template.name,
        "description": template.description or "",
        "protection_levels": bool(template.protection_levels),
        "entries": [dict(entry) for entry in template.entries or []],
    }


def entity_data(entity, endpoints, attributes):
    """An entity (saved, or unsaved and validated) with its endpoint and attribute rows as the document holds it.

    Only the fields that apply to its location and type are written; keys are written by alias."""
    applicable = entity_fields(entity.location, entity.entity_type)
    data = {
        "name": entity.name,
        "entity_id": entity.entity_id,
        "location": entity.location,
        "entity_type": entity.entity_type,
        "description": entity.description or "",
        "name_id_formats": list(entity.name_id_formats or []),
        "keys": {},
        "endpoints": [{name: getattr(row, name) for name in ENDPOINT_FIELDS} for row in endpoints],
        "attributes": [{name: getattr(row, name) for name in ATTRIBUTE_FIELDS} for row in attributes],
    }
    if entity.protocol == Protocol.WSFED:
        data["saml_token_type"] = entity.saml_token_type
    for name in ("base_url", *WSFED_FIELDS):
        if name in applicable:
            data[name] = getattr(entity, name) or ""
    for name in ENTITY_KEY_FIELDS:
        if name in applicable:
            entry = getattr(entity, name)
            data["keys"][name] = entry.alias if entry is not None else ""
    return data


def password_settings(kind_key):
    """[(step, key)] of the kind's password settings (their values live sealed in Partnership.secrets)."""
    found = []
    for step in catalog.steps_for(kind_key):
        found += [(step.key, s.key) for s in catalog.settings_for(kind_key, step.key) if s.type == "password"]
    return found


def _without_passwords(kind_key, settings):
    for step, key in password_settings(kind_key):
        (settings.get(step) or {}).pop(key, None)
    return settings


def partnership_data(partnership):
    """A partnership as the document holds it (password settings left out). Settings are normalised by the catalog,
    so settings added by a later version appear with their defaults."""
    settings, _ = catalog.normalize(partnership.kind, copy.deepcopy(partnership.settings or {}))
    return {
        "name": partnership.name,
        "description": partnership.description or "",
        "kind": partnership.kind,
        "local_entity": partnership.local_entity.name,
        "remote_entity": partnership.remote_entity.name if partnership.remote_entity_id else None,
        "directories": [link.directory.name for link in partnership.directory_links.all()],
        "settings": _without_passwords(partnership.kind, settings),
        "active": partnership.state == PartnershipState.ACTIVE,
    }


def setting_references(kind_key, settings, types=REFERENCE_TYPES):
    """The settings and table cells naming keystore entries, templates or directories (partnerships.services)."""
    return partnership_services.setting_references(kind_key, settings, types)


# ---------------------------------------------------------------------------------------------- export


def export_deployment(*, include_secrets=False, include_private_keys=False, password=None):
    """Everything: keystore, directories, templates, entities and partnerships."""
    return _export(
        KeystoreEntry.objects.all(),
        UserDirectory.objects.all(),
        AuthnContextTemplate.objects.all(),
        Entity.objects.select_related(*ENTITY_KEY_FIELDS).prefetch_related("endpoints", "attributes"),
        Partnership.objects.select_related("local_entity", "remote_entity").prefetch_related("directory_links__directory"),
        include_secrets=include_secrets,
        include_private_keys=include_private_keys,
        password=password,
    )


def export_partnerships(partnerships, *, include_secrets=False, include_private_keys=False, password=None):
    """The partnerships with the entities, keystore entries, templates and directories they need."""
    partnerships = list(partnerships)
    entities = {p.local_entity for p in partnerships} | {p.remote_entity for p in partnerships if p.remote_entity_id}
    aliases, templates, directories = set(), set(), set()
    for partnership in partnerships:
        directories |= set(partnership_services.directory_names(partnership))
        for _, setting_type, value in setting_references(partnership.kind, partnership.settings or {}):
            {"authn_template": templates, "directory": directories}.get(setting_type, aliases).add(value)
    for entity in entities:
        aliases |= {getattr(entity, name).alias for name in ENTITY_KEY_FIELDS if getattr(entity, f"{name}_id")}
    directory_rows = list(UserDirectory.objects.filter(name__in=directories))
    aliases |= {d.tls_ca_alias for d in directory_rows if d.tls_ca_alias}
    return _export(
        KeystoreEntry.objects.filter(alias__in=aliases),
        directory_rows,
        AuthnContextTemplate.objects.filter(name__in=templates),
        entities,
        partnerships,
        include_secrets=include_secrets,
        include_private_keys=include_private_keys,
        password=password,
    )


def _export(entries, directories, templates, entities, partnerships, *, include_secrets, include_private_keys, password):
    document = {"format": FORMAT, "version": VERSION}
    cipher = None
    if include_secrets or include_private_keys:
        cipher = SecretCipher(check_password(password))
        document["encryption"] = cipher.header()

    document["keystore"] = []
    for entry in sorted(entries, key=lambda e: _order(e.alias)):
        data = keystore_data(entry)
        if include_private_keys and entry.kind == KeystoreEntry.Kind.KEY_PAIR:
            pkcs12 = keystore_services.export_pkcs12(entry.alias, password)
            data["private_key"] = {"pkcs12_base64": base64.b64encode(pkcs12).decode()}
        document["keystore"].append(data)

    document["directories"] = []
    for directory in sorted(directories, key=lambda d: _order(d.name)):
        data = directory_data(directory)
        if include_secrets and directory.bind_password:
            data["bind_password"] = cipher.seal(unseal_text(directory.bind_password))
        document["directories"].append(data)

    document["authn_context_templates"] = [template_data(t) for t in sorted(templates, key=lambda t: _order(t.name))]
    document["entities"] = [
        entity_data(entity, entity.endpoints.all(), entity.attributes.all())
        for entity in sorted(entities, key=lambda e: _order(e.name))
    ]

    document["partnerships"] = []
    for partnership in sorted(partnerships, key=lambda p: _order(p.name)):
        data = partnership_data(partnership)
        if include_secrets:
            stored = partnership_services.read_secrets(partnership)
            for step, key in password_settings(partnership.kind):
                if stored.get(f"{step}.{key}"):
                    data["settings"].setdefault(step, {})[key] = cipher.seal(stored[f"{step}.{key}"])
        document["partnerships"].append(data)
    return document


# ---------------------------------------------------------------------------------------------- plan and apply


def plan(document, password=None):
    """Every Change apply would make, computed without writing; ConfigError with every problem of the document."""
    planner = _Planner(password)
    planner.read(document)
    if planner.problems:
        raise ConfigError(planner.problems)
    return planner.changes


def apply(document, *, dry_run=False, password=None):
    """Check the whole document, then write every create and update in one transaction (nothing on dry_run).

    Returns the changes; raises ConfigError (and writes nothing) when anything is wrong."""
    with transaction.atomic():
        changes = plan(document, password)
        if dry_run:
            return changes
        problems = []
        for change in changes:
            if change.write is None:
                continue
            try:
                with transaction.atomic():
                    change.write()
            except (PartnershipError, EntityError, KeystoreError, AuthnContextTemplateError, ValidationError) as exc:
                problems += _write_problems(change.path, exc)
        if problems:
            raise ConfigError(problems)  # leaves the outer atomic block: everything is rolled back
    log.info("configuration applied: %s", summary(changes, applied=True), extra={"checkpoint": "CONFIG_APPLY"})
    return changes


def _write_problems(path, exc):
    if isinstance(exc, PartnershipError):
        return [ConfigProblem(_settings_path(path, p) if p.step and p.field else path, p.message) for p in exc.problems]
    if isinstance(exc, EntityError):
        return [ConfigProblem(path, message) for message in exc.messages()]
    if isinstance(exc, KeystoreError):
        return [ConfigProblem(path, message) for _, message in exc.problems]
    if isinstance(exc, AuthnContextTemplateError):
        return [ConfigProblem(path, p.message) for p in exc.problems]
    return [ConfigProblem(path, message) for message in exc.messages]


def _settings_path(base, problem):
    """The document path of a catalog Problem: "table.0.column" becomes "table[0].column"."""
    path = f"{base}.settings"
    if problem.step:
        path += f".{problem.step}"
    if problem.field:
        parts = problem.field.split(".")
        text = parts[0]
        for part in parts[1:]:
            text += f"[{part}]" if part.isdigit() else f".{part}"
        path += f".{text}"
    return path


def _catalog_label(kind_key, step_key, field_path):
    """The label of the setting or column a catalog Problem is about (to drop it from the message: the path names it)."""
    try:
        settings = {s.key: s for s in catalog.settings_for(kind_key, step_key)}
        tables = {t.key: t for t in catalog.tables_for(kind_key, step_key)}
    except KeyError:
        return ""
    parts = field_path.split(".")
    if parts[0] in settings and len(parts) == 1:
        return settings[parts[0]].label
    if parts[0] in tables:
        if len(parts) == 1:
            return tables[parts[0]].label
        column = tables[parts[0]].column(parts[-1])
        return column.label if column is not None else ""
    return ""


def _plain(message, label):
    """A catalog message without the setting's label where the path already names it ("Skew time must be a whole
    number." at settings.configure.skew_seconds reads "must be a whole number")."""
    if message.startswith(("Unknown field", "Unknown column")):
        return "unknown field"
    if message.startswith("Unknown step"):
        return "unknown step"
    rest = message[len(label) + 1 :] if label and message.startswith(label + " ") else ""
    if rest.startswith(("must ", "is required", "has an unknown choice")):
        return rest.rstrip(".")
    return message


# ---------------------------------------------------------------------------------------------- reading a document

_TYPE_MESSAGES = {
    "text": "must be text",
    "int": "must be a whole number",
    "bool": "must be true or false",
    "texts": "must be a list of text",
    "list": "must be a list",
    "object": "must be an object",
}


def _type_ok(kind, value):
    if kind == "text":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "texts":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if kind == "list":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True  # "any": checked by the caller


def _spec(**fields):
    return fields


KEYSTORE_SPEC = _spec(
    alias=("text", ""), kind=("text", ""), certificate_pem=("text", ""), chain_pem=("text", ""), private_key=("object", None)
)
PRIVATE_KEY_SPEC = _spec(pkcs12_base64=("text", ""))
EMBEDDED_DIRECTORY_SPEC = _spec(name=("text", ""), kind=("text", "embedded"), description=("text", ""))


def _ldap_spec():
    spec = _spec(name=("text", ""), kind=("text", "ldap"), description=("text", ""), bind_password=("any", None))
    for name in LDAP_FIELDS:
        model_field = UserDirectory._meta.get_field(name)
        kind = {"PositiveIntegerField": "int", "BooleanField": "bool"}.get(model_field.get_internal_type(), "text")
        default = model_field.get_default()
        spec[name] = (kind, "" if default is None else default)
    return spec


TEMPLATE_SPEC = _spec(name=("text", ""), description=("text", ""), protection_levels=("bool", False), entries=("list", []))
TEMPLATE_ROW_SPEC = _spec(uri=("text", ""), grouped=("bool", False), max_level=("int", None))
ENTITY_SPEC = _spec(
    name=("text", ""),
    entity_id=("text", ""),
    location=("text", ""),
    entity_type=("text", ""),
    saml_token_type=("text", ""),
    description=("text", ""),
    base_url=("text", ""),
    name_id_formats=("texts", []),
    keys=("object", {}),
    endpoints=("list", []),
    attributes=("list", []),
    **{name: ("text", "") for name in WSFED_FIELDS},
)
KEYS_SPEC = _spec(**{name: ("text", "") for name in ENTITY_KEY_FIELDS})
ENDPOINT_SPEC = _spec(
    kind=("text", ""),
    binding=("text", ""),
    location=("text", ""),
    response_location=("text", ""),
    index=("int", None),
    is_default=("bool", False),
)
ATTRIBUTE_SPEC = _spec(
    name=("text", ""), name_format=("text", ""), namespace=("text", ""), value_type=("text", ""), value=("text", "")
)
PARTNERSHIP_SPEC = _spec(
    name=("text", ""),
    description=("text", ""),
    kind=("text", ""),
    local_entity=("text", ""),
    remote_entity=("text", ""),
    directories=("texts", []),
    settings=("object", {}),
    active=("bool", False),
)


@dataclass
class _KeyInfo:
    kind: str
    certificate: object  # x509.Certificate, or None when the file's certificate could not be read


@dataclass
class _EntityInfo:
    name: str
    location: str
    entity_type: str
    facts: catalog.EntityFacts | None  # None: the entity has problems of its own (reported at its path)


def _public_key_bytes(certificate):
    return certificate.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _detached_copy(instance):
    """An unsaved-looking copy of a stored row (same pk, no cached relations), for checks that change the object they
    check (validate_entity) while the original keeps showing the stored state."""
    model = type(instance)
    duplicate = model(**{f.attname: getattr(instance, f.attname) for f in model._meta.concrete_fields})
    duplicate._state.adding, duplicate._state.db = False, instance._state.db
    return duplicate


def _describe_certificate(certificate):
    facts = keystore.certificate_facts(certificate)
    issuer = "self-signed" if facts.issuer == facts.subject else f"issued by {facts.issuer}"
    return f"{facts.subject} ({issuer}), not after {facts.not_after:%Y-%m-%d}, SHA-256 {facts.fingerprint_sha256[:23]}…"


class _Planner:
    """Reads a document section by section, collecting every problem with its path and a Change per object.

    What the file defines is remembered (aliases, directories, templates, entities) so later sections may refer to it
    as well as to what the database holds."""

    def __init__(self, password):
        self.password = password
        self.problems = []
        self.changes = []
        self.cipher = None
        self.encryption_reported = False
        self.keys = {}  # alias → _KeyInfo
        self.directories = {}  # name → kind
        self.templates = {}  # lower-case name → name
        self.entities = {}  # lower-case name → _EntityInfo
        self._stored_entries = {}  # alias → KeystoreEntry or None (database lookups, once each)
        self._stored_directories = {}  # name → kind or None
        self._key_facts_cache = {}

    def problem(self, path, message):
        self.problems.append(ConfigProblem(path, message))

    # -- the document

    def read(self, document):
        if not isinstance(document, dict):
            self.problem("", f'The file must hold one object with "format": "{FORMAT}" and "version": {VERSION}.')
            return
        if document.get("format") != FORMAT:
            found = document.get("format")
            self.problem("format", f'must be "{FORMAT}"' + (" (it is missing)" if found is None else f" (not {_show(found)})"))
        version = document.get("version")
        if version is None:
            self.problem("version", f"is required (this installation reads version {VERSION})")
        elif not _type_ok("int", version):
            self.problem("version", "must be a whole number")
        elif version > VERSION:
            self.problem(
                "version", f"{version} is newer than this installation understands ({VERSION}); upgrade this installation first"
            )
        elif version < 1:
            self.problem("version", f"must be {VERSION}")
        if self.problems:
            return
        for key in document:
            if key not in HEADER and key not in SECTIONS:
                self.problem(str(key), "unknown field")
        sections = {}
        for name in SECTIONS:
            value = document.get(name)
            if value is not None and not isinstance(value, list):
                self.problem(name, "must be a list")
                value = None
            sections[name] = value or []
        self._read_encryption(document.get("encryption"))
        self._read_keystore(sections["keystore"])
        self._read_directories(sections["directories"])
        self._read_templates(sections["authn_context_templates"])
        self._read_entities(sections["entities"])
        self._read_partnerships(sections["partnerships"])

    def _fields(self, obj, path, spec, required=(), inapplicable=""):
        """The values of an object by `spec` ({field: (type, default)}), defaults for missing ones; problems for unknown
        fields, wrong types and empty required fields. None when `obj` is not an object."""
        if not isinstance(obj, dict):
            self.problem(path, "must be an object")
            return None
        for key in obj:
            if key not in spec:
                self.problem(_join(path, key), inapplicable or "unknown field")
        values = {}
        for name, (kind, default) in spec.items():
            value = obj.get(name)
            where = _join(path, name)
            if value is None:
                if name in required:
                    self.problem(where, "is required")
                values[name] = copy.deepcopy(default)
            elif not _type_ok(kind, value):
                self.problem(where, _TYPE_MESSAGES[kind])
                values[name] = copy.deepcopy(default)
            else:
                values[name] = value
                if name in required and kind == "text" and not value.strip():
                    self.problem(where, "is required")
        return values

    def _unique(self, seen, key, path, what, value):
        """False (and a problem) when another object of the section already has this name."""
        if key in seen:
            self.problem(path, f'duplicate {what} "{value}" (also {seen[key]})')
            return False
        seen[key] = path.rsplit(".", 1)[0]
        return True

    # -- secrets

    def _read_encryption(self, header):
        if header is None:
            return
        if not isinstance(header, dict):
            self.problem("encryption", "must be an object")
            self.encryption_reported = True
            return
        for key in header:
            if key not in ("cipher", "kdf", "n", "r", "p", "salt", "check"):
                self.problem(f"encryption.{key}", "unknown field")
        if not self.password:
            self.problem(
                "encryption",
                "this file holds encrypted secrets or private keys: give the password it was exported with (--password-file)",
            )
            self.encryption_reported = True
            return
        try:
            self.cipher = SecretCipher.from_header(header, self.password)
        except ValueError as exc:
            where, message = exc.args
            self.problem(_join("encryption", where) if where else "encryption", message)
            self.encryption_reported = True

    def _secret(self, value, path):
        """The clear text of a secret field (encrypted, or typed in clear by hand), or None when it is not given."""
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and set(value) == {"encrypted"} and isinstance(value["encrypted"], str):
            if self.cipher is None:
                if not self.encryption_reported:
                    self.problem(path, 'is encrypted, but the file has no "encryption" header')
                return None
            try:
                return self.cipher.open(value["encrypted"])
            except ValueError:
                self.problem(path, "does not decrypt with the file's password (the value was altered)")
                return None
        self.problem(path, 'must be text or {"encrypted": "…"}')
        return None

    # -- references

    def _stored_entry(self, alias):
        if alias not in self._stored_entries:
            self._stored_entries[alias] = KeystoreEntry.objects.filter(alias=alias).first()
        return self._stored_entries[alias]

    def _key_kind(self, alias):
        """The kind of the keystore entry with this alias in the file or the database; None when there is none."""
        if alias in self.keys:
            return self.keys[alias].kind
        entry = self._stored_entry(alias)
        return entry.kind if entry is not None else None

    def _key_reference(self, alias, path):
        """A KeystoreEntry for validation: the database's, or an unsaved stand-in for one the file creates."""
        if alias in self.keys:
            return KeystoreEntry(alias=alias, kind=self.keys[alias].kind)
        entry = self._stored_entry(alias)
        if entry is None:
            self.problem(path, f'there is no keystore entry "{alias}" in the file or the database')
        return entry

    def _directory_kind(self, name):
        if name in self.directories:
            return self.directories[name]
        if name not in self._stored_directories:
            self._stored_directories[name] = UserDirectory.objects.filter(name=name).values_list("kind", flat=True).first()
        return self._stored_directories[name]

    @staticmethod
    def _stored_by_name(queryset, items):
        """{lower-case name: object} of the objects the database has for the names a section lists (one query)."""
        names = sorted(
            {item["name"].strip().lower() for item in items if isinstance(item, dict) and isinstance(item.get("name"), str)}
        )
        found = {}
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            for obj in queryset.annotate(lower_name=Lower("name")).filter(lower_name__in=chunk):
                found[obj.lower_name] = obj
        return found

    # -- keystore

    def _read_keystore(self, items):
        seen, trusted_cas = {}, {}
        for index, raw in enumerate(items):
            path = f"keystore[{index}]"
            before = len(self.problems)
            values = self._fields(raw, path, KEYSTORE_SPEC, required=("alias", "kind", "certificate_pem"))
            if values is None:
                continue
            alias, kind = values["alias"].strip(), values["kind"]
            if alias:
                if len(alias) > ALIAS_MAX or not re.fullmatch(ALIAS_PATTERN, alias):
                    self.problem(f"{path}.alias", f"use only letters, digits, '.', '_' and '-' (at most {ALIAS_MAX} characters)")
                elif not self._unique(seen, alias.lower(), f"{path}.alias", "alias", alias):
                    continue
            if kind and kind not in KeystoreEntry.Kind.values:
                self.problem(f"{path}.kind", "must be key_pair, trusted_certificate or trusted_ca")
            certificate = self._certificate(values["certificate_pem"], f"{path}.certificate_pem")
            chain = []
            if values["chain_pem"].strip():
                if kind != KeystoreEntry.Kind.KEY_PAIR:
                    self.problem(f"{path}.chain_pem", "only key pairs carry a chain; leave it empty")
                else:
                    chain = self._chain(values["chain_pem"], f"{path}.chain_pem")
            private = None
            if values["private_key"] is not None:
                if kind != KeystoreEntry.Kind.KEY_PAIR:
                    self.problem(f"{path}.private_key", "only key pairs have a private key")
                else:
                    private = self._private_key(values["private_key"], f"{path}.private_key")
            if alias:
                self.keys[alias] = _KeyInfo(kind, certificate)
            if len(self.problems) > before or certificate is None or chain is None:
                continue
            if kind == KeystoreEntry.Kind.TRUSTED_CA:
                fingerprint = keystore.fingerprint_sha256(certificate)
                if fingerprint in trusted_cas:
                    self.problem(f"{path}.certificate_pem", f"the same CA certificate as {trusted_cas[fingerprint]}")
                    continue
                trusted_cas[fingerprint] = path
            if private is not None:
                bundle = private[0]
                if keystore.fingerprint_sha256(bundle.certificate) != keystore.fingerprint_sha256(certificate):
                    self.problem(f"{path}.private_key", "the PKCS#12 holds another certificate than certificate_pem")
                    continue
                if [keystore.fingerprint_sha256(c) for c in bundle.chain] != [keystore.fingerprint_sha256(c) for c in chain]:
                    self.problem(f"{path}.private_key", "the PKCS#12 holds another chain than chain_pem")
                    continue
            self._plan_keystore_entry(path, alias, kind, certificate, chain, private)

    def _certificate(self, pem, path):
        if not pem.strip():
            return None
        try:
            certificates = keystore.load_certificates(pem)
        except KeystoreError as exc:
            self.problem(path, exc.message)
            return None
        if len(certificates) != 1:
            self.problem(path, f"must hold exactly one certificate (it holds {len(certificates)})")
            return None
        return certificates[0]

    def _chain(self, pem, path):
        try:
            return keystore.load_certificates_pem(pem)
        except ValueError:
            self.problem(path, "must be PEM certificates (-----BEGIN CERTIFICATE----- …)")
            return None

    def _private_key(self, value, path):
        values = self._fields(value, path, PRIVATE_KEY_SPEC, required=("pkcs12_base64",))
        if values is None or not values["pkcs12_base64"]:
            return None
        if not self.password:
            if not self.encryption_reported:
                self.problem(path, "is a password-protected PKCS#12: give the password (--password-file)")
            return None
        if self.cipher is None and self.encryption_reported:
            return None  # the header already said the password is wrong
        try:
            data = base64.b64decode(values["pkcs12_base64"], validate=True)
        except binascii.Error:
            self.problem(f"{path}.pkcs12_base64", "is not base64")
            return None
        try:
            return keystore.load_key_pair(data, self.password), data
        except KeystoreError as exc:
            self.problem(path, exc.message)
            return None

    def _plan_keystore_entry(self, path, alias, kind, certificate, chain, private):
        existing = KeystoreEntry.objects.filter(alias__iexact=alias).first()
        fingerprint = keystore.fingerprint_sha256(certificate)
        if kind == KeystoreEntry.Kind.TRUSTED_CA:
            clash = (
                KeystoreEntry.objects.filter(kind=KeystoreEntry.Kind.TRUSTED_CA, fingerprint_sha256=fingerprint)
                .exclude(alias__iexact=alias)
                .first()
            )
            if clash is not None:
                self.problem(f"{path}.certificate_pem", f'this CA certificate is already trusted as "{clash.alias}"')
                return
        if existing is None:
            if kind == KeystoreEntry.Kind.KEY_PAIR and private is None:
                self.problem(
                    f"{path}.private_key",
                    f'the key pair "{alias}" is not in the database and the file does not carry its private key '
                    "(export with --include-private-keys)",
                )
                return
            write = self._entry_creator(alias, kind, certificate, private)
            self.changes.append(Change(path, "keystore entry", alias, "create", write=write))
            return
        if existing.alias != alias:
            self.problem(f"{path}.alias", f'the database spells this alias "{existing.alias}"; use the same letter case')
            return
        if existing.kind != kind:
            self.problem(
                f"{path}.kind",
                f'"{alias}" is a {existing.get_kind_display().lower()} in the database; the kind of an entry cannot '
                "change (use another alias)",
            )
            return
        fields, notes, new_key = [], [], None
        certificate_pem, chain_pem = keystore.certificate_to_pem(certificate), keystore.certificates_to_pem(chain)
        if kind == KeystoreEntry.Kind.KEY_PAIR and _public_key_bytes(certificate) != _public_key_bytes(existing.certificate()):
            if private is None:
                notes.append(
                    "the file's certificate is for another key and the file does not carry the private key: "
                    "the key pair in the database is kept as it is"
                )
                certificate_pem, chain_pem = existing.certificate_pem, existing.chain_pem
                self.keys[alias].certificate = existing.certificate()  # what partnerships will sign with
            else:
                new_key = private[0].private_key
                fields.append(FieldChange("private_key", "(set)", "(replaced)", secret=True))
        if certificate_pem != existing.certificate_pem:
            fields.append(
                FieldChange("certificate", _describe_certificate(existing.certificate()), _describe_certificate(certificate))
            )
        if chain_pem != (existing.chain_pem or ""):
            fields.append(FieldChange("chain_pem", f"{len(existing.chain())} certificate(s)", f"{len(chain)} certificate(s)"))
        write = self._entry_updater(existing.pk, certificate, chain, new_key) if fields else None
        self.changes.append(Change(path, "keystore entry", alias, "update" if fields else "unchanged", fields, notes, write))

    def _entry_creator(self, alias, kind, certificate, private):
        password = self.password

        def create():
            if kind == KeystoreEntry.Kind.KEY_PAIR:
                return keystore_services.import_key_pair(alias, private[1], password)
            pem = keystore.certificate_to_pem(certificate)
            if kind == KeystoreEntry.Kind.TRUSTED_CERTIFICATE:
                return keystore_services.import_trusted_certificate(alias, pem)
            return keystore_services.import_trusted_ca_chain(alias, pem)

        return create

    @staticmethod
    def _entry_updater(pk, certificate, chain, new_key):
        def update():
            # No keystore service replaces a certificate in place; the model's own rules and the audit log still apply.
            entry = KeystoreEntry.objects.get(pk=pk)
            if new_key is not None:
                entry.set_private_key(new_key)
            entry.apply_certificate(certificate, chain)
            entry.full_clean(validate_unique=False, validate_constraints=False)
            entry.save()
            return entry

        return update

    # -- directories

    def _read_directories(self, items):
        seen, embedded_at = {}, None
        ldap_spec = _ldap_spec()
        for index, raw in enumerate(items):
            path = f"directories[{index}]"
            if not isinstance(raw, dict):
                self.problem(path, "must be an object")
                continue
            kind = raw.get("kind", UserDirectory.Kind.LDAP)
            if kind not in UserDirectory.Kind.values:
                self.problem(f"{path}.kind", "must be ldap or embedded")
                continue
            embedded = kind == UserDirectory.Kind.EMBEDDED
            before = len(self.problems)
            values = self._fields(
                raw,
                path,
                EMBEDDED_DIRECTORY_SPEC if embedded else ldap_spec,
                required=("name",),
                inapplicable="the embedded directory has only a name and a description" if embedded else "",
            )
            name = values["name"].strip()
            if name and not self._unique(seen, name, f"{path}.name", "name", name):
                continue
            if embedded:
                if embedded_at:
                    self.problem(f"{path}.kind", f"there is only one embedded directory (also {embedded_at})")
                    continue
                embedded_at = path
            if name:
                self.directories[name] = kind
            password = None if embedded else self._secret(values["bind_password"], f"{path}.bind_password")
            ca_alias = "" if embedded else values["tls_ca_alias"].strip()
            if ca_alias and self._key_kind(ca_alias) is None:
                self.problem(f"{path}.tls_ca_alias", f'there is no keystore entry "{ca_alias}" in the file or the database')
            if len(self.problems) > before:
                continue
            self._plan_directory(path, kind, name, values, password)

    def _plan_directory(self, path, kind, name, values, password):
        embedded = kind == UserDirectory.Kind.EMBEDDED
        existing = (
            UserDirectory.objects.filter(kind=kind).first() if embedded else UserDirectory.objects.filter(name=name).first()
        )
        if existing is not None and existing.kind != kind:
            self.problem(f"{path}.kind", f'"{name}" is the embedded directory in the database; its kind cannot change')
            return
        target = UserDirectory.objects.get(pk=existing.pk) if existing else UserDirectory(kind=kind)
        target.name, target.description = name, values["description"].strip()
        if not embedded:
            for attribute in LDAP_FIELDS:
                value = values[attribute]
                setattr(target, attribute, value.strip() if isinstance(value, str) else value)
        try:
            target.full_clean(exclude=["bind_password"])
        except ValidationError as exc:
            for attribute, messages in exc.message_dict.items():
                for message in messages:
                    self.problem(path if attribute == "__all__" else f"{path}.{attribute}", message)
            return
        old_password = unseal_text(existing.bind_password) if existing is not None and existing.bind_password else ""
        if embedded:
            new_password = None
        elif not target.bind_dn:
            new_password = ""  # an anonymous bind keeps no password (as the console does)
        else:
            new_password = password  # None: keep the stored one
        fields = _diff(directory_data(existing), directory_data(target)) if existing is not None else []
        if new_password is not None and new_password != old_password:
            fields.append(
                FieldChange(
                    "bind_password", "(set)" if old_password else "(empty)", "(changed)" if new_password else "(empty)", True
                )
            )
        notes = []
        if not embedded and target.bind_dn and not (new_password or old_password):
            notes.append("no bind password in the file or the database: set it in the console (or export with --include-secrets)")
        action = "create" if existing is None else ("update" if fields else "unchanged")
        write = self._directory_writer(target, new_password) if action != "unchanged" else None
        self.changes.append(Change(path, "directory", name, action, fields, notes, write))

    @staticmethod
    def _directory_writer(target, new_password):
        def write():
            # Directories have no service module: the console's form saves the model the same way (audited).
            if new_password is not None:
                target.bind_password = seal_text(new_password)
            target.save()
            return target

        return write

    # -- authentication context templates

    def _read_templates(self, items):
        seen = {}
        for index, raw in enumerate(items):
            path = f"authn_context_templates[{index}]"
            before = len(self.problems)
            values = self._fields(raw, path, TEMPLATE_SPEC, required=("name",))
            if values is None:
                continue
            name = values["name"].strip()
            if name:
                if len(name) > TEMPLATE_NAME_MAX:
                    self.problem(f"{path}.name", f"has at most {TEMPLATE_NAME_MAX} characters")
                elif any(ord(ch) < 32 for ch in name):
                    self.problem(f"{path}.name", "cannot contain control characters")
                elif not self._unique(seen, name.lower(), f"{path}.name", "name", name):
                    continue
                self.templates[name.lower()] = name
            rows = self._rows(values["entries"], f"{path}.entries", TEMPLATE_ROW_SPEC, ("uri",))
            if len(self.problems) > before:
                continue
            entries, problems = authn_context.validate_entries(rows, values["protection_levels"])
            for problem in problems:
                where = f"{path}.entries"
                if problem.row is not None:
                    where += f"[{problem.row}]" + (f".{problem.field}" if problem.field else "")
                self.problem(where, problem.message)
            if problems:
                continue
            desired = {
                "name": name,
                "description": values["description"].strip(),
                "protection_levels": values["protection_levels"],
                "entries": [entry.as_data() for entry in entries],
            }
            existing = AuthnContextTemplate.objects.filter(name__iexact=name).first()
            fields = _diff(template_data(existing), desired) if existing is not None else []
            action = "create" if existing is None else ("update" if fields else "unchanged")
            write = self._template_writer(existing.pk if existing else None, desired) if action != "unchanged" else None
            self.changes.append(Change(path, "authentication context template", name, action, fields, [], write))

    def _rows(self, rows, path, spec, required):
        result = []
        for number, row in enumerate(rows):
            values = self._fields(row, f"{path}[{number}]", spec, required)
            if values is not None:
                result.append(values)
        return result

    @staticmethod
    def _template_writer(pk, desired):
        def write():
            options = {k: desired[k] for k in ("description", "protection_levels", "entries")}
            if pk is None:
                return create_template(desired["name"], **options)
            return update_template(AuthnContextTemplate.objects.get(pk=pk), name=desired["name"], **options)

        return write

    # -- entities

    def _read_entities(self, items):
        seen_names, seen_ids = {}, {}
        self._stored_entities = self._stored_by_name(
            Entity.objects.select_related(*ENTITY_KEY_FIELDS).prefetch_related("endpoints", "attributes"), items
        )
        for index, raw in enumerate(items):
            path = f"entities[{index}]"
            before = len(self.problems)
            values = self._fields(raw, path, ENTITY_SPEC, required=("name", "entity_id", "location", "entity_type"))
            if values is None:
                continue
            name, location, entity_type = values["name"].strip(), values["location"], values["entity_type"]
            if name and not self._unique(seen_names, name.lower(), f"{path}.name", "name", name):
                continue
            entity_id = values["entity_id"].strip()
            if location == Location.REMOTE and entity_id:
                self._unique(seen_ids, entity_id, f"{path}.entity_id", "remote entity ID", entity_id)
            if location and location not in Location.values:
                self.problem(f"{path}.location", "must be local or remote")
            if entity_type and entity_type not in EntityType.values:
                self.problem(f"{path}.entity_type", "must be one of " + ", ".join(EntityType.values))
            keys = self._fields(values["keys"], f"{path}.keys", KEYS_SPEC) or {}
            references = {}
            for key_field in ENTITY_KEY_FIELDS:
                alias = (keys.get(key_field) or "").strip()
                references[key_field] = self._key_reference(alias, f"{path}.keys.{key_field}") if alias else None
            endpoints = self._rows(values["endpoints"], f"{path}.endpoints", ENDPOINT_SPEC, ("kind", "binding", "location"))
            attributes = self._rows(values["attributes"], f"{path}.attributes", ATTRIBUTE_SPEC, ("name",))
            info = _EntityInfo(name, location, entity_type, None)
            if name:
                self.entities[name.lower()] = info
            if len(self.problems) > before:
                continue
            self._plan_entity(path, info, values, keys, references, endpoints, attributes)

    def _plan_entity(self, path, info, values, keys, references, endpoints, attributes):
        existing = self._stored_entities.get(info.name.lower())
        target = _detached_copy(existing) if existing is not None else Entity()
        plain = {
            name: values[name]
            for name in (
                "location",
                "entity_type",
                "saml_token_type",
                "entity_id",
                "name",
                "description",
                "base_url",
                "name_id_formats",
                *WSFED_FIELDS,
            )
        }
        try:
            endpoint_rows, attribute_rows = validate_entity(
                target, {**plain, **references}, endpoints, attributes, creating=existing is None
            )
        except EntityError as exc:
            self._entity_problems(path, exc)
            return
        info.facts = catalog.EntityFacts(
            entity_id=target.entity_id,
            name=target.name,
            base_url=target.base_url,
            name_id_formats=tuple(target.name_id_formats or ()),
            endpoints=tuple((row.kind, row.binding, row.location) for row in endpoint_rows),
            attributes=tuple(row.name for row in attribute_rows),
        )
        desired = entity_data(target, endpoint_rows, attribute_rows)
        fields = []
        if existing is not None:
            fields = _diff(entity_data(existing, existing.endpoints.all(), existing.attributes.all()), desired)
        action = "create" if existing is None else ("update" if fields else "unchanged")
        aliases = {name: (keys.get(name) or "").strip() or None for name in ENTITY_KEY_FIELDS}
        write = None
        if action != "unchanged":
            write = self._entity_writer(existing.pk if existing else None, {**plain, **aliases}, endpoints, attributes)
        self.changes.append(Change(path, "entity", info.name, action, fields, [], write))

    def _entity_problems(self, path, exc):
        for name, messages in exc.problems["entity"].items():
            where = path if name is None else (f"{path}.keys.{name}" if name in ENTITY_KEY_FIELDS else f"{path}.{name}")
            for message in messages:
                self.problem(where, message)
        for group in ("endpoints", "attributes"):
            for row, fields in sorted(exc.problems[group].items()):
                for name, messages in fields.items():
                    for message in messages:
                        self.problem(f"{path}.{group}[{row}].{name}", message)

    @staticmethod
    def _entity_writer(pk, values, endpoints, attributes):
        def write():
            if pk is None:
                return create_entity(values, endpoints, attributes)
            return update_entity(Entity.objects.get(pk=pk), values, endpoints, attributes)

        return write

    # -- partnerships

    def _read_partnerships(self, items):
        seen = {}
        stored = self._stored_by_name(
            Partnership.objects.select_related("local_entity", "remote_entity").prefetch_related("directory_links__directory"),
            items,
        )
        for index, raw in enumerate(items):
            path = f"partnerships[{index}]"
            before = len(self.problems)
            values = self._fields(raw, path, PARTNERSHIP_SPEC, required=("name", "kind", "local_entity"))
            if values is None:
                continue
            name, kind = values["name"].strip(), values["kind"]
            if name:
                message = catalog.validate_name(name)
                if message:
                    self.problem(f"{path}.name", message)
                elif not self._unique(seen, name.lower(), f"{path}.name", "name", name):
                    continue
            info = catalog.KINDS.get(kind)
            if kind and info is None:
                self.problem(f"{path}.kind", "must be one of " + ", ".join(catalog.KINDS))
            local = self._partnership_entity(values["local_entity"].strip(), f"{path}.local_entity", info, Location.LOCAL)
            remote_name = values["remote_entity"].strip()
            remote = (
                self._partnership_entity(remote_name, f"{path}.remote_entity", info, Location.REMOTE) if remote_name else None
            )
            self._check_directory_list(values["directories"], f"{path}.directories")
            existing = stored.get(name.lower()) if name else None
            if info is None:
                continue
            if existing is not None:
                self._check_identity(path, existing, kind, local, remote)
            passwords, settings = self._passwords(kind, values["settings"], f"{path}.settings")
            normalized, shape = catalog.normalize(kind, settings)
            for problem in shape:
                self.problem(
                    _settings_path(path, problem), _plain(problem.message, _catalog_label(kind, problem.step, problem.field))
                )
            for where, setting_type, value in setting_references(kind, normalized):
                self._check_reference(f"{path}.settings.{where}", setting_type, value)
            if len(self.problems) > before:
                continue
            self._plan_partnership(path, existing, values, name, kind, local, remote, normalized, passwords)

    def _partnership_entity(self, name, path, info, location):
        if not name:
            return None
        entity = self.entities.get(name.lower())
        if entity is None:
            row = Entity.objects.filter(name__iexact=name).first()
            if row is None:
                self.problem(path, f'there is no entity "{name}" in the file or the database')
                return None
            facts = partnership_services.facts_for_validation(partnership_services.entity_facts(row))
            entity = _EntityInfo(row.name, row.location, row.entity_type, facts)
        if info is None or entity.entity_type not in EntityType.values or entity.location not in Location.values:
            return entity
        wanted_type = info.local_entity_type if location == Location.LOCAL else info.remote_entity_type
        if entity.location != location or entity.entity_type != wanted_type:
            self.problem(
                path,
                f'entity "{entity.name}" is a {entity.location} {EntityType(entity.entity_type).label}; '
                f"a {info.label} partnership needs a {location} {EntityType(wanted_type).label}",
            )
        return entity

    def _check_directory_list(self, names, path):
        seen = set()
        for number, name in enumerate(names):
            if name in seen:
                self.problem(f"{path}[{number}]", f'"{name}" is listed twice')
            elif self._directory_kind(name) is None:
                self.problem(f"{path}[{number}]", f'there is no directory "{name}" in the file or the database')
            seen.add(name)

    def _check_identity(self, path, existing, kind, local, remote):
        if existing.kind != kind:
            self.problem(
                f"{path}.kind",
                f'partnership "{existing.name}" is a {existing.kind_info.label} partnership in the database; '
                "its type cannot change (create a new partnership)",
            )
        if local is not None and existing.local_entity.name.lower() != local.name.lower():
            self.problem(
                f"{path}.local_entity",
                f'partnership "{existing.name}" uses the local entity "{existing.local_entity.name}" in the database; '
                "the entities of a partnership cannot be swapped",
            )
        if existing.remote_entity_id and (remote is None or existing.remote_entity.name.lower() != remote.name.lower()):
            self.problem(
                f"{path}.remote_entity",
                f'partnership "{existing.name}" uses the remote entity "{existing.remote_entity.name}" in the database; '
                "the entities of a partnership cannot be swapped",
            )

    def _passwords(self, kind, settings, path):
        """({(step, key): clear text}, the settings without the password values), reading encrypted values."""
        if not isinstance(settings, dict):
            return {}, settings
        settings = copy.deepcopy(settings)
        passwords = {}
        for step, key in password_settings(kind):
            values = settings.get(step)
            if isinstance(values, dict) and key in values:
                clear = self._secret(values.pop(key), f"{path}.{step}.{key}")
                if clear:
                    passwords[(step, key)] = clear
        return passwords, settings

    def _check_reference(self, path, setting_type, value):
        if setting_type in ("key_pair", "certificate"):
            if self._key_kind(value) is None:
                self.problem(path, f'there is no keystore entry "{value}" in the file or the database')
        elif setting_type == "authn_template":
            in_file = self.templates.get(value.lower())
            if in_file is not None and in_file != value:
                self.problem(path, f'the file names this template "{in_file}"; use the same letter case')
            elif in_file is None and not AuthnContextTemplate.objects.filter(name=value).exists():
                self.problem(path, f'there is no authentication context template "{value}" in the file or the database')
        elif setting_type == "directory" and self._directory_kind(value) is None:
            self.problem(path, f'there is no directory "{value}" in the file or the database')

    def _plan_partnership(self, path, existing, values, name, kind, local, remote, normalized, passwords):
        desired = {
            "name": name,
            "description": values["description"].strip(),
            "kind": kind,
            "local_entity": local.name,
            "remote_entity": remote.name if remote is not None else None,
            "directories": list(values["directories"]),
            "settings": _without_passwords(kind, copy.deepcopy(normalized)),
            "active": values["active"],
        }
        fields = _diff(partnership_data(existing), desired) if existing is not None else []
        stored = partnership_services.read_secrets(existing) if existing is not None else {}
        for (step, key), clear in sorted(passwords.items()):
            old = stored.get(f"{step}.{key}", "")
            if clear != old:
                fields.append(FieldChange(f"settings.{step}.{key}", "(set)" if old else "(empty)", "(changed)", True))
        config_changed = any(change.field != "active" for change in fields)

        # What activation would say, so a document that cannot be active is refused before anything is written.
        checked = copy.deepcopy(normalized)
        for step, key in password_settings(kind):
            if (step, key) in passwords or stored.get(f"{step}.{key}"):
                checked[step][key] = "set"
        notes = []
        blocking = []
        if remote is None:
            blocking.append((f"{path}.remote_entity", "an active partnership needs its remote entity"))
        elif local.facts is not None and remote.facts is not None:
            context = self._validation_context(kind, existing, local, remote, values["directories"], checked)
            for problem in catalog.validate(checked, context):
                if problem.blocking:
                    label = _catalog_label(kind, problem.step, problem.field)
                    blocking.append((_settings_path(path, problem) if problem.step else path, _plain(problem.message, label)))
        if values["active"]:
            for where, message in blocking:
                self.problem(where, f"{message} (this stops activation, and the file says active: true)")
            if blocking:
                return
        elif blocking:
            where, message = blocking[0]
            more = f" and {len(blocking) - 1} more" if len(blocking) > 1 else ""
            notes.append(f"it will be Incomplete: {where}: {message}{more}")

        action = "create" if existing is None else ("update" if fields else "unchanged")
        write = None
        if action != "unchanged":
            write = self._partnership_writer(
                existing.pk if existing is not None else None, desired, normalized, passwords, config_changed or existing is None
            )
        self.changes.append(Change(path, "partnership", name, action, fields, notes, write))

    def _validation_context(self, kind, existing, local, remote, directory_names, settings):
        stored = (existing.entity_data or {}) if existing is not None else {}
        local_facts = partnership_services.facts_for_validation(stored.get("local")) if stored.get("local") else local.facts
        remote_facts = remote.facts
        if existing is not None and existing.remote_entity_id and stored.get("remote"):
            remote_facts = partnership_services.facts_for_validation(stored["remote"])
        keys = {}
        for _, _, alias in setting_references(kind, settings, ("key_pair", "certificate")):
            facts = self._key_facts(alias)
            if facts is not None:
                keys[alias] = facts
        templates = {value for _, _, value in setting_references(kind, settings, ("authn_template",))}
        return catalog.ValidationContext(
            kind=catalog.kind(kind),
            local=local_facts,
            remote=remote_facts,
            directories=tuple((name, self._directory_kind(name)) for name in directory_names),
            keys=keys,
            authn_templates=frozenset(templates),  # every name was checked to exist above
            session_store_enabled=partnership_services.session_store_enabled(),
        )

    def _key_facts(self, alias):
        if alias not in self._key_facts_cache:
            self._key_facts_cache[alias] = self._read_key_facts(alias)
        return self._key_facts_cache[alias]

    def _read_key_facts(self, alias):
        if alias in self.keys and self.keys[alias].certificate is not None:
            facts = keystore.certificate_facts(self.keys[alias].certificate)
            kind, algorithm, bits, not_after = self.keys[alias].kind, facts.key_type, facts.key_size, facts.not_after
        else:
            entry = self._stored_entry(alias)
            if entry is None:
                return None
            kind, algorithm, bits, not_after = entry.kind, entry.key_type, entry.key_size, entry.not_after
        return catalog.KeyFacts(
            alias=alias, kind=kind, algorithm=(algorithm or "").upper(), bits=bits, expired=not_after <= timezone.now()
        )

    @staticmethod
    def _partnership_writer(pk, desired, normalized, passwords, config_changed):
        def write():
            partnership = Partnership.objects.get(pk=pk) if pk is not None else None
            want_active = desired["active"]
            if partnership is not None and partnership.is_active and (config_changed or not want_active):
                partnership = partnership_services.deactivate(partnership)
            if partnership is None or config_changed:
                settings = copy.deepcopy(normalized)
                for (step, key), clear in passwords.items():
                    settings[step][key] = clear
                remote = desired["remote_entity"]
                partnership = partnership_services.save_partnership(
                    partnership,
                    kind=desired["kind"],
                    name=desired["name"],
                    local_entity=Entity.objects.get(name__iexact=desired["local_entity"]),
                    remote_entity=Entity.objects.get(name__iexact=remote) if remote else None,
                    description=desired["description"],
                    directories=desired["directories"],
                    settings=settings,
                )
            if want_active and not partnership.is_active:
                partnership_services.activate(partnership)
            return partnership

        return write
