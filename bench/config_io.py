"""Configuration export and apply (partnerships.config_io) with many partnerships: seconds, queries, file size.

A deployment of N remote entities (bench/entity_list.py: SPs with two ACS rows, IdPs with an SSO row, one shared
certificate), a local IdP and a local SP with their key pairs, and one partnership per remote entity (catalogue
defaults, not active). Measures, on the same database:

    export      config_io.export_deployment() + dump() to JSON
    plan        config_io.plan() of that document against the database that holds it (everything "unchanged")
    apply       config_io.apply() of the document (with its private keys) into the emptied database
    re-apply    the same apply again (nothing to write)

Not a test: it prints a table.

    .venv/bin/python bench/config_io.py                          # 1,000 partnerships, SQLite in a temporary folder
    .venv/bin/python bench/config_io.py --partnerships 10000
    .venv/bin/python bench/config_io.py --database-url postgres://postgres@127.0.0.1:5432/bench_config
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import entity_list  # noqa: E402  (bench helpers: environment, database)

PASSWORD = "bench-password-1"


def _populate(count):
    from django.utils import timezone

    from entities import services as keystore
    from entities.models import Entity
    from federation.directories import EMBEDDED_NAME
    from federation.models import UserDirectory
    from partnerships import catalog, services
    from partnerships.models import Partnership, PartnershipDirectory, PartnershipState

    entity_list._populate(count)
    keystore.generate_key_pair("idp-signing", "rsa2048", "CN=idp.example", 365, [])
    keystore.generate_key_pair("sp-signing", "rsa2048", "CN=sp.example", 365, [])
    local_idp = Entity.objects.create(
        location="local", entity_type="saml2_idp", entity_id="https://idp.example/", name="idp", base_url="https://idp.example"
    )
    local_idp.signing_key = keystore.get_entry("idp-signing")
    local_idp.save()
    local_sp = Entity.objects.create(
        location="local", entity_type="saml2_sp", entity_id="https://sp.example/", name="sp", base_url="https://sp.example"
    )
    local_sp.signing_key = keystore.get_entry("sp-signing")
    local_sp.save()
    defaults = {kind: catalog.defaults(kind) for kind in ("saml2_idp_sp", "saml2_sp_idp")}
    facts = {entity.pk: services.entity_facts(entity) for entity in (local_idp, local_sp)}
    now = timezone.now()
    rows = []
    for remote in Entity.objects.filter(location="remote").order_by("pk"):
        kind = "saml2_idp_sp" if remote.entity_type == "saml2_sp" else "saml2_sp_idp"
        local = local_idp if kind == "saml2_idp_sp" else local_sp
        rows.append(
            Partnership(
                name=f"p-{remote.name}",
                kind=kind,
                local_entity=local,
                remote_entity=remote,
                state=PartnershipState.INCOMPLETE,
                settings=defaults[kind],
                entity_data={"local": facts[local.pk], "remote": services.entity_facts(remote)},
                entity_data_at=now,
            )
        )
    Partnership.objects.bulk_create(rows, batch_size=1000)
    embedded = UserDirectory.objects.get(name=EMBEDDED_NAME)
    PartnershipDirectory.objects.bulk_create(
        (PartnershipDirectory(partnership=p, directory=embedded) for p in Partnership.objects.only("pk")), batch_size=2000
    )


def _wipe():
    from entities.models import Entity, KeystoreEntry
    from federation.models import AuditEvent, UserDirectory
    from partnerships.models import AuthnContextTemplate, Partnership

    Partnership.objects.all().delete()
    Entity.objects.all().delete()
    AuthnContextTemplate.objects.all().delete()
    KeystoreEntry.objects.all().delete()
    UserDirectory.objects.exclude(kind=UserDirectory.Kind.EMBEDDED).delete()
    AuditEvent.objects.all().delete()


def _timed(action):
    """(result, seconds, database queries) of running `action`."""
    from django.db import connection

    count = [0]

    def counting(execute, sql, params, many, context):
        count[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counting):
        started = time.perf_counter()
        result = action()
        elapsed = time.perf_counter() - started
    return result, elapsed, count[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partnerships", type=int, default=1_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    entity_list._prepare_environment(args)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from federation.models import AuditEvent
    from partnerships import config_io

    try:
        call_command("migrate", verbosity=0)
        call_command("createcachetable", verbosity=0)
        _populate(args.partnerships)
        rows = []
        text, seconds, queries = _timed(lambda: config_io.dump(config_io.export_deployment()))
        rows.append(("export (JSON, no secrets)", seconds, queries, f"{len(text.encode()) / 1e6:.1f} MB"))
        document = config_io.export_deployment(include_private_keys=True, password=PASSWORD)
        changes, seconds, queries = _timed(lambda: config_io.plan(config_io.load(text)))
        rows.append(("plan against the same database", seconds, queries, config_io.summary(changes)))
        _wipe()
        changes, seconds, queries = _timed(lambda: config_io.apply(document, password=PASSWORD))
        audit_events = AuditEvent.objects.count()
        rows.append(("apply into the emptied database", seconds, queries, config_io.summary(changes, applied=True)))
        changes, seconds, queries = _timed(lambda: config_io.apply(document, password=PASSWORD))
        rows.append(("apply again (nothing to write)", seconds, queries, config_io.summary(changes, applied=True)))
        assert AuditEvent.objects.count() == audit_events
        _, seconds, queries = _timed(lambda: config_io.dump(config_io.export_deployment()))
        assert config_io.dump(config_io.export_deployment()) == text, "the round trip changed the document"
        rows.append(("export again (same bytes)", seconds, queries, ""))

        engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        objects = sum(len(document[section]) for section in config_io.SECTIONS)
        print(f"{args.partnerships} partnerships, {objects} objects in the document, on {engine}\n")
        print("| step | seconds | queries | result |")
        print("|---|---:|---:|---|")
        for label, seconds, queries, result in rows:
            print(f"| {label} | {seconds:.2f} | {queries} | {result} |")
    finally:
        entity_list._drop_database(args)


if __name__ == "__main__":
    main()
