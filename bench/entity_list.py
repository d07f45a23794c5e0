"""Console list and search pages with 10,000 remote entities: server time per request and queries.

Runs the real view stack (middleware, login session, template) through Django's test client,
so the figure is server time without network. Not a test: it prints a table.

    .venv/bin/python bench/entity_list.py                        # SQLite in a temporary folder
    .venv/bin/python bench/entity_list.py --database-url postgres://postgres@127.0.0.1:5432/bench_entities
    .venv/bin/python bench/entity_list.py --entities 10000 --requests 30

With --database-url the database is created first and dropped afterwards (PostgreSQL only).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _prepare_environment(args):
    os.environ["FEDERATION_VAR_DIR"] = tempfile.mkdtemp(prefix="bench-entities-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "federation.settings"
    os.environ.pop("FEDERATION_DATABASE_URL", None)
    if args.database_url:
        import psycopg

        base, name = args.database_url.rsplit("/", 1)
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
        os.environ["FEDERATION_DATABASE_URL"] = args.database_url


def _drop_database(args):
    if args.database_url:
        import psycopg
        from django.db import connections

        connections.close_all()
        base, name = args.database_url.rsplit("/", 1)
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _populate(count):
    """`count` remote entities (half SPs with two ACS rows, half IdPs with an SSO row) sharing one certificate."""
    from entities import services
    from entities.models import Binding, Endpoint, EndpointKind, Entity
    from tests.keystore_fixtures import cert_pem, self_signed

    _key, certificate = self_signed("partners.example.org")
    shared = services.import_trusted_certificate("partners-shared", cert_pem(certificate))
    entities = []
    for n in range(count):
        is_sp = n % 2 == 0
        entities.append(
            Entity(
                location="remote",
                entity_type="saml2_sp" if is_sp else "saml2_idp",
                entity_id=f"https://{'sp' if is_sp else 'idp'}-{n:05d}.example.org/saml",
                name=f"{'sp' if is_sp else 'idp'}-{n:05d}",
                verification_certificate=shared,
            )
        )
    Entity.objects.bulk_create(entities, batch_size=1000)
    rows = []
    for entity in Entity.objects.filter(location="remote").only("pk", "entity_type", "name"):
        host = f"https://{entity.name}.example.org"
        if entity.entity_type == "saml2_sp":
            rows.append(
                Endpoint(
                    entity=entity,
                    kind=EndpointKind.ACS,
                    binding=Binding.HTTP_POST,
                    location=f"{host}/acs",
                    index=0,
                    is_default=True,
                )
            )
            rows.append(
                Endpoint(
                    entity=entity,
                    kind=EndpointKind.ACS,
                    binding=Binding.HTTP_ARTIFACT,
                    location=f"{host}/acs-art",
                    index=1,
                    position=1,
                )
            )
        else:
            rows.append(Endpoint(entity=entity, kind=EndpointKind.SSO, binding=Binding.HTTP_REDIRECT, location=f"{host}/sso"))
    Endpoint.objects.bulk_create(rows, batch_size=2000)


def _measure(client, url, repeat):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm caches and templates
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1], len(queries)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    _prepare_environment(args)

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
        _populate(args.entities)
        populated = time.perf_counter() - started
        admin, _ = create_administrator("bench-admin", "bench-password-123")
        client = Client()
        client.force_login(admin)
        pages = [
            ("list, first page", "/entities/"),
            ("list, page 100", "/entities/?page=100"),
            ("search by entity ID part", "/entities/?q=sp-0999"),
            ("search, no match", "/entities/?q=nothing-like-this"),
            ("filter remote SAML2 SPs, page 50", "/entities/?entity_type=saml2_sp&location=remote&page=50"),
        ]
        engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        print(f"{args.entities} entities on {engine} (populated in {populated:.1f} s), {args.requests} requests per row\n")
        print("| page | median ms | p95 ms | queries |")
        print("|---|---:|---:|---:|")
        for label, url in pages:
            median, p95, queries = _measure(client, url, args.requests)
            print(f"| {label} | {median:.1f} | {p95:.1f} | {queries} |")
    finally:
        _drop_database(args)


if __name__ == "__main__":
    main()
