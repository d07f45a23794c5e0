"""The trace store's background writer: with FEDERATION_TRACE_FLUSH_SECONDS above 0 a request writes no trace line
itself; the process's writer thread stores the gathered lines with one INSERT a moment later.

The writer has its own database connection, so these tests need committed data (transaction=True)."""

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from federation import tracing
from federation.models import TraceLine

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_for(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_request_writes_no_trace_line_and_the_writer_stores_them_shortly_after(settings, client):
    settings.ROOT_URLCONF = "tests.urls_with_failing_view"
    settings.TRACE_FLUSH_SECONDS = 0.1
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/rolled-back/")
    assert response.status_code == 200
    assert not [q["sql"] for q in queries.captured_queries if "federation_traceline" in q["sql"]]
    txid = response[tracing.TRANSACTION_HEADER]
    assert _wait_for(lambda: TraceLine.objects.filter(transaction_id=txid).count() == 2)
    assert list(TraceLine.objects.filter(transaction_id=txid).order_by("id").values_list("checkpoint", flat=True)) == [
        "TEST_BEFORE",
        "TEST_INSIDE",
    ]


def test_a_full_buffer_is_written_by_the_request_that_fills_it(settings, client, monkeypatch):
    """Memory stays bounded under load: the request that fills the process buffer writes it at once, even when the
    writer thread would wait a long time. (A buffer of its own, so an earlier test's writer thread cannot flush it.)"""
    settings.ROOT_URLCONF = "tests.urls_with_failing_view"
    settings.TRACE_FLUSH_SECONDS = 3600
    buffer = tracing._ProcessTraceBuffer()
    monkeypatch.setattr(tracing, "_process_buffer", buffer)
    lines_per_request = 2
    requests = buffer._MAX_BUFFERED_LINES // lines_per_request
    for _ in range(requests - 1):
        client.get("/rolled-back/")
    assert TraceLine.objects.count() == 0
    client.get("/rolled-back/")
    assert TraceLine.objects.count() == buffer._MAX_BUFFERED_LINES
