"""What keeps an object from being deleted, in plain words.

Entities reference keystore entries, and partnerships will reference entities, with
on_delete=PROTECT (or RESTRICT): the database refuses to delete what is still in use. These
helpers name the users ("entity 'idp1' (signing key)") so an administrator knows what to change
first, both on the confirmation page (before trying) and in the refusal (after trying).
"""

from django.db import DEFAULT_DB_ALIAS, router
from django.db.models import ProtectedError, RestrictedError
from django.db.models.deletion import Collector


def describe(obj, target=None):
    """'entity 'idp1' (signing key)': the object, and which of its fields point at `target`."""
    text = f"{obj._meta.verbose_name} '{obj}'"
    if target is not None:
        fields = [
            str(field.verbose_name)
            for field in obj._meta.concrete_fields
            if field.is_relation and field.related_model is type(target) and getattr(obj, field.attname) == target.pk
        ]
        if fields:
            text += f" ({', '.join(fields)})"
    return text


def describe_all(objects, target=None, limit=10):
    """A sentence-ready list of up to `limit` objects, then 'and N more'."""
    objects = sorted(objects, key=lambda obj: (obj._meta.verbose_name, str(obj)))
    names = [describe(obj, target) for obj in objects[:limit]]
    if len(objects) > limit:
        names.append(f"{len(objects) - limit} more")
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def blocking_objects(error):
    """The objects named by a ProtectedError or RestrictedError."""
    if isinstance(error, ProtectedError):
        return list(error.protected_objects)
    if isinstance(error, RestrictedError):
        return list(error.restricted_objects)
    return []


def blocking_references(obj):
    """The objects that would stop `obj` from being deleted now ([] when it can be deleted).

    Runs Django's deletion collector without deleting anything."""
    using = router.db_for_write(type(obj), instance=obj) or DEFAULT_DB_ALIAS
    collector = Collector(using=using, origin=obj)
    try:
        collector.collect([obj])
    except (ProtectedError, RestrictedError) as error:
        return blocking_objects(error)
    return []
