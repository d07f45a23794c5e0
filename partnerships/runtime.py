"""How the runtime finds the partnership it serves: the current activated snapshot, never the editable settings.

One small indexed query per lookup says which snapshot is current (so a deactivation on any web node takes effect
on the next request everywhere); the snapshot's data is then taken from a per-process cache keyed by the snapshot's
primary key. That cache can never be stale, because snapshot rows are immutable: activating again writes a new row, and
primary keys are never reused (PostgreSQL sequences; Django's SQLite primary keys are AUTOINCREMENT). Tests that
roll a database back reuse keys, so they call `load_snapshot.cache_clear()`.
"""

import json
from dataclasses import dataclass
from functools import lru_cache

from django.db import connection

from federation.secretbox import unseal_text
from partnerships.models import PartnershipSnapshot


@dataclass(frozen=True)
class ActivePartnership:
    snapshot_id: int
    partnership_id: int
    version: int
    name: str
    kind: str
    local: dict
    remote: dict
    directories: tuple
    settings: dict
    certificates: dict

    def setting(self, step, key, default=None):
        return (self.settings.get(step) or {}).get(key, default)


class NoActivePartnership(LookupError):
    """No active partnership of this kind with that partner (or with that local entity)."""


def find_active(kind, remote_entity_id, local_entity_id=None):
    found = _current_snapshot_ids(kind, remote_entity_id, local_entity_id)
    if not found:
        raise NoActivePartnership(f"There is no active {kind} partnership with '{remote_entity_id}'.")
    if len(found) > 1:
        raise NoActivePartnership(
            f"Several active {kind} partnerships have the partner '{remote_entity_id}'; the request must name the local entity."
        )
    return load_snapshot(found[0])


@lru_cache(maxsize=2)
def _current_snapshot_sql(with_local):
    """The runtime lookup written once (it runs on every sign-on; building it with the ORM cost more than running it).
    It uses the index `snapshot_runtime_lookup` on (kind, remote_entity_id, current)."""
    quote = connection.ops.quote_name
    table = quote(PartnershipSnapshot._meta.db_table)
    sql = f"SELECT {quote('id')} FROM {table} WHERE {quote('kind')} = %s AND {quote('remote_entity_id')} = %s AND {quote('current')} = %s"
    if with_local:
        sql += f" AND {quote('local_entity_id')} = %s"
    return sql + " LIMIT 2"


def _current_snapshot_ids(kind, remote_entity_id, local_entity_id):
    params = [kind, remote_entity_id, True]
    if local_entity_id is not None:
        params.append(local_entity_id)
    with connection.cursor() as cursor:
        cursor.execute(_current_snapshot_sql(local_entity_id is not None), params)
        return [row[0] for row in cursor.fetchall()]


@lru_cache(maxsize=4096)
def load_snapshot(snapshot_id):
    row = PartnershipSnapshot.objects.only("pk", "partnership_id", "version", "kind", "data").get(pk=snapshot_id)
    data = row.data
    return ActivePartnership(
        snapshot_id=row.pk,
        partnership_id=row.partnership_id,
        version=row.version,
        name=data["name"],
        kind=row.kind,
        local=data["local"],
        remote=data["remote"],
        directories=tuple(data["directories"]),
        settings=data["settings"],
        certificates=data["certificates"],
    )


def snapshot_secrets(snapshot_id):
    """The password settings frozen with the snapshot ({"step.key": value}); read only when needed, never cached."""
    sealed = PartnershipSnapshot.objects.filter(pk=snapshot_id).values_list("secrets", flat=True).first()
    return json.loads(unseal_text(sealed)) if sealed else {}
