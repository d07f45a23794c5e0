from celery import shared_task

from federation import services


@shared_task
def prune_trace_lines():
    return services.prune_trace_lines()


@shared_task
def sweep_replay_cache():
    from federation import replay

    return replay.sweep_expired()


@shared_task
def sweep_sp_state():
    """Stored AuthnRequests, provisioning states and SP sessions past their time (federation.sp_runtime)."""
    from federation import sp_runtime

    return sp_runtime.sweep_expired()


@shared_task
def sweep_idp_runtime_state():
    """Delete expired SSO sessions (with their participants) and expired artifact messages."""
    from federation import artifact_store, sso_sessions

    return {"sessions": sso_sessions.session_store().sweep(), "artifacts": artifact_store.sweep()}


@shared_task
def sweep_slo_state():
    """Single-logout progress records past their time (federation.slo_runtime)."""
    from federation import slo_runtime

    return slo_runtime.sweep_expired()
