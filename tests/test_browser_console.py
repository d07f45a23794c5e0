"""The console in a real Chromium (Playwright)."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_in_and_walk_the_navigation(signed_in_page, live_server):
    page = signed_in_page
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    for section, heading in [
        ("Keystore", None),
        ("Audit", "Audit log"),
        ("Jobs", "Background jobs"),
        ("Settings", "Deployment settings"),
    ]:
        page.get_by_role("navigation", name="Console").get_by_role("link", name=section).click()
        if heading:
            assert page.get_by_role("heading", name=heading).is_visible()
        assert page.locator("nav.sidenav a[aria-current=page]").inner_text() == section


def test_wrong_password_is_refused_in_the_browser(page, live_server, admin_user):
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("User name").fill(admin_user.username)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("Your user name and password did not match")
