"""The runtime's short way through the middleware stack (federation/runtime_middleware.py).

Runtime views skip the console's middleware (session, CSRF, authentication, messages, auditor rule) but must keep
what every response has: host validation, the security and framing headers, Content-Length and the transaction ID.
"""

import pytest
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from django.urls import include, path

from federation.runtime_middleware import RuntimeViewMiddleware, runtime_view

SEEN = {}


@runtime_view
def marked(request):
    SEEN["marked"] = {name: hasattr(request, name) for name in ("session", "user", "_messages", "csrf_processing_done")}
    return HttpResponse(b"marked")


def unmarked(request):
    SEEN["unmarked"] = {name: hasattr(request, name) for name in ("session", "user", "_messages")}
    return HttpResponse(b"unmarked")


@runtime_view
def broken(request):
    raise RuntimeError("a bug in a runtime view")


def failing_view(request):
    raise AssertionError("the whole stack was used for a marked view")


urlpatterns = [
    path("affwebservices/test/marked", marked),
    path("affwebservices/test/unmarked", unmarked),
    path("affwebservices/test/broken", broken),
    path("", include("federation.urls")),
]
handler500 = "federation.views.errors.server_error"  # as federation/urls.py

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

# What SecurityMiddleware, XFrameOptionsMiddleware, CommonMiddleware and TransactionMiddleware add to every response.
KEPT_HEADERS = ("X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy", "Content-Length")


def test_a_marked_runtime_view_skips_the_console_middleware_and_keeps_the_headers():
    SEEN.clear()
    response = Client().get("/affwebservices/test/marked")
    assert response.status_code == 200 and response.content == b"marked"
    assert SEEN["marked"] == {"session": False, "user": False, "_messages": False, "csrf_processing_done": False}
    for header in KEPT_HEADERS:
        assert response.has_header(header), header
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Length"] == "6"
    assert len(response["X-Transaction-ID"]) == 32
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies


def test_an_unmarked_view_under_the_runtime_prefix_gets_the_whole_stack():
    SEEN.clear()
    response = Client().get("/affwebservices/test/unmarked")
    assert response.status_code == 200
    assert SEEN["unmarked"] == {"session": True, "user": True, "_messages": True}


def test_headers_are_the_same_as_the_whole_stacks():
    marked_response = Client().get("/affwebservices/test/marked")
    unmarked_response = Client().get("/affwebservices/test/unmarked")
    for header in (*KEPT_HEADERS, "Content-Type"):
        if header != "Content-Length":
            assert marked_response[header] == unmarked_response[header], header
    # The whole stack adds only what depends on the session or the login (Vary: Cookie when they were read).
    extra = set(unmarked_response.headers) - set(marked_response.headers)
    assert extra <= {"Vary"}, extra


@override_settings(SECURE_HSTS_SECONDS=600, SECURE_SSL_REDIRECT=True)
def test_https_redirect_and_hsts_still_apply():
    redirected = Client().get("/affwebservices/test/marked")
    assert redirected.status_code == 301 and redirected["Location"].startswith("https://")
    secure = Client().get("/affwebservices/test/marked", secure=True)
    assert secure.status_code == 200 and secure["Strict-Transport-Security"].startswith("max-age=600")


def test_host_validation_still_applies_with_the_headers_the_whole_stack_gives_it():
    # The bad Host is found in CommonMiddleware's process_request: as in the whole stack, the 400 goes back out through
    # SecurityMiddleware and the transaction middleware (the framing middleware, inside, never saw the request).
    response = Client(HTTP_HOST="attacker.example").get("/affwebservices/test/marked")
    assert response.status_code == 400 and "marked" not in response.content.decode()
    assert response["X-Content-Type-Options"] == "nosniff"
    assert len(response["X-Transaction-ID"]) == 32


def test_a_failing_runtime_view_gets_the_500_page_with_the_headers_and_no_traceback():
    client = Client(raise_request_exception=False)
    response = client.get("/affwebservices/test/broken")
    assert response.status_code == 500
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"
    page = response.content.decode()
    assert response["X-Transaction-ID"] in page
    assert "a bug in a runtime view" not in page and "Traceback" not in page


def test_an_unknown_runtime_path_gets_the_normal_404_page():
    response = Client().get("/affwebservices/test/nothing-here")
    assert response.status_code == 404
    assert response.has_header("X-Frame-Options") and response.has_header("X-Transaction-ID")


def test_the_middleware_calls_a_marked_view_without_the_rest_of_the_stack():
    middleware = RuntimeViewMiddleware(failing_view)
    response = middleware(RequestFactory().get("/affwebservices/test/marked"))
    assert response.content == b"marked"
    with pytest.raises(AssertionError, match="whole stack"):
        middleware(RequestFactory().get("/affwebservices/test/unmarked"))
    with pytest.raises(AssertionError, match="whole stack"):
        middleware(RequestFactory().get("/entities/"))


def test_the_real_runtime_views_are_marked():
    from django.urls import resolve

    from federation import runtime_paths

    marked_paths = [
        runtime_paths.SAML2_SSO,
        runtime_paths.SAML2_ARTIFACT_RESOLUTION,
        runtime_paths.SAML2_SLO,
        runtime_paths.SAML2_SLO_SOAP,
        runtime_paths.SAML2_AUTHN_REQUEST,
        runtime_paths.SAML2_ASSERTION_CONSUMER,
        runtime_paths.SAML2_MANAGE_NAME_ID_SOAP,
        runtime_paths.SAML2_METADATA + "idp",
    ]
    for runtime_path in marked_paths:
        assert getattr(resolve(runtime_path).func, "runtime_view", False), runtime_path
    # The name-ID job API authenticates console users and writes the audit log: it keeps the whole stack.
    assert not getattr(resolve(runtime_paths.SAML2_NAME_ID_JOBS + "jobs").func, "runtime_view", False)
