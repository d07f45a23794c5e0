"""Background jobs of the entities app (keystore expiry, metadata scan, bulk import and refresh);
thin wrappers over entities.services and entities.metadata_import."""

from celery import shared_task
from django.conf import settings
from django.db import transaction

from entities import metadata_import, services
from entities.models import MetadataSource


@shared_task(name="entities.tasks.check_certificate_expiry", autoretry_for=(Exception,), retry_backoff=60, max_retries=3)
def check_certificate_expiry():
    """Record and log crossed certificate expiry thresholds (beat runs it every few hours; idempotent)."""
    recorded = services.record_expiry_warnings()
    return f"{len(recorded)} new expiry warning(s)"


@shared_task(name="entities.tasks.refresh_metadata_sources")
def refresh_metadata_sources():
    """Beat: start a refresh of every URL metadata source that is due (each as its own task), and
    delete finished import jobs and uploads older than two days. Idempotent: a source is claimed
    before its task is queued, so overlapping runs never queue it twice."""
    started = metadata_import.refresh_due_sources(enqueue=lambda source_id: enqueue(refresh_metadata_source, source_id))
    pruned = metadata_import.prune_jobs()
    return f"{len(started)} metadata source(s) queued for refresh, {pruned} old job row(s) pruned"


@shared_task(name="entities.tasks.refresh_metadata_source")
def refresh_metadata_source(source_id, force=False):
    """Fetch one metadata source again and apply the changes (failures are recorded on the source)."""
    source = MetadataSource.objects.filter(pk=source_id).first()
    if source is None:
        return "metadata source gone"
    return metadata_import.refresh_source(source, force=force).line()


@shared_task(name="entities.tasks.scan_metadata")
def scan_metadata(job_id):
    """Read and verify a document for the import wizard (progress in MetadataImportJob)."""
    return metadata_import.run_scan_job(job_id).state


@shared_task(name="entities.tasks.bulk_import_metadata")
def bulk_import_metadata(job_id):
    """Import every matching entity of an aggregate (progress in MetadataImportJob)."""
    job = metadata_import.run_bulk_job(job_id)
    return f"{job.state}: {job.created_count} created, {job.updated_count} updated, {job.failed_count} failed"


def enqueue(task, *args):
    """Run `task` in the worker once the current transaction has committed (so the worker sees the
    rows it needs); in the embedded test mode (CELERY_TASK_ALWAYS_EAGER) run it right here."""
    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        return task.apply(args=args)
    transaction.on_commit(lambda: task.delay(*args))
    return None
