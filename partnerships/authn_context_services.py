"""Authentication context template actions shared by the console and (later) the CLI and config import.

`create_template`, `update_template` and `delete_template` check everything before they write and raise one
`AuthnContextTemplateError` holding every problem at the field (``name``, ``description``) or the row and column
(``uri``, ``grouped``, ``max_level``) it belongs to. The model is `Audited`, so each write is in the audit log.

Values are plain data:

    create_template("Corporate", entries=[{"uri": AC_X509}, {"uri": AC_PASSWORD, "max_level": 5}],
                    protection_levels=True)
"""

import logging

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, RestrictedError

from partnerships import authn_context
from partnerships.authn_context import Problem
from partnerships.models import AuthnContextTemplate

log = logging.getLogger("partnerships.authn_context")

NAME_MAX = AuthnContextTemplate._meta.get_field("name").max_length


class AuthnContextTemplateError(Exception):
    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(p.message for p in self.problems))

    def for_field(self, name):
        return [p.message for p in self.problems if p.row is None and p.field == name]


def _check(template, name, description, protection_levels, entries):
    problems = []
    name = (name or "").strip()
    if not name:
        problems.append(Problem("Enter a name for the template.", field="name"))
    elif len(name) > NAME_MAX:
        problems.append(Problem(f"The name is {len(name)} characters long; at most {NAME_MAX} are allowed.", field="name"))
    elif any(ord(ch) < 32 for ch in name):
        problems.append(Problem("The name cannot contain control characters.", field="name"))
    else:
        clash = AuthnContextTemplate.objects.filter(name__iexact=name)
        if template is not None and template.pk:
            clash = clash.exclude(pk=template.pk)
        if clash.exists():
            problems.append(
                Problem(f"A template named “{clash.first().name}” already exists; choose another name.", field="name")
            )
    rows, row_problems = authn_context.validate_entries(entries, bool(protection_levels))
    problems.extend(row_problems)
    if problems:
        raise AuthnContextTemplateError(problems)
    return name, (description or "").strip(), bool(protection_levels), [row.as_data() for row in rows]


def _save(template):
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError:
        raise AuthnContextTemplateError(
            [Problem(f"A template named “{template.name}” already exists; choose another name.", field="name")]
        ) from None
    return template


def create_template(name, *, description="", protection_levels=False, entries=()):
    name, description, protection_levels, rows = _check(None, name, description, protection_levels, list(entries))
    template = _save(AuthnContextTemplate(name=name, description=description, protection_levels=protection_levels, entries=rows))
    log.info("created authentication context template %s with %d URIs", template.name, len(rows))
    return template


def update_template(template, *, name, description="", protection_levels=False, entries=()):
    name, description, protection_levels, rows = _check(template, name, description, protection_levels, list(entries))
    template.name, template.description, template.protection_levels, template.entries = (
        name,
        description,
        protection_levels,
        rows,
    )
    _save(template)
    log.info("updated authentication context template %s", template.name)
    return template


def deletion_blockers(template):
    """What refuses the delete: every object that references the template through a PROTECT/RESTRICT key.

    Partnerships will point at templates with ``on_delete=PROTECT``; this finds them without naming the model,
    so nothing here changes when they arrive."""
    from django.db.models import PROTECT, RESTRICT

    blockers = []
    for relation in template._meta.related_objects:
        if relation.on_delete not in (PROTECT, RESTRICT):
            continue
        manager = relation.related_model._default_manager
        for obj in manager.filter(**{relation.field.name: template})[:20]:
            blockers.append(f"{relation.related_model._meta.verbose_name} “{obj}”")
    return blockers


def delete_template(template):
    blockers = deletion_blockers(template)
    if blockers:
        raise AuthnContextTemplateError(
            [Problem(f"The template “{template.name}” is used by {', '.join(blockers)}; choose another template there first.")]
        )
    name = template.name
    try:
        with transaction.atomic():
            template.delete()
    except (ProtectedError, RestrictedError) as exc:
        used_by = sorted({str(obj) for obj in exc.args[1]})
        raise AuthnContextTemplateError(
            [Problem(f"The template “{name}” is still in use by {', '.join(used_by)}; choose another template there first.")]
        ) from None
    log.info("deleted authentication context template %s", name)
