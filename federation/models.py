"""State owned by the runtime package: user directories, audit log, stored trace lines."""

import re

import ldap.dn
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

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
    kind = models.CharField(
        max_length=16,
        choices=Kind.choices,
        default=Kind.LDAP,
        help_text="LDAP server, or the embedded directory (this installation's own user table; there is one).",
    )
    description = models.CharField(max_length=255, blank=True, help_text="Optional note for other administrators.")

    hosts = models.CharField(
        max_length=500,
        blank=True,
        help_text="One or more host names, comma-separated; tried in order. "
        "A host may carry its own port (ldap2.example.org:1389, [2001:db8::1]:389).",
    )
    port = models.PositiveIntegerField(
        default=389,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="389 for plain/StartTLS, 636 for LDAPS; used for hosts that do not name a port.",
    )
    security = models.CharField(
        max_length=16,
        choices=Security.choices,
        default=Security.NONE,
        help_text="How the connection is protected. StartTLS upgrades a plain connection; LDAPS is TLS from the first byte.",
    )
    verify_tls = models.BooleanField(default=True, help_text="Verify the server certificate (LDAPS/StartTLS).")
    tls_ca_alias = models.CharField(
        max_length=100, blank=True, help_text="Trusted CA from the keystore for the server certificate."
    )
    bind_dn = models.CharField(max_length=500, blank=True, help_text="Empty for an anonymous bind.")
    bind_password = SealedTextField(help_text="Stored encrypted; never shown again.")
    search_root = models.CharField(max_length=500, blank=True, help_text="Base DN of user searches.")
    scope = models.CharField(
        max_length=16,
        choices=Scope.choices,
        default=Scope.SUBTREE,
        help_text="Subtree searches the whole tree under the search root; one level only its direct children.",
    )
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
    group_search_root = models.CharField(
        max_length=500, blank=True, help_text="Base DN of group searches (empty: the search root)."
    )
    group_filter = models.CharField(
        max_length=500,
        default="(|(member=%s)(uniqueMember=%s))",
        help_text="Groups whose filter matches the user's DN (%s).",
    )
    group_name_attribute = models.CharField(
        max_length=100, default="cn", help_text="Attribute of a group entry that holds its name (usually cn)."
    )
    connect_timeout = models.PositiveIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(300)],
        help_text="Seconds to wait for the server.",
    )
    operation_timeout = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(600)],
        help_text="Seconds to wait for a search or bind.",
    )

    audit_secret_fields = ("bind_password",)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "user directories"
        constraints = [
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(kind="embedded"),
                name="one_embedded_directory",
                violation_error_message="There is already an embedded directory.",
            )
        ]

    def __str__(self):
        return self.name

    @property
    def is_embedded(self):
        return self.kind == self.Kind.EMBEDDED

    def servers(self):
        """(host, port) pairs in the order they are tried (ValueError when `hosts` is malformed)."""
        return parse_hosts(self.hosts, self.port)

    def server_labels(self):
        """'host:port' for each server, for display; the raw text when it cannot be parsed."""
        try:
            return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.servers()]
        except ValueError:
            return [self.hosts]

    def clean(self):
        if self.kind != self.Kind.LDAP:
            return
        errors = {}
        if not self.hosts.strip():
            errors["hosts"] = "An LDAP directory needs at least one host."
        else:
            try:
                parse_hosts(self.hosts, self.port)
            except ValueError as exc:
                errors["hosts"] = str(exc)
        for name in ("bind_dn", "search_root", "group_search_root"):
            value = getattr(self, name).strip()
            if value and not ldap.dn.is_dn(value):
                errors[name] = f"'{value}' is not a valid DN (expected something like ou=people,dc=example,dc=org)."
        lookup = bool(self.user_dn_start or self.user_dn_end)
        if lookup and not ldap.dn.is_dn(f"{self.user_dn_start}login{self.user_dn_end}"):
            errors["user_dn_start"] = (
                f"Start + login + end does not make a valid DN ('{self.user_dn_start}login{self.user_dn_end}'); "
                "e.g. start 'uid=' and end ',ou=people,dc=example,dc=org'."
            )
        if not lookup and "%s" not in self.user_filter:
            errors["user_filter"] = "The user filter must contain %s (the login name)."
        if not self.search_root and not lookup and "search_root" not in errors:
            errors["search_root"] = "Give a search root or a user DN lookup start/end."
        if "%s" not in self.group_filter:
            errors["group_filter"] = "The group filter must contain %s (the user's DN)."
        if not self.group_name_attribute.strip():
            errors["group_name_attribute"] = "Name the attribute that holds a group's name (usually cn)."
        if errors:
            raise ValidationError(errors)


def parse_hosts(text, default_port=389):
    """'a.example.org, b.example.org:1389, [2001:db8::1]:389' -> [(host, port), ...]; ValueError in plain words."""
    servers = []
    for item in re.split(r"[,;\s]+", text or ""):
        if not item:
            continue
        if "://" in item:
            raise ValueError(f"Give host names, not URLs ('{item}'); choose LDAPS or StartTLS under Security.")
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([A-Za-z0-9_.-]+)(?::(\d+))?", item)
        if not match:
            raise ValueError(f"'{item}' is not a host name, host:port or [IPv6 address]:port.")
        host = match.group(1) or match.group(3)
        port = int(match.group(2) or match.group(4) or default_port)
        if not 1 <= port <= 65535:
            raise ValueError(f"Port {port} of '{item}' is out of range (1-65535).")
        servers.append((host, port))
    return servers


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
        ACTIVATE = "activate"
        DEACTIVATE = "deactivate"
        GET_UPDATES = "get updates"
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

    at = models.DateTimeField(default=timezone.now, db_index=True)  # when it was logged, not when it was stored
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


class ReplayCacheEntry(models.Model):
    """An assertion ID this installation has already accepted, kept until the assertion could no
    longer be accepted anyway (see federation/replay.py). The unique `key` is what makes
    "remember once" atomic across processes and web nodes: the second insert of the same key
    fails in the database, whoever tries it."""

    key = models.CharField(max_length=64, unique=True, help_text="SHA-256 (hex) of the issuer and the assertion ID.")
    issuer = models.CharField(max_length=1024)
    assertion_id = models.CharField(max_length=256)
    not_on_or_after = models.DateTimeField(db_index=True, help_text="When the entry may be swept.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.issuer} {self.assertion_id}"


# ---------------------------------------------------------------------------------------------------------------------
# The runtime's shared state (PRODUCT.md §3 "production / scale-out"): everything a second web node needs to serve the
# next request of the same browser or partner lives here (or in Redis where a store offers it), never in process
# memory. Rows expire; a beat task sweeps what is past `expires_at`.


class SsoSession(models.Model):
    """A user's session at this site as an asserting party (IdP / Producer / IP): who logged in, how and when.

    The browser holds only the random `key` in a cookie. Partners that received an assertion in this session are
    `SsoParticipant` rows, so single logout knows whom to tell."""

    key = models.CharField(max_length=64, unique=True, help_text="Random session identifier (the cookie value).")
    username = models.CharField(max_length=255)
    directory = models.CharField(max_length=100, help_text="Name of the directory that authenticated the user.")
    user_dn = models.CharField(max_length=1024, blank=True)
    authn_instant = models.DateTimeField()
    authn_class = models.CharField(max_length=255, blank=True, help_text="Authentication context class URI.")
    protection_level = models.PositiveIntegerField(default=0)
    attributes = models.JSONField(default=dict, blank=True, help_text="Session attributes (session_attr[...]).")
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()
    idle_expires_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.username}@{self.directory}"


class SsoParticipant(models.Model):
    """A partner that received an assertion in an SsoSession (for single logout)."""

    session = models.ForeignKey(SsoSession, on_delete=models.CASCADE, related_name="participants")
    partnership = models.CharField(max_length=128)
    snapshot_id = models.PositiveIntegerField()
    remote_entity_id = models.CharField(max_length=1024)
    name_id = models.CharField(max_length=1024)
    name_id_format = models.CharField(max_length=255, blank=True)
    name_qualifier = models.CharField(max_length=1024, blank=True)
    sp_name_qualifier = models.CharField(max_length=1024, blank=True)
    session_index = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["remote_entity_id", "session_index"], name="participant_by_index")]

    def __str__(self):
        return f"{self.remote_entity_id} {self.session_index}"


class PersistentIdentifier(models.Model):
    """An opaque persistent NameID created for a user and one partner (AllowCreate), and kept until the link is ended
    (Name ID management terminate) or changed (NewID)."""

    local_entity_id = models.CharField(max_length=1024)
    remote_entity_id = models.CharField(max_length=1024)
    user_key = models.CharField(max_length=1100, help_text="'<directory>:<user DN or name>'.")
    value = models.CharField(max_length=256)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["local_entity_id", "remote_entity_id", "user_key"], name="persistent_id_per_user"),
            models.UniqueConstraint(fields=["local_entity_id", "remote_entity_id", "value"], name="persistent_id_value_unique"),
        ]

    def __str__(self):
        return self.value


class ArtifactMessage(models.Model):
    """A SAML message waiting to be fetched once by artifact resolution (SAML 2.0 and SAML 1.1)."""

    handle = models.CharField(max_length=64, unique=True, help_text="Hex of the artifact's message handle.")
    issuer = models.CharField(max_length=1024)
    recipient = models.CharField(max_length=1024, help_text="Entity ID allowed to resolve it.")
    partnership = models.CharField(max_length=128)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return self.handle


class SpRequestState(models.Model):
    """A request this site sent as a relying party (AuthnRequest), kept to check InResponseTo and to restore the
    RelayState / target when the response arrives. Consumed once."""

    request_id = models.CharField(max_length=128, unique=True)
    partnership = models.CharField(max_length=128)
    snapshot_id = models.PositiveIntegerField()
    relay_state = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="Anything else to restore (requested context, binding).")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return self.request_id


class SpSession(models.Model):
    """A user's session at this site as a relying party (SP / Consumer / RP), created from a validated assertion."""

    key = models.CharField(max_length=64, unique=True)
    partnership = models.CharField(max_length=128)
    snapshot_id = models.PositiveIntegerField()
    remote_entity_id = models.CharField(max_length=1024)
    name_id = models.CharField(max_length=1024)
    name_id_format = models.CharField(max_length=255, blank=True)
    session_index = models.CharField(max_length=128, blank=True)
    username = models.CharField(max_length=255, blank=True)
    directory = models.CharField(max_length=100, blank=True)
    user_dn = models.CharField(max_length=1024, blank=True)
    authn_class = models.CharField(max_length=255, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()
    idle_expires_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["remote_entity_id", "session_index"], name="sp_session_by_index")]

    def __str__(self):
        return f"{self.username or self.name_id} via {self.partnership}"


class SloTransaction(models.Model):
    """A single logout in progress that spans several HTTP requests (federation/slo_runtime.py).

    As IdP: who started it and how to answer them, the participants still to be told over the front channel, and
    which ones failed. As SP: the LogoutRequest we sent to the IdP, so its LogoutResponse finds where to send the
    user. `waiting_for` is the ID of the LogoutRequest whose answer continues it; claiming it is a conditional UPDATE,
    so one answer continues the logout exactly once, on whichever web node it arrives."""

    class Role(models.TextChoices):
        IDP = "idp", "Identity provider"
        SP = "sp", "Service provider"

    key = models.CharField(max_length=64, unique=True, help_text="Random identifier of the logout.")
    role = models.CharField(max_length=8, choices=Role.choices)
    saml_id = models.CharField(max_length=128, blank=True, help_text="SAML transaction ID for the trace.")
    waiting_for = models.CharField(max_length=128, blank=True, db_index=True)
    partnership = models.CharField(max_length=128, blank=True, help_text="The partnership the logout started from.")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.role} logout {self.saml_id or self.key}"
