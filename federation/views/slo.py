"""The single logout endpoints (docs/single-logout.md): thin views over federation.slo_runtime.

They read what the service functions need from the request (without reading a body larger than the runtime accepts)
and turn the results into responses: a redirect or an auto-submitted form carrying a logout message, the confirm
page, an error page or status redirect (federation.runtime_errors), a SOAP answer; and they clear the cookies of the
sessions that ended (FEDSESSION of the IdP runtime, FEDSPSESSION and the open-format cookie of the SP runtime).

CSRF: exempt, like every SAML endpoint (logout messages are signed; the other links only end this browser's own
sessions).
"""

import logging

from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from federation import slo_runtime, sso_sessions
from federation.runtime_errors import post_form, runtime_error
from federation.runtime_middleware import runtime_view

log = logging.getLogger("federation.runtime.slo")


def _content_length(request):
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def _no_store(response):
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def _refusal(request, refusal):
    return runtime_error(
        request,
        status=refusal.status,
        message=refusal.message,
        checkpoint=refusal.checkpoint,
        redirects=refusal.redirects,
        detail=refusal.detail,
        condition=refusal.condition,
    )


def respond(request, outcome):
    """The HTTP response for a `slo_runtime.Outcome`."""
    result = outcome.result
    if isinstance(result, slo_runtime.Refusal):
        response = _refusal(request, result)
    elif isinstance(result, slo_runtime.Redirect):
        response = _no_store(HttpResponseRedirect(result.url))
    elif isinstance(result, slo_runtime.PostForm):
        response = post_form(request, result.url, result.fields, title="Signing you out")
    elif isinstance(result, slo_runtime.ConfirmPage):
        context = {"page": result, "transaction_id": getattr(request, "transaction_id", "")}
        response = _no_store(render(request, "runtime/slo_done.html", context))
    else:  # pragma: no cover - every result type is handled above
        raise TypeError(f"unexpected logout result {result!r}")
    if outcome.clear_idp_cookie:
        sso_sessions.clear_cookie(response, request)
    for cookie in outcome.clear_sp_cookies:
        response.delete_cookie(cookie.name, path="/", domain=cookie.domain, samesite="Lax")
    return response


@runtime_view
def saml2slo(request):
    """GET/POST /affwebservices/public/saml2slo: LogoutRequest / LogoutResponse on HTTP-Redirect (GET) and HTTP-POST,
    and the logout links: ?ProviderID=<IdP> (SP-initiated), ?LocalLogout=true, ?SPID=<SP> or ?Logout=all
    (IdP-initiated), optional RelayState."""
    length = _content_length(request)
    query = request.META.get("QUERY_STRING", "")
    try:
        if length > slo_runtime.MAX_POST_BYTES or len(query) > slo_runtime.MAX_QUERY_BYTES:
            outcome = slo_runtime.front_channel(request.method, query, {}, content_length=length)
        else:
            source = request.POST if request.method == "POST" else request.GET
            params = slo_runtime.parameters((name, value) for name, values in source.lists() for value in values)
            outcome = slo_runtime.front_channel(
                request.method,
                query,
                params,
                idp_cookie=sso_sessions.cookie_value(request),
                sp_cookie=request.COOKIES.get(slo_runtime.sp_runtime.SESSION_COOKIE, ""),
                content_length=length,
            )
    except slo_runtime.LogoutRefused as refused:
        outcome = slo_runtime.Outcome(refused.refusal)
    except Exception:  # noqa: BLE001 - a page in plain words, never a stack trace
        log.exception("single logout failed on %s", request.path, extra={"checkpoint": slo_runtime.Checkpoint.SERVER_ERROR})
        outcome = slo_runtime.Outcome(
            slo_runtime.Refusal(
                500, "Something went wrong while signing you out. Please try again later.", slo_runtime.Checkpoint.SERVER_ERROR
            )
        )
    return respond(request, outcome)


@runtime_view
def saml2slosoap(request):
    """POST /affwebservices/public/saml2slosoap: a SOAP LogoutRequest → the SOAP LogoutResponse."""
    length = _content_length(request)
    # A body over the limit is refused by its announced size, without reading it.
    body = request.body if request.method == "POST" and length <= slo_runtime.MAX_POST_BYTES else b""
    try:
        answer = slo_runtime.back_channel(
            request.method,
            body,
            authorization=request.headers.get("Authorization", ""),
            headers=request.headers,
            remote_addr=request.META.get("REMOTE_ADDR", ""),
            content_length=length,
        )
    except Exception:  # noqa: BLE001 - a SOAP fault, never a stack trace
        log.exception("SOAP single logout failed", extra={"checkpoint": slo_runtime.Checkpoint.SERVER_ERROR})
        answer = slo_runtime.server_fault()
    response = HttpResponse(answer.body, status=answer.status, content_type="text/xml; charset=utf-8")
    for name, value in answer.headers.items():
        response[name] = value
    return _no_store(response)
