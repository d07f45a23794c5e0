"""Console pages owned by the runtime package: dashboard, audit log, transaction trace, jobs, settings."""

from django.conf import settings
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import render

from federation.jobs import counts as job_counts
from federation.models import AuditEvent, JobRun, TraceLine
from federation.roles import console_view

PAGE_SIZE = 50


def paginate(request, queryset, per_page=PAGE_SIZE):
    """A page of `queryset` and the query string of the current filters (without `page`)."""
    page = Paginator(queryset, per_page).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return page, params.urlencode()


@console_view
def dashboard(request):
    from entities.metadata_import import metadata_failures
    from entities.services import expiry_overview

    return render(
        request,
        "console/dashboard.html",
        {
            "expiry": expiry_overview(),
            "metadata_failures": metadata_failures(),
            "recent_audit": AuditEvent.objects.all()[:8],
            "recent_failures": TraceLine.objects.filter(level__in=["ERROR", "CRITICAL"]).order_by("-at")[:8],
        },
    )


@console_view
def audit_log(request):
    events = AuditEvent.objects.all()
    q = request.GET.get("q", "").strip()
    if q:
        events = events.filter(
            Q(object_repr__icontains=q) | Q(object_type__icontains=q) | Q(actor__icontains=q) | Q(summary__icontains=q)
        )
    action = request.GET.get("action", "")
    if action in AuditEvent.Action.values:
        events = events.filter(action=action)
    page, query = paginate(request, events)
    return render(
        request,
        "console/audit.html",
        {"page": page, "query": query, "q": q, "action": action, "actions": AuditEvent.Action.choices},
    )


@console_view
def trace(request):
    txid = request.GET.get("transaction", "").strip()
    if txid:
        lines = TraceLine.objects.filter(transaction_id=txid)[:2000]
    else:
        lines = TraceLine.objects.order_by("-at", "-id")[:30]
    return render(request, "console/trace.html", {"transaction": txid, "lines": lines})


@console_view
def jobs(request):
    runs = JobRun.objects.all()
    state = request.GET.get("state", "")
    if state in JobRun.State.values:
        runs = runs.filter(state=state)
    name = request.GET.get("name", "").strip()
    if name:
        runs = runs.filter(name__icontains=name)
    page, query = paginate(request, runs)
    return render(
        request,
        "console/jobs.html",
        {"page": page, "query": query, "state": state, "name": name, "states": JobRun.State.values, "counts": job_counts()},
    )


@console_view
def settings_page(request):
    db = settings.DATABASES["default"]
    return render(
        request,
        "console/settings.html",
        {
            "facts": [
                ("Database engine", db["ENGINE"].rsplit(".", 1)[-1]),
                ("Database name", str(db.get("NAME", ""))),
                ("Celery broker", settings.CELERY_BROKER_URL.split("://", 1)[0] + "://…"),
                ("Shared cache / session store", "Redis" if settings.REDIS_URL else "database"),
                ("Log format", settings.LOG_FORMAT),
                ("Production cookie flags", "on" if settings.PRODUCTION else "off (development)"),
                ("Console LDAP login", "on" if settings.CONSOLE_LDAP_URI else "off"),
                ("Certificate expiry warnings (days)", ", ".join(map(str, settings.CERTIFICATE_EXPIRY_WARNING_DAYS))),
                ("Trace retention (days)", str(settings.TRACE_RETENTION_DAYS)),
                ("Require https for service URLs", "on" if settings.FEDERATION_REQUIRE_HTTPS else "off"),
            ],
        },
    )
