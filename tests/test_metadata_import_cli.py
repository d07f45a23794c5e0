"""`manage.py metadata`: import (one entity, and bulk with a progress line), show, and the export
subcommand slot; in process through call_command, and as a real process for exit codes, one-line
errors and the progress output."""

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from entities import services
from entities.models import Entity, EntityType, KeystoreEntry
from federation.models import AuditEvent
from tests import metadata_fixtures as mf
from tests.processes import migrated_env
from tests.saml.credentials import make_credential

ROOT = Path(__file__).resolve().parent.parent


def metadata(*args):
    out, err = StringIO(), StringIO()
    call_command("metadata", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def metadata_error(*args):
    with pytest.raises(CommandError) as caught:
        metadata(*args)
    return str(caught.value)


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli-peers")
    sp = mf.pysaml2_sp(directory, make_credential("rsa", "sp.example.org"), encryption=make_credential("rsa", "sp enc"))
    files = {"directory": directory}
    for name, data in {
        "sp.xml": sp,
        "bomb.xml": mf.fixture("billion-laughs.xml"),
        "federation.xml": mf.aggregate(
            *[mf.entity_xml(f"https://sp{n}.uni.example.org/sp") for n in range(30)],
            mf.entity_xml("https://broken.uni.example.org/sp").replace(b' index="0"', b""),
            *[mf.entity_xml(f"https://idp{n}.example.org/idp", kind="idp") for n in range(5)],
        ),
    }.items():
        path = directory / name
        path.write_bytes(data)
        files[name] = str(path)
    return files


@pytest.mark.django_db
class TestInProcess:
    def test_import_one_entity_with_derived_certificate_aliases(self, documents):
        out, _err = metadata("import", documents["sp.xml"], "--allow-unsigned", "--name", "sp1")
        assert out.splitlines() == [
            f"created Remote SAML2 SP 'sp1' (entity ID https://sp.example.org/sp) from {Path(documents['sp.xml']).name}",
            "signature: not checked (unsigned allowed)",
            "certificate sp1-signing: Signing, issued to sp.example.org",
            "certificate sp1-encryption: Encryption, issued to sp enc",
        ]
        entity = Entity.objects.get()
        assert entity.verification_certificate.alias == "sp1-signing" and entity.encryption_certificate.alias == "sp1-encryption"
        assert AuditEvent.objects.filter(object_repr="sp1", action="other").get().actor.startswith("cli")

    def test_cert_alias_in_order_and_skip(self, documents):
        metadata("import", documents["sp.xml"], "--allow-unsigned", "--name", "sp1", "--cert-alias", "mine", "--cert-alias", "-")
        assert list(KeystoreEntry.objects.values_list("alias", flat=True)) == ["mine"]
        assert Entity.objects.get().encryption_certificate is None

    def test_signed_import_with_trust_anchor(self, documents, tmp_path):
        fed = make_credential("rsa", "fed")
        services.import_trusted_certificate("fed", fed.cert_pem)
        signed = tmp_path / "signed.xml"
        signed.write_bytes(mf.core_sign(Path(documents["sp.xml"]).read_bytes(), fed))
        out, _ = metadata("import", str(signed), "--trust-anchor", "fed", "--no-certificates")
        assert "signature: verified (CN=fed,O=federation tests)" in out
        assert Entity.objects.get().name == "sp.example.org-sp"

    def test_errors_are_one_line(self, documents, tmp_path):
        assert metadata_error("import", documents["bomb.xml"], "--allow-unsigned") == (
            "The document contains a DTD or an entity declaration, which are not allowed in metadata."
        )
        assert (
            metadata_error("import", documents["sp.xml"])
            == "Give --trust-anchor ALIAS to verify the signature, or --allow-unsigned."
        )
        assert metadata_error("import", str(tmp_path / "missing.xml"), "--allow-unsigned").startswith("Cannot read")
        assert metadata_error("import", documents["federation.xml"], "--allow-unsigned") == (
            "The document holds 36 entities; choose one by its entity ID."
        )
        assert "invalid choice: 'merge'" in metadata_error("import", documents["sp.xml"], "--operation", "merge")
        assert "not allowed with argument --trust-anchor" in metadata_error(
            "import", documents["sp.xml"], "--trust-anchor", "x", "--allow-unsigned"
        )
        assert not Entity.objects.exists()

    def test_bulk_import_reports_each_problem(self, documents):
        out, err = metadata("import", documents["federation.xml"], "--allow-unsigned", "--all-sps", "--match", r"\.uni\.")
        lines = out.splitlines()
        assert lines[0] == "bulk import from federation.xml: 30 matched: 30 created, 0 updated, 0 skipped, 1 failed"
        assert lines[1].startswith("  entity #31 (line ") and lines[1].endswith(
            "https://broken.uni.example.org/sp: malformed: AssertionConsumerService #1 has no valid index (a whole number 0–65535 is required)."
        )
        assert Entity.objects.filter(entity_type=EntityType.SAML2_SP).count() == 30
        # Not a terminal: progress as plain lines.
        assert "reading: 100%" in err and "importing: 100% (30 of 30 entities)" in err and "\r" not in err

    def test_show_lists_entities_and_certificates(self, documents):
        out, _ = metadata("show", documents["federation.xml"], "--allow-unsigned")
        assert out.splitlines()[0] == "EntitiesDescriptor urn:example:federation: 36 entities, 1 malformed, unsigned"
        assert "    31  malformed  saml2_sp" in out
        out, _ = metadata("show", documents["sp.xml"], "--allow-unsigned", "--entity-id", "https://sp.example.org/sp")
        assert "saml2_sp certificate #1: Signing, issued to sp.example.org, valid" in out

    def test_export_is_a_subcommand(self, make_key_pair):
        key = make_key_pair("idp-signing")
        from entities.entity_services import create_entity

        create_entity(
            {
                "location": "local",
                "entity_type": "saml2_idp",
                "entity_id": "idp1",
                "name": "idp1",
                "base_url": "https://idp.example.org",
                "signing_key": key,
            }
        )
        out, _ = metadata("export", "--entity", "idp1")
        assert out.startswith("<?xml") and 'entityID="idp1"' in out


# ---------------------------------------------------------------- a real process


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """Environment for `manage.py` subprocesses: their own SQLite file and secrets under a temporary var dir."""
    return migrated_env(tmp_path_factory.mktemp("metadata-cli-var"), FEDERATION_CELERY_ALWAYS_EAGER="1")


def run(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", "metadata", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )


def test_real_process_exit_codes_progress_and_errors(cli_env, documents):
    bad = run(cli_env, "import", documents["bomb.xml"], "--allow-unsigned")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().endswith(
        ": The document contains a DTD or an entity declaration, which are not allowed in metadata."
    )
    good = run(cli_env, "import", documents["federation.xml"], "--allow-unsigned", "--all-idps")
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[0] == "bulk import from federation.xml: 5 matched: 5 created, 0 updated, 0 skipped, 0 failed"
    assert "importing: 100% (5 of 5 entities)" in good.stderr
    usage = run(cli_env, "import")
    assert usage.returncode == 1 and usage.stderr.strip().splitlines()[-1].startswith("error: ")
