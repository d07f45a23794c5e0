import json
import logging

import pytest
from django.test import Client

from federation import tracing
from federation.models import TraceLine

pytestmark = pytest.mark.django_db
log = logging.getLogger("federation.tests")


def test_every_response_carries_a_fresh_transaction_id(client):
    first = client.get("/accounts/login/")["X-Transaction-ID"]
    second = client.get("/accounts/login/")["X-Transaction-ID"]
    assert len(first) == 32 and first != second


def test_inbound_transaction_id_from_a_balancer_is_kept_only_when_well_formed(client):
    assert client.get("/healthz", HTTP_X_TRANSACTION_ID="lb-node2:0001abcd")["X-Transaction-ID"] == "lb-node2:0001abcd"
    assert client.get("/healthz", HTTP_X_TRANSACTION_ID="<script>")["X-Transaction-ID"] != "<script>"


def test_log_lines_of_a_transaction_are_stored_and_found_in_the_console(admin_client):
    with tracing.transaction("feedfacefeedface") as txid:
        log.info("assertion built", extra={"checkpoint": "SSOSAML2_TEST"})
        log.warning("partner slow")
    log.info("outside any transaction")
    assert list(TraceLine.objects.values_list("transaction_id", "checkpoint", "message")) == [
        (txid, "SSOSAML2_TEST", "assertion built"),
        (txid, "", "partner slow"),
    ]
    page = admin_client.get("/trace/", {"transaction": txid}).content.decode()
    assert "assertion built" in page and "SSOSAML2_TEST" in page and "partner slow" in page


def test_a_failing_request_logs_under_its_transaction_id(settings, admin_user, admin_client):
    settings.ROOT_URLCONF = "tests.urls_with_failing_view"
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    response = client.get("/boom/")
    txid = response["X-Transaction-ID"]
    assert response.status_code == 500 and txid in response.content.decode()
    stored = TraceLine.objects.get(transaction_id=txid)
    assert stored.level == "ERROR" and stored.checkpoint == "CONSOLE_SERVER_ERROR"
    page = admin_client.get("/trace/", {"transaction": txid}).content.decode()
    assert "server error while serving /boom/" in page


def test_a_requests_trace_lines_are_stored_in_one_insert_at_its_end_even_when_its_transaction_rolls_back(settings, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.ROOT_URLCONF = "tests.urls_with_failing_view"
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/rolled-back/")
    inserts = [q["sql"] for q in queries.captured_queries if "federation_traceline" in q["sql"]]
    assert len(inserts) == 1 and inserts[0].startswith("INSERT")
    stored = TraceLine.objects.filter(transaction_id=response["X-Transaction-ID"]).order_by("id")
    assert [line.checkpoint for line in stored] == ["TEST_BEFORE", "TEST_INSIDE"]
    assert stored[0].at <= stored[1].at  # the time each line was logged, not when they were stored


def test_json_log_format_has_transaction_and_checkpoint():
    record = logging.LogRecord("federation.x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.checkpoint = "CP_1"
    with tracing.transaction("abcabcabcabc"):
        tracing.TransactionFilter().filter(record)
    line = json.loads(tracing.JsonFormatter().format(record))
    assert line == line | {"transaction_id": "abcabcabcabc", "checkpoint": "CP_1", "message": "hello world", "level": "INFO"}


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]


def test_healthz_fails_with_a_reason_when_the_broker_is_down(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"  # discard port: nothing listens
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing" and body["checks"]["database"]["ok"]
    assert body["checks"]["broker"]["ok"] is False and body["checks"]["broker"]["detail"]


def test_metrics_are_prometheus_text(client, admin_client):
    admin_client.get("/")
    Client(raise_request_exception=False).get("/healthz")
    text = client.get("/metrics").content.decode()
    assert "# TYPE federation_http_requests_total counter" in text
    assert 'federation_http_requests_total{family="console",method="GET",status="200"}' in text
    assert 'federation_http_errors_total{family="console"}' in text
    assert 'federation_jobs{state="FAILED"} 0' in text
    assert "federation_certificates{state=" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2
