"""The SAML 2.0 IdP runtime endpoints (docs/idp-runtime.md): thin views over federation.idp_runtime.

They read what the service functions need from the request (without touching a body larger than the runtime
accepts), and turn results into responses: an error page or status redirect (federation.runtime_errors), an
auto-submitted POST form, a redirect, the login or consent page, a SOAP answer; and they set the FEDSESSION cookie.

CSRF: SAML endpoints are exempt from Django's CSRF check (signatures and InResponseTo protect them); the login and
consent forms carry their own anti-forgery values instead (bound to the browser and to the session respectively).
"""

import secrets
from urllib.parse import urlencode

from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from federation import idp_runtime, runtime_paths, sso_sessions
from federation.runtime_errors import post_form, runtime_error
from federation.runtime_middleware import runtime_view

LOGIN_COOKIE = "FEDLOGIN"  # a random per-browser value the login form's anti-forgery token is bound to


def _content_length(request):
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def _no_store(response):
    response["Cache-Control"] = "no-store"
    return response


def _login_url(token):
    return runtime_paths.IDP_LOGIN + "?" + urlencode({"tx": token})


def _browser_id(request):
    value = request.COOKIES.get(LOGIN_COOKIE, "")
    return value if 20 <= len(value) <= 64 else ""


def _render_login(request, page):
    browser_id = _browser_id(request) or secrets.token_urlsafe(24)
    response = render(
        request,
        "runtime/login.html",
        {
            "page": page,
            "form_token": idp_runtime.login_form_token(browser_id, page.token),
            "action": runtime_paths.IDP_LOGIN,
        },
        status=page.status,
    )
    secure = sso_sessions.cookie_is_secure(request)
    response.set_cookie(LOGIN_COOKIE, browser_id, path=sso_sessions.COOKIE_PATH, secure=secure, httponly=True, samesite="Lax")
    return _no_store(response)


def _render_consent(request, page):
    template = "runtime/consent.html"
    context = {"page": page, "action": runtime_paths.IDP_CONSENT}
    if page.custom_template:
        # A custom consent page (the partnership's "User consent form"); $$userconsent_spid$$ / _idpid$$ as in the
        # reference. It must post the same fields as the built-in page.
        from django.template import TemplateDoesNotExist
        from django.template.loader import get_template
        from django.utils.html import escape

        try:
            html = get_template(page.custom_template).render(context, request)
        except TemplateDoesNotExist:
            html = None
        if html is not None:
            html = html.replace("$$userconsent_spid$$", escape(page.partner)).replace("$$userconsent_idpid$$", escape(page.idp))
            return _no_store(HttpResponse(html))
    return _no_store(render(request, template, context))


def respond(request, outcome, *, login_view=False):
    """The HTTP response for an `idp_runtime.Outcome`."""
    result = outcome.result
    if isinstance(result, idp_runtime.Refusal):
        response = runtime_error(
            request,
            status=result.status,
            message=result.message,
            checkpoint=result.checkpoint,
            redirects=result.redirects,
            detail=result.detail,
            condition=result.condition,
        )
    elif isinstance(result, idp_runtime.PostForm):
        response = post_form(request, result.url, result.fields, title="Signing you in")
    elif isinstance(result, idp_runtime.Redirect):
        response = _no_store(HttpResponseRedirect(result.url))
    elif isinstance(result, idp_runtime.LoginPage):
        response = _render_login(request, result) if login_view else _no_store(HttpResponseRedirect(_login_url(result.token)))
    elif isinstance(result, idp_runtime.ConsentPage):
        response = _render_consent(request, result)
    else:  # pragma: no cover - every result type is handled above
        raise TypeError(f"unexpected runtime result {result!r}")
    if outcome.set_session is not None:
        sso_sessions.set_cookie(response, request, outcome.set_session)
    return response


@runtime_view
def saml2sso(request):
    """GET/POST /affwebservices/public/saml2sso."""
    length = _content_length(request)
    query = request.META.get("QUERY_STRING", "")
    if length > idp_runtime.MAX_POST_BYTES or len(query) > idp_runtime.MAX_QUERY_BYTES:
        outcome = idp_runtime.sso(request.method, query, {}, {}, "", length)
    else:
        post = request.POST if request.method == "POST" else {}
        outcome = idp_runtime.sso(request.method, query, request.GET, post, sso_sessions.cookie_value(request), length)
    return respond(request, outcome)


@runtime_view
def login(request):
    """GET/POST /affwebservices/public/login: the runtime's own login page (user name and password)."""
    if request.method == "GET":
        return respond(request, idp_runtime.login_page(request.GET.get("tx", "")), login_view=True)
    if request.method != "POST":
        return runtime_error(
            request, status=405, message="This page accepts only GET and POST.", checkpoint="SSOSAML2_METHOD_NOT_ALLOWED"
        )
    if _content_length(request) > 64 * 1024:
        return runtime_error(request, status=413, message="The form is too large.", checkpoint="SSOSAML2_MESSAGE_TOO_LARGE")
    outcome = idp_runtime.login(
        request.POST.get("tx", ""),
        request.POST.get("form_token", ""),
        _browser_id(request),
        request.POST.get("username", ""),
        request.POST.get("password", ""),
        "cancel" in request.POST,
        sso_sessions.cookie_value(request),
        sso_sessions.cookie_is_secure(request),
    )
    return respond(request, outcome, login_view=True)


@runtime_view
def consent(request):
    """POST /affwebservices/public/consent: the user's answer on the consent page."""
    if request.method != "POST":
        return runtime_error(
            request, status=405, message="This page accepts only the consent form.", checkpoint="SSOSAML2_METHOD_NOT_ALLOWED"
        )
    if _content_length(request) > 256 * 1024:
        return runtime_error(request, status=413, message="The form is too large.", checkpoint="SSOSAML2_MESSAGE_TOO_LARGE")
    outcome = idp_runtime.consent(
        request.POST.get("token", ""),
        request.POST.get("form_token", ""),
        request.POST.get("decision") == "allow",
        sso_sessions.cookie_value(request),
    )
    return respond(request, outcome)


@runtime_view
def saml2artifactresolution(request):
    """POST /affwebservices/saml2artifactresolution: SOAP ArtifactResolve → ArtifactResponse."""
    length = _content_length(request)
    # A body over the limit is refused by its announced size, without reading it.
    body = request.body if request.method == "POST" and length <= idp_runtime.MAX_POST_BYTES else b""
    answer = idp_runtime.resolve_artifact(
        request.method,
        body,
        request.headers.get("Authorization", ""),
        request.headers,
        request.META.get("REMOTE_ADDR", ""),
        content_length=length,
    )
    response = HttpResponse(answer.body, status=answer.status, content_type="text/xml; charset=utf-8")
    for name, value in answer.headers.items():
        response[name] = value
    return _no_store(response)
