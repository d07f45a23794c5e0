"""The SAML 2.0 SP runtime endpoints (docs/sp-runtime.md): read the request, call federation.sp_runtime, turn its
Outcome into a redirect or an auto-submitted form with its cookies, and every refusal into the partnership's status
redirect or the plain error page with the transaction ID (federation.runtime_errors).

No console login, no CSRF token: SAML messages are protected by signatures and InResponseTo, the session check is
read-only, and the other endpoints only redirect.
"""

import functools
import json
import logging

from django.conf import settings
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from federation import runtime_paths, sp_runtime
from federation.runtime_errors import post_form, runtime_error
from federation.runtime_middleware import runtime_view

log = logging.getLogger("federation.runtime.sp")


def _secure(request):
    return request.is_secure() or settings.SESSION_COOKIE_SECURE


def _apply_cookies(request, response, cookies):
    secure = _secure(request)
    for cookie in cookies:
        if cookie.delete:
            response.delete_cookie(cookie.name, path="/", domain=cookie.domain, samesite="Lax")
            continue
        response.set_cookie(
            cookie.name,
            cookie.value,
            max_age=cookie.max_age,
            path="/",
            domain=cookie.domain,
            secure=secure,
            httponly=cookie.http_only,
            # A cookie that must come back on the IdP's cross-site POST needs SameSite=None, which needs Secure.
            samesite="None" if cookie.cross_site and secure else "Lax",
        )
    return response


def _respond(request, outcome):
    if outcome.post_url:
        response = post_form(request, outcome.post_url, outcome.post_fields or {})
    else:
        response = HttpResponseRedirect(outcome.redirect_url)
        response["Cache-Control"] = "no-store"
    return _apply_cookies(request, response, outcome.cookies)


def _refused(request, error):
    return runtime_error(
        request,
        status=error.status,
        message=error.message,
        checkpoint=error.checkpoint,
        redirects=error.redirects,
        detail=error.detail,
        condition=error.condition,
    )


def _runtime(methods):
    """A runtime view: only `methods` (else 405), SpError → status redirect or error page, anything unexpected → the
    500 page with the transaction ID (the traceback goes to the log, never to the page)."""

    def decorate(view):
        @runtime_view
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method not in methods:
                return runtime_error(
                    request,
                    status=405,
                    message=f"This address does not accept {request.method} requests.",
                    checkpoint="SSOSAML2SP_METHOD_NOT_ALLOWED",
                    detail=f"{request.method} {request.path}",
                )
            try:
                return view(request, *args, **kwargs)
            except sp_runtime.SpError as error:
                return _refused(request, error)
            except Exception:  # noqa: BLE001 - a page in plain words, never a stack trace
                log.exception("SP runtime failed on %s", request.path, extra={"checkpoint": "SSOSAML2SP_SERVER_ERROR"})
                return runtime_error(
                    request,
                    status=500,
                    message="Something went wrong while signing you in. Please try again later.",
                    checkpoint="SSOSAML2SP_SERVER_ERROR",
                )

        return wrapped

    return decorate


@_runtime(("GET", "POST"))
def authn_request(request):
    """saml2authnrequest?ProviderID=…[&ProtocolBinding=…|&AssertionConsumerServiceIndex=…][&ForceAuthn=yes]
    [&RelayState=…][&AllowCreate=…]"""
    params = sp_runtime.parameters(request.POST if request.method == "POST" else request.GET)
    outcome = sp_runtime.start_sso(params, browser_id=request.COOKIES.get(sp_runtime.BROWSER_COOKIE))
    return _respond(request, outcome)


@_runtime(("GET", "POST"))
def assertion_consumer(request):
    """POST SAMLResponse (+RelayState); GET or POST SAMLart (+RelayState); GET with the provisioning state cookie."""
    params = sp_runtime.parameters(request.POST if request.method == "POST" else request.GET)
    context = {
        "browser_id": request.COOKIES.get(sp_runtime.BROWSER_COOKIE),
        "session_cookie": request.COOKIES.get(sp_runtime.SESSION_COOKIE),
    }
    if "samlresponse" in params:
        if request.method != "POST":
            raise sp_runtime.SpError(
                "The sign-in message must be sent with POST.",
                status=405,
                checkpoint="SSOSAML2SP_METHOD_NOT_ALLOWED",
                detail="SAMLResponse arrived in the query string; the HTTP-POST binding posts it",
                condition=sp_runtime.METHOD_NOT_ALLOWED,
            )
        outcome = sp_runtime.consume_post(params["samlresponse"], params.get("relaystate"), **context)
    elif "samlart" in params:
        outcome = sp_runtime.consume_artifact(params["samlart"], params.get("relaystate"), **context)
    elif request.method == "GET" and sp_runtime.PROVISIONING_COOKIE in request.COOKIES:
        outcome = sp_runtime.finish_provisioning(
            request.COOKIES[sp_runtime.PROVISIONING_COOKIE], session_cookie=context["session_cookie"]
        )
    else:
        raise sp_runtime.SpError(
            "No sign-in message arrived.",
            status=400,
            checkpoint="SSOSAML2SP_ACS_NO_MESSAGE",
            detail="the ACS got neither SAMLResponse, SAMLart nor a provisioning state cookie",
            condition=sp_runtime.BAD_REQUEST,
        )
    return _respond(request, outcome)


@_runtime(("GET",))
def provisioning_return(request):
    """Where the provisioning application sends the user back (the provisioning state cookie says who)."""
    outcome = sp_runtime.finish_provisioning(
        request.COOKIES.get(sp_runtime.PROVISIONING_COOKIE), session_cookie=request.COOKIES.get(sp_runtime.SESSION_COOKIE)
    )
    return _respond(request, outcome)


@runtime_view
def session_check(request):
    """For nginx auth_request (any method: the subrequest takes the original's): 200 with the identity headers, 401
    without an SP session, 403 when the browser sent a header with the partnership's prefix. ?format=json adds the
    same as a JSON body; ?provisioning=1 answers for a pending remote provisioning instead."""
    try:
        result = sp_runtime.session_check(
            request.COOKIES.get(sp_runtime.SESSION_COOKIE),
            list(request.headers.keys()),
            provisioning_key=request.COOKIES.get(sp_runtime.PROVISIONING_COOKIE, "") if request.GET.get("provisioning") else None,
        )
    except Exception:  # noqa: BLE001 - the proxy must get a status, never a traceback
        log.exception("session check failed", extra={"checkpoint": "SSOSAML2SP_SERVER_ERROR"})
        return HttpResponse(status=500)
    if request.GET.get("format") == "json" and result.data is not None:
        response = HttpResponse(json.dumps(result.data), status=result.status, content_type="application/json")
    else:
        response = HttpResponse(status=result.status)
    for name, value in result.headers.items():
        response[name] = value
    response["Cache-Control"] = "no-store"
    return response


@_runtime(("GET",))
def idp_discovery(request):
    """saml2ipd?IPDTarget=…[&SAMLRequest=getIPDCookie|setIPDCookie&ProviderID=…]"""
    params = sp_runtime.parameters(request.GET)
    outcome = sp_runtime.discovery(params, request.COOKIES.get(sp_runtime.COMMON_DOMAIN_COOKIE), request.get_host())
    return _respond(request, outcome)


@_runtime(("GET",))
def site_selection(request):
    """The IdPs this browser has used (from the common-domain cookie), each a link that starts SSO."""
    params = sp_runtime.parameters(request.GET)
    page_url = request.build_absolute_uri(runtime_paths.SAML2_SP_SITE_SELECTION)
    result = sp_runtime.site_selection(params, page_url)
    if isinstance(result, sp_runtime.Outcome):
        return _respond(request, result)
    response = render(request, "sp/site_selection.html", {"selection": result, "title": "Choose where to sign in"})
    response["Cache-Control"] = "no-store"
    return response
