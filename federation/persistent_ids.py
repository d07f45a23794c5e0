"""Persistent NameIDs this site makes up for its users (SAML 2.0 AllowCreate, reference ch01-08 F7.4).

When an SP's AuthnRequest says AllowCreate, the partnership allows creation and the user has no value for the Name
ID attribute, the IdP gives the user an opaque identifier for that SP and keeps it: the same user gets the same value
from then on, at that SP only (a different SP gets a different value, so SPs cannot correlate users).

Stored in `PersistentIdentifier`, unique per (local entity, SP, user) and per (local entity, SP, value). Creation is
race-safe across processes and nodes: two first logins at once both try to insert, the unique constraint lets one
win, and the other reads the winner's value.
"""

import secrets

from django.db import IntegrityError, transaction

VALUE_BYTES = 20  # 160 random bits, like message IDs


def new_value():
    return secrets.token_urlsafe(VALUE_BYTES)


def find(local_entity_id, remote_entity_id, user_key):
    """The stored identifier of the user at that SP, or None."""
    from federation.models import PersistentIdentifier

    return (
        PersistentIdentifier.objects.filter(local_entity_id=local_entity_id, remote_entity_id=remote_entity_id, user_key=user_key)
        .values_list("value", flat=True)
        .first()
    )


def get_or_create(local_entity_id, remote_entity_id, user_key):
    """(value, created): the user's identifier at that SP, made now when there is none."""
    from federation.models import PersistentIdentifier

    existing = find(local_entity_id, remote_entity_id, user_key)
    if existing is not None:
        return existing, False
    for _attempt in range(3):
        try:
            # A savepoint, so a lost race does not break the caller's transaction on PostgreSQL.
            with transaction.atomic():
                row = PersistentIdentifier.objects.create(
                    local_entity_id=local_entity_id, remote_entity_id=remote_entity_id, user_key=user_key, value=new_value()
                )
            return row.value, True
        except IntegrityError:
            existing = find(local_entity_id, remote_entity_id, user_key)
            if existing is not None:
                return existing, False
            # Otherwise the random value collided (never in practice): draw again.
    raise RuntimeError("could not store a persistent identifier after three attempts")
