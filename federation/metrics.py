"""Prometheus text exposition for /metrics.

Request and error counters are per process (each web node is scraped on its own, as Prometheus
expects); job and certificate figures are read from the shared database at scrape time.
"""

import threading
from collections import Counter

_lock = threading.Lock()
_requests = Counter()
_latency_sum = Counter()


def _route_family(path):
    if path.startswith("/affwebservices/"):
        return "runtime"
    if path.startswith(("/healthz", "/metrics")):
        return "ops"
    return "console"


def observe_request(request, status, seconds):
    key = (_route_family(request.path), request.method, str(status))
    with _lock:
        _requests[key] += 1
        _latency_sum[key[0]] += seconds


def _escape(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(extra_gauges):
    """extra_gauges: iterable of (name, help, {labels-tuple: value}) read by the caller."""
    lines = [
        "# HELP federation_http_requests_total HTTP requests served by this process.",
        "# TYPE federation_http_requests_total counter",
    ]
    with _lock:
        requests = dict(_requests)
        latency = dict(_latency_sum)
    for (family, method, status), count in sorted(requests.items()):
        lines.append(f'federation_http_requests_total{{family="{family}",method="{method}",status="{status}"}} {count}')
    lines += [
        "# HELP federation_http_errors_total HTTP responses with status 5xx served by this process.",
        "# TYPE federation_http_errors_total counter",
    ]
    errors = Counter()
    for (family, _method, status), count in requests.items():
        if status.startswith("5"):
            errors[family] += count
    for family in ("console", "runtime", "ops"):
        lines.append(f'federation_http_errors_total{{family="{family}"}} {errors[family]}')
    lines += [
        "# HELP federation_http_request_seconds_sum Total time spent serving requests.",
        "# TYPE federation_http_request_seconds_sum counter",
    ]
    for family, total in sorted(latency.items()):
        lines.append(f'federation_http_request_seconds_sum{{family="{family}"}} {total:.6f}')
    for name, help_text, samples in extra_gauges:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for labels, value in sorted(samples.items()):
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")
    return "\n".join(lines) + "\n"
