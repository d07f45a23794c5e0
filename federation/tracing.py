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


# ---------------------------------------------------------------------------------------------------------------------
# SAML transaction IDs. One federation transaction (an AuthnRequest, its login page, the Response) spans several HTTP
# requests, each with its own transaction ID. Binding the SAML ID (the AuthnRequest or Response ID) to the current
# request stores a link line under the SAML ID that names the request's transaction ID, so the console's search finds
# the SAML transaction by either ID; `saml_transaction_id()` lets runtime log lines carry the SAML ID as well.

# (request transaction ID, SAML transaction ID): keyed by the request's ID, so a worker thread that serves the next
# request never sees the previous request's binding even though nothing resets this variable.
_saml_binding = contextvars.ContextVar("saml_transaction_binding", default=("", ""))
SAML_TRANSACTION_CHECKPOINT = "SAML_TRANSACTION"


def saml_transaction_id():
    """The SAML transaction ID bound to the current request, or ""."""
    txid, saml_id = _saml_binding.get()
    return saml_id if txid == current_transaction_id() else ""


def bind_saml_transaction(saml_id, note=""):
    """Map the SAML transaction ID `saml_id` to the current per-request transaction ID.

    Stores one trace line under the SAML ID ("served by request transaction …") and logs one line in the request's
    transaction naming the SAML ID. Binding the same ID twice in one request does nothing. Returns the SAML ID.
    """
    saml_id = (saml_id or "").strip()[:64]
    txid = current_transaction_id()
    if not saml_id or txid == "-" or _saml_binding.get() == (txid, saml_id):
        return saml_id
    _saml_binding.set((txid, saml_id))
    logger = logging.getLogger("federation.tracing")
    if not logger.isEnabledFor(logging.INFO):
        return saml_id  # trace lines are off (FEDERATION_LOG_LEVEL above INFO): no link line either
    suffix = f" ({note})" if note else ""
    logger.info("SAML transaction %s%s", saml_id, suffix, extra={"checkpoint": SAML_TRANSACTION_CHECKPOINT})
    try:
        from federation.models import TraceLine

        TraceLine.objects.create(
            transaction_id=saml_id,
            level="INFO",
            logger="federation.tracing",
            checkpoint=SAML_TRANSACTION_CHECKPOINT,
            message=f"SAML transaction {saml_id} served by request transaction {txid}{suffix}"[:4000],
        )
    except Exception:  # noqa: BLE001 - like the trace store: tracing must not fail the request
        pass
    return saml_id


def request_transactions_of(saml_id):
    """The request transaction IDs a SAML transaction was bound to, oldest first (for the console's search)."""
    from federation.models import TraceLine

    prefix = f"SAML transaction {saml_id} served by request transaction "
    messages = TraceLine.objects.filter(transaction_id=saml_id, checkpoint=SAML_TRANSACTION_CHECKPOINT).order_by("at", "id")
    found = []
    for message in messages.values_list("message", flat=True):
        if message.startswith(prefix):
            txid = message[len(prefix) :].split(" ", 1)[0]
            if txid not in found:
                found.append(txid)
    return found


def log_checkpoint(logger, level, checkpoint, message, *args):
    """One trace line with its checkpoint code, prefixed with the SAML transaction ID when one is bound."""
    saml_id = saml_transaction_id()
    logger.log(level, ("[SAML %s] " if saml_id else "%s") + message, saml_id, *args, extra={"checkpoint": checkpoint})
