"""Background jobs of the keystore; thin wrappers over entities.services."""

from celery import shared_task

from entities import services


@shared_task(name="entities.tasks.check_certificate_expiry", autoretry_for=(Exception,), retry_backoff=60, max_retries=3)
def check_certificate_expiry():
    """Record and log crossed certificate expiry thresholds (beat runs it every few hours; idempotent)."""
    recorded = services.record_expiry_warnings()
    return f"{len(recorded)} new expiry warning(s)"
