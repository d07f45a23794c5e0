"""`manage.py partnership` and `manage.py fedconfig`: as real processes on a second SQLite database (exit codes,
stdout, stderr, and the byte-for-byte round trip between two databases), and in-process for the rest."""

import json
import shutil
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from entities import entity_services
from entities.models import Entity
from federation.models import AuditEvent
from partnerships import config_io
from partnerships.models import Partnership, PartnershipState
from tests.processes import embedded_env, manage, migrated_env
from tests.test_config_io import BACKCHANNEL_PASSWORD, PASSWORD, build_deployment, full_export

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(saml2_idp_sp, saml2_sp_idp, make_partnership):
    build_deployment(saml2_idp_sp, saml2_sp_idp, make_partnership)


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory):
    """A migrated var folder (SQLite database and generated secrets), made once and copied for each test."""
    folder = tmp_path_factory.mktemp("fresh") / "var"
    env = migrated_env(folder)
    assert manage(env, "createcachetable").returncode == 0  # as `make run` does: activation clears cached snapshots
    return folder


@pytest.fixture
def second_database(deployment, fresh_install, tmp_path):
    """A fresh installation in its own var folder, given the whole deployment with `fedconfig apply` (YAML, with
    secrets and private keys). Returns (environment, folder, password file)."""
    password_file = tmp_path / "password.txt"
    password_file.write_text(PASSWORD + "\n")
    carried = tmp_path / "deployment.yaml"
    carried.write_text(config_io.dump(full_export(), "deployment.yaml"))
    shutil.copytree(fresh_install, tmp_path / "var")
    env = embedded_env(tmp_path / "var")
    done = manage(env, "fedconfig", "apply", str(carried), "--password-file", str(password_file))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "applied: 22 created, 0 updated, 1 unchanged."
    return env, tmp_path, password_file


def run(*args):
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- real processes


def test_export_of_the_second_database_is_the_same_document_byte_for_byte(second_database):
    env, folder, _ = second_database
    done = manage(env, "fedconfig", "export")
    assert done.returncode == 0, done.stderr
    assert done.stdout == config_io.dump(config_io.export_deployment())
    done = manage(env, "fedconfig", "export", "--output", str(folder / "again.yml"))
    assert done.returncode == 0 and done.stdout == "" and "wrote" in done.stderr
    assert (folder / "again.yml").read_text() == config_io.dump(config_io.export_deployment(), "again.yml")
    assert (folder / "again.yml").stat().st_mode & 0o077 == 0o044  # no secrets in it: readable like any file


def test_list_deactivate_activate_as_processes(second_database):
    env, _, _ = second_database
    done = manage(env, "partnership", "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split() == ["NAME", "TYPE", "STATE", "LOCAL", "REMOTE"]
    assert done.stdout.splitlines()[1].split() == ["idp-to-sp", "saml2_idp_sp", "active", "idp-local", "sp-partner"]
    assert done.stdout.splitlines()[4].split() == ["wsfed-later", "wsfed_ip_rp", "incomplete", "fs-local", "—"]

    done = manage(env, "partnership", "deactivate", "idp-to-sp")
    assert (done.returncode, done.stdout) == (0, 'deactivated "idp-to-sp": the runtime no longer serves it\n'), done.stderr
    done = manage(env, "partnership", "list", "--state", "active", "--json")
    assert (done.returncode, json.loads(done.stdout)) == (0, [])

    done = manage(env, "partnership", "activate", "idp-to-sp")
    assert done.returncode == 0 and done.stdout.startswith('activated "idp-to-sp": snapshot v2 (sha256 '), done.stderr
    done = manage(env, "partnership", "activate", "wsfed-later")
    assert done.returncode == 1 and done.stdout == ""
    assert "only a Defined or Inactive partnership can be activated" in done.stderr

    done = manage(env, "partnership", "list", "--state", "sleeping")
    assert done.returncode == 2 and "invalid choice: 'sleeping'" in done.stderr


def test_partnership_export_and_import_with_a_dry_run(second_database):
    env, folder, _ = second_database
    exported = folder / "sp-to-idp.json"
    done = manage(env, "partnership", "export", "sp-to-idp", "--output", str(exported))
    assert done.returncode == 0, done.stderr
    assert exported.read_text() == config_io.dump(config_io.export_partnerships([Partnership.objects.get(name="sp-to-idp")]))

    done = manage(env, "partnership", "import", str(exported))
    assert (done.returncode, done.stdout) == (0, "applied: 0 created, 0 updated, 9 unchanged.\n"), done.stderr

    document = json.loads(exported.read_text())
    document["partnerships"][0]["settings"]["configure"]["skew_seconds"] = 120
    document["partnerships"][0]["active"] = True
    exported.write_text(json.dumps(document))
    done = manage(env, "fedconfig", "apply", str(exported), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        'update    partnerships[0] partnership "sp-to-idp"',
        "    active: false → true",
        "    settings.configure.skew_seconds: 30 → 120",
        "dry run: 0 to create, 1 to update, 8 unchanged; nothing was written.",
    ]
    assert json.loads(manage(env, "partnership", "show", "sp-to-idp", "--json").stdout)["state"] == "defined"

    done = manage(env, "partnership", "import", str(exported))
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "applied: 0 created, 1 updated, 8 unchanged.", done.stderr
    shown = json.loads(manage(env, "partnership", "show", "sp-to-idp", "--json").stdout)
    assert shown["state"] == "active" and shown["settings"]["configure"]["skew_seconds"] == 120


def test_refusals_and_usage_mistakes_as_processes(second_database):
    env, folder, password_file = second_database
    bad = folder / "bad.json"
    document = config_io.export_deployment()
    document["entities"][0]["colour"] = "blue"
    document["partnerships"][0]["settings"]["configure"]["skew_seconds"] = "soon"
    bad.write_text(json.dumps(document))
    done = manage(env, "fedconfig", "apply", str(bad), "--dry-run")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"{bad}: entities[0].colour: unknown field",
        f"{bad}: partnerships[0].settings.configure.skew_seconds: must be a whole number (not “soon”)",
        f"error: {bad} was refused: 2 problem(s); nothing was changed.",
    ]
    (folder / "not.yaml").write_text("format: [federation-config\n")
    done = manage(env, "fedconfig", "apply", str(folder / "not.yaml"))
    assert done.returncode == 1 and "not valid YAML (line 2, column 1)" in done.stderr

    done = manage(env, "fedconfig", "export", "--include-private-keys")
    assert done.returncode == 2 and "need the password" in done.stderr
    done = manage(env, "fedconfig", "apply")
    assert done.returncode == 2 and "the following arguments are required: FILE" in done.stderr
    done = manage(
        env, "fedconfig", "export", "--include-secrets", "--password-file", str(password_file), "--output", str(folder / "s.json")
    )
    assert done.returncode == 0, done.stderr
    assert (folder / "s.json").stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------- in-process


def test_list_filters_and_show(deployment):
    out, _ = run("partnership", "list", "--kind", "saml2_sp_idp", "--json")
    assert [row["name"] for row in json.loads(out)] == ["sp-to-idp"]
    out, _ = run("partnership", "list", "--search", "sp-partner.example")
    assert [line.split()[0] for line in out.splitlines()] == ["NAME", "idp-to-sp"]
    out, _ = run("partnership", "list", "--state", "inactive", "--search", "nothing-like-this")
    assert out == "No partnerships match.\n"
    out, _ = run("partnership", "show", "idp-to-sp")
    assert "type:           SAML2 IdP → SP (saml2_idp_sp)" in out
    assert "state:          Active, snapshot v1 of " in out
    assert BACKCHANNEL_PASSWORD not in out  # password settings show only "(set)" or "(empty)"
    assert "  configure.skew_seconds = 30" in out
    out, _ = run("partnership", "show", "wsfed-later")
    assert "remote entity:  — (put off)" in out and "problems:" in out


def test_delete_asks_unless_yes(deployment):
    with pytest.raises(CommandError, match='add --yes to delete "sp-to-idp"'):
        run("partnership", "delete", "sp-to-idp")
    with pytest.raises(CommandError, match="Deactivate it before deleting it"):
        run("partnership", "delete", "idp-to-sp", "--yes")
    out, _ = run("partnership", "delete", "sp-to-idp", "--yes")
    assert out == 'deleted "sp-to-idp"\n' and not Partnership.objects.filter(name="sp-to-idp").exists()
    assert AuditEvent.objects.filter(action="delete", object_repr="sp-to-idp").latest("id").actor.startswith("cli")


def test_get_updates(deployment):
    out, _ = run("partnership", "get-updates", "sp-to-idp")
    assert out == '"sp-to-idp" already has its entities\' current data\n'
    entity_services.update_entity(Entity.objects.get(name="idp-partner"), {"description": "renamed partner"})
    entity_services.update_entity(
        Entity.objects.get(name="idp-partner"), {"name_id_formats": ["urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"]}
    )
    out, _ = run("partnership", "get-updates", "sp-to-idp")
    assert out.splitlines() == ["remote entity name_id_formats: updated", '"sp-to-idp" is now Defined']
    entity_services.update_entity(Entity.objects.get(name="sp-partner"), {"name_id_formats": []})
    with pytest.raises(CommandError, match="Deactivate it before you get entity updates"):
        run("partnership", "get-updates", "idp-to-sp")


def test_in_process_export_import_and_audit_actor(deployment, tmp_path):
    out, _ = run("partnership", "export", "idp-to-sp", "wsfed-later", "--format", "yaml")
    document = config_io.load(out, fmt="yaml")
    assert [p["name"] for p in document["partnerships"]] == ["idp-to-sp", "wsfed-later"]
    document["partnerships"][1]["description"] = "From the CLI"
    path = tmp_path / "two.yaml"
    path.write_text(config_io.dump(document, "two.yaml"))
    out, _ = run("partnership", "import", str(path))
    assert out.splitlines() == [
        'update    partnerships[1] partnership "wsfed-later"',
        '    description: "" → "From the CLI"',
        "    note: it will be Incomplete: partnerships[1].remote_entity: an active partnership needs its remote entity",
        "applied: 0 created, 1 updated, 8 unchanged.",
    ]
    event = AuditEvent.objects.filter(object_repr="wsfed-later", action="update").latest("id")
    assert event.actor.startswith("cli") and event.changes["description"] == ["", "From the CLI"]
    assert Partnership.objects.get(name="wsfed-later").state == PartnershipState.INCOMPLETE
