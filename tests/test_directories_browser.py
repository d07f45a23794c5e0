"""Directories in a real Chromium: create an LDAP directory against the test slapd, see its contents."""

import os

import pytest

from federation.models import UserDirectory

pytestmark = [pytest.mark.browser, pytest.mark.ldap, pytest.mark.django_db(transaction=True)]


def test_create_ldap_directory_and_view_its_contents(signed_in_page, live_server, slapd):
    page = signed_in_page
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Directories").click()
    page.get_by_role("link", name="Create LDAP directory").click()
    page.get_by_role("textbox", name="Name", exact=True).fill("corp")
    page.get_by_role("textbox", name="Hosts", exact=True).fill(slapd.host)
    page.get_by_role("spinbutton", name="Port", exact=True).fill(str(slapd.port))
    page.get_by_role("textbox", name="Bind DN", exact=True).fill(slapd.service_dn)
    page.get_by_label("Bind password").fill("not-the-password")
    page.get_by_role("textbox", name="Search root", exact=True).fill(slapd.base_dn)
    page.get_by_role("button", name="Save").click()
    # The server's refusal comes back next to the password field; nothing is saved.
    error = page.locator("#id_bind_password_errors")
    assert error.inner_text() == "The bind DN or password is wrong (invalid credentials)"
    assert page.get_by_label("Bind password").input_value() == ""
    assert not UserDirectory.objects.filter(name="corp").exists()

    page.get_by_label("Bind password").fill(slapd.service_password)
    page.get_by_role("button", name="Test connection without saving").click()
    assert page.get_by_role("status").inner_text().startswith("connected")
    assert not UserDirectory.objects.filter(name="corp").exists()
    page.get_by_label("Bind password").fill(slapd.service_password)
    page.get_by_role("button", name="Save").click()
    assert page.get_by_role("heading", name="corp").is_visible()
    assert "Connection test passed" in page.locator(".messages").inner_text()

    page.get_by_role("link", name="Test connection / view contents").click()
    assert page.get_by_text(f"uid=alice,{slapd.people_dn}", exact=True).is_visible()
    if os.environ.get("FEDERATION_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FEDERATION_SCREENSHOTS"], "directory-contents.png"), full_page=True)
    assert slapd.service_password not in page.content()
