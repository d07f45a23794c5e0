"""Partnership configuration objects: authentication context templates (docs/authn-context.md) and partnerships
(docs/partnerships.md).

A template's rows live in one JSON column, validated by partnerships.authn_context (the rules and messages are
there), so a template changes atomically and the audit log shows the whole list before and after each change.
Partnerships reference a template through PartnershipReference with ``on_delete=models.PROTECT``; partnerships.authn_context_services
turns the refusal into a message naming the partnerships that use it.
"""

import uuid

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


# ---------------------------------------------------------------------------------------------------------------------
# Name-ID management jobs (docs/name-id-management.md): one row per request to end (or change) one user's federation
# with one partner, processed by a Celery task. The row is the source of truth, not the broker message: a worker
# claims it with a conditional update (state + lease) before it sends anything, and a sweeper re-enqueues what a dead
# worker or a lost message left behind.


class NameIdJob(models.Model):
    class Operation(models.TextChoices):
        TERMINATE = "terminate", "Terminate (end the federation)"
        CHANGE = "change", "Change (NewID)"

    class OperationType(models.TextChoices):
        SP = "sp", "This site's IdP ends the federation with an SP"
        IDP = "idp", "This site's SP ends the federation with an IdP"

    class State(models.TextChoices):
        PENDING = "PENDING"
        COMPLETED = "COMPLETED"
        FAILED = "FAILED"

    class NotificationState(models.TextChoices):
        NONE = "none", "Not configured"
        WAITING = "waiting", "Waiting for the outcome"
        PENDING = "pending", "To be sent"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, help_text="The job's ID in its API URL.")
    operation = models.CharField(max_length=16, choices=Operation.choices, default=Operation.TERMINATE)
    operation_type = models.CharField(max_length=8, choices=OperationType.choices)
    provider_id = models.CharField("ProviderID", max_length=1024, help_text="The partner's entity ID.")
    partnership = models.ForeignKey(Partnership, on_delete=models.SET_NULL, null=True, blank=True, related_name="name_id_jobs")
    partnership_name = models.CharField(max_length=128, help_text="Kept when the partnership is deleted later.")
    user_dn = models.CharField(
        "UserDN", max_length=1024, blank=True, help_text="LDAP DN, or the user name in the embedded directory."
    )
    user_name = models.CharField(max_length=255, blank=True, help_text="Login name, looked up in the partnership's directories.")
    directory = models.CharField(max_length=100, blank=True, help_text="Only this directory of the partnership (empty: all).")
    new_id = models.CharField("NewID", max_length=256, blank=True, help_text="Change only: the identifier to use from now on.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Requests sent to the partner so far.")
    max_attempts = models.PositiveIntegerField(default=4, help_text="1 + the partnership's retries, fixed at submission.")
    retry_interval_seconds = models.PositiveIntegerField(default=900)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Not before this time.")
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="When a task message was last queued.")
    lease_owner = models.CharField(max_length=200, blank=True, help_text="The worker that holds the job right now.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=128, null=True, blank=True, unique=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    notification_state = models.CharField(max_length=16, choices=NotificationState.choices, default=NotificationState.NONE)
    notification_attempts = models.PositiveIntegerField(default=0)
    notification_next_at = models.DateTimeField(null=True, blank=True)
    notification_error = models.TextField(blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "name-ID management job"
        permissions = [("use_name_id_api", "Can use the name-ID management API")]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="nameid_job_due"),
            models.Index(fields=["notification_state", "notification_next_at"], name="nameid_job_notify_due"),
            models.Index(fields=["provider_id", "created_at"], name="nameid_job_provider"),
        ]

    def __str__(self):
        return f"{self.operation} {self.user_dn or self.user_name} @ {self.provider_id} ({self.state})"

    @property
    def user_label(self):
        return self.user_dn or self.user_name


class NameIdAttempt(models.Model):
    """The attempt log of a job: one row per request to the partner (or notification), written before the network
    call. Its `request_id` is the idempotency key of the exchange: a request left in doubt by a dead worker is
    re-sent byte for byte under the same ID, so a receiver that remembers IDs acts on it once."""

    class Kind(models.TextChoices):
        EXCHANGE = "exchange", "ManageNameID request"
        NOTIFICATION = "notification", "Notification"

    class Outcome(models.TextChoices):
        SENDING = "sending", "Sending (no answer recorded)"
        SUCCESS = "success", "Success"
        REFUSED = "refused", "Refused by the partner"
        FAILED = "failed", "Failed"
        TIMEOUT = "timeout", "No answer in time"
        UNKNOWN = "unknown", "Outcome unknown (sent, no answer)"

    job = models.ForeignKey(NameIdJob, on_delete=models.CASCADE, related_name="attempt_log")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.EXCHANGE)
    number = models.PositiveIntegerField()
    request_id = models.CharField(max_length=128, help_text="The SAML request ID (idempotency key of the exchange).")
    name_id = models.CharField(max_length=256, blank=True, help_text="The Name ID value the request named.")
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    sends = models.PositiveIntegerField(default=1, help_text="2 when an in-doubt request was re-sent unchanged.")
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SENDING)
    status = models.CharField(max_length=255, blank=True, help_text="The partner's SAML status or HTTP status.")
    detail = models.TextField(blank=True)
    message = models.TextField(blank=True, help_text="The request exactly as sent (for a re-send in doubt).")

    class Meta:
        ordering = ["job", "kind", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "kind", "number"], name="nameid_attempt_once")]

    def __str__(self):
        return f"{self.job_id} {self.kind} #{self.number} {self.outcome}"


class NameIdReceipt(models.Model):
    """A ManageNameIDRequest a partner sent to this site, and the answer it got. The unique key (issuer + request ID)
    makes processing exactly-once: a partner that re-sends the same request gets the recorded answer again."""

    key = models.CharField(max_length=64, unique=True, help_text="SHA-256 (hex) of the issuer and the request ID.")
    issuer = models.CharField(max_length=1024)
    request_id = models.CharField(max_length=256)
    partnership_name = models.CharField(max_length=128)
    operation = models.CharField(max_length=16)
    status = models.CharField(max_length=255)
    response = models.TextField(help_text="The SOAP answer exactly as sent.")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self):
        return f"{self.issuer} {self.request_id} {self.status}"
