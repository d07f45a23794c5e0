"""Partnership actions shared by the console wizard, the CLI and config import (docs/partnerships.md).

Everything checks before it writes and raises one `PartnershipError` holding every `catalog.Problem`, so a
caller can show each message at its field. Writes happen in one transaction; the models are `Audited`, and the
lifecycle transitions add an audit event of their own.

Lifecycle (reference ch01-08 F6.6):

    Incomplete ──edit until valid──▶ Defined ──activate──▶ Active ──deactivate──▶ Inactive ──activate──▶ Active

* The state after a save is computed: Incomplete while `catalog.validate` reports a blocking problem, otherwise
  Defined (or Inactive for a partnership that was active before).
* Activate validates again (the keys, templates and directories named may have changed meanwhile) and freezes an
  immutable `PartnershipSnapshot` the runtime reads. Deactivate only unflags the snapshot.
* An Active partnership cannot be changed or deleted; its entities can never be swapped.
"""

import hashlib
import json
import logging

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from entities.models import Entity, KeystoreEntry, Location
from federation import audit
from federation.models import UserDirectory
from federation.secretbox import seal_text, unseal_text
from partnerships import catalog
from partnerships.catalog import Problem
from partnerships.models import (
    AuthnContextTemplate,
    Partnership,
    PartnershipDirectory,
    PartnershipReference,
    PartnershipSnapshot,
    PartnershipState,
)

log = logging.getLogger("partnerships")

NAME_MAX = Partnership._meta.get_field("name").max_length
KEY_REFERENCE_TYPES = ("key_pair", "certificate")
ENTITY_KEY_FIELDS = ("signing_key", "next_signing_key", "decryption_key", "verification_certificate", "encryption_certificate")


class PartnershipError(Exception):
    """Every problem found, each with its step and field (catalog.Problem)."""

    def __init__(self, problems):
        self.problems = [p if isinstance(p, Problem) else Problem("", "", str(p)) for p in problems]
        super().__init__("; ".join(p.message for p in self.problems))

    def messages(self):
        return [p.message for p in self.problems]

    def for_field(self, step, field):
        return [p.message for p in self.problems if p.step == step and p.field == field]


def _refuse(message, step="", field=""):
    raise PartnershipError([Problem(step, field, message)])


# -- entity facts: what a partnership copies from its entities


def entity_facts(entity):
    """The entity data a partnership keeps its own copy of (JSON-ready)."""
    if entity is None:
        return None
    return {
        "entity_id": entity.entity_id,
        "name": entity.name,
        "entity_type": entity.entity_type,
        "location": entity.location,
        "base_url": entity.base_url,
        "saml_token_type": entity.saml_token_type,
        "name_id_formats": list(entity.name_id_formats or []),
        "endpoints": [
            {
                "kind": e.kind,
                "binding": e.binding,
                "location": e.location,
                "response_location": e.response_location,
                "index": e.index,
                "is_default": e.is_default,
            }
            for e in entity.endpoints.all()
        ],
        "attributes": [
            {
                "name": a.name,
                "name_format": a.name_format,
                "namespace": a.namespace,
                "value_type": a.value_type,
                "value": a.value,
            }
            for a in entity.attributes.all()
        ],
        "keys": {name: _alias(getattr(entity, f"{name}_id"), entity, name) for name in ENTITY_KEY_FIELDS},
        "wsfed": {
            "specific_id": entity.wsfed_specific_id,
            "signout_confirm_url": entity.wsfed_signout_confirm_url,
            "service_url": entity.wsfed_service_url,
            "signout_url": entity.wsfed_signout_url,
            "signout_cleanup_url": entity.wsfed_signout_cleanup_url,
        },
    }


def _alias(pk, entity, name):
    return getattr(entity, name).alias if pk else ""


def facts_for_validation(data):
    if not data:
        return None
    return catalog.EntityFacts(
        entity_id=data["entity_id"],
        name=data["name"],
        base_url=data.get("base_url", ""),
        name_id_formats=tuple(data.get("name_id_formats", ())),
        endpoints=tuple((e["kind"], e["binding"], e["location"]) for e in data.get("endpoints", ())) + _wsfed_endpoints(data),
        attributes=tuple(a["name"] for a in data.get("attributes", ())),
    )


def _wsfed_endpoints(data):
    """WS-Fed entities keep their service URLs in fields, not endpoint rows; the catalogue sees them as endpoints
    without a binding (an RP's token consumer is its "acs", an IP's service its "sso", sign-out URLs are "slo")."""
    wsfed = data.get("wsfed") or {}
    if data.get("entity_type") == "wsfed_rp":
        pairs = (("acs", wsfed.get("service_url")), ("slo", wsfed.get("signout_cleanup_url")))
    elif data.get("entity_type") == "wsfed_ip":
        pairs = (("sso", wsfed.get("service_url")), ("slo", wsfed.get("signout_url")))
    else:
        return ()
    return tuple((kind, "", url) for kind, url in pairs if url)


def entity_changes(partnership):
    """[(side, field, old, new)] where the entity now differs from the partnership's copy ([] = up to date)."""
    changes = []
    fresh = {e.pk: e for e in Entity.objects.filter(pk__in=[partnership.local_entity_id, partnership.remote_entity_id])}
    for side, pk in (("local", partnership.local_entity_id), ("remote", partnership.remote_entity_id)):
        entity = fresh.get(pk)
        stored = (partnership.entity_data or {}).get(side)
        current = entity_facts(entity)
        if stored == current:
            continue
        for key in sorted(set(stored or {}) | set(current or {})):
            old, new = (stored or {}).get(key), (current or {}).get(key)
            if old != new:
                changes.append((side, key, old, new))
    return changes


def with_update_flag(queryset):
    """Annotate `entity_updated` (an entity changed after the partnership copied it) without a query per row."""
    from django.db.models import BooleanField, Case, Value, When
    from django.db.models.functions import Coalesce, Greatest

    def changed(prefix):
        stamp = Greatest(f"{prefix}__updated_at", Coalesce(f"{prefix}__metadata_updated_at", f"{prefix}__updated_at"))
        return Q(**{f"{prefix}__isnull": False}) & (Q(entity_data_at__isnull=True) | Q(entity_data_at__lt=stamp))

    return queryset.annotate(
        entity_updated=Case(
            When(changed("local_entity") | changed("remote_entity"), then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
    )


# -- secrets


def _secret_keys(kind_key):
    keys = []
    for step in catalog.steps_for(kind_key):
        keys += [f"{step.key}.{s.key}" for s in catalog.settings_for(kind_key, step.key) if s.type == "password"]
    return keys


def read_secrets(partnership):
    return json.loads(unseal_text(partnership.secrets)) if partnership.secrets else {}


def _split_secrets(kind_key, settings, previous):
    """Move password values out of the settings into the sealed secrets; an empty password keeps the old one."""
    secrets = dict(previous)
    for dotted in _secret_keys(kind_key):
        step, key = dotted.split(".", 1)
        value = (settings.get(step) or {}).get(key)
        if value:
            secrets[dotted] = value
        if step in settings and key in settings[step]:
            settings[step][key] = "set" if secrets.get(dotted) else ""
    return settings, secrets


# -- validation


def _key_facts(aliases):
    facts = {}
    now = timezone.now()
    for entry in KeystoreEntry.objects.filter(alias__in=aliases):
        kind = "key_pair" if entry.kind == KeystoreEntry.Kind.KEY_PAIR else entry.kind
        facts[entry.alias] = catalog.KeyFacts(
            alias=entry.alias,
            kind=kind,
            algorithm=(entry.key_type or "").upper(),
            bits=entry.key_size,
            expired=entry.not_after <= now,
        )
    return facts


def setting_references(kind_key, settings, types):
    """[(path below "settings", catalog type, value)] of the settings and table cells of the given catalog types
    that hold a value (keystore aliases, template names, directory names)."""
    found = []
    for step in catalog.steps_for(kind_key):
        values = settings.get(step.key) or {}
        for setting in catalog.settings_for(kind_key, step.key):
            if setting.type in types and values.get(setting.key):
                found.append((f"{step.key}.{setting.key}", setting.type, values[setting.key]))
        for table in catalog.tables_for(kind_key, step.key):
            for number, row in enumerate(values.get(table.key) or []):
                for column in catalog.columns_for(kind_key, table):
                    if column.type in types and isinstance(row, dict) and row.get(column.key):
                        found.append((f"{step.key}.{table.key}[{number}].{column.key}", column.type, row[column.key]))
    return found


def validation_context(kind_key, entity_data, directories, settings):
    aliases = {value for _, _, value in setting_references(kind_key, settings, KEY_REFERENCE_TYPES)}
    templates = {value for _, _, value in setting_references(kind_key, settings, ("authn_template",))}
    return catalog.ValidationContext(
        kind=catalog.kind(kind_key),
        local=facts_for_validation(entity_data.get("local")),
        remote=facts_for_validation(entity_data.get("remote")),
        directories=tuple((d.name, d.kind) for d in directories),
        keys=_key_facts(aliases),
        authn_templates=frozenset(AuthnContextTemplate.objects.filter(name__in=templates).values_list("name", flat=True)),
        session_store_enabled=session_store_enabled(),
    )


def session_store_enabled():
    from django.conf import settings as django_settings

    return getattr(django_settings, "FEDERATION_SESSION_STORE", True)


def _check_identity(partnership, name, kind_key, local_entity, remote_entity):
    problems = []
    name = (name or "").strip()
    message = catalog.validate_name(name)
    if message:
        problems.append(Problem("configure", "name", message))
    elif len(name) > NAME_MAX:
        problems.append(Problem("configure", "name", f"The name is {len(name)} characters long; at most {NAME_MAX} are allowed."))
    else:
        clash = Partnership.objects.filter(name__iexact=name)
        if partnership.pk:
            clash = clash.exclude(pk=partnership.pk)
        if clash.exists():
            problems.append(
                Problem("configure", "name", f"A partnership named “{clash.first().name}” already exists; choose another name.")
            )
    try:
        info = catalog.kind(kind_key)
    except KeyError as error:
        return name, problems + [Problem("configure", "kind", str(error.args[0]))]
    if local_entity is None:
        problems.append(Problem("configure", "local_entity", "Choose the local entity."))
    elif local_entity.location != Location.LOCAL or local_entity.entity_type != info.local_entity_type:
        problems.append(
            Problem(
                "configure",
                "local_entity",
                f"Entity “{local_entity.name}” is a {local_entity.get_location_display().lower()} {_type_label(local_entity.entity_type)}; "
                f"a {info.label} partnership needs a local {_type_label(info.local_entity_type)}.",
            )
        )
    if remote_entity is not None and (
        remote_entity.location != Location.REMOTE or remote_entity.entity_type != info.remote_entity_type
    ):
        problems.append(
            Problem(
                "configure",
                "remote_entity",
                f"Entity “{remote_entity.name}” is a {remote_entity.get_location_display().lower()} {_type_label(remote_entity.entity_type)}; "
                f"a {info.label} partnership needs a remote {_type_label(info.remote_entity_type)}.",
            )
        )
    if partnership.pk:
        if partnership.kind != kind_key:
            problems.append(
                Problem("configure", "kind", "The type of a partnership cannot be changed; create a new partnership.")
            )
        if local_entity is not None and local_entity.pk != partnership.local_entity_id:
            problems.append(
                Problem("configure", "local_entity", "The entities of a partnership cannot be swapped; create a new partnership.")
            )
        if partnership.remote_entity_id and (remote_entity is None or remote_entity.pk != partnership.remote_entity_id):
            problems.append(
                Problem(
                    "configure", "remote_entity", "The entities of a partnership cannot be swapped; create a new partnership."
                )
            )
    return name, problems


def _type_label(entity_type):
    from entities.models import EntityType

    return EntityType(entity_type).label


def _directories(names):
    found = {d.name: d for d in UserDirectory.objects.filter(name__in=list(names))}
    missing = [n for n in names if n not in found]
    if missing:
        raise PartnershipError(
            [Problem("configure", "directories", f"There is no directory named “{name}”.") for name in missing]
        )
    if len(set(names)) != len(names):
        _refuse("Each directory can be chosen once.", "configure", "directories")
    return [found[n] for n in names]


def computed_state(partnership, blocking):
    if blocking:
        return PartnershipState.INCOMPLETE
    if partnership.pk and (partnership.state == PartnershipState.INACTIVE or partnership.snapshots.exists()):
        return PartnershipState.INACTIVE
    return PartnershipState.DEFINED


# -- create / update / delete


def save_partnership(
    partnership=None,
    *,
    kind,
    name,
    local_entity,
    remote_entity=None,
    description="",
    directories=(),
    settings=None,
    refresh_entity_data=False,
):
    """Create (partnership=None) or update a partnership from plain values.

    `settings` is the whole {step: {key: value, table: [rows]}} (missing keys take the catalog defaults);
    password settings left empty keep their stored value. Returns the saved partnership. The result may be
    Incomplete: that is a state, not an error; only shape errors (unknown keys, wrong types, bad name, wrong
    entity types) refuse the save.
    """
    partnership = partnership or Partnership()
    if _is_active(partnership):
        _refuse(
            f"Partnership “{partnership.name}” is active. Deactivate it before you change it (Deactivate and edit).",
        )
    name, problems = _check_identity(partnership, name, kind, local_entity, remote_entity)
    if problems:
        raise PartnershipError(problems)
    normalized, shape_problems = catalog.normalize(kind, settings or {})
    if shape_problems:
        raise PartnershipError(shape_problems)
    directory_rows = _directories(list(directories))
    normalized, secrets = _split_secrets(kind, normalized, read_secrets(partnership) if partnership.pk else {})

    entity_data = dict(partnership.entity_data or {})
    entity_data_at = partnership.entity_data_at
    newly_set_remote = remote_entity is not None and partnership.remote_entity_id is None
    if not partnership.pk or refresh_entity_data or newly_set_remote:
        # Fresh rows: the caller's objects may predate an entity edit or a metadata refresh.
        local_entity, remote_entity = (
            Entity.objects.get(pk=e.pk) if e is not None else None for e in (local_entity, remote_entity)
        )
        entity_data = {"local": entity_facts(local_entity), "remote": entity_facts(remote_entity)}
        entity_data_at = timezone.now()

    context = validation_context(kind, entity_data, directory_rows, normalized)
    found = _remote_missing(remote_entity) + catalog.validate(normalized, context)
    blocking = [p for p in found if p.blocking]

    partnership.name = name
    partnership.description = (description or "").strip()
    partnership.kind = kind
    partnership.local_entity = local_entity
    partnership.remote_entity = remote_entity
    partnership.settings = normalized
    partnership.secrets = seal_text(json.dumps(secrets, sort_keys=True)) if secrets else ""
    partnership.entity_data = entity_data
    partnership.entity_data_at = entity_data_at
    partnership.problems = [_problem_data(p) for p in found]
    partnership.state = computed_state(partnership, blocking)
    try:
        with transaction.atomic():
            partnership.save()
            _sync_directories(partnership, directory_rows)
            _sync_references(partnership)
    except IntegrityError:
        if Partnership.objects.filter(name__iexact=name).exclude(pk=partnership.pk).exists():
            _refuse(f"A partnership named “{name}” already exists; choose another name.", "configure", "name")
        raise
    return partnership


def _problem_data(problem):
    return {"step": problem.step, "field": problem.field, "message": problem.message, "blocking": problem.blocking}


def stored_problems(partnership):
    return [Problem(p["step"], p["field"], p["message"], p.get("blocking", True)) for p in partnership.problems or []]


def _sync_directories(partnership, directories):
    current = list(partnership.directory_links.values_list("directory_id", flat=True))
    if current == [d.pk for d in directories]:
        return
    partnership.directory_links.all().delete()
    PartnershipDirectory.objects.bulk_create(
        PartnershipDirectory(partnership=partnership, directory=d, position=i) for i, d in enumerate(directories)
    )


def _sync_references(partnership):
    wanted = []
    keys = setting_references(partnership.kind, partnership.settings, KEY_REFERENCE_TYPES)
    entries = {e.alias: e for e in KeystoreEntry.objects.filter(alias__in={v for _, _, v in keys})}
    wanted += [(setting, entries[alias], None) for setting, _, alias in keys if alias in entries]
    templates = setting_references(partnership.kind, partnership.settings, ("authn_template",))
    by_name = {t.name: t for t in AuthnContextTemplate.objects.filter(name__in={v for _, _, v in templates})}
    wanted += [(setting, None, by_name[name]) for setting, _, name in templates if name in by_name]
    have = {(r.setting, r.keystore_entry_id, r.authn_template_id) for r in partnership.references.all()}
    want = {(s, e.pk if e else None, t.pk if t else None) for s, e, t in wanted}
    if have == want:
        return
    partnership.references.all().delete()
    PartnershipReference.objects.bulk_create(
        PartnershipReference(partnership=partnership, setting=s, keystore_entry=e, authn_template=t) for s, e, t in wanted
    )


def directory_names(partnership):
    return [link.directory.name for link in partnership.directory_links.select_related("directory")]


def _is_active(partnership):
    """Asked of the database: the caller's object may predate an activation."""
    return bool(partnership.pk) and Partnership.objects.filter(pk=partnership.pk, state=PartnershipState.ACTIVE).exists()


def delete_partnership(partnership):
    if _is_active(partnership):
        _refuse(f"Partnership “{partnership.name}” is active. Deactivate it before deleting it.")
    name = partnership.name
    with transaction.atomic():
        partnership.delete()
    log.info("partnership deleted", extra={"partnership": name})


def get_updates(partnership):
    """Copy the entities' current data into the partnership (confirmed by the administrator first).

    Returns the changes applied. The state is recomputed (new endpoints may complete or break it)."""
    if _is_active(partnership):
        _refuse(f"Partnership “{partnership.name}” is active. Deactivate it before you get entity updates.")
    changes = entity_changes(partnership)
    save_partnership(
        partnership,
        kind=partnership.kind,
        name=partnership.name,
        local_entity=partnership.local_entity,
        remote_entity=partnership.remote_entity,
        description=partnership.description,
        directories=directory_names(partnership),
        settings=partnership.settings,
        refresh_entity_data=True,
    )
    audit.record(
        "get updates",
        partnership,
        changes={f"{side} entity {field}": [old, new] for side, field, old, new in changes},
        summary=f"Copied {len(changes)} entity change(s) into the partnership",
    )
    return changes


# -- lifecycle


def _remote_missing(remote_entity):
    if remote_entity is None:
        return [Problem("configure", "remote_entity", "Choose the remote entity (it was put off).")]
    return []


def activation_problems(partnership):
    """Every problem that stops activation, revalidated now (keys may have expired, templates may be gone)."""
    problems = _remote_missing(partnership.remote_entity)
    context = validation_context(
        partnership.kind,
        partnership.entity_data or {},
        [link.directory for link in partnership.directory_links.select_related("directory")],
        partnership.settings,
    )
    problems += [p for p in catalog.validate(partnership.settings, context) if p.blocking]
    return problems


def activate(partnership):
    with transaction.atomic():
        partnership = Partnership.objects.select_for_update().get(pk=partnership.pk)
        if partnership.state not in (PartnershipState.DEFINED, PartnershipState.INACTIVE):
            _refuse(
                f"Partnership “{partnership.name}” is {partnership.get_state_display().lower()}; only a Defined or "
                "Inactive partnership can be activated."
                + (" Edit it until every step is complete." if partnership.state == PartnershipState.INCOMPLETE else "")
            )
        problems = activation_problems(partnership)
        if not problems:
            snapshot = _freeze(partnership)
    if problems:
        Partnership.objects.filter(pk=partnership.pk).update(
            problems=[_problem_data(p) for p in problems], state=PartnershipState.INCOMPLETE
        )
        raise PartnershipError(problems)
    return snapshot


def _freeze(partnership):
    """Store the snapshot and make it current (inside activate's transaction, with the row locked)."""
    data = snapshot_data(partnership)
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":"))
    version = (partnership.snapshots.order_by("-version").values_list("version", flat=True).first() or 0) + 1
    partnership.snapshots.filter(current=True).update(current=False)
    snapshot = PartnershipSnapshot.objects.create(
        partnership=partnership,
        version=version,
        kind=partnership.kind,
        local_entity_id=partnership.local_entity.entity_id,
        remote_entity_id=partnership.remote_entity.entity_id,
        data=data,
        secrets=partnership.secrets,
        digest=hashlib.sha256(encoded.encode()).hexdigest(),
        current=True,
        created_by=audit.current_actor(),
    )
    partnership.state = PartnershipState.ACTIVE
    partnership.activated_at = timezone.now()
    partnership.problems = []
    partnership.save(update_fields=["state", "activated_at", "problems", "updated_at"])
    audit.record("activate", partnership, summary=f"Activated snapshot v{version} (sha256 {snapshot.digest[:16]}…)")
    transaction.on_commit(lambda: _snapshot_changed(partnership))
    return snapshot


def deactivate(partnership):
    with transaction.atomic():
        partnership = Partnership.objects.select_for_update().get(pk=partnership.pk)
        if partnership.state != PartnershipState.ACTIVE:
            _refuse(
                f"Partnership “{partnership.name}” is {partnership.get_state_display().lower()}; only an Active "
                "partnership can be deactivated."
            )
        partnership.snapshots.filter(current=True).update(current=False)
        partnership.state = PartnershipState.INACTIVE
        partnership.save(update_fields=["state", "updated_at"])
        audit.record("deactivate", partnership, summary="Deactivated; the runtime no longer serves it")
        transaction.on_commit(lambda: _snapshot_changed(partnership))
    return partnership


def snapshot_data(partnership):
    """Everything the runtime needs, resolved: entity facts, settings, directories, certificates (PEM)."""
    certificates = {}
    for _, _, alias in setting_references(partnership.kind, partnership.settings, KEY_REFERENCE_TYPES):
        entry = KeystoreEntry.objects.filter(alias=alias).first()
        if entry is not None:
            certificates[alias] = {
                "kind": entry.kind,
                "certificate_pem": entry.certificate_pem,
                "fingerprint_sha256": entry.fingerprint_sha256,
            }
    return {
        "format": 1,
        "name": partnership.name,
        "kind": partnership.kind,
        "local": partnership.entity_data.get("local"),
        "remote": partnership.entity_data.get("remote"),
        "directories": directory_names(partnership),
        "settings": partnership.settings,
        "certificates": certificates,
    }


def _snapshot_changed(partnership):
    """Runtime caches key on the snapshot; drop what was cached for this partnership."""
    from django.core.cache import cache

    cache.delete(f"partnership-snapshot:{partnership.pk}")


# -- lists


def partnership_queryset(state="", kind="", entity="", search=""):
    queryset = Partnership.objects.select_related("local_entity", "remote_entity")
    if state:
        queryset = queryset.filter(state=state)
    if kind:
        queryset = queryset.filter(kind=kind)
    if entity:
        queryset = queryset.filter(Q(local_entity__name=entity) | Q(remote_entity__name=entity))
    if search:
        queryset = queryset.filter(
            Q(name__icontains=search)
            | Q(description__icontains=search)
            | Q(local_entity__entity_id__icontains=search)
            | Q(remote_entity__entity_id__icontains=search)
        )
    return queryset.order_by("name")


def entity_partnership_names(entity):
    return list(
        Partnership.objects.filter(Q(local_entity=entity) | Q(remote_entity=entity))
        .order_by("name")
        .values_list("name", flat=True)
    )


def find_partnership(name):
    partnership = Partnership.objects.filter(name__iexact=name).first()
    if partnership is None:
        _refuse(f"There is no partnership named “{name}”.")
    return partnership


def entity_by_name(name, location=None):
    if not name:
        return None
    queryset = Entity.objects.filter(name__iexact=name)
    if location:
        queryset = queryset.filter(location=location)
    entity = queryset.first()
    if entity is None:
        _refuse(f"There is no {location + ' ' if location else ''}entity named “{name}”.")
    return entity
