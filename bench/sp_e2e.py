"""End-to-end benchmark of the SP's assertion consumer through the Django view (not a test).

    cd /work/main && .venv/bin/python bench/sp_e2e.py [--requests 2000] [--clients 4] [--workers 2] [--seconds 2]
    .venv/bin/python bench/sp_e2e.py --database-url postgres://postgres@127.0.0.1:5432/bench_sp_e2e

One run, on a fresh database (a SQLite file in a temporary folder, or --database-url), with a real activated SAML2
SP→IdP partnership (tests/sp_runtime_support.make_world: keystore, entities, partnership through the services) and
the embedded directory holding the user. Every request POSTs a *fresh* signed response (IdP-initiated, so no stored
AuthnRequest is needed; each with its own assertion ID, so the replay cache accepts it), generated before the clock
starts: the assertion signed with RSA-2048 / RSA-SHA256, about 6.6 KB, 11 attributes, as bench/sp_consumer.py uses.

Rows, all in the same run:
  core                   federation.saml.consumer.consume_post with the partnership's ConsumerSettings, one
                         thread, the same response again and again (no replay cache): bench/sp_consumer.py's
                         "ours, decryption off" row on this response
  replay cache alone     federation.replay remember_once per call: database and Redis
  view, one process      Django's test client, one request after another: the whole stack (middleware, partnership
                         lookup, validation, replay cache, user lookup, SP session, trace lines), one core
  gunicorn               `gunicorn -w <workers>` on 127.0.0.1 and a multi-process load generator (http.client,
                         <clients> processes, one connection per request as gunicorn's sync workers close them),
                         with the replay cache on the database, on Redis, and on the database with the trace store off
"""

import argparse
import http.client
import multiprocessing
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")

ACS = "/affwebservices/public/saml2assertionconsumer"
TARGET = "https://app.example.org/welcome"


def rate(function, seconds):
    for _ in range(2):
        function()
    count, start = 0, time.perf_counter()
    while True:
        function()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def environment(directory, database_url):
    env = {name: value for name, value in os.environ.items() if not name.startswith("FEDERATION_")}
    env.update(FEDERATION_VAR_DIR=str(directory), DJANGO_SETTINGS_MODULE="federation.settings")
    if database_url:
        env["FEDERATION_DATABASE_URL"] = database_url
    return env


def prepare_database(env, database_url):
    if database_url and database_url.startswith("postgres"):
        import psycopg

        base, _, name = database_url.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
    for command in (["migrate", "--noinput", "-v", "0"], ["createcachetable"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- The load generator ----------------------------------------------------------------------------------------------


def _client(arguments):
    """One load-generator process: POST each body, one connection per request; (latencies, failures)."""
    port, bodies = arguments
    latencies, failures = [], 0
    for body in bodies:
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", ACS, body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        answer = connection.getresponse()
        answer.read()
        connection.close()
        latencies.append(time.perf_counter() - started)
        if answer.status != 302 or answer.getheader("Location") != TARGET:
            failures += 1
    return latencies, failures


def run_gunicorn(env, bodies, workers, clients):
    port = free_port()
    log = open(Path(env["FEDERATION_VAR_DIR"]) / f"gunicorn-{port}.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "federation.wsgi:application", "-w", str(workers), "-b", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/healthz")
                connection.getresponse().read()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError(f"gunicorn did not start; see {log.name}") from None
                time.sleep(0.2)
        warm, bodies = bodies[: workers * 20], bodies[workers * 20 :]
        _client((port, warm))  # imports, caches and keys loaded in every worker
        slices = [(port, bodies[index::clients]) for index in range(clients)]
        started = time.perf_counter()
        with multiprocessing.Pool(clients) as pool:
            results = pool.map(_client, slices)
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    latencies = sorted(latency for part, _ in results for latency in part)
    failures = sum(failed for _, failed in results)
    return {
        "rate": len(latencies) / elapsed,
        "median_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95) - 1],
        "failures": failures,
        "count": len(latencies),
    }


# --- The run ---------------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per gunicorn row (default 2000)")
    parser.add_argument("--clients", type=int, default=4, help="load-generator processes (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2, one per core here)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per in-process row (default 2)")
    parser.add_argument("--database-url", help="database (default: a fresh SQLite file)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15", help="Redis for the Redis rows ('' to skip)")
    args = parser.parse_args()

    folder = tempfile.TemporaryDirectory()
    env = environment(folder.name, args.database_url)
    prepare_database(env, args.database_url)
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    import logging

    for handler in logging.getLogger().handlers:  # the parent's lines still go to the trace store, not to the console
        handler.setLevel(logging.ERROR)

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from federation import replay, sp_runtime
    from federation.saml.consumer import consume_post
    from partnerships.runtime import find_active
    from tests import sp_runtime_support as support

    idp_key, sp_key = support.keys()
    support.make_world(idp_key, sp_key)
    get_user_model().objects.create_user("alice")
    partnership = find_active(sp_runtime.KIND, support.IDP_ENTITY_ID)

    def fresh_bodies(count):
        return [urlencode({"SAMLResponse": support.b64(support.core_response(idp_key, None))}).encode() for _ in range(count)]

    rows = []
    print(f"# SP end-to-end benchmark - Python {platform.python_version()}, {os.cpu_count()} CPUs, {connection.vendor} database")
    sample = support.core_response(idp_key, None)
    print(f"# response: {len(sample)} bytes, {len(support.b64(sample))} as POSTed; {args.requests} requests per gunicorn row\n")

    # Core, per core.
    value = support.b64(sample)
    settings = sp_runtime.consumer_settings(partnership)
    assert consume_post(value, settings).name_id == "alice"
    core = rate(lambda: consume_post(value, settings), args.seconds)
    rows.append(("core: consume_post, partnership settings (1 thread)", core, 1000 / core, "", "floor for the view"))

    expires = datetime.now(UTC) + timedelta(minutes=10)
    database_cache = replay.DatabaseReplayCache()
    database_replay = rate(lambda: database_cache.remember_once("_" + secrets.token_hex(20), "bench", expires), args.seconds)
    rows.append(("replay cache alone: database (1 thread)", database_replay, 1000 / database_replay, "", "per request"))
    redis_cache = None
    if args.redis_url:
        redis_cache = replay.RedisReplayCache(args.redis_url, prefix=f"bench-e2e:{secrets.token_hex(4)}:")
        redis_replay = rate(lambda: redis_cache.remember_once("_" + secrets.token_hex(20), "bench", expires), args.seconds)
        rows.append(("replay cache alone: Redis (1 thread)", redis_replay, 1000 / redis_replay, "", "per request"))

    # The view in this process, one request after another.
    bodies = iter(fresh_bodies(int(args.seconds * 800) + 100))
    browser = Client()

    def one_request():
        browser.cookies.clear()  # a new browser each time, as under load
        answer = browser.post(ACS, data=next(bodies), content_type="application/x-www-form-urlencoded")
        assert answer.status_code == 302 and answer["Location"] == TARGET, answer.content[:300]

    in_process = rate(one_request, args.seconds)
    rows.append(
        ("view via test client, one process (1 core)", in_process, 1000 / in_process, "", f"{in_process / core:.0%} of core")
    )
    traced = [logging.getLogger(name) for name in ("federation", "entities", "partnerships")]
    levels = [logger.level for logger in traced]
    for logger in traced:  # as FEDERATION_LOG_LEVEL=WARNING: INFO lines are neither logged nor stored
        logger.setLevel(logging.WARNING)
    quiet = rate(one_request, args.seconds)
    for logger, level in zip(traced, levels, strict=True):
        logger.setLevel(level)
    rows.append(("view via test client, one process, trace store off", quiet, 1000 / quiet, "", f"{quiet / core:.0%} of core"))

    # gunicorn with the load generator.
    configurations = [("gunicorn, database replay cache, trace store on", {})]
    if args.redis_url:
        configurations.append(
            (
                "gunicorn, Redis replay cache (+ Redis cache)",
                {"FEDERATION_REPLAY_CACHE_BACKEND": "redis", "FEDERATION_REDIS_URL": args.redis_url},
            )
        )
    configurations.append(("gunicorn, database replay cache, trace store off", {"FEDERATION_LOG_LEVEL": "WARNING"}))
    for name, extra in configurations:
        result = run_gunicorn({**env, **extra}, fresh_bodies(args.requests + args.workers * 20), args.workers, args.clients)
        note = f"{result['failures']} failed of {result['count']}; {result['rate'] / (2 * core):.0%} of 2 × core"
        rows.append(
            (
                f"{name} ({args.workers} workers, {args.clients} clients)",
                result["rate"],
                result["median_ms"],
                f"{result['p95_ms']:.1f}",
                note,
            )
        )

    if redis_cache is not None:
        for key in redis_cache.client.scan_iter(match=redis_cache.prefix + "*"):
            redis_cache.client.delete(key)
    print(f"| {'measurement':<78} | {'req/s':>7} | {'median ms':>9} | {'p95 ms':>7} | note")
    print(f"|{'-' * 80}|{'-' * 8}:|{'-' * 10}:|{'-' * 8}:|------")
    for name, per_second, median_ms, p95, note in rows:
        print(f"| {name:<78} | {per_second:>7.0f} | {median_ms:>9.2f} | {p95:>7} | {note}")
    if args.database_url and args.database_url.startswith("postgres"):
        import psycopg

        connection.close()
        base, _, database = args.database_url.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
    folder.cleanup()


if __name__ == "__main__":
    main()
