"""What the federation runtime answers when it cannot go on, and the auto-submitted POST form.

Shared by the IdP and SP runtimes (and later SAML 1.1 / WS-Fed), so every refusal looks the same to a user: the
partnership's status redirect for that condition when one is configured (docs/partnership-settings.md,
`status_redirects`), otherwise a page in plain words with the transaction ID. The detail for the administrator goes
to the log (and so to the console's trace search) under the checkpoint code, never onto the page.

Status redirects:
- method "302": a plain 302 redirect to the URL, no data added ("302 No Data" in the reference).
- method "post": an auto-submitted HTML form POSTing `status` (the HTTP status, such as 403), `condition` (the row's
  condition, such as unauthorized) and `transaction_id`, so the receiving page can show or log them.
"""

import logging
from dataclasses import dataclass, field

from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.html import escape

from federation.tracing import current_transaction_id, saml_transaction_id

log = logging.getLogger("federation.runtime")

# HTTP status -> the status redirect condition that handles it (SAML 2.0 IdP and SP rows).
CONDITION_FOR_STATUS = {
    400: "bad_request",
    403: "unauthorized",
    405: "method_not_allowed",
    500: "server_error",
}

TITLE_FOR_STATUS = {
    400: "The request could not be used",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    413: "Message too large",
    500: "Something went wrong",
    502: "A partner did not answer",
    503: "Service unavailable",
}


def _transaction_id(request):
    return getattr(request, "transaction_id", None) or current_transaction_id()


def _no_store(response):
    # Runtime pages carry one-time data (SAML messages, form tokens): never cached by browsers or proxies.
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def find_status_redirect(redirects, condition):
    """The row of `redirects` (the partnership's status_redirects table) for `condition`, or None."""
    for row in redirects or ():
        if row.get("condition") == condition and row.get("url"):
            return row
    return None


def runtime_error(request, *, status, message, checkpoint, redirects=None, detail="", condition=None, title=None):
    """The response for a runtime refusal.

    status: the HTTP status of the error page (400, 403, 405, 500 …).
    message: plain words for the user (shown).
    checkpoint: the trace checkpoint code of this refusal (e.g. SSOSAML2_ACS_NOT_REGISTERED).
    redirects: the partnership's status_redirects rows when the partner is known (else None: no redirect).
    detail: what the administrator needs to know (logged, never shown).
    condition: the status redirect condition; by default the one for `status` (400 bad_request, 403 unauthorized,
        405 method_not_allowed, 500 server_error). The SP runtime passes user_not_found and the like.
    """
    condition = condition or CONDITION_FOR_STATUS.get(status, "")
    saml_id = saml_transaction_id()
    level = logging.ERROR if status >= 500 else logging.WARNING
    log.log(
        level,
        "%s%s (HTTP %s%s)%s",
        f"[SAML {saml_id}] " if saml_id else "",
        message,
        status,
        f", {condition}" if condition else "",
        f": {detail}" if detail else "",
        extra={"checkpoint": checkpoint},
    )
    row = find_status_redirect(redirects, condition) if condition else None
    if row is not None:
        log.info("status redirect (%s) to %s", row.get("method", "302"), row["url"], extra={"checkpoint": "STATUS_REDIRECT"})
        if row.get("method") == "post":
            fields = {"status": str(status), "condition": condition, "transaction_id": _transaction_id(request)}
            return post_form(request, row["url"], fields, title="Continue")
        return _no_store(HttpResponseRedirect(row["url"]))
    return error_page(request, status, message, title=title)


def error_page(request, status, message, title=None):
    """A runtime error page in plain words with the transaction ID (no status redirect)."""
    title = title or TITLE_FOR_STATUS.get(status, "The request could not be completed")
    transaction_id = _transaction_id(request)
    try:
        response = render(
            request,
            "runtime/error.html",
            {"status": status, "title": title, "text": message, "transaction_id": transaction_id},
            status=status,
        )
    except Exception:  # noqa: BLE001 - e.g. the database is down; the page must still be plain words
        log.exception("runtime error page could not be rendered", extra={"checkpoint": "RUNTIME_ERROR_PAGE"})
        response = HttpResponse(
            f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1><p>{escape(message)}</p>"
            f"<p>Transaction ID: <code>{escape(transaction_id)}</code></p>",
            status=status,
        )
    return _no_store(response)


def post_form(request, url, fields, *, title="Continue", status=200):
    """An HTML page whose form POSTs `fields` (name -> value, empty values left out) to `url`.

    A small script submits it at once; without JavaScript the user sees a Continue button. Used for the SAML
    HTTP-POST binding and POST status redirects.
    """
    inputs = "".join(
        f'  <input type="hidden" name="{escape(name)}" value="{escape(value)}">\n'
        for name, value in fields.items()
        if value not in (None, "")
    )
    # Formatted here rather than by a template: this page is on every HTTP-POST sign-on and rendering a template cost
    # more than building the assertion's XML. Every value is HTML-escaped.
    html = _POST_FORM_PAGE.format(title=escape(title), url=escape(url), inputs=inputs)
    return _no_store(HttpResponse(html, status=status))


_POST_FORM_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <title>{title}</title>
</head>
<body onload="document.forms[0].submit()">
<form method="post" action="{url}">
{inputs}  <noscript><p>Your browser does not run scripts: press Continue to go on.</p></noscript>
  <button type="submit">Continue</button>
</form>
</body>
</html>
"""


# --- results the runtime services hand to their views (the IdP, SP-logout and SLO runtimes share them) -------------


@dataclass
class Refusal:
    """An error page (or the partnership's status redirect) in plain words; `detail` is logged, never shown."""

    status: int
    message: str
    checkpoint: str
    detail: str = ""
    redirects: list | None = None
    condition: str | None = None


@dataclass
class PostForm:
    """Send the browser on with an auto-submitted form (HTTP-POST binding)."""

    url: str
    fields: dict


@dataclass
class Redirect:
    url: str


@dataclass
class SoapAnswer:
    status: int
    body: bytes
    headers: dict = field(default_factory=dict)
