"""Error pages in plain words with the transaction ID; never a stack trace."""

import logging

from django.http import HttpResponse
from django.shortcuts import render
from django.utils.html import escape

from federation.tracing import current_transaction_id

log = logging.getLogger("federation.errors")


def _page(request, status, title, text):
    transaction_id = getattr(request, "transaction_id", None) or current_transaction_id()
    try:
        return render(
            request,
            "errors/error.html",
            {
                "status": status,
                "title": title,
                "text": text,
                "transaction_id": transaction_id,
            },
            status=status,
        )
    except Exception:  # noqa: BLE001 - e.g. the database is down; the page must still be plain words
        log.exception("error page could not be rendered", extra={"checkpoint": "CONSOLE_ERROR_PAGE"})
        return HttpResponse(
            f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1><p>{escape(text)}</p>"
            f"<p>Transaction ID: <code>{escape(transaction_id)}</code></p>",
            status=status,
        )


def bad_request(request, exception=None):
    return _page(request, 400, "Bad request", "The request could not be understood.")


def permission_denied(request, exception=None):
    reason = str(exception) if exception and str(exception) else "You do not have permission to do this."
    return _page(request, 403, "Not allowed", reason)


def not_found(request, exception=None):
    return _page(request, 404, "Not found", "There is nothing at this address.")


def server_error(request):
    log.error("server error while serving %s", request.path, extra={"checkpoint": "CONSOLE_SERVER_ERROR"})
    return _page(request, 500, "Something went wrong", "The error has been logged. Quote the transaction ID when you report it.")


def csrf_failure(request, reason=""):
    return _page(
        request,
        403,
        "Form expired",
        "The form was not accepted (its security token is missing or stale). Go back, reload the page and try again.",
    )
