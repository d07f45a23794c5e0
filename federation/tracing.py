"""Transaction IDs, checkpoint codes and structured log lines.

One transaction ID per inbound request (or per Celery task / CLI command), held in a context
variable so that every log line written while serving it carries the ID. The ID is returned in
the `X-Transaction-ID` header and shown on error pages; the console's trace page finds every
stored line of a transaction.

Log with a checkpoint code so lines can be grepped by step:
    log.info("key pair generated", extra={"checkpoint": "KEYSTORE_GENERATE"})
"""

import atexit
import contextvars
import json
import logging
import os
import re
import threading
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
        with buffered_trace_lines():
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

    The store is what the console's transaction search reads, shared by every web node. Lines logged while a request
    is served are kept in memory and written with one INSERT when the request ends (`buffered_trace_lines`): one
    INSERT and commit per line was the largest cost of a sign-on. Outside a request (a Celery task, a command) each
    line is written at once, so a long job's progress shows while it runs. A failure to store a line must never break
    the request that logged it, so errors are swallowed here (the line still reaches the console handler).
    """

    def emit(self, record):
        txid = getattr(record, "transaction_id", "-")
        if txid == "-" or _storing.get():
            return
        store_trace_line(txid, record.levelname, record.name, getattr(record, "checkpoint", ""), record.getMessage())


# Trace lines waiting for the end of the current request (None outside a request: lines are written at once), and a
# guard so that a log line written while storing (a database warning, say) is not stored in turn.
_pending_lines = contextvars.ContextVar("pending_trace_lines", default=None)
_storing = contextvars.ContextVar("storing_trace_lines", default=False)
_MAX_PENDING_LINES = 200  # a request that logs more than this writes them in several INSERTs


def store_trace_line(transaction_id, level, logger, checkpoint, message):
    from django.utils import timezone

    line = (timezone.now(), transaction_id[:64], level[:10], logger[:100], (checkpoint or "")[:64], message[:4000])
    pending = _pending_lines.get()
    if pending is None:
        _write_trace_lines([line])
        return
    pending.append(line)
    if len(pending) >= _MAX_PENDING_LINES:
        _write_trace_lines(pending)
        pending.clear()


_TRACE_COLUMNS = ("at", "transaction_id", "level", "logger", "checkpoint", "message")


def _write_trace_lines(lines):
    """One multi-row INSERT, written by hand: the ORM's bulk_create cost more than the statement itself, on every
    request. A single statement needs no explicit transaction."""
    if not lines:
        return
    token = _storing.set(True)
    try:
        from django.db import connection

        from federation.models import TraceLine

        quote = connection.ops.quote_name
        adapt = connection.ops.adapt_datetimefield_value
        row = "(" + ", ".join(["%s"] * len(_TRACE_COLUMNS)) + ")"
        sql = (
            f"INSERT INTO {quote(TraceLine._meta.db_table)} ({', '.join(quote(c) for c in _TRACE_COLUMNS)}) "
            f"VALUES {', '.join([row] * len(lines))}"
        )
        params = [value for line in lines for value in (adapt(line[0]), *line[1:])]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    except Exception:  # noqa: BLE001 - tracing must not fail the request
        pass
    finally:
        _storing.reset(token)


@contextmanager
def buffered_trace_lines():
    """Collect the trace lines logged inside the block (a request) and store them at its end, also when it raises,
    outside any database transaction of the block, so a rolled-back view keeps its trace.

    With `FEDERATION_TRACE_FLUSH_SECONDS` above 0 (the default, 0.5) the lines join a per-process buffer that a
    background thread writes with one INSERT every that many seconds, so a request costs no trace query at all;
    with 0 they are written in the request's own thread before the response leaves."""
    pending = []
    token = _pending_lines.set(pending)
    try:
        yield
    finally:
        _pending_lines.reset(token)
        if pending:
            if _flush_seconds() > 0:
                _process_buffer.add(pending)
            else:
                _write_trace_lines(pending)


def _flush_seconds():
    from django.conf import settings

    return float(getattr(settings, "TRACE_FLUSH_SECONDS", 0))


class _ProcessTraceBuffer:
    """Trace lines of finished requests waiting for the background writer of this process.

    The writer thread is started on first use in each process (after a fork, too) and writes whatever has gathered
    every `FEDERATION_TRACE_FLUSH_SECONDS`, on its own database connection. A request thread writes the buffer itself
    when it holds _MAX_BUFFERED_LINES lines, so memory stays bounded under any load; the rest is written at exit. A
    worker killed outright loses at most the last interval's lines from the store; the log stream still has them."""

    _MAX_BUFFERED_LINES = 2000

    def __init__(self):
        self._lock = threading.Lock()
        self._lines = []
        self._writer_pid = None

    def add(self, lines):
        with self._lock:
            self._lines.extend(lines)
            full = len(self._lines) >= self._MAX_BUFFERED_LINES
            if self._writer_pid != os.getpid():
                self._writer_pid = os.getpid()
                threading.Thread(target=self._write_periodically, name="trace-store-writer", daemon=True).start()
        if full:
            self.flush()

    def flush(self):
        """Write what has gathered; returns how many lines that was."""
        with self._lock:
            lines, self._lines = self._lines, []
        for start in range(0, len(lines), _MAX_PENDING_LINES):
            _write_trace_lines(lines[start : start + _MAX_PENDING_LINES])
        return len(lines)

    def _write_periodically(self):
        from django.db import connection

        pid = os.getpid()
        while self._writer_pid == pid:
            seconds = _flush_seconds()
            if seconds <= 0:  # switched to per-request writes: the next add() starts a writer again if needed
                with self._lock:
                    self._writer_pid = None
                self.flush()
                break
            time.sleep(seconds)
            if self.flush():
                connection.close_if_unusable_or_obsolete()  # e.g. a restarted database: the next flush reconnects
            else:
                connection.close()  # idle: hold no connection (nor a lock on the database) while nothing is logged
        connection.close()


_process_buffer = _ProcessTraceBuffer()
atexit.register(_process_buffer.flush)


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
    store_trace_line(
        saml_id,
        "INFO",
        "federation.tracing",
        SAML_TRANSACTION_CHECKPOINT,
        f"SAML transaction {saml_id} served by request transaction {txid}{suffix}",
    )
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
