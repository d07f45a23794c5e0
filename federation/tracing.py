"""Transaction IDs, checkpoint codes and structured log lines.

One transaction ID per inbound request (or per Celery task / CLI command), held in a context
variable so that every log line written while serving it carries the ID. The ID is returned in
the `X-Transaction-ID` header and shown on error pages; the console's trace page finds every
stored line of a transaction.

Log with a checkpoint code so lines can be grepped by step:
    log.info("key pair generated", extra={"checkpoint": "KEYSTORE_GENERATE"})
"""

import contextvars
import json
import logging
import re
import time
import uuid
from contextlib import contextmanager

TRANSACTION_HEADER = "X-Transaction-ID"
_transaction_id = contextvars.ContextVar("transaction_id", default="-")
_VALID_INBOUND_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def new_transaction_id():
    return uuid.uuid4().hex


def current_transaction_id():
    return _transaction_id.get()


@contextmanager
def transaction(transaction_id=None):
    """Run a block (a task, a command) under its own transaction ID."""
    token = _transaction_id.set(transaction_id or new_transaction_id())
    try:
        yield _transaction_id.get()
    finally:
        _transaction_id.reset(token)


class TransactionMiddleware:
    """Gives each request a transaction ID and counts requests for /metrics.

    An inbound X-Transaction-ID from a load balancer is kept when it looks like an ID, so one
    transaction can be followed across nodes; anything else is replaced.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from federation import metrics

        inbound = request.headers.get(TRANSACTION_HEADER, "")
        txid = inbound if _VALID_INBOUND_ID.match(inbound) else new_transaction_id()
        token = _transaction_id.set(txid)
        request.transaction_id = txid
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response[TRANSACTION_HEADER] = txid
            metrics.observe_request(request, response.status_code, time.monotonic() - started)
            return response
        finally:
            _transaction_id.reset(token)


class TransactionFilter(logging.Filter):
    """Adds transaction_id and checkpoint to every record so formatters can rely on them."""

    def filter(self, record):
        if not getattr(record, "transaction_id", None):
            record.transaction_id = current_transaction_id()
        if not hasattr(record, "checkpoint"):
            record.checkpoint = ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record):
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "transaction_id": getattr(record, "transaction_id", current_transaction_id()),
            "checkpoint": getattr(record, "checkpoint", ""),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TraceStoreHandler(logging.Handler):
    """Keeps federation's own log lines that belong to a transaction in the database.

    The store is what the console's transaction search reads, shared by every web node. A failure
    to store a line must never break the request that logged it, so errors are swallowed here
    (the line still reaches the console handler).
    """

    _guard = contextvars.ContextVar("trace_store_guard", default=False)

    def emit(self, record):
        txid = getattr(record, "transaction_id", "-")
        if txid == "-" or self._guard.get():
            return
        token = self._guard.set(True)
        try:
            from federation.models import TraceLine

            TraceLine.objects.create(
                transaction_id=txid,
                level=record.levelname,
                logger=record.name[:100],
                checkpoint=getattr(record, "checkpoint", "")[:64],
                message=record.getMessage()[:4000],
            )
        except Exception:  # noqa: BLE001 - logging must not fail the caller
            pass
        finally:
            self._guard.reset(token)
