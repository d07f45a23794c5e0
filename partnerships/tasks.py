"""Celery tasks of name-ID management: thin wrappers over partnerships.name_id_jobs (the job row, not the message, is
the source of truth, so a duplicate or redelivered message does nothing and a lost one is found by the sweeper)."""

from celery import shared_task

from federation.celery import app
from partnerships import name_id_jobs

PROCESS = "partnerships.tasks.process_name_id_job"
NOTIFY = "partnerships.tasks.notify_name_id_job"
RESUME = "partnerships.tasks.resume_name_id_jobs"


def _run(task, function, job_pk):
    outcome = function(job_pk, owner=name_id_jobs.worker_identity(task.request.id or ""))
    if outcome.retry_in is not None and not task.request.is_eager:
        # Celery's countdown wakes the job when it is due; the job row's next_attempt_at is what counts.
        raise task.retry(countdown=outcome.retry_in, max_retries=None)
    return f"{outcome.state}: {outcome.detail}"[:500]


@shared_task(bind=True, name=PROCESS, acks_late=True, max_retries=None)
def process_name_id_job(self, job_pk):
    return _run(self, name_id_jobs.process_job, job_pk)


@shared_task(bind=True, name=NOTIFY, acks_late=True, max_retries=None)
def notify_name_id_job(self, job_pk):
    return _run(self, name_id_jobs.notify_job, job_pk)


@shared_task(name=RESUME)
def resume_name_id_jobs():
    queued = name_id_jobs.resume_jobs()
    pruned = name_id_jobs.prune_receipts()
    return f"queued {queued} jobs again, forgot {pruned} old partner requests"


# Beat runs the sweeper (the reference's BackgroundProcessingInterval); added here so the schedule lives with the task.
app.conf.beat_schedule.setdefault(
    "name-id-jobs-resume", {"task": RESUME, "schedule": float(name_id_jobs.setting("NAME_ID_SWEEP_SECONDS"))}
)
