"""Audit log of configuration changes.

Models that inherit `Audited` are recorded automatically on create, update and delete, with a
field-level before/after diff. Secret columns (any SealedTextField, and names listed in the
model's `audit_secret_fields`) are masked: the log says that they changed, never what they hold.
The actor comes from the request (AuditActorMiddleware) or from `acting_as()` in CLI commands and
tasks; anything else is recorded as 'system'.
"""

import contextvars
from contextlib import contextmanager

from django.db.models.signals import post_delete, post_init, post_save
from django.dispatch import receiver

from federation.tracing import current_transaction_id

MASK = "••••••"
_actor = contextvars.ContextVar("audit_actor", default="system")


class Audited:
    """Mixin for models whose changes are configuration changes."""

    audit_secret_fields = ()
    audit_ignore_fields = ()


@contextmanager
def acting_as(actor):
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor():
    return _actor.get()


class AuditActorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            with acting_as(user.get_username()):
                return self.get_response(request)
        return self.get_response(request)


def _is_secret(instance, field):
    from federation.secretbox import SealedTextField

    return isinstance(field, SealedTextField) or field.name in instance.audit_secret_fields


def _snapshot(instance):
    values = {}
    for field in instance._meta.concrete_fields:
        if field.name in instance.audit_ignore_fields or field.attname not in instance.__dict__:
            continue
        raw = instance.__dict__[field.attname]
        if _is_secret(instance, field):
            values[field.name] = ("set" if raw else "empty", raw)
        else:
            values[field.name] = field.value_to_string(instance)
    return values


def _public(instance, snapshot):
    """The snapshot with secrets replaced by the mask."""
    return {
        name: (MASK if isinstance(value, tuple) and value[0] == "set" else ("" if isinstance(value, tuple) else value))
        for name, value in snapshot.items()
    }


def record(action, instance=None, *, object_type="", object_repr="", changes=None, summary=""):
    """Write one audit event. Also used directly for actions that are not a model save (exports, rekey)."""
    from federation.models import AuditEvent

    if instance is not None:
        object_type = object_type or instance._meta.label
        object_repr = object_repr or str(instance)[:255]
    return AuditEvent.objects.create(
        actor=current_actor()[:150],
        action=action,
        object_type=object_type,
        object_id=str(getattr(instance, "pk", "") or "")[:64],
        object_repr=object_repr[:255],
        changes=changes or {},
        summary=summary[:255],
        transaction_id=current_transaction_id() if current_transaction_id() != "-" else "",
    )


@receiver(post_init)
def _remember_loaded_state(sender, instance, **kwargs):
    if isinstance(instance, Audited):
        instance._audit_before = _snapshot(instance) if instance.pk else None


@receiver(post_save)
def _record_save(sender, instance, created, raw=False, **kwargs):
    if not isinstance(instance, Audited) or raw:
        return
    after = _snapshot(instance)
    before = None if created else getattr(instance, "_audit_before", None)
    if before is None:
        record("create", instance, changes={k: [None, v] for k, v in _public(instance, after).items() if v not in ("", None)})
    else:
        public_before, public_after = _public(instance, before), _public(instance, after)
        changed = {}
        for name, value in after.items():
            if before.get(name) == value:
                continue
            if isinstance(value, tuple):
                changed[name] = [public_before.get(name), "(changed)" if value[0] == "set" else ""]
            else:
                changed[name] = [public_before.get(name), public_after[name]]
        if changed:
            record("update", instance, changes=changed)
    instance._audit_before = after


@receiver(post_delete)
def _record_delete(sender, instance, **kwargs):
    if isinstance(instance, Audited):
        record(
            "delete",
            instance,
            changes={k: [v, None] for k, v in _public(instance, _snapshot(instance)).items() if v not in ("", None)},
        )
