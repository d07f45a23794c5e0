from celery import shared_task

from federation import services


@shared_task
def prune_trace_lines():
    return services.prune_trace_lines()


@shared_task
def sweep_replay_cache():
    from federation import replay

    return replay.sweep_expired()
