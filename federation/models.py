"""State owned by the runtime package: user directories, audit log, stored trace lines."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from federation.audit import Audited
from federation.secretbox import SealedTextField


class UserDirectory(Audited, models.Model):
    """A place where users are authenticated and looked up: the embedded one (Django's user table)
    or an LDAP server. The runtime calls these through `federation.directories`."""

    class Kind(models.TextChoices):
        EMBEDDED = "embedded", "Embedded (console users)"
        LDAP = "ldap", "LDAP"

    class Security(models.TextChoices):
        NONE = "none", "None (plain LDAP)"
        STARTTLS = "starttls", "StartTLS"
        LDAPS = "ldaps", "LDAPS"

    class Scope(models.TextChoices):
        SUBTREE = "subtree", "Subtree"
        ONELEVEL = "onelevel", "One level"

    name = models.CharField(max_length=100, unique=True, help_text="How partnerships refer to this directory.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.LDAP)
    description = models.CharField(max_length=255, blank=True)

    hosts = models.CharField(max_length=500, blank=True, help_text="One or more host names, comma-separated; tried in order.")
    port = models.PositiveIntegerField(default=389, help_text="389 for plain/StartTLS, 636 for LDAPS.")
    security = models.CharField(max_length=16, choices=Security.choices, default=Security.NONE)
    verify_tls = models.BooleanField(default=True, help_text="Verify the server certificate (LDAPS/StartTLS).")
    tls_ca_alias = models.CharField(
        max_length=100, blank=True, help_text="Trusted CA from the keystore for the server certificate."
    )
    bind_dn = models.CharField(max_length=500, blank=True, help_text="Empty for an anonymous bind.")
    bind_password = SealedTextField(help_text="Stored encrypted; never shown again.")
    search_root = models.CharField(max_length=500, blank=True, help_text="Base DN of user searches.")
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.SUBTREE)
    user_dn_start = models.CharField(
        max_length=200, blank=True, help_text="User DN lookup start, e.g. 'uid='. DN = start + login + end."
    )
    user_dn_end = models.CharField(
        max_length=500, blank=True, help_text="User DN lookup end, e.g. ',ou=people,dc=example,dc=org'."
    )
    user_filter = models.CharField(
        max_length=500,
        default="(uid=%s)",
        help_text="Filter used when no DN lookup start/end is set; %s is the login name.",
    )
    group_search_root = models.CharField(max_length=500, blank=True, help_text="Base DN of group searches.")
    group_filter = models.CharField(
        max_length=500,
        default="(|(member=%s)(uniqueMember=%s))",
        help_text="Groups whose filter matches the user's DN (%s).",
    )
    group_name_attribute = models.CharField(max_length=100, default="cn")
    connect_timeout = models.PositiveIntegerField(default=5, help_text="Seconds to wait for the server.")
    operation_timeout = models.PositiveIntegerField(default=10, help_text="Seconds to wait for a search or bind.")

    audit_secret_fields = ("bind_password",)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "user directories"

    def __str__(self):
        return self.name

    def clean(self):
        if self.kind == self.Kind.LDAP:
            if not self.hosts.strip():
                raise ValidationError({"hosts": "An LDAP directory needs at least one host."})
            if not (self.user_dn_start or self.user_dn_end) and "%s" not in self.user_filter:
                raise ValidationError({"user_filter": "The user filter must contain %s (the login name)."})
            if not self.search_root and not (self.user_dn_start or self.user_dn_end):
                raise ValidationError({"search_root": "Give a search root or a user DN lookup start/end."})


class UserAttribute(models.Model):
    """Extra attributes of an embedded-directory user; several rows with one name = multi-valued."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="directory_attributes")
    name = models.CharField(max_length=100)
    value = models.CharField(max_length=1000)

    class Meta:
        ordering = ["user", "name", "id"]
        indexes = [models.Index(fields=["name", "value"])]

    def __str__(self):
        return f"{self.user}: {self.name}={self.value}"


class AuditEvent(models.Model):
    """One configuration change: who, when, which object, field-level before/after (secrets masked)."""

    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"
        OTHER = "other"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150, help_text="Console user, 'cli:<user>' or 'system'.")
    action = models.CharField(max_length=16, choices=Action.choices)
    object_type = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=255)
    changes = models.JSONField(default=dict, blank=True)
    summary = models.CharField(max_length=255, blank=True)
    transaction_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.object_type} {self.object_repr}"


class TraceLine(models.Model):
    """A log line of federation's own loggers that belongs to a transaction (see tracing.py)."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    transaction_id = models.CharField(max_length=64, db_index=True)
    level = models.CharField(max_length=10)
    logger = models.CharField(max_length=100)
    checkpoint = models.CharField(max_length=64, blank=True)
    message = models.TextField()

    class Meta:
        ordering = ["at", "id"]

    def __str__(self):
        return f"[{self.transaction_id}] {self.checkpoint} {self.message[:80]}"


class JobRun(models.Model):
    """One run of a background (Celery) task, recorded by the signal handlers in federation/jobs.py."""

    class State(models.TextChoices):
        STARTED = "STARTED"
        SUCCEEDED = "SUCCEEDED"
        FAILED = "FAILED"
        RETRYING = "RETRYING"

    task_id = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=200, db_index=True)
    state = models.CharField(max_length=16, choices=State.choices, db_index=True)
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=1000, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"{self.name} {self.state}"
