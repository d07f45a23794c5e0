"""Actions of the runtime package shared by views, commands and tasks."""

import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from federation.roles import ADMINISTRATORS, AUDITORS

log = logging.getLogger("federation.services")


def ensure_role_groups():
    for name in (ADMINISTRATORS, AUDITORS):
        Group.objects.get_or_create(name=name)


def create_administrator(username, password=None, email=""):
    """Create (or find) a console administrator. Returns (user, generated_password or None).

    A generated password is returned once for the caller to print; it is never stored in clear.
    """
    ensure_role_groups()
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user, None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    user = User.objects.create_superuser(username=username, email=email, password=password)
    user.groups.add(Group.objects.get(name=ADMINISTRATORS))
    return user, generated


def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _check_broker():
    from kombu import Connection

    from federation.celery import app

    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        folder = settings.BROKER_DIR / "out"
        probe = folder / ".healthz"
        probe.write_text("ok")
        probe.unlink()
        return "filesystem"
    with Connection(url, connect_timeout=3, transport_options=app.conf.broker_transport_options) as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
        return conn.transport_cls if isinstance(conn.transport_cls, str) else url.split("://", 1)[0]


def health_checks():
    """{name: {"ok": bool, "detail": str}} for the database and the Celery broker."""
    results = {}
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            results[name] = {"ok": True, "detail": str(check())}
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            log.warning("health check %s failed: %s", name, exc, extra={"checkpoint": "HEALTH_FAIL"})
            results[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}
    return results


def metric_gauges():
    """Figures read from the shared database at scrape time (see metrics.render)."""
    from entities.services import expiry_overview
    from federation.models import AuditEvent

    gauges = [
        ("federation_audit_events", "Audit events recorded.", {(): AuditEvent.objects.count()}),
    ]
    overview = expiry_overview()
    gauges.append(
        (
            "federation_certificates",
            "Keystore certificates by expiry state.",
            {(("state", state),): count for state, count in overview["counts"].items()},
        )
    )
    from federation import jobs

    gauges.append(("federation_jobs", "Background jobs by state.", {(("state", s),): n for s, n in jobs.counts().items()}))
    return gauges


def prune_trace_lines(days=None):
    from federation.models import TraceLine

    cutoff = timezone.now() - timedelta(days=days or settings.TRACE_RETENTION_DAYS)
    deleted, _ = TraceLine.objects.filter(at__lt=cutoff).delete()
    return deleted
