"""Playwright fixtures driving Debian's Chromium (/usr/bin/chromium, installed by scripts/bootstrap.sh).

Playwright never downloads a browser here: it launches the system executable. The sync API runs an
event loop in the test thread, so Django's async-safety check is relaxed for these tests only.
"""

import os
import shutil

import pytest

CHROMIUM = os.environ.get("FEDERATION_CHROMIUM", "/usr/bin/chromium")
# The machine's network is closed: keep Chromium from phoning home at start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: scripts/bootstrap.sh installs Debian's chromium package")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, tmp_path):
    context = chromium.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


@pytest.fixture
def signed_in_page(page, live_server, admin_user):
    from tests.conftest import PASSWORD

    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("User name").fill(admin_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/")
    return page
