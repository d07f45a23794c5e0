"""entities.services: keystore actions against the database."""

import logging
from datetime import timedelta
from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from entities import services
from entities.keystore import KeystoreError
from entities.models import CertificateExpiryWarning, KeystoreEntry, expiry_level
from entities.tasks import check_certificate_expiry
from federation.audit import MASK
from federation.models import AuditEvent
from tests.keystore_fixtures import DER, cert_pem, key_pem, make_ca, name, new_key, self_signed

pytestmark = pytest.mark.django_db


def state():
    """Everything an action could change: rows with their stored values, and the audit log size."""
    rows = list(KeystoreEntry.objects.order_by("alias").values())
    return rows, AuditEvent.objects.count(), CertificateExpiryWarning.objects.count()


def refused(call, *args, **kwargs):
    """Run an action that must fail; assert it changed nothing; return the error."""
    before = state()
    with pytest.raises(KeystoreError) as caught:
        call(*args, **kwargs)
    assert state() == before
    return caught.value


def raw_column(alias, column):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM entities_keystoreentry WHERE alias = %s", [alias])
        return cursor.fetchone()[0]


# ---------------------------------------------------------------- generate


@pytest.mark.parametrize("algorithm", ["rsa2048", "rsa3072", "rsa4096", "ec-p256", "ec-p384"])
def test_generate_each_algorithm(algorithm):
    entry = services.generate_key_pair(f"k-{algorithm}", algorithm, "CN=idp.example.org,O=Example", 90, ["idp.example.org"])
    entry.refresh_from_db()
    assert entry.kind == KeystoreEntry.Kind.KEY_PAIR
    assert (
        entry.key_description
        == {"rsa2048": "RSA 2048", "rsa3072": "RSA 3072", "rsa4096": "RSA 4096", "ec-p256": "EC P-256", "ec-p384": "EC P-384"}[
            algorithm
        ]
    )
    assert entry.subject == "CN=idp.example.org,O=Example" and entry.self_signed
    assert entry.san_list == ["DNS:idp.example.org"]
    assert 89 <= entry.days_left() <= 90
    key = entry.private_key_object()
    assert entry.certificate().public_key().public_numbers() == key.public_key().public_numbers()


def test_generate_refuses_bad_input_and_changes_nothing(make_key_pair):
    make_key_pair("taken")
    assert refused(services.generate_key_pair, "taken", "rsa2048", "CN=x").field == "alias"
    assert refused(services.generate_key_pair, "TAKEN", "rsa2048", "CN=x").field == "alias"  # aliases differ by more than case
    assert refused(services.generate_key_pair, "has space", "rsa2048", "CN=x").field == "alias"
    assert refused(services.generate_key_pair, "", "rsa2048", "CN=x").field == "alias"
    assert refused(services.generate_key_pair, "new", "dsa1024", "CN=x").field == "algorithm"
    assert refused(services.generate_key_pair, "new", "rsa2048", "no-equals-sign").field == "subject"
    assert refused(services.generate_key_pair, "new", "rsa2048", "CN=x", 365, ["not a host!"]).field == "san"
    assert refused(services.generate_key_pair, "new", "rsa2048", "CN=x", 0).field == "days"
    error = refused(services.generate_key_pair, "taken", "rsa2048", "CN=x")
    assert error.message == "An entry with the alias 'taken' already exists; choose another alias or delete that entry first."
    # All problems are reported together, the first as the error itself.
    several = refused(services.generate_key_pair, "taken", "rsa1", "CN=x", 0)
    assert [field for field, _message in several.problems] == ["alias", "algorithm", "days"]


# ---------------------------------------------------------------- at-rest encryption


def test_private_key_is_sealed_at_rest_and_survives_rekey(make_key_pair, settings):
    settings.KEY_ENCRYPTION_SECRET = "first-secret-for-this-test"
    settings.KEY_ENCRYPTION_OLD_SECRETS = []
    entry = make_key_pair("sealed")
    original = entry.private_key_object().private_numbers()

    stored = raw_column("sealed", "private_key")
    assert stored.startswith("sb1:")
    assert "PRIVATE KEY" not in stored

    # Switch secrets: the old one is retired, rekey re-seals under the new one.
    settings.KEY_ENCRYPTION_SECRET = "second-secret-for-this-test"
    settings.KEY_ENCRYPTION_OLD_SECRETS = ["first-secret-for-this-test"]
    out = StringIO()
    call_command("rekey", stdout=out)
    assert "entities.KeystoreEntry.private_key: 1 re-encrypted" in out.getvalue()
    restored = raw_column("sealed", "private_key")
    assert restored != stored and "PRIVATE KEY" not in restored

    settings.KEY_ENCRYPTION_OLD_SECRETS = []  # the old secret is gone for good
    assert KeystoreEntry.objects.get(alias="sealed").private_key_object().private_numbers() == original


# ---------------------------------------------------------------- CSR and CA-signed certificate


def test_csr_signed_by_a_ca_is_imported_onto_the_key(make_key_pair, test_ca):
    entry = make_key_pair("vpn", "ec-p384", "CN=vpn.example.jp,O=Example,C=JP", san=("vpn.example.jp",))
    csr_pem = services.create_csr("vpn")
    entry.refresh_from_db()
    assert entry.csr_pem == csr_pem and csr_pem.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert entry.csr().subject.rfc4514_string() == "CN=vpn.example.jp,O=Example,C=JP"  # defaults from the certificate

    signed = test_ca.sign_csr(csr_pem, days=400)
    imported = services.import_signed_certificate("vpn", cert_pem(signed, test_ca.certificate))
    imported.refresh_from_db()
    assert imported.issuer == "CN=Test Root CA,O=Test CA Org" and not imported.self_signed
    assert imported.certificate() == signed
    assert imported.chain() == [test_ca.certificate]
    assert imported.san_list == ["DNS:vpn.example.jp"]
    assert imported.private_key_object().private_numbers() == entry.private_key_object().private_numbers()

    # Without the CA trusted the chain is reported as not trusted; trusting the CA fixes that.
    assert not services.chain_status(imported).ok
    services.import_trusted_ca_chain("test-root", test_ca.pem)
    status = services.chain_status(imported)
    assert status.ok and "test-root" in status.message


def test_chain_status_of_each_kind(make_key_pair, make_expiring_certificate, ca_and_leaf):
    root, intermediate, _key, leaf = ca_and_leaf
    assert "Self-signed" in services.chain_status(make_key_pair("own")).message
    pinned = services.chain_status(make_expiring_certificate("pinned", 30))
    assert pinned.ok and pinned.message == "Trusted directly, as an imported certificate (self-signed)."
    partner = services.import_trusted_certificate("partner", cert_pem(leaf))
    assert "no chain to a trusted CA: No trusted CA issued this certificate" in services.chain_status(partner).message
    [anchor] = services.import_trusted_ca_chain("root", cert_pem(root.certificate))
    assert services.chain_status(anchor).message.startswith("Trust anchor")
    # The intermediate is not in the keystore and not in the partner entry's chain: still no path.
    assert "No trusted CA issued" in services.chain_status(partner).message
    services.import_trusted_ca_chain("intermediate", cert_pem(intermediate.certificate))
    assert services.chain_status(partner).message == "Valid chain of 2 certificate(s) up to the trusted CA 'intermediate'."


def test_csr_with_another_subject_and_names(make_key_pair):
    make_key_pair("sp")
    pem = services.create_csr("sp", "CN=sp.example.org,O=Other", "sp.example.org, https://sp.example.org/")
    csr = KeystoreEntry.objects.get(alias="sp").csr()
    assert csr.subject.rfc4514_string() == "CN=sp.example.org,O=Other"
    assert pem == KeystoreEntry.objects.get(alias="sp").csr_pem
    assert refused(services.create_csr, "sp", "bogus").field == "subject"


def test_certificate_of_another_key_is_rejected_and_the_old_one_kept(make_key_pair, test_ca):
    make_key_pair("idp")
    services.create_csr("idp")
    stranger = test_ca.issue(new_key().public_key(), name("idp.example.org"))
    error = refused(services.import_signed_certificate, "idp", cert_pem(stranger))
    assert error.message == "The certificate's public key does not match the key pair 'idp'."
    assert error.field == "file"


def test_import_signed_refuses_expired_and_junk_and_non_key_pairs(make_key_pair, make_expiring_certificate, test_ca):
    entry = make_key_pair("idp")
    expired = test_ca.issue(entry.certificate().public_key(), name("idp"), days=1, not_before=timezone.now() - timedelta(days=3))
    assert "expired on" in refused(services.import_signed_certificate, "idp", cert_pem(expired)).message
    assert (
        refused(services.import_signed_certificate, "idp", b"not a cert").message
        == "This file is not a certificate (PEM, DER or PKCS#12 expected)."
    )
    make_expiring_certificate("partner", 100)
    assert (
        refused(services.import_signed_certificate, "partner", test_ca.pem).message
        == "'partner' is a trusted certificate, not a key pair."
    )
    assert (
        refused(services.import_signed_certificate, "missing", test_ca.pem).message
        == "No keystore entry has the alias 'missing'."
    )


# ---------------------------------------------------------------- imports


def test_import_key_pair_from_pem_and_pkcs12(test_ca):
    key = new_key("rsa")
    leaf = test_ca.issue(key.public_key(), name("sp.example.org"))
    from_pem = services.import_key_pair("from-pem", key_pem(key) + cert_pem(leaf, test_ca.certificate))
    assert from_pem.certificate() == leaf and from_pem.chain() == [test_ca.certificate]
    assert from_pem.private_key_object().private_numbers() == key.private_numbers()

    p12 = pkcs12.serialize_key_and_certificates(
        b"sp", key, leaf, [test_ca.certificate], serialization.BestAvailableEncryption(b"p12-password")
    )
    from_p12 = services.import_key_pair("from-p12", p12, "p12-password")
    assert from_p12.fingerprint_sha256 == from_pem.fingerprint_sha256
    assert from_p12.private_key_object().private_numbers() == key.private_numbers()


def test_wrong_pkcs12_password_changes_nothing(test_ca):
    key = new_key()
    leaf = test_ca.issue(key.public_key(), name("sp"))
    p12 = pkcs12.serialize_key_and_certificates(b"sp", key, leaf, None, serialization.BestAvailableEncryption(b"right-password"))
    error = refused(services.import_key_pair, "sp", p12, "wrong-password")
    assert (error.field, error.message) == ("password", "The password does not open this PKCS#12 file.")
    assert not KeystoreEntry.objects.exists()


def test_import_reports_alias_and_file_problems_together(make_key_pair):
    make_key_pair("taken")
    error = refused(services.import_trusted_certificate, "taken", b"plain text")
    assert error.problems == [
        ("alias", "An entry with the alias 'taken' already exists; choose another alias or delete that entry first."),
        ("file", "This file is not a certificate (PEM, DER or PKCS#12 expected)."),
    ]
    assert [field for field, _ in refused(services.import_key_pair, "taken", b"plain text").problems] == ["alias", "file"]


def test_import_trusted_certificate_pem_and_der():
    _k, cert = self_signed("partner-a.example.org")
    _k, other = self_signed("partner-b.example.org")
    pem_entry = services.import_trusted_certificate("partner-a", cert_pem(cert))
    der_entry = services.import_trusted_certificate("partner-b", other.public_bytes(DER))
    assert pem_entry.kind == der_entry.kind == KeystoreEntry.Kind.TRUSTED_CERTIFICATE
    assert not pem_entry.has_private_key and pem_entry.private_key_object() is None
    assert der_entry.certificate() == other
    assert raw_column("partner-a", "private_key") == ""


def test_trusted_certificate_refusals_change_nothing(make_key_pair):
    make_key_pair("taken")
    key, cert = self_signed()
    text = refused(services.import_trusted_certificate, "notes", b"Meeting notes: call the partner on Monday.\n")
    assert (text.field, text.message) == ("file", "This file is not a certificate (PEM, DER or PKCS#12 expected).")
    assert refused(services.import_trusted_certificate, "taken", cert_pem(cert)).field == "alias"
    assert "private key" in refused(services.import_trusted_certificate, "with-key", key_pem(key) + cert_pem(cert)).message
    _k, second = self_signed("second")
    assert "2 certificates" in refused(services.import_trusted_certificate, "two", cert_pem(cert, second)).message


def test_trusted_ca_chain_makes_one_entry_per_certificate(ca_and_leaf):
    root, intermediate, _key, leaf = ca_and_leaf
    entries = services.import_trusted_ca_chain("partner-ca", cert_pem(intermediate.certificate, root.certificate))
    assert [e.alias for e in entries] == ["partner-ca", "partner-ca-2"]
    assert [e.subject for e in entries] == [
        intermediate.certificate.subject.rfc4514_string(),
        root.certificate.subject.rfc4514_string(),
    ]
    assert all(e.kind == KeystoreEntry.Kind.TRUSTED_CA and e.is_ca for e in entries)
    assert services.verify_certificate(leaf) == [leaf, intermediate.certificate]

    # The same bundle again: every certificate is known already, nothing is added.
    again = refused(services.import_trusted_ca_chain, "again", cert_pem(intermediate.certificate, root.certificate))
    assert again.message == "Every certificate in this file is already a trusted CA (partner-ca, partner-ca-2)."
    # A bundle with one known and one new certificate adds only the new one.
    other = make_ca("Other Root")
    added = services.import_trusted_ca_chain("mixed", cert_pem(root.certificate, other.certificate))
    assert [(e.alias, e.subject) for e in added] == [("mixed", "CN=Other Root,O=Test CA Org")]


def test_trusted_ca_chain_refusals_change_nothing(ca_and_leaf, make_key_pair):
    root, intermediate, _key, leaf = ca_and_leaf
    assert "not a CA certificate" in refused(services.import_trusted_ca_chain, "leafy", cert_pem(root.certificate, leaf)).message
    make_key_pair("chain-2")
    # One of the aliases the chain would use is taken: nothing is created, the error names it.
    error = refused(services.import_trusted_ca_chain, "chain", cert_pem(intermediate.certificate, root.certificate))
    assert error.field == "alias" and "'chain-2'" in error.message


# ---------------------------------------------------------------- audit, export, delete


def test_audit_records_create_and_delete_with_the_key_masked(make_key_pair):
    entry = make_key_pair("audited")
    sealed = raw_column("audited", "private_key")
    created = AuditEvent.objects.get(action="create", object_type="entities.KeystoreEntry")
    assert created.object_repr == "audited"
    assert created.changes["private_key"] == [None, MASK]
    assert created.changes["alias"] == [None, "audited"]
    services.create_csr("audited")
    updated = AuditEvent.objects.get(action="update", object_repr="audited")
    assert "csr_pem" in updated.changes and "private_key" not in updated.changes

    services.delete_entry("audited")
    deleted = AuditEvent.objects.get(action="delete", object_repr="audited")
    assert deleted.changes["private_key"] == [MASK, None]
    assert not KeystoreEntry.objects.filter(pk=entry.pk).exists()
    for event in AuditEvent.objects.all():
        text = str(event.changes)
        assert sealed not in text and "PRIVATE KEY" not in text
    assert refused(services.delete_entry, "audited").field == "alias"


def test_export_certificate_and_pkcs12(make_key_pair, make_expiring_certificate):
    entry = make_key_pair("idp")
    assert services.export_certificate("idp", "pem").decode() == entry.certificate_pem
    assert services.export_certificate("idp", "der") == entry.certificate().public_bytes(DER)
    assert refused(services.export_certificate, "idp", "xml").field == "format"

    before = AuditEvent.objects.count()
    p12 = services.export_pkcs12("idp", "long-enough-password")
    key, cert, _chain = pkcs12.load_key_and_certificates(p12, b"long-enough-password")
    assert cert == entry.certificate()
    assert key.private_numbers() == entry.private_key_object().private_numbers()
    event = AuditEvent.objects.latest("id")
    assert AuditEvent.objects.count() == before + 1
    assert (event.action, event.object_repr) == ("other", "idp")
    assert "PKCS#12" in event.summary

    assert refused(services.export_pkcs12, "idp", "short").field == "password"
    make_expiring_certificate("partner", 50)
    assert "not a key pair" in refused(services.export_pkcs12, "partner", "long-enough-password").message


# ---------------------------------------------------------------- expiry


def test_expiry_warnings_at_90_30_7_recorded_once_and_logged(make_expiring_certificate, caplog):
    entry = make_expiring_certificate("soon", 5)
    make_expiring_certificate("later", 60)
    make_expiring_certificate("fine", 200)
    with caplog.at_level(logging.WARNING, logger="entities.keystore"):
        recorded = services.record_expiry_warnings()
    assert sorted((w.entry.alias, w.threshold_days) for w in recorded) == [("later", 90), ("soon", 7), ("soon", 30), ("soon", 90)]
    assert set(CertificateExpiryWarning.objects.filter(entry=entry).values_list("not_after", flat=True)) == {entry.not_after}
    lines = [r for r in caplog.records if getattr(r, "checkpoint", "") == "KEYSTORE_EXPIRY_WARNING"]
    assert len(lines) == 4
    assert any("'soon'" in r.getMessage() and "expires in 5 days" in r.getMessage() and "7-day" in r.getMessage() for r in lines)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="entities.keystore"):
        assert services.record_expiry_warnings() == []
    assert CertificateExpiryWarning.objects.count() == 4
    assert not [r for r in caplog.records if getattr(r, "checkpoint", "") == "KEYSTORE_EXPIRY_WARNING"]


def test_a_renewed_certificate_is_warned_about_again(make_key_pair, test_ca):
    entry = make_key_pair("idp", days=20)
    assert {w.threshold_days for w in services.record_expiry_warnings()} == {90, 30}
    renewed = test_ca.sign_csr(services.create_csr("idp"), days=25)
    services.import_signed_certificate("idp", cert_pem(renewed))
    assert {w.threshold_days for w in services.record_expiry_warnings()} == {90, 30}
    assert CertificateExpiryWarning.objects.filter(entry=entry).count() == 4


def test_expired_certificates_are_warned_about_too(make_expiring_certificate, caplog):
    make_expiring_certificate("old", -3)
    with caplog.at_level(logging.WARNING, logger="entities.keystore"):
        assert len(services.record_expiry_warnings()) == 3
    assert any("expired on" in r.getMessage() for r in caplog.records)


def test_thresholds_come_from_settings(make_expiring_certificate, settings):
    settings.CERTIFICATE_EXPIRY_WARNING_DAYS = [14, 60]
    make_expiring_certificate("a", 40)
    make_expiring_certificate("b", 10)
    assert sorted((w.entry.alias, w.threshold_days) for w in services.record_expiry_warnings()) == [
        ("a", 60),
        ("b", 14),
        ("b", 60),
    ]
    levels = {item.alias: item.level for item in services.expiry_overview()["entries"]}
    assert levels == {"a": "warning", "b": "critical"}


def test_expiry_overview_levels_counts_and_order(make_expiring_certificate, make_key_pair):
    make_key_pair("idp", days=365)
    for alias, days in [("d5", 5), ("d20", 20), ("d60", 60), ("expired", -1)]:
        make_expiring_certificate(alias, days)
    overview = services.expiry_overview()
    entries = overview["entries"]
    assert [e.alias for e in entries] == ["expired", "d5", "d20", "d60", "idp"]
    assert [e.level for e in entries] == ["expired", "critical", "warning", "notice", "ok"]
    assert overview["counts"] == {"expired": 1, "warning": 3, "valid": 1}
    soon = entries[1]
    assert (soon.kind, soon.subject, soon.days_left) == ("trusted_certificate", "CN=d5.example.org,O=Partner Org", 5)
    assert soon.not_after == KeystoreEntry.objects.get(alias="d5").not_after
    assert entries[0].days_left < 0
    assert [e.badge for e in entries] == ["bad", "bad", "warn", "warn", "ok"]


def test_level_filter_agrees_with_expiry_level(make_expiring_certificate):
    for days in (-5, 1, 6, 8, 29, 31, 89, 91, 400):
        make_expiring_certificate(f"c{days}", days)
    now = timezone.now()
    for level in ("expired", "critical", "warning", "notice", "ok"):
        selected = set(KeystoreEntry.objects.filter(services.level_filter(level, now)).values_list("alias", flat=True))
        expected = {e.alias for e in KeystoreEntry.objects.all() if expiry_level(e.not_after, now) == level}
        assert selected == expected and selected, level


def test_celery_task_runs_the_expiry_check(make_expiring_certificate, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    make_expiring_certificate("soon", 5)
    result = check_certificate_expiry.apply()
    assert result.successful()
    assert result.get() == "3 new expiry warning(s)"
    assert check_certificate_expiry.name == "entities.tasks.check_certificate_expiry"
    assert check_certificate_expiry.apply().get() == "0 new expiry warning(s)"
    assert CertificateExpiryWarning.objects.count() == 3
