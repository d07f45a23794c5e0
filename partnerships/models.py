"""Partnership configuration objects. For now: authentication context templates (docs/authn-context.md).

A template's rows live in one JSON column, validated by partnerships.authn_context (the rules and messages are
there), so a template changes atomically and the audit log shows the whole list before and after each change.
Partnerships will reference a template with ``on_delete=models.PROTECT``; partnerships.authn_context_services
turns the refusal into a message naming the partnerships that use it.
"""

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower

from federation.audit import Audited
from partnerships import authn_context


class AuthnContextTemplate(Audited, models.Model):
    name = models.CharField(
        max_length=128,
        unique=True,
        help_text="A name partnerships will show, unique regardless of letter case (for example “Corporate strengths”).",
    )
    description = models.TextField(blank=True, help_text="Optional: which partners agreed to this order, and when.")
    protection_levels = models.BooleanField(
        "enable protection levels",
        default=False,
        help_text="Give each URI a maximum protection level (1–1000) so an IdP can auto-detect the class from the "
        "level of the session's authentication scheme. The minimums are computed; the top URI reaches 1000.",
    )
    entries = models.JSONField(
        default=list,
        blank=True,
        help_text="Rows from the strongest URI to the weakest: {uri, grouped, max_level}.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    audit_ignore_fields = ("updated_at",)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(Lower("name"), name="authn_context_template_name_ci_unique")]

    def __str__(self):
        return self.name

    def clean(self):
        self.name = (self.name or "").strip()
        entries, problems = authn_context.validate_entries(self.entries or [], self.protection_levels)
        if problems:
            raise ValidationError({"entries": [authn_context.TemplateError([p]).args[0] for p in problems]})
        self.entries = [e.as_data() for e in entries]

    def compiled(self) -> authn_context.Template:
        """The validated template the runtime decides with (raises TemplateError if the stored rows are bad)."""
        return authn_context.build_template(self.entries or [], self.protection_levels)
