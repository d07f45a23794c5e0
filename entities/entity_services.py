"""Entity actions shared by the console, the CLI and (later) metadata import.

`create_entity`, `update_entity` and `delete_entity` check everything before they write (the rules
and messages are in entities.models: each model's clean() and `check_entity`), then write the
entity with its endpoint and attribute rows in one transaction. Every row is `Audited`, so the
audit log gets one event per created, changed or deleted row, with a field-level diff.

Problems are raised as one `EntityError` holding every message at the field it belongs to:
entity fields, and (row, field) of the endpoint and attribute rows.

A metadata bulk import writes thousands of new entities: `check_new_entities` runs exactly the
checks of `create_entity` on a batch without writing (the rules' database lookups answered for the
whole batch by a few queries, not a few per entity), and `create_entities` writes a batch of checked
entities with a few INSERT statements (`bulk_create`) and no audit event per row (the import records
one summary).

Values are plain data, so the CLI and metadata import can call these without forms:

    create_entity(
        {"location": "remote", "entity_type": "saml2_sp", "entity_id": "sp1", "name": "sp1",
         "verification_certificate": "sp1-signing"},          # an alias, a KeystoreEntry or None
        endpoints=[{"kind": "acs", "binding": Binding.HTTP_POST, "index": 0, "is_default": True,
                    "location": "https://sp1.example.com/affwebservices/public/saml2assertionconsumer"}],
    )
"""

import logging
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError, RestrictedError

from entities import references
from entities.models import (
    KEY_FIELDS,
    Endpoint,
    Entity,
    EntityAttribute,
    KeystoreEntry,
    Location,
    PrefetchedLookups,
    check_entity,
)

log = logging.getLogger("entities.entities")

# Entity fields callers may set (location, type and token type only when creating).
ENTITY_FIELDS = (
    "location",
    "entity_type",
    "saml_token_type",
    "entity_id",
    "name",
    "description",
    "base_url",
    "signing_key",
    "next_signing_key",
    "decryption_key",
    "verification_certificate",
    "encryption_certificate",
    "name_id_formats",
    "wsfed_specific_id",
    "wsfed_signout_confirm_url",
    "wsfed_service_url",
    "wsfed_signout_url",
    "wsfed_signout_cleanup_url",
)
FIXED_AFTER_CREATE = ("location", "entity_type", "saml_token_type")
ENDPOINT_FIELDS = ("kind", "binding", "location", "response_location", "index", "is_default")
ATTRIBUTE_FIELDS = ("name", "name_format", "namespace", "value_type", "value")


class EntityError(Exception):
    """Problems an administrator can fix, in plain words, each at its place.

    `problems` = {"entity": {field or None: [messages]}, "endpoints": {row: {field: [messages]}},
    "attributes": {row: {field: [messages]}}}; rows count from 0 in the order given."""

    def __init__(self, problems):
        if isinstance(problems, str):
            problems = {"entity": {None: [problems]}}
        self.problems = {
            "entity": {(None if field == "__all__" else field): list(msgs) for field, msgs in problems.get("entity", {}).items()},
            "endpoints": problems.get("endpoints", {}),
            "attributes": problems.get("attributes", {}),
        }
        super().__init__(self.message)

    def messages(self):
        """Every problem as one line: 'entity name: …', 'endpoint row 2, location URL: …'."""
        lines = []
        for field, msgs in self.problems["entity"].items():
            lines += [f"{_label(Entity, field)}: {msg}" if field else msg for msg in msgs]
        for group, model, noun in (("endpoints", Endpoint, "endpoint"), ("attributes", EntityAttribute, "attribute")):
            for row, fields in sorted(self.problems[group].items()):
                for field, msgs in fields.items():
                    lines += [f"{noun} row {row + 1}, {_label(model, field)}: {msg}" for msg in msgs]
        return lines

    @property
    def message(self):
        lines = self.messages()
        return lines[0] if lines else "The entity is not valid."

    def __str__(self):
        return "; ".join(self.messages())


def _label(model, field):
    if not field:
        return ""
    try:
        return str(model._meta.get_field(field).verbose_name)
    except Exception:
        return field.replace("_", " ")


def _empty():
    return {"entity": {}, "endpoints": {}, "attributes": {}}


def _has_problems(problems):
    return any(problems[group] for group in problems)


def _merge(into, more):
    for field, msgs in more["entity"].items():
        into["entity"].setdefault(field, []).extend(msgs)
    for group in ("endpoints", "attributes"):
        for row, fields in more[group].items():
            for field, msgs in fields.items():
                into[group].setdefault(row, {}).setdefault(field, []).extend(msgs)


# ---------------------------------------------------------------- building unsaved objects


def _resolve_key(value):
    """A KeystoreEntry from an alias, an entry or None; (entry, problem)."""
    if value in (None, ""):
        return None, None
    if isinstance(value, KeystoreEntry):
        return value, None
    entry = KeystoreEntry.objects.filter(alias=str(value).strip()).first()
    if entry is None:
        return None, f"No keystore entry has the alias '{value}'."
    return entry, None


def _apply_values(entity, values, problems, creating):
    unknown = sorted(set(values) - set(ENTITY_FIELDS))
    if unknown:
        raise TypeError(f"Unknown entity fields: {', '.join(unknown)}")
    for field, value in values.items():
        if not creating and field in FIXED_AFTER_CREATE and value != getattr(entity, field):
            problems["entity"].setdefault(field, []).append(
                "The location, type and SAML token type of an entity cannot be changed; create a new entity instead."
            )
            continue
        if field in KEY_FIELDS:
            value, problem = _resolve_key(value)
            if problem:
                problems["entity"].setdefault(field, []).append(problem)
                continue
        elif field == "name_id_formats":
            value = list(value or [])
        elif value is None:
            value = ""
        setattr(entity, field, value)


def _index(value, row, problems):
    if value in (None, ""):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        number = -1
    if number < 0:
        problems["endpoints"].setdefault(row, {}).setdefault("index", []).append("The index is a whole number: 0, 1, 2, …")
        return None
    return number


def _rows(model, fields, rows, group, problems):
    built = []
    for row, values in enumerate(rows or ()):
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise TypeError(f"Unknown {group} fields: {', '.join(unknown)}")
        data = {field: values.get(field) for field in fields if field in values}
        for field in fields:
            if field != "index" and data.get(field) is None and field in data:
                data[field] = False if field == "is_default" else ""
        if "index" in data:
            data["index"] = _index(data["index"], row, problems)
        built.append(model(**data))
    return built


def validate_entity(entity, values, endpoints=None, attributes=None, creating=True, lookups=None):
    """Apply `values` to `entity` (unsaved changes) and build the rows; return (endpoints, attributes)
    or raise EntityError. Nothing is written. None for endpoints/attributes keeps the saved rows.
    `lookups` (entities.models.RuleLookups) answers the rules' database questions; None: a query each."""
    problems = _empty()
    _apply_values(entity, values, problems, creating)
    endpoint_rows = _rows(Endpoint, ENDPOINT_FIELDS, endpoints, "endpoints", problems) if endpoints is not None else None
    attribute_rows = (
        _rows(EntityAttribute, ATTRIBUTE_FIELDS, attributes, "attributes", problems) if attributes is not None else None
    )
    if problems["entity"].get("location") or problems["entity"].get("entity_type"):
        raise EntityError(problems)
    checked_endpoints = endpoint_rows if endpoint_rows is not None else list(_saved(entity, "endpoints"))
    checked_attributes = attribute_rows if attribute_rows is not None else list(_saved(entity, "attributes"))
    found = check_entity(entity, checked_endpoints, checked_attributes, lookups)
    # A row whose value could not be read (a bad index) is not checked again for the same field.
    for group in ("endpoints", "attributes"):
        for row, fields in problems[group].items():
            for field in fields:
                found[group].get(row, {}).pop(field, None)
    _merge(problems, found)
    if _has_problems(problems):
        raise EntityError(problems)
    return endpoint_rows, attribute_rows


def _saved(entity, relation):
    if entity.pk is None:
        return []
    return getattr(entity, relation).all()


# ---------------------------------------------------------------- create, update, delete


@dataclass
class CheckedEntity:
    """A new entity that passed every check of create_entity, with its rows; nothing written yet."""

    entity: Entity
    endpoints: list
    attributes: list


def check_new_entity(values, endpoints=(), attributes=(), lookups=None):
    """Every check `create_entity` makes, without writing; returns a CheckedEntity or raises EntityError."""
    entity = Entity()
    endpoint_rows, attribute_rows = validate_entity(entity, dict(values), list(endpoints), list(attributes), lookups=lookups)
    return CheckedEntity(entity, endpoint_rows, attribute_rows)


def check_new_entities(items):
    """`check_new_entity` for a batch of (values, endpoints, attributes): the same rules and messages,
    with the rules' database questions (names and remote entity IDs in use, keystore entries that
    exist) answered for the whole batch by a few queries. Returns a CheckedEntity or an EntityError
    per item, in order. Names are not checked against each other within the batch (as
    check_new_entity does not): the caller gives distinct ones, and the unique constraints refuse a
    clash at write time."""
    items = [(dict(values), list(endpoints or ()), list(attributes or ())) for values, endpoints, attributes in items]
    lookups = PrefetchedLookups(
        names=[str(values.get("name") or "").strip() for values, _endpoints, _attributes in items],
        entity_ids=[str(values.get("entity_id") or "").strip() for values, _endpoints, _attributes in items],
        keystore_ids=[
            values[field].pk
            for values, _endpoints, _attributes in items
            for field in KEY_FIELDS
            if isinstance(values.get(field), KeystoreEntry)
        ],
    )
    checked = []
    for values, endpoints, attributes in items:
        try:
            checked.append(check_new_entity(values, endpoints, attributes, lookups=lookups))
        except EntityError as error:
            checked.append(error)
    return checked


def create_entity(values, endpoints=(), attributes=()):
    """A new entity with its endpoint and attribute rows; returns the saved Entity."""
    checked = check_new_entity(values, endpoints, attributes)
    entity = checked.entity
    with transaction.atomic():
        _save_entity(entity)
        for endpoint in _numbered_rows(checked.endpoints, entity):
            endpoint.save()
        for attribute in _numbered_rows(checked.attributes, entity):
            attribute.save()
    log.info(
        "entity '%s' created (%s, entity ID %s)",
        entity.name,
        entity.type_label,
        entity.entity_id,
        extra={"checkpoint": "ENTITY_CREATE"},
    )
    return entity


def create_entities(checked):
    """Write CheckedEntity items (a metadata bulk import's batch) with a few INSERT statements per table;
    returns the saved Entities. Runs in the caller's transaction.

    Unlike create_entity it records no audit event per row and logs no line per entity: the caller
    records one summary. A name or remote entity ID taken by someone else since the check makes the
    database's unique constraints raise IntegrityError; the caller then rolls the batch back and
    writes it with create_entity, one entity at a time, which reports the conflict in plain words."""
    entities = [item.entity for item in checked]
    Entity.objects.bulk_create(entities)
    endpoints, attributes = [], []
    for item in checked:
        endpoints += _numbered_rows(item.endpoints, item.entity)
        attributes += _numbered_rows(item.attributes, item.entity)
    _insert_rows(Endpoint, endpoints)
    _insert_rows(EntityAttribute, attributes)
    return entities


# Column types whose Python values (str, int, bool, None) both database drivers take as they are.
_PLAIN_COLUMNS = frozenset({"CharField", "TextField", "BooleanField", "PositiveIntegerField", "IntegerField", "ForeignKey"})


def _insert_rows(model, rows):
    """INSERT `rows` (unsaved, checked instances of `model`) without Django's per-value preparation:
    COPY on PostgreSQL, one executemany on SQLite; bulk_create elsewhere. A bulk import writes tens
    of thousands of endpoint rows, and bulk_create's per-value work was most of its write time.
    Only for models whose columns all hold plain values (checked here); the rows' primary keys are
    not read back."""
    if not rows:
        return
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    if connection.vendor not in ("postgresql", "sqlite") or any(
        field.get_internal_type() not in _PLAIN_COLUMNS for field in fields
    ):
        model.objects.bulk_create(rows)
        return
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    values = [tuple(getattr(row, field.attname) for field in fields) for row in rows]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Django does not wrap COPY: its errors become django.db errors here, as bulk_create's would.
            with connection.wrap_database_errors, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for value in values:
                    copy.write_row(value)
        else:
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})", values)


def _numbered_rows(rows, entity):
    """The rows, tied to `entity` (saved by now) at table positions 0, 1, …"""
    for position, row in enumerate(rows):
        row.entity, row.position = entity, position
    return rows


def update_entity(entity, values, endpoints=None, attributes=None):
    """Change an entity; `endpoints` / `attributes` (lists of dicts) replace its rows, None keeps them.

    Rows are updated in place where they line up (endpoints by position, attributes by name), so
    the audit log shows what changed rather than a delete and a create for every row."""
    # A fresh copy: a refused update leaves the caller's object as it was.
    entity = Entity.objects.get(pk=_get(entity).pk)
    endpoint_rows, attribute_rows = validate_entity(
        entity,
        dict(values),
        None if endpoints is None else list(endpoints),
        None if attributes is None else list(attributes),
        creating=False,
    )
    with transaction.atomic():
        _save_entity(entity)
        if endpoint_rows is not None:
            _replace_endpoints(entity, endpoint_rows)
        if attribute_rows is not None:
            _replace_attributes(entity, attribute_rows)
    log.info("entity '%s' updated", entity.name, extra={"checkpoint": "ENTITY_UPDATE"})
    return entity


def delete_entity(entity):
    """Delete an entity with its rows; refused (EntityError naming the users) while anything references it."""
    entity = _get(entity)
    name = entity.name
    try:
        with transaction.atomic():
            entity.delete()
    except (ProtectedError, RestrictedError) as error:
        users = references.describe_all(references.blocking_objects(error), entity)
        raise EntityError(
            f"The entity '{name}' cannot be deleted: it is used by {users}. Remove or change those first."
        ) from None
    log.info("entity '%s' deleted", name, extra={"checkpoint": "ENTITY_DELETE"})


def deletion_blockers(entity):
    """Plain descriptions of what stops `entity` from being deleted now ([] when nothing does)."""
    return [references.describe(obj, entity) for obj in references.blocking_references(entity)]


def _get(entity):
    if isinstance(entity, Entity):
        return entity
    found = Entity.objects.filter(pk=entity).first() if str(entity).isdigit() else None
    found = found or Entity.objects.filter(name__iexact=str(entity)).first()
    if found is None:
        raise EntityError({"entity": {"name": [f"No entity is named '{entity}'."]}})
    return found


def _save_entity(entity):
    """Save; a concurrent insert of the same name or remote entity ID becomes the same plain error."""
    try:
        with transaction.atomic():
            entity.save()
    except IntegrityError:
        problems = _empty()
        others = Entity.objects.exclude(pk=entity.pk)
        if others.named(entity.name).exists():
            problems["entity"]["name"] = [f"The entity name '{entity.name}' is already used by another entity."]
        if entity.location == Location.REMOTE and others.filter(location=Location.REMOTE, entity_id=entity.entity_id).exists():
            problems["entity"]["entity_id"] = ["Another remote entity already has this entity ID."]
        if not _has_problems(problems):
            raise
        raise EntityError(problems) from None


def _replace_endpoints(entity, new_rows):
    existing = list(entity.endpoints.order_by("position", "id"))
    for gone in existing[len(new_rows) :]:
        gone.delete()
    kept = existing[: len(new_rows)]
    # Clear indexes and defaults first (without audit: the saves below record old → new), so
    # moving a default or an index between rows never meets the unique constraints half-way.
    Endpoint.objects.filter(pk__in=[row.pk for row in kept]).update(index=None, is_default=False)
    for position, new in enumerate(new_rows):
        row = kept[position] if position < len(kept) else Endpoint(entity=entity)
        for field in ENDPOINT_FIELDS:
            setattr(row, field, getattr(new, field))
        row.entity, row.position = entity, position
        row.save()


def _replace_attributes(entity, new_rows):
    existing = {row.name: row for row in entity.attributes.all()}
    wanted = {row.name for row in new_rows}
    for name, row in existing.items():
        if name not in wanted:
            row.delete()
    for position, new in enumerate(new_rows):
        row = existing.get(new.name) or EntityAttribute(entity=entity)
        for field in ATTRIBUTE_FIELDS:
            setattr(row, field, getattr(new, field))
        row.entity, row.position = entity, position
        row.save()
