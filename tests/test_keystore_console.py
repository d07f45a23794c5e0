"""Keystore console pages: forms, downloads, errors at the field, roles, no key material in pages."""

import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from entities import services
from entities.keystore import private_key_to_pem
from entities.models import KeystoreEntry
from federation.models import AuditEvent
from tests.keystore_fixtures import DER, cert_pem, key_pem, name, new_key, self_signed

pytestmark = pytest.mark.django_db


def upload(data, filename="upload.pem"):
    return SimpleUploadedFile(filename, data, content_type="application/octet-stream")


def state():
    return list(KeystoreEntry.objects.order_by("alias").values()), AuditEvent.objects.count()


def field_errors(response, field):
    """The error texts shown under one field (as _form_fields.html renders them)."""
    html = response.content.decode()
    match = re.search(rf'<ul class="errorlist" id="id_{field}_errors"[^>]*>(.*?)</ul>', html, re.S)
    return re.findall(r"<li>(.*?)</li>", match.group(1)) if match else []


def unescape(text):
    return text.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")


def key_body_lines(entry):
    """The base64 lines of the entry's private key PEM: none of them may appear in a page."""
    pem = private_key_to_pem(entry.private_key_object())
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


# ---------------------------------------------------------------- list and detail


def test_list_filters_search_and_badges(admin_client, make_key_pair, make_expiring_certificate):
    make_key_pair("idp-signing")
    make_expiring_certificate("partner-soon", 5)
    make_expiring_certificate("partner-old", -2)
    url = reverse("keystore:list")

    page = admin_client.get(url).content.decode()
    for alias in ("idp-signing", "partner-soon", "partner-old"):
        assert f'href="{reverse("keystore:detail", args=[alias])}"' in page
    assert '<span class="badge bad">critical</span>' in page and '<span class="badge bad">expired</span>' in page

    by_kind = admin_client.get(url, {"kind": "key_pair"}).content.decode()
    assert "idp-signing" in by_kind and "partner-soon" not in by_kind
    by_level = admin_client.get(url, {"level": "critical"}).content.decode()
    assert "partner-soon" in by_level and "partner-old" not in by_level and "idp-signing" not in by_level
    by_search = admin_client.get(url, {"q": "partner-old.example"}).content.decode()  # matches the subject
    assert "partner-old" in by_search and "partner-soon" not in by_search
    assert "No entries match these filters." in admin_client.get(url, {"q": "nothing-like-this"}).content.decode()
    sorted_page = admin_client.get(url, {"sort": "not_after"}).content.decode()
    assert sorted_page.index("partner-old") < sorted_page.index("partner-soon") < sorted_page.index("idp-signing")


def test_list_paginates(admin_client, make_expiring_certificate):
    _k, cert = self_signed("many")
    for number in range(55):
        services.import_trusted_certificate(f"cert-{number:02d}", cert_pem(cert))
    first = admin_client.get(reverse("keystore:list")).content.decode()
    assert "Page 1 of 2" in first and "cert-49" in first and "cert-50" not in first
    second = admin_client.get(reverse("keystore:list"), {"page": 2, "kind": "trusted_certificate"}).content.decode()
    assert "cert-54" in second and "cert-00" not in second


def test_empty_keystore_page(admin_client):
    assert "The keystore is empty." in admin_client.get(reverse("keystore:list")).content.decode()


def test_detail_shows_the_facts_but_never_the_key(admin_client, make_key_pair):
    entry = make_key_pair("idp", "rsa2048", "CN=idp.example.org,O=Example", san=("idp.example.org",))
    page = unescape(admin_client.get(reverse("keystore:detail", args=["idp"])).content.decode())
    for fact in (
        entry.subject,
        entry.serial_number,
        entry.fingerprint_sha256,
        "RSA 2048",
        "Digital signature, Key encipherment",
        "DNS:idp.example.org",
        "stored encrypted; never shown",
    ):
        assert fact in page
    assert "PRIVATE KEY" not in page
    assert not [line for line in key_body_lines(entry) if line in page]


# ---------------------------------------------------------------- generate, CSR, import signed


def test_generate_through_the_form(admin_client):
    page = admin_client.get(reverse("keystore:generate")).content.decode()
    for field, label in (("alias", "Alias"), ("algorithm", "Algorithm"), ("subject", "Subject"), ("days", "Validity (days)")):
        assert f'<label for="id_{field}">{label}' in page
    assert '<button type="submit">Generate</button>' in page
    assert 'value="365"' in page

    response = admin_client.post(
        reverse("keystore:generate"),
        {"alias": "sp-encryption", "algorithm": "ec-p256", "subject": "CN=sp.example.org", "days": 30, "san": "sp.example.org"},
    )
    assert response.status_code == 302 and response["Location"] == reverse("keystore:detail", args=["sp-encryption"])
    entry = KeystoreEntry.objects.get(alias="sp-encryption")
    assert entry.key_description == "EC P-256" and entry.san_list == ["DNS:sp.example.org"]
    assert AuditEvent.objects.filter(action="create", object_repr="sp-encryption", actor="alice-admin").exists()


@pytest.mark.parametrize(
    "changes, field, words",
    [
        ({"alias": "taken"}, "alias", "An entry with the alias 'taken' already exists"),
        ({"alias": "bad alias!"}, "alias", "Use only letters, digits"),
        ({"subject": "idp.example.org"}, "subject", "is not of the form NAME=value"),
        ({"subject": "CN=x,C=Japan"}, "subject", "two-letter code"),
        ({"san": "https://ok.example.org/ not_a host!"}, "san", "is not a DNS name"),
        ({"days": 0}, "days", "greater than or equal to 1"),
    ],
)
def test_generate_errors_are_shown_at_the_field_and_change_nothing(admin_client, make_key_pair, changes, field, words):
    make_key_pair("taken")
    before = state()
    data = {"alias": "fresh", "algorithm": "rsa2048", "subject": "CN=idp.example.org", "days": 365, "san": ""} | changes
    response = admin_client.post(reverse("keystore:generate"), data)
    assert response.status_code == 200
    assert any(words in unescape(text) for text in field_errors(response, field)), field_errors(response, field)
    assert state() == before


def test_every_mistake_is_shown_at_once(admin_client, make_key_pair):
    make_key_pair("taken")
    before = state()
    data = {"alias": "taken", "algorithm": "rsa2048", "subject": "CN=x,C=Japan", "days": 365, "san": "bad host!"}
    response = admin_client.post(reverse("keystore:generate"), data)
    assert "already exists" in unescape(field_errors(response, "alias")[0])
    assert "two-letter code" in field_errors(response, "subject")[0]
    assert "is not a DNS name" in unescape(field_errors(response, "san")[0])
    assert state() == before


def test_create_and_download_csr_then_import_the_signed_certificate(admin_client, make_key_pair, test_ca):
    entry = make_key_pair("vpn", "ec-p384", "CN=vpn.example.jp,O=Example")
    detail = reverse("keystore:detail", args=["vpn"])
    page = admin_client.get(detail).content.decode()
    assert "Create CSR</button>" in page and "Download CSR" not in page

    response = admin_client.post(reverse("keystore:create_csr", args=["vpn"]))
    assert response.status_code == 302 and response["Location"] == detail
    page = admin_client.get(detail).content.decode()
    assert "Download CSR</a>" in page

    download = admin_client.get(reverse("keystore:download_csr", args=["vpn"]))
    assert download["Content-Disposition"] == 'attachment; filename="vpn.csr.pem"'
    csr_pem = download.content.decode()
    assert csr_pem.startswith("-----BEGIN CERTIFICATE REQUEST-----")

    # The CA signs; the administrator pastes the result.
    signed = test_ca.sign_csr(csr_pem)
    response = admin_client.post(reverse("keystore:import_signed", args=["vpn"]), {"pem": cert_pem(signed).decode()})
    assert response.status_code == 302
    entry.refresh_from_db()
    assert entry.certificate() == signed and entry.issuer == "CN=Test Root CA,O=Test CA Org"


def test_csr_form_with_another_subject(admin_client, make_key_pair):
    make_key_pair("sp")
    form_page = admin_client.get(reverse("keystore:create_csr", args=["sp"])).content.decode()
    assert 'value="CN=idp.example.org,O=Example"' in form_page  # the certificate's subject as a start
    response = admin_client.post(reverse("keystore:create_csr", args=["sp"]), {"subject": "CN=other.example.org", "san": ""})
    assert response.status_code == 302
    assert KeystoreEntry.objects.get(alias="sp").csr().subject.rfc4514_string() == "CN=other.example.org"
    bad = admin_client.post(reverse("keystore:create_csr", args=["sp"]), {"subject": "XX=1"})
    assert "Unknown attribute" in unescape(" ".join(field_errors(bad, "subject")))


def test_download_csr_before_one_exists_explains(admin_client, make_key_pair):
    make_key_pair("sp")
    response = admin_client.get(reverse("keystore:download_csr", args=["sp"]), follow=True)
    assert "has no certificate signing request yet" in unescape(response.content.decode())


def test_import_signed_errors_at_the_field(admin_client, make_key_pair, test_ca):
    entry = make_key_pair("idp")
    before = state()
    stranger = test_ca.issue(new_key().public_key(), name("idp"))
    url = reverse("keystore:import_signed", args=["idp"])

    by_file = admin_client.post(url, {"file": upload(cert_pem(stranger), "signed.pem")})
    assert field_errors(by_file, "file") == ["The certificate&#x27;s public key does not match the key pair &#x27;idp&#x27;."]
    by_paste = admin_client.post(url, {"pem": cert_pem(stranger).decode()})
    assert unescape(field_errors(by_paste, "pem")[0]) == "The certificate's public key does not match the key pair 'idp'."
    neither = admin_client.post(url, {})
    assert field_errors(neither, "file") == ["Choose a file or paste the PEM text below."]
    text_file = admin_client.post(url, {"file": upload(b"just words\n", "notes.txt")})
    assert field_errors(text_file, "file") == ["This file is not a certificate (PEM, DER or PKCS#12 expected)."]
    assert state() == before
    assert KeystoreEntry.objects.get(alias="idp").certificate_pem == entry.certificate_pem


# ---------------------------------------------------------------- imports


def test_import_key_pair_pkcs12_and_wrong_password(admin_client, test_ca):
    key = new_key("rsa")
    leaf = test_ca.issue(key.public_key(), name("sp.example.org"))
    p12 = pkcs12.serialize_key_and_certificates(
        b"sp", key, leaf, [test_ca.certificate], serialization.BestAvailableEncryption(b"the-password")
    )
    url = reverse("keystore:import_key_pair")

    before = state()
    wrong = admin_client.post(url, {"alias": "sp", "file": upload(p12, "sp.p12"), "password": "not-it"})
    assert field_errors(wrong, "password") == ["The password does not open this PKCS#12 file."]
    assert 'value="not-it"' not in wrong.content.decode()  # the password is not echoed
    assert state() == before

    ok = admin_client.post(url, {"alias": "sp", "file": upload(p12, "sp.p12"), "password": "the-password"})
    assert ok.status_code == 302
    entry = KeystoreEntry.objects.get(alias="sp")
    assert entry.certificate() == leaf and entry.chain() == [test_ca.certificate]


def test_import_key_pair_from_separate_pem_files_and_key_never_echoed(admin_client):
    key, cert = self_signed("sp.example.org", key=new_key("rsa"))
    url = reverse("keystore:import_key_pair")
    key_file = key_pem(key)
    mismatch = admin_client.post(
        url, {"alias": "sp", "file": upload(key_file, "sp.key"), "certificate_file": upload(cert_pem(self_signed()[1]))}
    )
    assert field_errors(mismatch, "file") == ["The certificate&#x27;s public key does not match the private key in this file."]
    body = mismatch.content.decode()
    assert not [line for line in key_file.decode().splitlines() if line and not line.startswith("-----") and line in body]

    ok = admin_client.post(url, {"alias": "sp", "file": upload(key_file, "sp.key"), "certificate_file": upload(cert_pem(cert))})
    assert ok.status_code == 302
    assert KeystoreEntry.objects.get(alias="sp").certificate() == cert


def test_import_trusted_certificate_der_and_text_file(admin_client):
    _k, cert = self_signed("partner.example.org")
    url = reverse("keystore:import_trusted_certificate")
    before = state()
    text = admin_client.post(url, {"alias": "partner", "file": upload(b"Dear admin,\nhere is our certificate.\n", "partner.txt")})
    assert field_errors(text, "file") == ["This file is not a certificate (PEM, DER or PKCS#12 expected)."]
    assert state() == before

    ok = admin_client.post(url, {"alias": "partner", "file": upload(cert.public_bytes(DER), "partner.cer")})
    assert ok.status_code == 302
    assert KeystoreEntry.objects.get(alias="partner").kind == "trusted_certificate"

    duplicate = admin_client.post(url, {"alias": "partner", "pem": cert_pem(cert).decode()})
    assert "already exists" in unescape(field_errors(duplicate, "alias")[0])


def test_import_trusted_ca_chain(admin_client, ca_and_leaf):
    root, intermediate, _key, _leaf = ca_and_leaf
    response = admin_client.post(
        reverse("keystore:import_trusted_ca"),
        {"alias": "partner-ca", "pem": cert_pem(intermediate.certificate, root.certificate).decode()},
    )
    assert response.status_code == 302
    assert list(KeystoreEntry.objects.filter(kind="trusted_ca").values_list("alias", flat=True)) == ["partner-ca", "partner-ca-2"]


# ---------------------------------------------------------------- export and delete


def test_certificate_downloads(admin_client, make_key_pair):
    entry = make_key_pair("idp")
    pem = admin_client.get(reverse("keystore:export_pem", args=["idp"]))
    assert pem["Content-Disposition"] == 'attachment; filename="idp.crt.pem"'
    assert pem.content.decode() == entry.certificate_pem
    der = admin_client.get(reverse("keystore:export_der", args=["idp"]))
    assert der["Content-Disposition"] == 'attachment; filename="idp.cer"'
    assert x509.load_der_x509_certificate(der.content) == entry.certificate()


def test_pkcs12_export_needs_password_twice_and_confirmation(admin_client, make_key_pair):
    entry = make_key_pair("idp")
    url = reverse("keystore:export_pkcs12", args=["idp"])
    audit_before = AuditEvent.objects.count()

    unconfirmed = admin_client.post(url, {"password": "export-password", "password_again": "export-password"})
    assert unconfirmed.status_code == 200 and field_errors(unconfirmed, "confirm")
    differ = admin_client.post(url, {"password": "export-password", "password_again": "other-password", "confirm": "on"})
    assert field_errors(differ, "password_again") == ["The two passwords differ."]
    short = admin_client.post(url, {"password": "short", "password_again": "short", "confirm": "on"})
    assert field_errors(short, "password")
    assert AuditEvent.objects.count() == audit_before

    response = admin_client.post(url, {"password": "export-password", "password_again": "export-password", "confirm": "on"})
    assert response["Content-Disposition"] == 'attachment; filename="idp.p12"'
    key, cert, _ = pkcs12.load_key_and_certificates(response.content, b"export-password")
    assert cert == entry.certificate() and key.private_numbers() == entry.private_key_object().private_numbers()
    event = AuditEvent.objects.latest("id")
    assert (event.action, event.object_repr, event.actor) == ("other", "idp", "alice-admin")


def test_delete_asks_first(admin_client, make_key_pair):
    make_key_pair("old-key")
    url = reverse("keystore:delete", args=["old-key"])
    confirm = admin_client.get(url).content.decode()
    assert "Delete old-key?" in confirm and "cannot be recovered" in confirm
    assert KeystoreEntry.objects.filter(alias="old-key").exists()
    response = admin_client.post(url)
    assert response.status_code == 302 and response["Location"] == reverse("keystore:list")
    assert not KeystoreEntry.objects.filter(alias="old-key").exists()
    assert AuditEvent.objects.filter(action="delete", object_repr="old-key").exists()
    assert admin_client.get(reverse("keystore:detail", args=["old-key"])).status_code == 404


# ---------------------------------------------------------------- roles


def test_auditor_sees_pages_but_every_post_is_forbidden(auditor_client, make_key_pair, test_ca):
    entry = make_key_pair("idp")
    services.create_csr("idp")
    for url in (
        reverse("keystore:list"),
        reverse("keystore:detail", args=["idp"]),
        reverse("keystore:download_csr", args=["idp"]),
        reverse("keystore:export_pem", args=["idp"]),
        reverse("keystore:export_der", args=["idp"]),
        reverse("dashboard"),
    ):
        assert auditor_client.get(url).status_code == 200, url
    detail = auditor_client.get(reverse("keystore:detail", args=["idp"])).content.decode()
    assert "Create CSR</button>" not in detail and "Delete…" not in detail

    before = state()
    posts = {
        reverse("keystore:generate"): {"alias": "x", "algorithm": "rsa2048", "subject": "CN=x", "days": 1},
        reverse("keystore:import_key_pair"): {"alias": "x"},
        reverse("keystore:import_trusted_certificate"): {"alias": "x", "pem": test_ca.pem.decode()},
        reverse("keystore:import_trusted_ca"): {"alias": "x", "pem": test_ca.pem.decode()},
        reverse("keystore:create_csr", args=["idp"]): {},
        reverse("keystore:import_signed", args=["idp"]): {"pem": test_ca.pem.decode()},
        reverse("keystore:export_pkcs12", args=["idp"]): {
            "password": "long-password",
            "password_again": "long-password",
            "confirm": "on",
        },
        reverse("keystore:delete", args=["idp"]): {},
    }
    for url, data in posts.items():
        assert auditor_client.post(url, data).status_code == 403, url
    # Pages that only lead to a change (forms, the PKCS#12 export) are for administrators too.
    for url in (
        reverse("keystore:generate"),
        reverse("keystore:export_pkcs12", args=["idp"]),
        reverse("keystore:delete", args=["idp"]),
    ):
        assert auditor_client.get(url).status_code == 403, url
    assert state() == before
    assert KeystoreEntry.objects.get(alias="idp").certificate_pem == entry.certificate_pem


def test_anonymous_users_are_sent_to_login(client):
    response = client.get(reverse("keystore:list"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


# ---------------------------------------------------------------- dashboard and key material


def test_dashboard_expiry_list(admin_client, make_key_pair, make_expiring_certificate):
    empty = admin_client.get(reverse("dashboard")).content.decode()
    assert "No certificates in the keystore yet." in empty

    make_key_pair("idp-signing")
    make_expiring_certificate("partner-soon", 5)
    page = admin_client.get(reverse("dashboard")).content.decode()
    table = page[page.index('<table class="expiry-list">') :]
    assert f'<a href="{reverse("keystore:detail", args=["idp-signing"])}">idp-signing</a>' in table
    assert table.index("partner-soon") < table.index("idp-signing")  # soonest first
    assert '<span class="badge bad">critical</span>' in table and "Trusted certificate" in table


def test_private_key_never_appears_in_any_page(admin_client, make_key_pair, test_ca):
    entry = make_key_pair("idp", "rsa2048")
    csr_pem = services.create_csr("idp")
    services.import_signed_certificate("idp", cert_pem(test_ca.sign_csr(csr_pem), test_ca.certificate))
    sealed = KeystoreEntry.objects.get(alias="idp").private_key
    secrets_to_hide = key_body_lines(entry) + [sealed, sealed.split(":", 2)[2][:40]]
    pages = [
        reverse("dashboard"),
        reverse("audit"),
        reverse("trace"),
        reverse("keystore:list"),
        reverse("keystore:detail", args=["idp"]),
        reverse("keystore:create_csr", args=["idp"]),
        reverse("keystore:import_signed", args=["idp"]),
        reverse("keystore:export_pkcs12", args=["idp"]),
        reverse("keystore:delete", args=["idp"]),
        reverse("keystore:generate"),
        reverse("keystore:import_key_pair"),
    ]
    for url in pages:
        body = admin_client.get(url).content.decode()
        assert "PRIVATE KEY" not in body, url
        assert not [secret for secret in secrets_to_hide if secret in body], url
