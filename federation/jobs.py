"""History of background jobs: each Celery task run becomes a JobRun row (shown on the Jobs page,
counted in /metrics). Also gives every task its own transaction ID for tracing."""

from celery.signals import task_failure, task_postrun, task_prerun, task_retry
from django.db.models import Count
from django.utils import timezone

from federation import tracing

_tokens = {}


def counts():
    from federation.models import JobRun

    found = dict(JobRun.objects.values_list("state").annotate(n=Count("id")))
    return {state: found.get(state, 0) for state in JobRun.State.values}


@task_prerun.connect
def _started(task_id=None, task=None, **kwargs):
    from federation.models import JobRun

    _tokens[task_id] = tracing._transaction_id.set(f"task-{task_id}")
    JobRun.objects.create(task_id=task_id, name=task.name, state=JobRun.State.STARTED)


@task_postrun.connect
def _finished(task_id=None, retval=None, state=None, **kwargs):
    from federation.models import JobRun

    if state == "SUCCESS":
        JobRun.objects.filter(task_id=task_id, state=JobRun.State.STARTED).update(
            state=JobRun.State.SUCCEEDED, finished_at=timezone.now(), result=str(retval)[:500]
        )
    token = _tokens.pop(task_id, None)
    if token is not None:
        tracing._transaction_id.reset(token)


@task_failure.connect
def _failed(task_id=None, exception=None, **kwargs):
    from federation.models import JobRun

    JobRun.objects.filter(task_id=task_id, state=JobRun.State.STARTED).update(
        state=JobRun.State.FAILED, finished_at=timezone.now(), error=f"{type(exception).__name__}: {exception}"[:1000]
    )


@task_retry.connect
def _retrying(request=None, reason=None, **kwargs):
    from federation.models import JobRun

    JobRun.objects.filter(task_id=request.id, state=JobRun.State.STARTED).update(
        state=JobRun.State.RETRYING, finished_at=timezone.now(), error=str(reason)[:1000]
    )
