"""Name-ID management (docs/name-id-management.md): end or change one user's federation with one partner through a
SAML 2.0 ManageNameIDRequest over SOAP, in the background, with retries and a notification; and answer the requests
partners send us.

The actions here are shared by the job API (federation/views/nid.py), the console, `manage.py nameid` and the Celery
tasks (partnerships/tasks.py, thin wrappers):

    submit_jobs(items, actor)            validate and store jobs (PENDING), queue them after the commit
    process_job(job_pk, owner)           one run of a job: claim it, send the request, record the outcome
    notify_job(job_pk, owner)            one run of a job's notification
    resume_jobs()                        queue what a dead worker or a lost message left behind (beat, `nameid resume`)
    answer_request(body, ...)            our /affwebservices/public/saml2nidsoap endpoint

Exactly once. The job row is the source of truth; broker messages only wake a worker, so a duplicate or redelivered
message is harmless and a lost one is found again by `resume_jobs`.
1. A worker claims a job with one conditional UPDATE (state PENDING, due, lease free or expired -> lease owner and
   expiry). Only one worker can win; everyone else finds the lease held and does nothing.
2. Before the network call the attempt is written and committed: number, the SAML request ID (the idempotency key of
   the exchange) and the signed request bytes.
3. Success ends the job in the same transaction as its local effect (the persistent identifier deleted or changed),
   guarded by the lease owner, so a success is never sent again and never applied twice.
4. A worker that dies mid-call leaves an attempt "sending" and a lease that runs out (SOAP timeout + margin). The
   next worker re-sends that request byte for byte under the same ID while it is fresh (a receiver that remembers IDs,
   as ours does, acts on it once and answers the same); an older one is given up as "unknown" and a new request is
   made, where UnknownPrincipal then means the earlier one got through.
"""

import hashlib
import json
import logging
import os
import re
import secrets
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache

import requests
from django.conf import settings as django_settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from entities.models import KeystoreEntry
from federation import backchannel, directories
from federation.models import PersistentIdentifier, UserDirectory
from federation.runtime_paths import SAML2_MANAGE_NAME_ID_SOAP, join
from federation.saml import constants as C
from federation.saml.assertions import NameID
from federation.saml.common import (
    ProtocolError,
    SigningKey,
    SOAPFault,
    encode_soap,
    read_soap,
    soap_fault,
    status_for_error,
)
from federation.saml.errors import SAMLError
from federation.saml.keys import load_certificate
from federation.saml.manage_name_id import (
    MAX_NEW_ID_LENGTH,
    ManageNameIDPolicy,
    ManageNameIDRequestSettings,
    build_manage_name_id_request,
    build_manage_name_id_response,
    parse_manage_name_id_request_soap,
    parse_manage_name_id_response_soap,
)
from federation.saml.signing import allowed_signature_algorithms
from federation.saml.xml import is_xml_id, to_bytes
from partnerships.catalog_choices import ALGORITHM_URIS
from partnerships.models import NameIdAttempt, NameIdJob, NameIdReceipt, PartnershipSnapshot
from partnerships.runtime import NoActivePartnership, find_active, load_snapshot, snapshot_secrets

log = logging.getLogger("partnerships.name_id")

KIND_FOR_OPERATION_TYPE = {"sp": "saml2_idp_sp", "idp": "saml2_sp_idp"}
OPERATION_TYPE_FOR_KIND = {kind: operation_type for operation_type, kind in KIND_FOR_OPERATION_TYPE.items()}
SSO_SLO = "sso_slo"
SIGNATURE = "signature"
MAX_SOAP_ANSWER_BYTES = C.MAX_MESSAGE_BYTES
MAX_NOTIFICATION_ANSWER_BYTES = 64 * 1024
USER_AGENT = "federation name-ID management"

# Operational settings (docs/name-id-management.md, "Settings"): a Django setting of that name, else the environment
# variable FEDERATION_<name>, else the default.
_DEFAULTS = {
    "NAME_ID_RETRY_INTERVAL_SECONDS": None,  # replaces every partnership's retry interval (tests, benchmarks)
    "NAME_ID_LEASE_MARGIN_SECONDS": 30,  # lease = SOAP or notification timeout + this
    "NAME_ID_SWEEP_SECONDS": 60,  # how often beat runs resume_jobs (the reference's BackgroundProcessingInterval)
    "NAME_ID_REQUEUE_AFTER_SECONDS": 600,  # a due job whose message was queued longer ago than this is queued again
    "NAME_ID_RESEND_WINDOW_SECONDS": 240,  # an in-doubt request younger than this is re-sent unchanged
    "NAME_ID_BULK_LIMIT": 1000,  # most jobs in one API call
    "NAME_ID_RECEIPT_DAYS": 30,  # how long answered partner requests are remembered
    "NAME_ID_CA_BUNDLE": "",  # CA bundle (PEM) for https partners and notification URLs; empty: the default store
}


def setting(name):
    value = getattr(django_settings, name, None)
    if value is None:
        value = os.environ.get(f"FEDERATION_{name}")
    if value in (None, ""):
        return _DEFAULTS[name]
    return value if isinstance(_DEFAULTS[name], str) else int(value)


class JobError(Exception):
    """A job cannot be submitted. `field` names the part of the body (e.g. `ProviderID`, `[2].UserDN`)."""

    def __init__(self, message, field=""):
        super().__init__(message)
        self.field = field


class IdempotencyConflict(JobError):
    """An idempotency key that was used before for a different job."""


class PermanentFailure(Exception):
    """The job cannot succeed by trying again: it ends FAILED with this reason."""


class TransientFailure(Exception):
    """This attempt failed; a later one may succeed (partner down, timeout, 5xx, Responder status)."""

    def __init__(self, message, *, outcome=NameIdAttempt.Outcome.FAILED, status=""):
        super().__init__(message)
        self.outcome = outcome
        self.status = status


# --- The partnership's Manage Name ID configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    url: str
    timeout: int
    user: str = ""
    password: str = ""


@dataclass(frozen=True)
class PartnerConfig:
    """What name-ID management needs from one activated partnership snapshot."""

    snapshot_id: int
    partnership_id: int
    name: str
    kind: str
    operation_type: str
    local_entity_id: str
    remote_entity_id: str
    enabled: bool
    terminate_allowed: bool
    partner_url: str
    our_urls: tuple
    soap_timeout: int
    retries: int
    retry_interval_seconds: int
    directories: tuple
    signing_alias: str
    signing_fingerprint: str | None
    signature_algorithm: str
    digest_algorithm: str
    verification_certificates: tuple
    require_signed: bool
    allowed_algorithms: frozenset
    encryption_certificate: object
    block_algorithm: str
    key_transport: str
    decryption_alias: str
    allowed_encryption_algorithms: frozenset
    backchannel_out_auth: str
    backchannel_out_user: str
    backchannel_out_client_alias: str
    backchannel_in_auth: str
    notification: bool
    notification_url: str
    notification_timeout: int
    notification_auth: str
    notification_user: str

    @property
    def we_are_idp(self):
        return self.operation_type == "sp"

    @property
    def max_attempts(self):
        return 1 + self.retries

    def signing(self):
        """Our SigningKey for this partnership, or None when it signs nothing."""
        if not self.signing_alias:
            return None
        private_key, certificate = key_pair(self.signing_alias, self.signing_fingerprint)
        return SigningKey(private_key, certificate, self.signature_algorithm, self.digest_algorithm)

    def decryption_key(self):
        return key_pair(self.decryption_alias)[0] if self.decryption_alias else None

    def secret(self, key):
        return snapshot_secrets(self.snapshot_id).get(f"{SSO_SLO}.{key}", "")

    def policy(self, extra_urls=()):
        return ManageNameIDPolicy(
            partner_entity_id=self.remote_entity_id,
            verification_certificates=self.verification_certificates,
            require_signed=self.require_signed,
            allowed_algorithms=self.allowed_algorithms,
            service_urls=tuple(self.our_urls) + tuple(extra_urls),
            decryption_key=self.decryption_key(),
            allowed_encryption_algorithms=self.allowed_encryption_algorithms,
        )

    def notification_target(self):
        if not (self.notification and self.notification_url):
            return None
        password = self.secret("mni_notification_password") if self.notification_auth == "basic" else ""
        user = self.notification_user if self.notification_auth == "basic" else ""
        return Notification(self.notification_url, self.notification_timeout, user, password)


@lru_cache(maxsize=256)
def _certificate(pem):
    return load_certificate(pem)


@lru_cache(maxsize=64)
def _key_pair_for(alias, fingerprint):
    entry = KeystoreEntry.objects.filter(alias=alias).first()
    if entry is None:
        raise PermanentFailure(f"The key pair '{alias}' is no longer in the keystore.")
    if entry.fingerprint_sha256 != fingerprint:
        raise PermanentFailure(f"The key pair '{alias}' changed after the partnership was activated; activate it again.")
    private_key = entry.private_key_object()
    if private_key is None:
        raise PermanentFailure(f"The keystore entry '{alias}' has no private key; choose a key pair.")
    return private_key, entry.certificate()


def key_pair(alias, fingerprint=None):
    """(private key, certificate) of a keystore key pair, opened once per process and key version (`fingerprint`: the
    one the activated snapshot froze; looked up when not given)."""
    if fingerprint is None:
        fingerprint = KeystoreEntry.objects.filter(alias=alias).values_list("fingerprint_sha256", flat=True).first()
    if fingerprint is None:
        raise PermanentFailure(f"The key pair '{alias}' is no longer in the keystore.")
    return _key_pair_for(alias, fingerprint)


def partner_config(active):
    """The PartnerConfig of an ActivePartnership (partnerships.runtime)."""
    sso = active.settings.get(SSO_SLO) or {}
    signature = active.settings.get(SIGNATURE) or {}
    operation_type = OPERATION_TYPE_FOR_KIND[active.kind]
    disabled = bool(signature.get("disable_signature_processing"))
    verification = signature.get("verification_certificate") or ""
    certificates = ()
    if verification and not disabled and verification in active.certificates:
        certificates = (_certificate(active.certificates[verification]["certificate_pem"]),)
    encryption_certificate = None
    if operation_type == "sp" and signature.get("encrypt_name_id") and signature.get("encryption_certificate"):
        alias = signature["encryption_certificate"]
        if alias in active.certificates:
            encryption_certificate = _certificate(active.certificates[alias]["certificate_pem"])
    if operation_type == "idp":
        decryption_alias = signature.get("decryption_key") or (active.local.get("keys") or {}).get("decryption_key", "")
    else:
        decryption_alias = (active.local.get("keys") or {}).get("decryption_key", "")
    encryption_algorithms = C.DEFAULT_ENCRYPTION_ALGORITHMS
    if signature.get("accept_legacy_encryption"):
        encryption_algorithms = encryption_algorithms | C.LEGACY_ENCRYPTION_ALGORITHMS
    partner_url = ""
    for endpoint in active.remote.get("endpoints") or ():
        if endpoint.get("kind") == "manage_name_id" and endpoint.get("binding") == C.BINDING_SOAP:
            partner_url = endpoint["location"]
            break
    base_url = active.local.get("base_url") or ""
    override = setting("NAME_ID_RETRY_INTERVAL_SECONDS")
    interval_minutes = int(sso.get("mni_retry_interval_minutes") or 15)
    return PartnerConfig(
        snapshot_id=active.snapshot_id,
        partnership_id=active.partnership_id,
        name=active.name,
        kind=active.kind,
        operation_type=operation_type,
        local_entity_id=active.local["entity_id"],
        remote_entity_id=active.remote["entity_id"],
        enabled=bool(sso.get("mni_enabled")),
        terminate_allowed=bool(sso.get("mni_delete_name_id", True)),
        partner_url=partner_url,
        our_urls=(join(base_url, SAML2_MANAGE_NAME_ID_SOAP),) if base_url else (),
        soap_timeout=int(sso.get("mni_soap_timeout_seconds") or 60),
        retries=int(sso.get("mni_retries") if sso.get("mni_retries") is not None else 3),
        retry_interval_seconds=int(override) if override is not None else 60 * interval_minutes,
        directories=tuple(active.directories),
        signing_alias="" if disabled else (signature.get("signing_key") or ""),
        signing_fingerprint=(active.certificates.get(signature.get("signing_key") or "") or {}).get("fingerprint_sha256"),
        signature_algorithm=ALGORITHM_URIS.get(signature.get("signature_algorithm") or "rsa-sha256", C.RSA_SHA256),
        digest_algorithm=ALGORITHM_URIS.get(signature.get("digest_algorithm") or "sha256", C.SHA256),
        verification_certificates=certificates,
        require_signed=not disabled,
        allowed_algorithms=allowed_signature_algorithms(sha1=bool(signature.get("accept_sha1"))),
        encryption_certificate=encryption_certificate,
        block_algorithm=ALGORITHM_URIS.get(signature.get("encryption_block_algorithm") or "aes256-gcm", C.AES256_GCM),
        key_transport=ALGORITHM_URIS.get(signature.get("encryption_key_transport") or "rsa-oaep-mgf1p", C.RSA_OAEP_MGF1P),
        decryption_alias=decryption_alias,
        allowed_encryption_algorithms=encryption_algorithms,
        backchannel_out_auth=sso.get("backchannel_out_auth") or "none",
        backchannel_out_user=sso.get("backchannel_out_user") or active.name,
        backchannel_out_client_alias=sso.get("backchannel_out_client_key") or "",
        backchannel_in_auth=sso.get("backchannel_in_auth") or "none",
        notification=bool(sso.get("mni_notification")),
        notification_url=sso.get("mni_notification_url") or "",
        notification_timeout=int(sso.get("mni_notification_timeout_seconds") or 60),
        notification_auth=sso.get("mni_notification_auth") or "none",
        notification_user=sso.get("mni_notification_user") or "",
    )


def _current_config(job):
    """The PartnerConfig of the job's partnership as it is served now (its current snapshot)."""
    snapshot_id = (
        PartnershipSnapshot.objects.filter(partnership_id=job.partnership_id, current=True).values_list("pk", flat=True).first()
        if job.partnership_id
        else None
    )
    if snapshot_id is None:
        raise PermanentFailure(
            f"The partnership {job.partnership_name} is no longer active, so the request to {job.provider_id} was not sent."
        )
    config = partner_config(load_snapshot(snapshot_id))
    if not config.enabled:
        raise PermanentFailure(f"Manage Name ID is no longer enabled in the partnership {config.name}.")
    return config


def _last_config(job):
    """The job's partnership as last activated (current or not), for the notification of a finished job."""
    snapshot_id = (
        PartnershipSnapshot.objects.filter(partnership_id=job.partnership_id)
        .order_by("-current", "-version")
        .values_list("pk", flat=True)
        .first()
        if job.partnership_id
        else None
    )
    return partner_config(load_snapshot(snapshot_id)) if snapshot_id else None


# --- Submitting jobs --------------------------------------------------------------------------------------------------

# API field name (case-insensitive on input) -> job attribute.
FIELDS = {
    "operation": "Operation",
    "operationtype": "OperationType",
    "providerid": "ProviderID",
    "userdn": "UserDN",
    "username": "UserName",
    "directory": "Directory",
    "newid": "NewID",
    "idempotencykey": "IdempotencyKey",
}


@dataclass
class JobRequest:
    operation: str
    operation_type: str
    provider_id: str
    user_dn: str = ""
    user_name: str = ""
    directory: str = ""
    new_id: str = ""
    idempotency_key: str = ""
    config: PartnerConfig = field(default=None, repr=False)


def _text(value, name, where, limit):
    if value is None:
        return ""
    if not isinstance(value, str):
        raise JobError(f"{name} must be a string.", where + name)
    value = value.strip()
    if len(value) > limit:
        raise JobError(f"{name} is {len(value)} characters long; at most {limit} are allowed.", where + name)
    return value


def parse_job_request(data, *, operation=None, where=""):
    """A JobRequest from one API item (a dict with the fields of FIELDS, names in any letter case), checked against
    the active partnerships. `operation` (terminate/change) is forced by the URL when given. JobError names the
    field (`where` prefixes it, e.g. `[3].`)."""
    if not isinstance(data, dict):
        raise JobError(
            "Each job must be a JSON object with UserDN (or UserName), OperationType and ProviderID.", where.rstrip(".")
        )
    values = {}
    for key, value in data.items():
        canonical = FIELDS.get(str(key).lower())
        if canonical is None:
            known = ", ".join(FIELDS.values())
            raise JobError(f"Unknown field {key!r}; the fields are {known}.", where + str(key))
        values[canonical] = value
    requested = _text(values.get("Operation"), "Operation", where, 16).lower()
    if operation and requested and requested != operation:
        raise JobError(f"This URL makes {operation} jobs; Operation {requested!r} does not belong here.", where + "Operation")
    operation = operation or requested or NameIdJob.Operation.TERMINATE
    if operation not in NameIdJob.Operation.values:
        raise JobError(f"Operation must be terminate or change, not {operation!r}.", where + "Operation")
    operation_type = _text(values.get("OperationType"), "OperationType", where, 8).lower()
    if not operation_type:
        raise JobError(
            "OperationType is required: sp (this site's IdP ends the federation with an SP) or idp.", where + "OperationType"
        )
    if operation_type not in KIND_FOR_OPERATION_TYPE:
        raise JobError(f"OperationType must be sp or idp, not {operation_type!r}.", where + "OperationType")
    provider_id = _text(values.get("ProviderID"), "ProviderID", where, 1024)
    if not provider_id:
        raise JobError("ProviderID is required: the partner's entity ID.", where + "ProviderID")
    user_dn = _text(values.get("UserDN"), "UserDN", where, 1024)
    user_name = _text(values.get("UserName"), "UserName", where, 255)
    if bool(user_dn) == bool(user_name):
        raise JobError(
            "Name the user with UserDN (an LDAP DN, or the user name in the embedded directory) or UserName, not "
            + ("both." if user_dn else "neither."),
            where + "UserDN",
        )
    new_id = _text(values.get("NewID"), "NewID", where, MAX_NEW_ID_LENGTH)
    if new_id and operation != NameIdJob.Operation.CHANGE:
        raise JobError("NewID belongs to change jobs only.", where + "NewID")
    if new_id and any(character.isspace() for character in new_id):
        raise JobError("NewID must not contain spaces.", where + "NewID")
    directory = _text(values.get("Directory"), "Directory", where, 100)
    key = _text(values.get("IdempotencyKey"), "IdempotencyKey", where, 128)

    kind = KIND_FOR_OPERATION_TYPE[operation_type]
    try:
        config = partner_config(find_active(kind, provider_id))
    except NoActivePartnership:
        side = "SAML2 IdP → SP" if operation_type == "sp" else "SAML2 SP → IdP"
        raise JobError(f"There is no active {side} partnership with the partner {provider_id!r}.", where + "ProviderID") from None
    if not config.enabled:
        raise JobError(f"Manage Name ID is not enabled in the partnership {config.name}.", where + "ProviderID")
    if operation == NameIdJob.Operation.TERMINATE and not config.terminate_allowed:
        raise JobError(
            f"Delete Name ID is off in the partnership {config.name}, so it does not end federations.", where + "ProviderID"
        )
    if not config.partner_url:
        raise JobError(f"The partner {provider_id} has no SOAP Manage Name ID service URL.", where + "ProviderID")
    if directory and directory not in config.directories:
        raise JobError(
            f"Directory {directory!r} is not one of the partnership's directories ({', '.join(config.directories)}).",
            where + "Directory",
        )
    return JobRequest(operation, operation_type, provider_id, user_dn, user_name, directory, new_id, key, config)


def _same_job(job, request):
    return (
        job.operation == request.operation
        and job.operation_type == request.operation_type
        and job.provider_id == request.provider_id
        and job.user_dn == request.user_dn
        and job.user_name == request.user_name
        and job.directory == request.directory
        and (not request.new_id or job.new_id == request.new_id)
    )


def submit_jobs(requests_, actor=""):
    """Store one job per JobRequest (all or none) and queue them after the commit. Returns [(job, created)]: a request
    whose idempotency key was seen before returns that job (created False); for a different job the key is refused
    with IdempotencyConflict."""
    results = []
    now = timezone.now()
    with transaction.atomic():
        for number, request in enumerate(requests_):
            if request.idempotency_key:
                existing = NameIdJob.objects.filter(idempotency_key=request.idempotency_key).first()
                if existing is not None:
                    if not _same_job(existing, request):
                        where = f"[{number}]." if len(requests_) > 1 else ""
                        raise IdempotencyConflict(
                            f"The idempotency key {request.idempotency_key!r} was used for another job ({existing.uuid}).",
                            where + "IdempotencyKey",
                        )
                    results.append((existing, False))
                    continue
            config = request.config
            new_id = request.new_id
            if request.operation == NameIdJob.Operation.CHANGE and not new_id:
                new_id = new_persistent_id()
            job = NameIdJob.objects.create(
                operation=request.operation,
                operation_type=request.operation_type,
                provider_id=request.provider_id,
                partnership_id=config.partnership_id,
                partnership_name=config.name,
                user_dn=request.user_dn,
                user_name=request.user_name,
                directory=request.directory,
                new_id=new_id,
                max_attempts=config.max_attempts,
                retry_interval_seconds=config.retry_interval_seconds,
                next_attempt_at=now,
                enqueued_at=now,
                idempotency_key=request.idempotency_key or None,
                created_by=actor[:150],
                notification_state=NameIdJob.NotificationState.WAITING
                if config.notification
                else NameIdJob.NotificationState.NONE,
            )
            results.append((job, True))
        created = [job.pk for job, was_created in results if was_created]
        transaction.on_commit(lambda: [enqueue(pk) for pk in created])
    for job, was_created in results:
        if was_created:
            log.info(
                "name-ID job %s queued: %s %s with %s (%s)",
                job.uuid,
                job.operation,
                job.user_label,
                job.provider_id,
                job.partnership_name,
                extra={"checkpoint": "NAMEID_JOB_QUEUED"},
            )
    return results


def new_persistent_id():
    """A fresh opaque identifier for a change without NewID (as random as a message ID)."""
    return secrets.token_urlsafe(32)


def enqueue(job_pk, phase="exchange", countdown=None):
    """Queue a task message for a job. A broker failure is logged, not raised: the job stays due and resume_jobs
    queues it again."""
    from partnerships import tasks

    task = tasks.process_name_id_job if phase == "exchange" else tasks.notify_name_id_job
    try:
        task.apply_async(args=[job_pk], countdown=countdown)
    except Exception as error:  # noqa: BLE001 - any broker problem; the sweeper is the safety net
        log.warning(
            "could not queue name-ID job %s (%s); it will be queued again",
            job_pk,
            error,
            extra={"checkpoint": "NAMEID_QUEUE_FAILED"},
        )


# --- Processing a job -------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one run of a job did. `retry_in`: seconds until the next attempt (the task retries with that countdown)."""

    state: str
    detail: str = ""
    retry_in: float | None = None
    skipped: bool = False


def worker_identity(task_id=""):
    return f"{socket.gethostname()}:{os.getpid()}" + (f":{task_id}" if task_id else "")


def _claim(job_pk, owner, lease_seconds, now, *, notification=False):
    """Take the job's lease with one conditional UPDATE; True when this worker won it."""
    rows = NameIdJob.objects.filter(pk=job_pk).filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
    if notification:
        rows = rows.filter(notification_state=NameIdJob.NotificationState.PENDING, notification_next_at__lte=now)
    else:
        rows = rows.filter(state=NameIdJob.State.PENDING, next_attempt_at__lte=now)
    return rows.update(lease_owner=owner[:200], lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now) == 1


def _held(job_pk, owner):
    """The job while this worker holds its lease (for conditional updates)."""
    return NameIdJob.objects.filter(pk=job_pk, lease_owner=owner[:200])


def process_job(job_pk, owner=None, now=None):
    """One run of a name-ID job (the body of the Celery task). Never raises for the partner's or the job's problems:
    they become the job's state, attempts and last error."""
    owner = owner or worker_identity()
    now = now or timezone.now()
    job = NameIdJob.objects.filter(pk=job_pk).first()
    if job is None or job.state != NameIdJob.State.PENDING:
        return Outcome(job.state if job else "missing", "nothing to do", skipped=True)
    try:
        config, config_error = _current_config(job), None
    except PermanentFailure as error:
        config, config_error = None, str(error)
    lease = (config.soap_timeout if config else 0) + setting("NAME_ID_LEASE_MARGIN_SECONDS")
    if not _claim(job_pk, owner, lease, now):
        return Outcome(job.state, "another worker holds the job, or it is not due yet", skipped=True)
    job.refresh_from_db()
    if config_error:
        return _finish(job, owner, NameIdJob.State.FAILED, config_error, None)
    try:
        attempt, in_doubt = _attempt_to_send(job, config, owner, now)
    except PermanentFailure as error:
        return _finish(job, owner, NameIdJob.State.FAILED, str(error), config)
    except TransientFailure as error:  # before anything was sent (e.g. the directory is down): still an attempt
        _held(job.pk, owner).update(attempts=F("attempts") + 1)
        return _retry_or_fail(job, owner, str(error), config)
    try:
        response = _exchange(config, attempt)
        _judge(response, attempt, in_doubt)
    except PermanentFailure as error:
        _record(attempt, NameIdAttempt.Outcome.REFUSED, str(error), getattr(error, "status", ""))
        return _finish(job, owner, NameIdJob.State.FAILED, str(error), config)
    except TransientFailure as error:
        _record(attempt, error.outcome, str(error), error.status)
        return _retry_or_fail(job, owner, str(error), config)
    return _complete(job, owner, attempt, config, response)


def _attempt_to_send(job, config, owner, now):
    """The attempt to send now: the in-doubt one of a dead worker, re-sent unchanged while fresh, or a new one
    (recorded and committed before anything is sent). Returns (attempt, in_doubt)."""
    exchanges = job.attempt_log.filter(kind=NameIdAttempt.Kind.EXCHANGE)
    last = exchanges.order_by("-number").first()
    # Any earlier request that may have reached the partner without our seeing the answer makes this one "in doubt".
    in_doubt = exchanges.filter(
        Q(outcome__in=(NameIdAttempt.Outcome.TIMEOUT, NameIdAttempt.Outcome.UNKNOWN)) | Q(sends__gt=1)
    ).exists()
    if last is not None and last.outcome == NameIdAttempt.Outcome.SENDING:
        # Its worker stopped between sending and recording the answer: the partner may have acted on it.
        if (now - last.started_at).total_seconds() < setting("NAME_ID_RESEND_WINDOW_SECONDS"):
            NameIdAttempt.objects.filter(pk=last.pk).update(sends=last.sends + 1, worker=owner[:200])
            last.sends += 1
            log.info(
                "re-sending the in-doubt request %s of name-ID job %s unchanged",
                last.request_id,
                job.uuid,
                extra={"checkpoint": "NAMEID_RESEND"},
            )
            return last, True
        NameIdAttempt.objects.filter(pk=last.pk).update(
            outcome=NameIdAttempt.Outcome.UNKNOWN, finished_at=now, detail="The worker stopped before the answer was recorded."
        )
        in_doubt = True
    if job.attempts >= job.max_attempts:
        raise PermanentFailure(f"All {job.max_attempts} attempts were used. Last error: {job.last_error or 'none recorded'}")
    name_id_value = _linked_value(job, config)
    new_id = job.new_id if job.operation == NameIdJob.Operation.CHANGE else None
    if new_id is not None and new_id != name_id_value:
        taken = PersistentIdentifier.objects.filter(
            local_entity_id=config.local_entity_id, remote_entity_id=config.remote_entity_id, value=new_id
        )
        if taken.exists():
            raise PermanentFailure(f"The NewID {new_id!r} already identifies another user with {config.remote_entity_id}.")
    idp, sp = (
        (config.local_entity_id, config.remote_entity_id)
        if config.we_are_idp
        else (config.remote_entity_id, config.local_entity_id)
    )
    number = job.attempts + 1
    request_id = f"_nid{job.uuid.hex}{number:02d}{secrets.token_hex(4)}"
    try:
        issued = build_manage_name_id_request(
            ManageNameIDRequestSettings(
                issuer=config.local_entity_id,
                destination=config.partner_url,
                name_id=NameID(name_id_value, C.NAMEID_PERSISTENT, idp, sp),
                new_id=new_id,
                encryption_certificate=config.encryption_certificate,
                block_algorithm=config.block_algorithm,
                key_transport=config.key_transport,
            ),
            now=now,
            request_id=request_id,
        )
        body = encode_soap(issued.element, signing=config.signing())
    except (SAMLError, ValueError, TypeError) as error:
        raise PermanentFailure(f"The request could not be built with the partnership's keys: {error}") from None
    with transaction.atomic():
        if _held(job.pk, owner).filter(state=NameIdJob.State.PENDING).update(attempts=number, updated_at=now) != 1:
            raise TransientFailure("The job's lease ran out before the request was sent.")
        attempt = NameIdAttempt.objects.create(
            job=job,
            kind=NameIdAttempt.Kind.EXCHANGE,
            number=number,
            request_id=request_id,
            name_id=name_id_value,
            worker=owner[:200],
            started_at=now,
            message=body.decode("utf-8"),
        )
    job.attempts = number
    return attempt, in_doubt


def _linked_value(job, config):
    """The persistent identifier that links the job's user with the partner, or PermanentFailure in plain words."""
    directory_names = (job.directory,) if job.directory else config.directories
    identifiers = []
    if job.user_dn:
        identifiers = [(name, job.user_dn) for name in directory_names]
    else:
        for name in directory_names:
            identifier = _identifier_in(name, job.user_name)
            if identifier:
                identifiers.append((name, identifier))
        if not identifiers:
            raise PermanentFailure(
                f"No user named {job.user_name!r} was found in {', '.join(directory_names) or 'the partnership’s directories'}."
            )
    keys = [f"{name}:{identifier}" for name, identifier in identifiers]
    links = PersistentIdentifier.objects.filter(local_entity_id=config.local_entity_id, remote_entity_id=config.remote_entity_id)
    found = list(links.filter(user_key__in=keys).values_list("user_key", "value")[:3])
    if not found:  # DNs compare without regard to letter case
        condition = Q()
        for key in keys:
            condition |= Q(user_key__iexact=key)
        found = list(links.filter(condition).values_list("user_key", "value")[:3])
    if not found:
        user = job.user_dn or job.user_name
        raise PermanentFailure(
            f"{user} has no federation with {config.remote_entity_id}: no persistent identifier links them "
            f"(partnership {config.name}, directories {', '.join(directory_names)})."
        )
    if len(found) > 1:
        raise PermanentFailure(
            f"{job.user_dn or job.user_name} is linked with {config.remote_entity_id} in several directories "
            f"({', '.join(key.split(':', 1)[0] for key, _ in found)}); name the Directory."
        )
    return found[0][1]


def _identifier_in(directory_name, user_name):
    """The identifier the runtime keys users by in this directory: the user name (embedded) or the entry DN (LDAP)."""
    directory = UserDirectory.objects.filter(name=directory_name).first()
    if directory is None:
        return ""
    if directory.is_embedded:
        return user_name
    try:
        found = directories.find_user(directory, directory.user_filter or "(uid=%s)", user_name)
    except directories.DirectoryUnavailable as error:
        raise TransientFailure(f"The directory {directory_name} could not be reached: {error}") from None
    except directories.DirectoryError as error:
        raise PermanentFailure(f"The user {user_name!r} could not be looked up in {directory_name}: {error}") from None
    return found.identifier if found else ""


# --- The SOAP exchange ------------------------------------------------------------------------------------------------

_sessions = threading.local()


def _session():
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
    return session


class _ClientCertificateAdapter(HTTPAdapter):
    """An adapter whose TLS context presents our client certificate (the back channel's client-cert option)."""

    def __init__(self, context, **kwargs):
        self._context = context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["ssl_context"] = self._context
        return super().init_poolmanager(*args, **kwargs)


@lru_cache(maxsize=16)
def _client_certificate_session(alias, fingerprint):
    from cryptography.hazmat.primitives import serialization

    private_key, certificate = _key_pair_for(alias, fingerprint)
    context = ssl.create_default_context()
    # The ssl module loads keys from files only: write them to a private file, load, and remove it at once.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "client.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(
                private_key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            handle.write(certificate.public_bytes(serialization.Encoding.PEM))
        context.load_cert_chain(path)
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.mount("https://", _ClientCertificateAdapter(context))
    return session


def http_post(url, body, *, content_type, timeout, auth=None, session=None, headers=None, max_bytes=MAX_SOAP_ANSWER_BYTES):
    """POST `body`; (status, content type, answer bytes). The whole exchange must end within `timeout` seconds and the
    answer stay under `max_bytes`, or TransientFailure (outcome TIMEOUT for a timeout: the partner may have acted)."""
    deadline = time.monotonic() + timeout
    session = session or _session()
    try:
        with session.post(
            url,
            data=body,
            headers={"Content-Type": content_type, **(headers or {})},
            timeout=timeout,
            auth=auth,
            stream=True,
            allow_redirects=False,
            verify=setting("NAME_ID_CA_BUNDLE") or True,
        ) as answer:
            chunks, size = [], 0
            for chunk in answer.iter_content(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise TransientFailure(
                        f"{url} answered with more than {max_bytes} bytes", status=f"HTTP {answer.status_code}"
                    )
                if time.monotonic() > deadline:
                    raise TransientFailure(
                        f"{url} did not finish answering within {timeout} s", outcome=NameIdAttempt.Outcome.TIMEOUT
                    )
                chunks.append(chunk)
            return answer.status_code, answer.headers.get("Content-Type", ""), b"".join(chunks)
    except requests.exceptions.SSLError as error:
        raise TransientFailure(f"the TLS connection to {url} failed: {_connection_problem(error)}") from None
    except requests.ConnectTimeout:
        raise TransientFailure(f"could not connect to {url} within {timeout} s") from None
    except requests.Timeout:
        raise TransientFailure(f"{url} did not answer within {timeout} s", outcome=NameIdAttempt.Outcome.TIMEOUT) from None
    except requests.ConnectionError as error:
        reason = getattr(error.args[0] if error.args else None, "reason", None)
        if isinstance(reason, NewConnectionError):  # nothing was sent
            raise TransientFailure(f"could not reach {url}: {_connection_problem(error)}") from None
        # The connection broke after the request went out: the partner may have acted on it.
        raise TransientFailure(
            f"the connection to {url} broke before the answer: {_connection_problem(error)}",
            outcome=NameIdAttempt.Outcome.UNKNOWN,
        ) from None
    except requests.RequestException as error:
        raise TransientFailure(f"the call to {url} failed: {error}") from None


def _connection_problem(error):
    """The useful end of a requests connection error ("[Errno 111] Connection refused"), without object reprs."""
    reason = error.args[0] if error.args else error
    reason = getattr(reason, "reason", reason)
    return re.sub(r"<[^>]*>: ", "", str(reason)).removeprefix("Failed to establish a new connection: ")


def _exchange(config, attempt):
    """Send the attempt's request to the partner; the verified ManageNameIDResponse."""
    auth, session = None, None
    if config.backchannel_out_auth == "basic":
        auth = (config.backchannel_out_user, config.secret("backchannel_out_password"))
    elif config.backchannel_out_auth == "client_cert" and config.backchannel_out_client_alias:
        alias = config.backchannel_out_client_alias
        fingerprint = KeystoreEntry.objects.filter(alias=alias).values_list("fingerprint_sha256", flat=True).first()
        if fingerprint is None:
            raise PermanentFailure(f"The back-channel client certificate '{alias}' is no longer in the keystore.")
        session = _client_certificate_session(alias, fingerprint)
    status, _, answer = http_post(
        config.partner_url,
        attempt.message.encode("utf-8"),
        content_type="text/xml; charset=utf-8",
        timeout=config.soap_timeout,
        auth=auth,
        session=session,
        headers={"SOAPAction": '"http://www.oasis-open.org/committees/security"'},
    )
    try:
        return parse_manage_name_id_response_soap(answer, config.policy(), in_response_to=attempt.request_id)
    except SOAPFault as fault:
        if fault.fault_code.rsplit(":", 1)[-1] == "Client":
            error = PermanentFailure(
                f"The partner refused the request with a SOAP fault: {fault.fault_string or fault.fault_code}"
            )
            error.status = f"SOAP fault {fault.fault_code}"
            raise error from None
        raise TransientFailure(f"The partner answered with a SOAP fault: {fault}", status=f"HTTP {status}") from None
    except SAMLError as error:
        hint = "" if status == 200 else f" (HTTP {status})"
        raise TransientFailure(f"The partner's answer could not be used{hint}: {error}", status=f"HTTP {status}") from None


def _judge(response, attempt, in_doubt):
    """Success passes; a bare Responder error (the partner's own trouble) is retried; a refusal with a reason (a
    second-level code such as UnknownPrincipal, which pysaml2 sends under Responder) or a Requester error ends the
    job."""
    status = response.status
    if status.success:
        return
    if in_doubt and status.sub_code == C.STATUS_UNKNOWN_PRINCIPAL:
        # An earlier request that was left in doubt evidently reached the partner: the link is already gone there.
        log.info("UnknownPrincipal after an in-doubt request: counted as done", extra={"checkpoint": "NAMEID_DONE_EARLIER"})
        return
    text = f"The partner answered {status.describe()}"
    if status.code == C.STATUS_RESPONDER and not status.sub_code:
        raise TransientFailure(text, status=status.describe()[:255])
    error = PermanentFailure(text)
    error.status = status.describe()[:255]
    raise error


def _record(attempt, outcome, detail, status=""):
    NameIdAttempt.objects.filter(pk=attempt.pk).update(
        outcome=outcome, detail=detail[:4000], status=(status or "")[:255], finished_at=timezone.now()
    )


def _complete(job, owner, attempt, config, response):
    """Success: end the job and apply its local effect in one transaction, only while this worker holds the lease."""
    now = timezone.now()
    with transaction.atomic():
        finished = _held(job.pk, owner).filter(state=NameIdJob.State.PENDING)
        if finished.update(state=NameIdJob.State.COMPLETED, finished_at=now, last_error="", updated_at=now) != 1:
            log.warning(
                "name-ID job %s: lease lost before the success was recorded", job.uuid, extra={"checkpoint": "NAMEID_LEASE_LOST"}
            )
            return Outcome(NameIdJob.State.PENDING, "lease lost; the next worker re-sends the request in doubt", skipped=True)
        links = PersistentIdentifier.objects.filter(
            local_entity_id=config.local_entity_id, remote_entity_id=config.remote_entity_id, value=attempt.name_id
        )
        if job.operation == NameIdJob.Operation.TERMINATE:
            links.delete()
        else:
            links.update(value=job.new_id)
        NameIdAttempt.objects.filter(pk=attempt.pk).update(
            outcome=NameIdAttempt.Outcome.SUCCESS, status=response.status.describe()[:255], finished_at=now
        )
        _schedule_notification(job, config, now)
    log.info(
        "name-ID job %s completed: %s %s with %s",
        job.uuid,
        job.operation,
        job.user_label,
        job.provider_id,
        extra={"checkpoint": "NAMEID_JOB_COMPLETED"},
    )
    return Outcome(NameIdJob.State.COMPLETED, response.status.describe())


def _finish(job, owner, state, reason, config):
    now = timezone.now()
    with transaction.atomic():
        held = _held(job.pk, owner).filter(state=NameIdJob.State.PENDING)
        if held.update(state=state, finished_at=now, last_error=reason[:4000], updated_at=now) != 1:
            return Outcome(NameIdJob.State.PENDING, "lease lost", skipped=True)
        _schedule_notification(job, config, now)
    log.warning("name-ID job %s failed: %s", job.uuid, reason, extra={"checkpoint": "NAMEID_JOB_FAILED"})
    return Outcome(state, reason)


def _schedule_notification(job, config, now):
    """Inside the finishing transaction: release the lease and, when the partnership notifies, make the
    notification due."""
    values = {"lease_owner": "", "lease_expires_at": None}
    if config is None:
        config = _last_config(job)
    if config is not None and config.notification_target() is not None:
        values.update(notification_state=NameIdJob.NotificationState.PENDING, notification_next_at=now, enqueued_at=now)
        transaction.on_commit(lambda: enqueue(job.pk, "notification"))
    elif job.notification_state == NameIdJob.NotificationState.WAITING:
        values.update(notification_state=NameIdJob.NotificationState.NONE)
    NameIdJob.objects.filter(pk=job.pk).update(**values)


def _retry_or_fail(job, owner, reason, config):
    job.refresh_from_db(fields=["attempts", "max_attempts", "retry_interval_seconds"])
    if job.attempts >= job.max_attempts:
        return _finish(job, owner, NameIdJob.State.FAILED, f"Failed after {job.attempts} attempts. Last error: {reason}", config)
    now = timezone.now()
    interval = job.retry_interval_seconds
    updated = (
        _held(job.pk, owner)
        .filter(state=NameIdJob.State.PENDING)
        .update(
            last_error=reason[:4000],
            next_attempt_at=now + timedelta(seconds=interval),
            enqueued_at=now,
            lease_owner="",
            lease_expires_at=None,
            updated_at=now,
        )
    )
    if updated != 1:
        return Outcome(NameIdJob.State.PENDING, "lease lost", skipped=True)
    log.info(
        "name-ID job %s attempt %s failed (%s); next attempt in %s s",
        job.uuid,
        job.attempts,
        reason,
        interval,
        extra={"checkpoint": "NAMEID_JOB_RETRY"},
    )
    return Outcome(NameIdJob.State.PENDING, reason, retry_in=interval)


# --- Notifications ----------------------------------------------------------------------------------------------------


def notification_payload(job):
    """What the notification URL receives (JSON): Status 1 when the job completed, 0 when it failed."""
    return {
        "JobID": str(job.uuid),
        "Status": 1 if job.state == NameIdJob.State.COMPLETED else 0,
        "State": job.state,
        "Operation": job.operation,
        "OperationType": job.operation_type,
        "ProviderID": job.provider_id,
        "UserDN": job.user_dn,
        "UserName": job.user_name,
        "Partnership": job.partnership_name,
        "Attempts": job.attempts,
        "LastError": job.last_error,
        "FinishedAt": job.finished_at.isoformat() if job.finished_at else None,
    }


def notify_job(job_pk, owner=None, now=None):
    """One run of a finished job's notification (the body of the notification task)."""
    owner = owner or worker_identity()
    now = now or timezone.now()
    job = NameIdJob.objects.filter(pk=job_pk).first()
    if job is None or job.notification_state != NameIdJob.NotificationState.PENDING:
        return Outcome(job.notification_state if job else "missing", "nothing to do", skipped=True)
    config = _last_config(job)
    target = config.notification_target() if config else None
    lease = (target.timeout if target else 0) + setting("NAME_ID_LEASE_MARGIN_SECONDS")
    if not _claim(job_pk, owner, lease, now, notification=True):
        return Outcome(job.notification_state, "another worker holds the job, or it is not due yet", skipped=True)
    job.refresh_from_db()
    if target is None:
        return _notification_done(
            job, owner, NameIdJob.NotificationState.FAILED, "The partnership no longer has a notification URL."
        )
    number = job.notification_attempts + 1
    attempt = NameIdAttempt.objects.create(
        job=job,
        kind=NameIdAttempt.Kind.NOTIFICATION,
        number=number,
        request_id=f"{job.uuid}-notification",
        worker=owner[:200],
        started_at=now,
    )
    _held(job.pk, owner).update(notification_attempts=number)
    body = json.dumps(notification_payload(job)).encode()
    auth = (target.user, target.password) if target.user else None
    try:
        status, _, _ = http_post(
            target.url,
            body,
            content_type="application/json",
            timeout=target.timeout,
            auth=auth,
            headers={"Idempotency-Key": attempt.request_id},
            max_bytes=MAX_NOTIFICATION_ANSWER_BYTES,
        )
        if not 200 <= status < 300:
            raise TransientFailure(f"The notification URL answered HTTP {status}", status=f"HTTP {status}")
    except TransientFailure as error:
        _record(attempt, error.outcome, str(error), error.status)
        if number >= job.max_attempts:
            return _notification_done(job, owner, NameIdJob.NotificationState.FAILED, f"Failed after {number} attempts: {error}")
        interval = job.retry_interval_seconds
        _held(job.pk, owner).update(
            notification_error=str(error)[:4000],
            notification_next_at=now + timedelta(seconds=interval),
            enqueued_at=timezone.now(),
            lease_owner="",
            lease_expires_at=None,
        )
        return Outcome(job.state, str(error), retry_in=interval)
    _record(attempt, NameIdAttempt.Outcome.SUCCESS, "", f"HTTP {status}")
    return _notification_done(job, owner, NameIdJob.NotificationState.SENT, "")


def _notification_done(job, owner, state, error):
    now = timezone.now()
    _held(job.pk, owner).update(
        notification_state=state,
        notification_error=error[:4000],
        notified_at=now if state == NameIdJob.NotificationState.SENT else None,
        lease_owner="",
        lease_expires_at=None,
        updated_at=now,
    )
    level = logging.INFO if state == NameIdJob.NotificationState.SENT else logging.WARNING
    log.log(level, "name-ID job %s notification %s %s", job.uuid, state, error, extra={"checkpoint": "NAMEID_NOTIFICATION"})
    return Outcome(job.state, error or "notified")


# --- The sweeper ------------------------------------------------------------------------------------------------------


def resume_jobs(now=None):
    """Queue again every job that is due but has no live worker and no recent message: its worker died (the lease ran
    out), or its message was lost or never queued. Returns the number of jobs queued."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=setting("NAME_ID_REQUEUE_AFTER_SECONDS"))
    not_queued_lately = Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale)
    # A lease ran out (its worker died): queue once after that, and again only when that message is stale too.
    lease_ran_out = Q(lease_expires_at__lt=now) & (not_queued_lately | Q(enqueued_at__lt=F("lease_expires_at")))
    exchange = NameIdJob.objects.filter(state=NameIdJob.State.PENDING, next_attempt_at__lte=now).filter(
        lease_ran_out | Q(lease_expires_at__isnull=True, next_attempt_at__lt=stale) & not_queued_lately
    )
    notify = NameIdJob.objects.filter(
        notification_state=NameIdJob.NotificationState.PENDING, notification_next_at__lte=now
    ).filter(lease_ran_out | Q(lease_expires_at__isnull=True, notification_next_at__lt=stale) & not_queued_lately)
    queued = 0
    for rows, phase in ((exchange, "exchange"), (notify, "notification")):
        for pk in list(rows.values_list("pk", flat=True)[:10000]):
            # Marking it queued is itself conditional, so two sweepers at once queue a job once.
            if rows.filter(pk=pk).update(enqueued_at=now) == 1:
                enqueue(pk, phase)
                queued += 1
    if queued:
        log.info("queued %s name-ID jobs again", queued, extra={"checkpoint": "NAMEID_RESUMED"})
    return queued


def prune_receipts(now=None):
    """Forget answered partner requests after NAME_ID_RECEIPT_DAYS (a partner re-sends within minutes, not days)."""
    cutoff = (now or timezone.now()) - timedelta(days=setting("NAME_ID_RECEIPT_DAYS"))
    return NameIdReceipt.objects.filter(received_at__lt=cutoff).delete()[0]


# --- Reading jobs -----------------------------------------------------------------------------------------------------


def job_document(job, url=""):
    """The API's JSON view of a job."""
    document = {
        "JobID": str(job.uuid),
        "State": job.state,
        "Operation": job.operation,
        "OperationType": job.operation_type,
        "ProviderID": job.provider_id,
        "Partnership": job.partnership_name,
        "UserDN": job.user_dn or None,
        "UserName": job.user_name or None,
        "Directory": job.directory or None,
        "NewID": job.new_id or None,
        "Attempts": job.attempts,
        "MaxAttempts": job.max_attempts,
        "LastError": job.last_error or None,
        "NextAttemptAt": job.next_attempt_at.isoformat()
        if job.state == NameIdJob.State.PENDING and job.next_attempt_at
        else None,
        "CreatedAt": job.created_at.isoformat() if job.created_at else None,
        "FinishedAt": job.finished_at.isoformat() if job.finished_at else None,
        "Notification": {
            "State": job.notification_state,
            "Attempts": job.notification_attempts,
            "LastError": job.notification_error or None,
        },
    }
    if url:
        document = {"url": url, **document}
    return document


def job_queryset(state="", provider="", partnership="", user="", operation=""):
    jobs = NameIdJob.objects.all()
    if state:
        jobs = jobs.filter(state=state.upper())
    if provider:
        jobs = jobs.filter(provider_id__icontains=provider)
    if partnership:
        jobs = jobs.filter(partnership_name__icontains=partnership)
    if user:
        jobs = jobs.filter(Q(user_dn__icontains=user) | Q(user_name__icontains=user))
    if operation:
        jobs = jobs.filter(operation=operation)
    return jobs


def counts():
    from django.db.models import Count

    found = dict(NameIdJob.objects.values_list("state").annotate(n=Count("id")))
    return {state: found.get(state, 0) for state in NameIdJob.State.values}


# --- Answering partners: /affwebservices/public/saml2nidsoap ----------------------------------------------------------


@dataclass
class SoapAnswer:
    status: int
    body: bytes
    headers: dict = field(default_factory=dict)


def _fault(message, code="Client"):
    return SoapAnswer(500, to_bytes(soap_fault(message, code), xml_declaration=True))


def _config_for_issuer(issuer):
    """Our active partnership with the partner `issuer`, whichever side we play; None when there is none."""
    for kind in (KIND_FOR_OPERATION_TYPE["sp"], KIND_FOR_OPERATION_TYPE["idp"]):
        try:
            return partner_config(find_active(kind, issuer))
        except NoActivePartnership:
            continue
    return None


def answer_request(body, *, request_url="", authorization="", headers=None, remote_addr="", now=None):
    """Our answer to a ManageNameIDRequest a partner POSTed over SOAP: verify it under the partnership, delete or change
    the persistent identifier it names, and answer with a signed ManageNameIDResponse (UnknownPrincipal when the
    NameID links no user). A request seen before (same issuer and ID) gets the recorded answer again."""
    try:
        message = read_soap(body)
    except SAMLError as error:
        return _fault(f"The request is not a usable SOAP message: {error}")
    issuer = message.issuer
    if message.name != "ManageNameIDRequest":
        return _fault(f"This endpoint answers ManageNameIDRequest messages, not {message.name}.")
    if not issuer:
        return _fault("The ManageNameIDRequest has no Issuer, so the partner cannot be identified.")
    config = _config_for_issuer(issuer)
    if config is None:
        log.warning("ManageNameIDRequest from unknown partner %s", issuer, extra={"checkpoint": "NAMEID_UNKNOWN_PARTNER"})
        return _fault(f"There is no active SAML 2.0 partnership with {issuer}.")
    if config.backchannel_in_auth == backchannel.NONE:
        log.warning(
            "ManageNameIDRequest from %s without back-channel authentication (partnership %s: none)",
            issuer,
            config.name,
            extra={"checkpoint": "NAMEID_UNAUTHENTICATED"},
        )
    refused = backchannel.refusal(
        config.backchannel_in_auth,
        partnership_name=config.name,
        password=lambda: config.secret("backchannel_in_password"),
        realm=config.name,
        authorization=authorization,
        headers=headers,
        remote_addr=remote_addr,
        now=now,
    )
    if refused is not None:
        log.warning("ManageNameIDRequest from %s refused: %s", issuer, refused.detail, extra={"checkpoint": "NAMEID_AUTH"})
        return SoapAnswer(refused.status, to_bytes(soap_fault(refused.message, "Client"), xml_declaration=True), refused.headers)
    unverified_id = message.element.get("ID")
    if not config.enabled:
        return _saml_answer(
            config,
            unverified_id if is_xml_id(unverified_id) else None,
            C.STATUS_REQUESTER,
            C.STATUS_REQUEST_UNSUPPORTED,
            "Manage Name ID is not enabled for this partner.",
        )
    try:
        request = parse_manage_name_id_request_soap(body, config.policy((request_url,) if request_url else ()), now=now)
    except (ProtocolError, SAMLError) as error:
        status, sub_status = status_for_error(error)
        known = getattr(error, "request", None)
        in_response_to = known.id if known is not None else (unverified_id if is_xml_id(unverified_id) else None)
        log.warning("ManageNameIDRequest from %s refused: %s", issuer, error, extra={"checkpoint": "NAMEID_REQUEST_REFUSED"})
        return _saml_answer(config, in_response_to, status, sub_status, str(error))
    key = hashlib.sha256(f"{request.issuer}\n{request.id}".encode()).hexdigest()
    previous = NameIdReceipt.objects.filter(key=key).values_list("response", flat=True).first()
    if previous:
        log.info(
            "ManageNameIDRequest %s from %s seen before: same answer", request.id, issuer, extra={"checkpoint": "NAMEID_REPEAT"}
        )
        return SoapAnswer(200, previous.encode("utf-8"))
    try:
        with transaction.atomic():
            receipt = NameIdReceipt.objects.create(
                key=key,
                issuer=request.issuer[:1024],
                request_id=request.id[:256],
                partnership_name=config.name,
                operation=request.operation,
                status="processing",
                response="",
            )
            status, sub_status, text = _apply_request(config, request)
            answer = _saml_answer(config, request.id, status, sub_status, text)
            receipt.status = (sub_status or status).rsplit(":", 1)[-1]
            receipt.response = answer.body.decode("utf-8")
            receipt.save(update_fields=["status", "response"])
    except IntegrityError:  # the same request arrived twice at once; the other copy's answer is recorded now
        previous = NameIdReceipt.objects.filter(key=key).values_list("response", flat=True).first()
        return (
            SoapAnswer(200, (previous or "").encode("utf-8")) if previous else _fault("The request is being processed.", "Server")
        )
    log.info(
        "ManageNameIDRequest %s from %s (%s): %s",
        request.id,
        issuer,
        request.operation,
        receipt.status,
        extra={"checkpoint": "NAMEID_REQUEST_ANSWERED"},
    )
    return answer


def _apply_request(config, request):
    """(status, sub status, message) after acting on a verified request."""
    name_id = request.name_id
    idp, sp = (
        (config.local_entity_id, config.remote_entity_id)
        if config.we_are_idp
        else (config.remote_entity_id, config.local_entity_id)
    )
    if (name_id.name_qualifier and name_id.name_qualifier != idp) or (
        name_id.sp_name_qualifier and name_id.sp_name_qualifier != sp
    ):
        return C.STATUS_REQUESTER, C.STATUS_UNKNOWN_PRINCIPAL, "The NameID is qualified for other entities."
    links = PersistentIdentifier.objects.select_for_update().filter(
        local_entity_id=config.local_entity_id, remote_entity_id=config.remote_entity_id, value=name_id.value
    )
    link = links.first()
    if link is None:
        return C.STATUS_REQUESTER, C.STATUS_UNKNOWN_PRINCIPAL, "No user is federated under this NameID."
    if request.new_id is None:
        link.delete()
        return C.STATUS_SUCCESS, None, None
    if request.new_id != link.value:
        taken = PersistentIdentifier.objects.filter(
            local_entity_id=config.local_entity_id, remote_entity_id=config.remote_entity_id, value=request.new_id
        )
        if taken.exists():
            return C.STATUS_REQUESTER, C.STATUS_REQUEST_DENIED, "The NewID already identifies another user."
        link.value = request.new_id
        link.save(update_fields=["value", "updated_at"])
    return C.STATUS_SUCCESS, None, None


def _saml_answer(config, in_response_to, status, sub_status=None, message=None):
    issued = build_manage_name_id_response(
        issuer=config.local_entity_id,
        destination=None,
        in_response_to=in_response_to,
        status=status,
        sub_status=sub_status,
        message=message,
    )
    try:
        signing = config.signing()
    except PermanentFailure as error:
        log.error("cannot sign the ManageNameIDResponse: %s", error, extra={"checkpoint": "NAMEID_SIGNING"})
        signing = None
    return SoapAnswer(200, encode_soap(issued.element, signing=signing))
