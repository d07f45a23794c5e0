"""Console partnership list with 10,000 partnerships: server time per request and queries.

Same method as bench/entity_list.py (whose set-up helpers it reuses): the real view stack through Django's test
client, so the figure is server time without network. Not a test: it prints a table.

    .venv/bin/python bench/partnership_list.py                        # SQLite in a temporary folder
    .venv/bin/python bench/partnership_list.py --database-url postgres://postgres@127.0.0.1:5432/bench_partnerships
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import entity_list  # noqa: E402  (bench helpers: environment, database, measuring)


def _populate(count):
    """`count` remote entities (bench/entity_list.py) and one partnership per remote entity, states mixed."""
    from django.utils import timezone

    from entities.models import Entity
    from partnerships import catalog
    from partnerships.models import Partnership, PartnershipState

    entity_list._populate(count)
    local_idp = Entity.objects.create(location="local", entity_type="saml2_idp", entity_id="https://idp.example/", name="idp")
    local_sp = Entity.objects.create(location="local", entity_type="saml2_sp", entity_id="https://sp.example/", name="sp")
    states = [PartnershipState.DEFINED, PartnershipState.ACTIVE, PartnershipState.INACTIVE, PartnershipState.INCOMPLETE]
    defaults = {kind: catalog.defaults(kind) for kind in ("saml2_idp_sp", "saml2_sp_idp")}
    now = timezone.now()
    rows = []
    for n, remote in enumerate(Entity.objects.filter(location="remote").only("pk", "entity_type", "name").order_by("pk")):
        kind = "saml2_idp_sp" if remote.entity_type == "saml2_sp" else "saml2_sp_idp"
        rows.append(
            Partnership(
                name=f"p-{remote.name}",
                kind=kind,
                local_entity=local_idp if kind == "saml2_idp_sp" else local_sp,
                remote_entity=remote,
                state=states[n % len(states)],
                settings=defaults[kind],
                entity_data={"local": {}, "remote": {}},
                entity_data_at=now,
            )
        )
    Partnership.objects.bulk_create(rows, batch_size=1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partnerships", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    entity_list._prepare_environment(args)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    from federation.services import create_administrator

    settings.ALLOWED_HOSTS = ["testserver"]
    try:
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        _populate(args.partnerships)
        populated = time.perf_counter() - started
        admin, _ = create_administrator("bench-admin", "bench-password-123")
        client = Client()
        client.force_login(admin)
        pages = [
            ("list, first page", "/partnerships/"),
            ("list, page 150", "/partnerships/?page=150"),
            ("filter state Active", "/partnerships/?state=active"),
            ("filter type SAML2 SP → IdP, page 40", "/partnerships/?kind=saml2_sp_idp&page=40"),
            ("filter by entity", "/partnerships/?entity=sp-00998"),
            ("search name / entity ID part", "/partnerships/?q=idp-0999"),
            ("search, no match", "/partnerships/?q=nothing-like-this"),
        ]
        engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        print(
            f"{args.partnerships} partnerships on {engine} (populated in {populated:.1f} s), {args.requests} requests per row\n"
        )
        print("| page | median ms | p95 ms | queries |")
        print("|---|---:|---:|---:|")
        for label, url in pages:
            median, p95, queries = entity_list._measure(client, url, args.requests)
            print(f"| {label} | {median:.1f} | {p95:.1f} | {queries} |")
    finally:
        entity_list._drop_database(args)


if __name__ == "__main__":
    main()
