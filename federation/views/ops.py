"""Operations endpoints: /healthz for load balancers, /metrics for Prometheus. No login, no secrets."""

from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from federation import metrics, services


@require_GET
def healthz(request):
    checks = services.health_checks()
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ok" if healthy else "failing", "checks": checks}, status=200 if healthy else 503)


@require_GET
def metrics_view(request):
    return HttpResponse(metrics.render(services.metric_gauges()), content_type="text/plain; version=0.0.4; charset=utf-8")
