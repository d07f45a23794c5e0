import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

CONSOLE_PAGES = ["/", "/entities/", "/partnerships/", "/keystore/", "/directories/", "/jobs/", "/audit/", "/trace/", "/settings/"]


def test_anonymous_users_are_sent_to_the_login_page(client):
    response = client.get("/keystore/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=/keystore/")


def test_login_form_signs_in_and_wrong_password_says_so(admin_user):
    client = Client()
    page = client.post("/accounts/login/", {"username": admin_user.username, "password": "wrong"}).content.decode()
    assert "did not match" in page
    response = client.post("/accounts/login/", {"username": admin_user.username, "password": "correct-horse-battery"})
    assert response.status_code == 302 and response["Location"] == "/"


@pytest.mark.parametrize("url", CONSOLE_PAGES)
def test_every_section_renders_with_navigation(admin_client, url):
    response = admin_client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    for label in ("Dashboard", "Entities", "Partnerships", "Keystore", "Directories", "Jobs", "Audit", "Settings"):
        assert f">{label}</a>" in page
    assert "administrator" in page


@pytest.mark.parametrize("url", CONSOLE_PAGES)
def test_auditor_sees_every_page(auditor_client, url):
    response = auditor_client.get(url)
    assert response.status_code == 200
    assert "auditor (read-only)" in response.content.decode()


@pytest.mark.parametrize("url", [*CONSOLE_PAGES, "/keystore/generate/", "/directories/new/", "/some/unknown/"])
def test_auditor_cannot_change_anything(auditor_client, url):
    response = auditor_client.post(url, {"name": "x"})
    assert response.status_code == 403
    assert "read-only" in response.content.decode()


def test_user_without_a_console_role_is_refused(client, django_user_model):
    user = django_user_model.objects.create_user("nobody", password="x" * 12)
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 403
    assert "no console role" in response.content.decode()


def test_static_files_are_served_by_the_app(client):
    # whitenoise serves /static/ from the app itself (no CDN); in tests the finders are used.
    from django.contrib.staticfiles import finders

    assert finders.find("css/console.css")
    page = client.get("/accounts/login/").content.decode()
    assert "/static/css/console.css" in page and "https://" not in page


def test_not_found_page_is_plain_words_with_transaction_id(admin_client):
    response = admin_client.get("/no/such/page/")
    assert response.status_code == 404
    page = response.content.decode()
    txid = response["X-Transaction-ID"]
    assert "There is nothing at this address" in page and txid in page


def test_server_error_page_hides_the_exception(settings, admin_user):
    settings.ROOT_URLCONF = "tests.urls_with_failing_view"
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    response = client.get("/boom/")
    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong" in page and response["X-Transaction-ID"] in page
    assert "Traceback" not in page and "secret detail" not in page and "RuntimeError" not in page


def test_forms_are_csrf_protected(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post("/accounts/logout/")
    assert response.status_code == 403
    assert "security token" in response.content.decode()


def test_production_settings_set_secure_cookie_flags(monkeypatch):
    import importlib

    import federation.settings as project_settings

    monkeypatch.setenv("FEDERATION_PRODUCTION", "true")
    try:
        production = importlib.reload(project_settings)
        assert production.SESSION_COOKIE_SECURE and production.CSRF_COOKIE_SECURE
        assert production.SESSION_COOKIE_HTTPONLY and production.SECURE_HSTS_SECONDS > 0
        assert "whitenoise" in production.STORAGES["staticfiles"]["BACKEND"]
    finally:
        monkeypatch.delenv("FEDERATION_PRODUCTION")
        importlib.reload(project_settings)


def test_settings_page_shows_no_secrets(admin_client, settings):
    page = admin_client.get("/settings/").content.decode()
    assert settings.SECRET_KEY not in page and settings.KEY_ENCRYPTION_SECRET not in page
    assert not re.search(r"redis://[^…<]*@", page)
