"""The keystore in a real Chromium: generate a key pair, make and download its CSR, see it on the dashboard."""

import pytest
from cryptography import x509

from entities.models import KeystoreEntry

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_generate_create_csr_download_and_dashboard(signed_in_page, live_server):
    page = signed_in_page
    page.goto(f"{live_server.url}/keystore/")
    page.get_by_role("link", name="Generate key pair").click()

    page.get_by_label("Alias").fill("browser-idp")
    page.get_by_label("Subject").fill("CN=idp.example.org,O=Example")
    page.get_by_label("Algorithm").select_option(label="EC P-256")
    page.get_by_role("button", name="Generate").click()
    assert page.get_by_role("heading", name="browser-idp").is_visible()

    page.get_by_role("button", name="Create CSR").click()
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSR").click()
    download = info.value
    assert download.suggested_filename == "browser-idp.csr.pem"
    csr = x509.load_pem_x509_csr(open(download.path(), "rb").read())
    assert csr.subject.rfc4514_string() == "CN=idp.example.org,O=Example"
    assert KeystoreEntry.objects.get(alias="browser-idp").key_description == "EC P-256"

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Dashboard").click()
    expiry_list = page.locator("table.expiry-list")
    assert expiry_list.get_by_role("link", name="browser-idp").is_visible()


def test_field_error_is_shown_next_to_the_field(signed_in_page, live_server):
    page = signed_in_page
    page.goto(f"{live_server.url}/keystore/generate/")
    page.get_by_label("Alias").fill("bad")
    page.get_by_label("Subject").fill("idp.example.org")
    page.get_by_role("button", name="Generate").click()
    alert = page.locator("#id_subject_errors")
    assert "is not of the form NAME=value" in alert.inner_text()
    assert not KeystoreEntry.objects.exists()
