"""Partnership configuration objects: authentication context templates (docs/authn-context.md) and partnerships
(docs/partnerships.md).

A template's rows live in one JSON column, validated by partnerships.authn_context (the rules and messages are
there), so a template changes atomically and the audit log shows the whole list before and after each change.
Partnerships reference a template through PartnershipReference with ``on_delete=models.PROTECT``; partnerships.authn_context_services
turns the refusal into a message naming the partnerships that use it.
"""

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower

from federation.audit import Audited
from federation.secretbox import SealedTextField
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


class PartnershipState(models.TextChoices):
    INCOMPLETE = "incomplete", "Incomplete"
    DEFINED = "defined", "Defined"
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"


class Partnership(Audited, models.Model):
    """One local and one remote entity and everything the wizard steps hold (docs/partnerships.md).

    The settings of every step live in one JSON column shaped and validated by partnerships.catalog, so a config
    file, the wizard and the activation snapshot all speak the same structure. Secrets (Basic passwords, cookie
    passwords) are sealed in their own column. What the partnership copied from its entities (endpoints, formats,
    certificates) is kept in `entity_data`: edits inside the partnership never reach the entity, and entity changes
    reach the partnership only through "Get updates". The runtime reads only the current activated snapshot.
    """

    State = PartnershipState

    name = models.CharField(
        "partnership name",
        max_length=128,
        help_text="Letters, digits, '_', '-' and '.', no spaces. Unique; also the name used in metadata exports.",
    )
    description = models.TextField(blank=True, help_text="Optional note for administrators.")
    kind = models.CharField(
        "type",
        max_length=32,
        db_index=True,
        help_text="Which side this site plays, and the protocol: e.g. SAML2 IdP → SP.",
    )
    local_entity = models.ForeignKey(
        "entities.Entity",
        on_delete=models.PROTECT,
        related_name="local_partnerships",
        verbose_name="local entity",
        help_text="This site's entity. It cannot be changed once the partnership exists.",
    )
    remote_entity = models.ForeignKey(
        "entities.Entity",
        on_delete=models.PROTECT,
        related_name="remote_partnerships",
        null=True,
        blank=True,
        verbose_name="remote entity",
        help_text="The partner's entity. It may be put off (the partnership stays Incomplete) but not changed once set.",
    )
    state = models.CharField(max_length=12, choices=PartnershipState.choices, default=PartnershipState.INCOMPLETE)
    settings = models.JSONField(default=dict, blank=True, help_text="Every wizard step's values (partnerships.catalog).")
    secrets = SealedTextField(help_text="Sealed JSON of the password settings, keyed 'step.key'.")
    problems = models.JSONField(
        default=list, blank=True, help_text="What the last validation found missing or wrong (why it is Incomplete)."
    )
    entity_data = models.JSONField(default=dict, blank=True, help_text="The entity facts copied at creation or Get updates.")
    entity_data_at = models.DateTimeField(null=True, blank=True, help_text="When the entity facts were copied.")
    activated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    audit_ignore_fields = ("updated_at", "problems", "entity_data_at")

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["state", "name"], name="partnership_state_name"),
            models.Index(fields=["kind", "name"], name="partnership_kind_name"),
        ]
        constraints = [
            models.UniqueConstraint(
                Lower("name"),
                name="partnership_name_unique_ci",
                violation_error_message="Another partnership already has this name.",
            )
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        from django.urls import reverse

        return reverse("partnerships:detail", args=[self.pk])

    @property
    def kind_info(self):
        from partnerships import catalog

        return catalog.kind(self.kind)

    @property
    def is_active(self):
        return self.state == PartnershipState.ACTIVE

    def current_snapshot(self):
        return self.snapshots.filter(current=True).first()


class PartnershipDirectory(models.Model):
    """The directories a partnership authenticates or looks users up in, in the order they are tried."""

    partnership = models.ForeignKey(Partnership, on_delete=models.CASCADE, related_name="directory_links")
    directory = models.ForeignKey(
        "federation.UserDirectory", on_delete=models.PROTECT, related_name="partnership_links", verbose_name="directory"
    )
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = "partnership directory"
        constraints = [models.UniqueConstraint(fields=["partnership", "directory"], name="partnership_directory_once")]

    def __str__(self):
        return self.partnership.name


class PartnershipReference(models.Model):
    """An index of the keystore entries and templates a partnership's settings name, so the database refuses to
    delete them while in use (on_delete=PROTECT) and entities.references can name the partnership."""

    partnership = models.ForeignKey(Partnership, on_delete=models.CASCADE, related_name="references")
    setting = models.CharField(max_length=100, help_text="'step.key' of the setting that names it.")
    keystore_entry = models.ForeignKey(
        "entities.KeystoreEntry", on_delete=models.PROTECT, null=True, blank=True, related_name="partnership_references"
    )
    authn_template = models.ForeignKey(
        AuthnContextTemplate, on_delete=models.PROTECT, null=True, blank=True, related_name="partnership_references"
    )

    class Meta:
        verbose_name = "partnership setting"

    def __str__(self):
        return f"{self.partnership.name}: {self.setting}"


class SnapshotImmutable(Exception):
    pass


class PartnershipSnapshot(models.Model):
    """What was confirmed at activation: the runtime serves this, never the editable settings.

    Rows are written once; only the `current` flag moves (with a queryset update) on activation and deactivation.
    """

    partnership = models.ForeignKey(Partnership, on_delete=models.CASCADE, related_name="snapshots")
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=32)
    local_entity_id = models.CharField(max_length=1024)
    remote_entity_id = models.CharField(max_length=1024)
    data = models.JSONField()
    secrets = SealedTextField()
    digest = models.CharField(max_length=64, help_text="SHA-256 of the canonical JSON of data.")
    current = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [models.UniqueConstraint(fields=["partnership", "version"], name="partnership_snapshot_version")]
        indexes = [models.Index(fields=["kind", "remote_entity_id", "current"], name="snapshot_runtime_lookup")]

    def __str__(self):
        return f"{self.partnership_id} v{self.version}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise SnapshotImmutable("An activated snapshot is never changed; activate again to make a new one.")
        super().save(*args, **kwargs)
