"""`manage.py keystore`: through call_command, and as a real process for exit codes and stderr."""

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from django.core.management import CommandError, call_command

from entities.models import KeystoreEntry
from federation.models import AuditEvent
from tests.keystore_fixtures import DER, cert_pem, make_ca, name, new_key, self_signed
from tests.processes import migrated_env

ROOT = Path(__file__).resolve().parent.parent


def keystore(*args):
    out, err = StringIO(), StringIO()
    call_command("keystore", *args, stdout=out, stderr=err)
    return out.getvalue()


def keystore_error(*args):
    with pytest.raises(CommandError) as caught:
        keystore(*args)
    return str(caught.value)


@pytest.mark.django_db
class TestInProcess:
    @pytest.mark.parametrize("algorithm", ["rsa2048", "rsa3072", "rsa4096", "ec-p256", "ec-p384"])
    def test_generate_each_algorithm(self, algorithm):
        out = keystore("generate", "--alias", "k", "--algorithm", algorithm, "--subject", "CN=k.example.org", "--days", "30")
        assert "generated key pair 'k'" in out
        entry = KeystoreEntry.objects.get(alias="k")
        assert entry.key_description.replace(" ", "").replace("-", "").lower() == algorithm.replace("-", "")
        assert AuditEvent.objects.get(action="create", object_repr="k").actor.startswith("cli")

    def test_csr_to_file_and_import_signed(self, tmp_path):
        keystore(
            "generate",
            "--alias",
            "vpn",
            "--algorithm",
            "ec-p384",
            "--subject",
            "/C=JP/O=Example/CN=vpn.example.jp",
            "--san",
            "vpn.example.jp",
        )
        printed = keystore("csr", "--alias", "vpn")
        assert printed.startswith("-----BEGIN CERTIFICATE REQUEST-----")
        csr_file = tmp_path / "vpn.csr"
        keystore("csr", "--alias", "vpn", "--out", str(csr_file))
        csr = x509.load_pem_x509_csr(csr_file.read_bytes())
        assert csr.subject.rfc4514_string() == "CN=vpn.example.jp,O=Example,C=JP"

        ca = make_ca()
        signed_file = tmp_path / "vpn.crt"
        signed_file.write_bytes(cert_pem(ca.sign_csr(csr_file.read_bytes()), ca.certificate))
        assert "imported the CA-signed certificate of 'vpn'" in keystore(
            "import-signed", "--alias", "vpn", "--file", str(signed_file)
        )
        assert KeystoreEntry.objects.get(alias="vpn").issuer == "CN=Test Root CA,O=Test CA Org"

        stranger = tmp_path / "stranger.crt"
        stranger.write_bytes(cert_pem(ca.issue(new_key().public_key(), name("vpn"))))
        before = KeystoreEntry.objects.get(alias="vpn").certificate_pem
        assert (
            keystore_error("import-signed", "--alias", "vpn", "--file", str(stranger))
            == "The certificate's public key does not match the key pair 'vpn'."
        )
        assert KeystoreEntry.objects.get(alias="vpn").certificate_pem == before

    def test_import_kinds_and_passwords(self, tmp_path, monkeypatch):
        ca = make_ca()
        key = new_key()
        leaf = ca.issue(key.public_key(), name("sp.example.org"))
        p12 = tmp_path / "sp.p12"
        p12.write_bytes(
            pkcs12.serialize_key_and_certificates(
                b"sp", key, leaf, [ca.certificate], serialization.BestAvailableEncryption(b"p12-password")
            )
        )

        assert (
            keystore_error("import", "--alias", "sp", "--file", str(p12), "--password", "wrong-one")
            == "The password does not open this PKCS#12 file."
        )
        assert not KeystoreEntry.objects.exists()
        monkeypatch.setenv("SP_P12_PASSWORD", "p12-password")
        keystore("import", "--alias", "sp", "--file", str(p12), "--password-env", "SP_P12_PASSWORD")
        assert KeystoreEntry.objects.get(alias="sp").certificate() == leaf

        _k, partner = self_signed("partner.example.org")
        der = tmp_path / "partner.cer"
        der.write_bytes(partner.public_bytes(DER))
        keystore("import", "--alias", "partner", "--file", str(der), "--kind", "trusted")
        intermediate = ca.intermediate()
        chain = tmp_path / "chain.pem"
        chain.write_bytes(cert_pem(intermediate.certificate, ca.certificate))
        out = keystore("import", "--alias", "cas", "--file", str(chain), "--kind", "ca")
        assert "'cas'" in out and "'cas-2'" in out
        assert dict(KeystoreEntry.objects.values_list("alias", "kind")) == {
            "sp": "key_pair",
            "partner": "trusted_certificate",
            "cas": "trusted_ca",
            "cas-2": "trusted_ca",
        }

        notes = tmp_path / "notes.txt"
        notes.write_text("not a certificate\n")
        assert (
            keystore_error("import", "--alias", "n", "--file", str(notes), "--kind", "trusted")
            == "This file is not a certificate (PEM, DER or PKCS#12 expected)."
        )
        assert keystore_error("import", "--alias", "partner", "--file", str(der), "--kind", "trusted").startswith(
            "An entry with the alias 'partner' already exists"
        )
        assert "No such file" in keystore_error("import", "--alias", "x", "--file", str(tmp_path / "missing.pem"))
        assert (
            keystore_error("import", "--alias", "x", "--file", str(p12), "--password-env", "NOT_SET_ANYWHERE")
            == "The environment variable NOT_SET_ANYWHERE (from --password-env) is not set."
        )

    def test_export_formats(self, tmp_path, monkeypatch):
        keystore("generate", "--alias", "idp", "--subject", "CN=idp.example.org")
        entry = KeystoreEntry.objects.get(alias="idp")
        assert keystore("export", "--alias", "idp") == entry.certificate_pem
        der = tmp_path / "idp.cer"
        keystore("export", "--alias", "idp", "--format", "der", "--out", str(der))
        assert x509.load_der_x509_certificate(der.read_bytes()) == entry.certificate()
        assert "binary" in keystore_error("export", "--alias", "idp", "--format", "der")

        monkeypatch.setenv("EXPORT_PASSWORD", "export-password")
        p12 = tmp_path / "idp.p12"
        keystore("export", "--alias", "idp", "--format", "pkcs12", "--password-env", "EXPORT_PASSWORD", "--out", str(p12))
        key, cert, _ = pkcs12.load_key_and_certificates(p12.read_bytes(), b"export-password")
        assert cert == entry.certificate() and key.private_numbers() == entry.private_key_object().private_numbers()
        assert oct(p12.stat().st_mode & 0o777) == "0o600"
        assert AuditEvent.objects.filter(action="other", object_repr="idp", summary__contains="PKCS#12").count() == 1
        assert "at least 8" in keystore_error(
            "export", "--alias", "idp", "--format", "pkcs12", "--password", "short", "--out", str(p12)
        )

    def test_list_table_and_json_and_delete(self):
        assert keystore("list") == "The keystore is empty.\n"
        keystore("generate", "--alias", "a-long-alias-name", "--subject", "CN=a.example.org", "--days", "5")
        keystore("generate", "--alias", "b", "--algorithm", "ec-p256", "--subject", "CN=b.example.org")
        lines = keystore("list").splitlines()
        assert lines[0].split() == ["ALIAS", "KIND", "KEY", "NOT", "AFTER", "DAYS", "LEVEL", "SUBJECT"]
        assert lines[1].startswith("a-long-alias-name  key_pair") and "critical" in lines[1]
        assert lines[2].index("key_pair") == lines[1].index("key_pair")  # aligned columns
        rows = json.loads(keystore("list", "--json"))
        assert [(r["alias"], r["key"], r["level"]) for r in rows] == [
            ("a-long-alias-name", "RSA 2048", "critical"),
            ("b", "EC P-256", "ok"),
        ]
        assert all("PRIVATE" not in json.dumps(r) for r in rows)
        assert json.loads(keystore("list", "--json", "--kind", "trusted")) == []

        assert keystore("delete", "--alias", "b") == "deleted 'b'\n"
        assert keystore_error("delete", "--alias", "b") == "No keystore entry has the alias 'b'."

    def test_argument_errors_are_command_errors(self):
        assert "invalid choice: 'rsa1024'" in keystore_error(
            "generate", "--alias", "x", "--algorithm", "rsa1024", "--subject", "CN=x"
        )
        assert "required: --alias" in keystore_error("generate", "--subject", "CN=x")
        assert "is not of the form NAME=value" in keystore_error("generate", "--alias", "x", "--subject", "x")


# ---------------------------------------------------------------- a real process


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """Environment for `manage.py` subprocesses: their own SQLite file and secrets under a temporary var dir."""
    return migrated_env(tmp_path_factory.mktemp("keystore-cli-var"), FEDERATION_CELERY_ALWAYS_EAGER="1")


def run(env, *args, stdin=None):
    return subprocess.run(
        [sys.executable, "manage.py", "keystore", *args], cwd=ROOT, env=env, capture_output=True, timeout=120, input=stdin
    )


def last_line(stream):
    return stream.decode().strip().splitlines()[-1]


def test_real_process_exit_codes_and_one_line_errors(cli_env, tmp_path):
    ok = run(cli_env, "generate", "--alias", "proc", "--algorithm", "ec-p256", "--subject", "CN=proc.example.org")
    assert ok.returncode == 0, ok.stderr
    assert b"generated key pair 'proc'" in ok.stdout

    duplicate = run(cli_env, "generate", "--alias", "proc", "--subject", "CN=proc.example.org")
    assert duplicate.returncode == 1
    assert last_line(duplicate.stderr).endswith(
        "An entry with the alias 'proc' already exists; choose another alias or delete that entry first."
    )
    assert b"Traceback" not in duplicate.stderr

    bad_choice = run(cli_env, "generate", "--alias", "x", "--algorithm", "dsa", "--subject", "CN=x")
    assert bad_choice.returncode == 1
    assert bad_choice.stderr.decode().strip().count("\n") == 0  # one line, no usage dump
    assert "invalid choice: 'dsa'" in bad_choice.stderr.decode()

    no_action = run(cli_env)
    assert no_action.returncode == 1 and "required: ACTION" in no_action.stderr.decode()

    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello\n")
    not_cert = run(cli_env, "import", "--alias", "t", "--file", str(text_file), "--kind", "trusted")
    assert not_cert.returncode == 1
    assert last_line(not_cert.stderr).endswith("This file is not a certificate (PEM, DER or PKCS#12 expected).")

    # Binary export to standard output with '--out -', and a certificate piped in from standard input.
    der = run(cli_env, "export", "--alias", "proc", "--format", "der", "--out", "-")
    assert der.returncode == 0
    certificate = x509.load_der_x509_certificate(der.stdout)
    piped = run(cli_env, "import", "--alias", "proc-copy", "--file", "-", "--kind", "trusted", stdin=der.stdout)
    assert piped.returncode == 0, piped.stderr

    # PKCS#12 without a password and without a terminal: refused, not prompted.
    no_password = run(cli_env, "export", "--alias", "proc", "--format", "pkcs12", "--out", str(tmp_path / "p.p12"), stdin=b"")
    assert no_password.returncode == 1 and "--password-env" in last_line(no_password.stderr)

    listing = run(cli_env, "list", "--json")
    assert listing.returncode == 0
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    assert {row["alias"]: row["fingerprint_sha256"] for row in json.loads(listing.stdout)} == {
        "proc": fingerprint,
        "proc-copy": fingerprint,
    }
    assert run(cli_env, "delete", "--alias", "proc").returncode == 0
    assert run(cli_env, "delete", "--alias", "proc").returncode == 1
