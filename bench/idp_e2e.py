"""Benchmark of the IdP runtime end to end (not a test): IdP-initiated SSO on the HTTP-POST binding with an existing
session, through gunicorn with 2 workers (sync, as `make run` starts them) on loopback, driven by Debian's wrk (or a
Python load generator), next to its floors, in one run.

    cd /work/main && .venv/bin/python bench/idp_e2e.py [--seconds 10] [--clients 32] [--memory-responses 100000]

What runs, on the embedded defaults (SQLite in a temporary var folder, migrated first):

  bare Django view      a view returning "ok" through the project's whole middleware stack: the console's HTTP floor
  bare runtime view     the same view marked runtime_view (federation/runtime_middleware.py): the runtime's HTTP floor
  IdP-initiated SSO     GET /affwebservices/public/saml2sso?SPID=… with a FEDSESSION cookie: session read, snapshot
                        lookup, Response with a signed assertion (RSA-2048, SHA-256) and 5 attributes, the
                        auto-submitted form page; rows with the trace store on (FEDERATION_LOG_LEVEL=INFO, the
                        default: every step is a stored trace line), off (WARNING), and with 5 attributes read from
                        the embedded directory instead of static values
  core, one core        bench/idp_response.py's "ours" row (build + sign + serialise, one thread), same run

Then the database queries of one such request (Django's query capture, in-process) and the resident memory of each
gunicorn worker before and after --memory-responses more responses.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SP_STATIC = "https://sp-static.bench.example/sp"
SP_DIRECTORY = "https://sp-directory.bench.example/sp"

SETTINGS_MODULE = """
from federation.settings import *  # noqa: F403
ROOT_URLCONF = "e2e_bench_urls"
"""

# The same with the database connection closed after every request (what federation/settings.py did for SQLite
# before connections were kept): with WAL, closing the last SQLite connection checkpoints the log.
CLOSED_SETTINGS_MODULE = (
    SETTINGS_MODULE
    + """
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
"""
)
REDIS_URL = "redis://127.0.0.1:6379/15"
REDIS_PREFIX = "bench-federation-sso:"

URLS_MODULE = """
from django.http import HttpResponse
from django.urls import include, path
from federation.runtime_middleware import runtime_view

def bare(request):
    return HttpResponse(b"ok", content_type="text/plain")

urlpatterns = [path("bench/bare", bare), path("affwebservices/bench/bare", runtime_view(bare)), path("", include("federation.urls"))]
"""

SEED = """
import json, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from entities import entity_services, services as keystore
from entities.models import Binding, EndpointKind, EntityType, Location
from federation.directories import EMBEDDED_NAME, get_embedded_directory
from federation.models import UserAttribute
from federation import sso_sessions
from partnerships import catalog, prefill, services
from federation.models import UserDirectory

get_embedded_directory()
keystore.generate_key_pair("bench-idp", "rsa2048", "CN=bench idp", 365, [])
local = entity_services.create_entity({"location": Location.LOCAL, "entity_type": EntityType.SAML2_IDP, "name": "bench-idp",
    "entity_id": "https://idp.bench.example/idp", "base_url": "https://idp.bench.example", "signing_key": "bench-idp"})
user = get_user_model().objects.create_user("alice", email="alice@bench.example", password="bench-Password-1",
    first_name="Alice", last_name="Liddell")
for name, value in (("displayName", "Alice Liddell"), ("eduPersonPrincipalName", "alice@bench.example")):
    UserAttribute.objects.create(user=user, name=name, value=value)

def partnership(name, sp, attributes):
    remote = entity_services.create_entity({"location": Location.REMOTE, "entity_type": EntityType.SAML2_SP, "name": name,
        "entity_id": sp}, [{"kind": EndpointKind.ACS, "binding": Binding.HTTP_POST, "location": sp + "/acs", "index": 0,
        "is_default": True}])
    kind = "saml2_idp_sp"
    chosen = [(d.name, d.kind) for d in UserDirectory.objects.filter(name=EMBEDDED_NAME)]
    facts = {"local": services.entity_facts(local), "remote": services.entity_facts(remote)}
    settings = catalog.defaults(kind)
    for step in catalog.steps_for(kind):
        settings[step.key].update(prefill.step_values(kind, step.key, directories=chosen, **facts))
    settings["assertion"].update({"name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        "name_id_type": "static", "name_id_value": "alice-7f3a", "attributes": attributes})
    saved = services.save_partnership(kind=kind, name=name, local_entity=local, remote_entity=remote,
        directories=[EMBEDDED_NAME], settings=settings)
    services.activate(saved)

uri = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
static = [("urn:oid:0.9.2342.19200300.100.1.3", "alice@bench.example"), ("urn:oid:2.5.4.42", "Alice"),
          ("urn:oid:2.5.4.4", "Liddell"), ("urn:oid:2.16.840.1.113730.3.1.241", "Alice Liddell"),
          ("urn:oid:1.3.6.1.4.1.5923.1.1.1.6", "alice@bench.example")]
partnership("bench-static", sys.argv[1], [{"name": n, "retrieval": "sso", "name_format": uri, "value_type": "static",
    "value": v} for n, v in static])
directory = [("urn:oid:0.9.2342.19200300.100.1.3", "email"), ("urn:oid:2.5.4.42", "first_name"),
             ("urn:oid:2.5.4.4", "last_name"), ("urn:oid:2.16.840.1.113730.3.1.241", "displayName"),
             ("urn:oid:1.3.6.1.4.1.5923.1.1.1.6", "eduPersonPrincipalName")]
partnership("bench-directory", sys.argv[2], [{"name": n, "retrieval": "sso", "name_format": uri, "value_type": "user",
    "value": v} for n, v in directory])
ppt = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
session = sso_sessions.session_store().create(username="alice", directory=EMBEDDED_NAME, authn_class=ppt, protection_level=5)
try:
    redis_store = sso_sessions.RedisSessionStore(sys.argv[3], sys.argv[4], 60, 600)
    redis_cookie = redis_store.create(username="alice", directory=EMBEDDED_NAME, authn_class=ppt, protection_level=5).cookie
except sso_sessions.SessionStoreError:
    redis_cookie = None
print(json.dumps({"cookie": session.cookie, "redis_cookie": redis_cookie}))
"""

QUERIES = """
import json, sys
import django
django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
client = Client()
client.cookies["FEDSESSION"] = sys.argv[1]
result = {}
def table(sql):
    found = re.search(r'(FROM|INTO|UPDATE) "?(\\w+)', sql)
    return found.group(2) if found else sql[:40]
for sp in sys.argv[2:]:
    client.get("/affwebservices/public/saml2sso", {"SPID": sp}, secure=True)  # warm the caches
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/affwebservices/public/saml2sso", {"SPID": sp}, secure=True)
    assert response.status_code == 200 and b"SAMLResponse" in response.content, response.content[:300]
    sql = [q["sql"] for q in captured.captured_queries]
    trace = [s for s in sql if "federation_traceline" in s]
    result[sp] = {"queries": len(sql) - len(trace), "trace_inserts": len(trace),
                  "tables": [table(s) for s in sql if "federation_traceline" not in s]}
print(json.dumps(result))
""".replace("import json, sys", "import json, re, sys")


# CPU per response without HTTP or other processes: the WSGI handler called directly in one thread, persistent
# connection, on the same database. Steadier than the loaded figures on a shared machine.
IN_PROCESS = """
import io, json, logging, sys, time
import django
django.setup()
from urllib.parse import quote
from django.core.handlers.wsgi import WSGIHandler
app = WSGIHandler()
cookie = sys.argv[1]

def call(path, query):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "HTTP_HOST": "localhost", "HTTP_COOKIE": "FEDSESSION=" + cookie,
               "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr}
    status = []
    body = app(environ, lambda s, h, e=None: status.append(s))
    b"".join(body)
    body.close()
    assert status[0].startswith("200"), status

def ms(path, query, count=600):
    for _ in range(100):
        call(path, query)
    start = time.perf_counter()
    for _ in range(count):
        call(path, query)
    return (time.perf_counter() - start) / count * 1000

static = "SPID=" + quote(sys.argv[2], safe="")
directory = "SPID=" + quote(sys.argv[3], safe="")
result = {"bare": ms("/bench/bare", ""), "bare_runtime": ms("/affwebservices/bench/bare", "")}
logging.getLogger("federation").setLevel(logging.WARNING)
result["sso"] = ms("/affwebservices/public/saml2sso", static)
result["sso_directory"] = ms("/affwebservices/public/saml2sso", directory)
logging.getLogger("federation").setLevel(logging.INFO)
result["sso_traced"] = ms("/affwebservices/public/saml2sso", static, 300)
print(json.dumps(result))
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(var_dir, module_dir, log_level="INFO", settings_module="e2e_bench_settings", **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDERATION_")}
    env.update(
        FEDERATION_VAR_DIR=str(var_dir),
        FEDERATION_LOG_LEVEL=log_level,
        DJANGO_SETTINGS_MODULE=settings_module,
        PYTHONPATH=os.pathsep.join([str(module_dir), str(ROOT)]),
        **extra,
    )
    return env


def run(env, *args, script=None):
    command = [PYTHON, "-c", textwrap.dedent(script), *args] if script else [PYTHON, "manage.py", *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


class Gunicorn:
    def __init__(self, env, workers, threads, worker_class="sync"):
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "federation.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--worker-class",
                worker_class,
                "--threads",
                str(threads),
                "--keep-alive",
                "30",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    sys.exit("gunicorn did not start")
                time.sleep(0.2)

    def worker_pids(self):
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def client_loop(port, path, cookie, seconds, limit, results):
    """One load-generator process: one keep-alive connection, requests back to back."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Cookie": f"FEDSESSION={cookie}"} if cookie else {}
    done, failed, start = 0, 0, time.perf_counter()
    deadline = start + seconds
    while True:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        if response.status == 200 and (b"SAMLResponse" in body or body == b"ok"):
            done += 1
        else:
            failed += 1
        now = time.perf_counter()
        if now >= deadline or (limit and done + failed >= limit):
            break
    results.put((done, failed, now - start))


def load(port, path, cookie, seconds, clients, limit=0):
    """(responses per second, failures) with `clients` processes for `seconds` (or `limit` responses in all)."""
    results = multiprocessing.Queue()
    per_client = (limit + clients - 1) // clients if limit else 0
    processes = [
        multiprocessing.Process(
            target=client_loop, args=(port, path, cookie, seconds if not limit else 10**6, per_client, results)
        )
        for _ in range(clients)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get() for _ in processes]
    for process in processes:
        process.join()
    done = sum(o[0] for o in outcomes)
    failed = sum(o[1] for o in outcomes)
    return done / max(o[2] for o in outcomes), failed, done


WRK_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 200 or not (string.find(body, "SAMLResponse", 1, true) or body == "ok") then bad = bad + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("bad") end
  io.write(string.format("WRK requests=%d seconds=%f bad=%d errors=%d\\n", summary.requests, summary.duration / 1e6,
    total, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
"""


def wrk_load(port, path, cookie, seconds, connections, script_path):
    """(responses per second, failures, responses) from wrk: one thread, `connections` keep-alive connections. Every
    answer is checked by the Lua script to be a 200 with the SAMLResponse form (or the bare view's "ok")."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script_path)]
    if cookie:
        command += ["-H", f"Cookie: FEDSESSION={cookie}"]
    output = subprocess.run([*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=3600).stdout
    found = re.search(r"WRK requests=(\d+) seconds=([\d.]+) bad=(\d+) errors=(\d+)", output)
    if not found:
        sys.exit("wrk failed: " + output)
    requests, elapsed, bad, errors = int(found[1]), float(found[2]), int(found[3]), int(found[4])
    return requests / elapsed, bad + errors, requests - bad


def core_rate(seconds):
    output = subprocess.run(
        [PYTHON, "bench/idp_response.py", "--rounds", "3", "--seconds", str(seconds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    match = re.search(r"\| ours: build \+ sign assertion \+ bytes\s*\|\s*(\d+)", output)
    return float(match.group(1)) if match else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per row (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per row; the median is shown (default 3)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections of the load generator (default 32)")
    parser.add_argument(
        "--load",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator: wrk (Debian's wrk, one thread; the default when installed) or Python processes",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (gthread, default 1)")
    parser.add_argument(
        "--worker-class",
        default="sync",
        choices=("sync", "gthread"),
        help="gunicorn worker class (default sync, what `make run` and docs/operations.md start: one request at a time, "
        "the connection closed after each; gthread keeps connections alive but spreads them unevenly over the workers)",
    )
    parser.add_argument("--memory-responses", type=int, default=100_000, help="responses for the memory check (0: skip)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="federation-e2e-"))
    try:
        (work / "e2e_bench_settings.py").write_text(SETTINGS_MODULE)
        (work / "e2e_bench_settings_closed.py").write_text(CLOSED_SETTINGS_MODULE)
        (work / "bench.lua").write_text(WRK_SCRIPT)
        (work / "e2e_bench_urls.py").write_text(URLS_MODULE)
        env = environment(work / "var", work)
        run(env, "migrate", "--noinput", "-v", "0")
        run(env, "createcachetable")
        seeded = json.loads(run(env, SP_STATIC, SP_DIRECTORY, REDIS_URL, REDIS_PREFIX, script=SEED).strip().splitlines()[-1])
        cookie = seeded["cookie"]
        queries = json.loads(run(env, cookie, SP_STATIC, SP_DIRECTORY, script=QUERIES).strip().splitlines()[-1])
        cpu = json.loads(run(env, cookie, SP_STATIC, SP_DIRECTORY, script=IN_PROCESS).strip().splitlines()[-1])

        def drive(port, path, session, seconds, limit=0):
            if args.load == "wrk":
                return wrk_load(port, path, session, seconds, args.clients, work / "bench.lua")
            return load(port, path, session, seconds, args.clients, limit)

        sso_static = "/affwebservices/public/saml2sso?SPID=" + quote(SP_STATIC, safe="")
        sso_directory = "/affwebservices/public/saml2sso?SPID=" + quote(SP_DIRECTORY, safe="")
        closed = {"settings_module": "e2e_bench_settings_closed"}
        redis_env = {
            "FEDERATION_REDIS_URL": REDIS_URL,
            "FEDERATION_SSO_SESSION_STORE": "redis",
            "FEDERATION_SSO_SESSION_REDIS_PREFIX": REDIS_PREFIX,
            "FEDERATION_SSO_SESSION_IDLE_MINUTES": "60",
            "FEDERATION_SSO_SESSION_MAX_MINUTES": "600",
        }
        rows = [
            # name, log level, path, cookie, environment
            ("bare Django view (HTTP floor)", "INFO", "/bench/bare", None, {}),
            ("bare runtime view (the runtime's HTTP floor)", "INFO", "/affwebservices/bench/bare", None, {}),
            ("SSO, embedded defaults (trace store on)", "INFO", sso_static, cookie, {}),
            ("SSO, trace store off", "WARNING", sso_static, cookie, {}),
            ("SSO, connection closed after each request", "INFO", sso_static, cookie, closed),
            ("SSO, directory attributes", "INFO", sso_directory, cookie, {}),
        ]
        if seeded["redis_cookie"]:
            rows.append(
                (
                    "SSO, Redis sessions",
                    "INFO",
                    sso_static,
                    seeded["redis_cookie"],
                    redis_env,
                )
            )
        print(
            f"# IdP runtime end to end - Python {platform.python_version()}, {os.cpu_count()} CPUs, gunicorn "
            f"{args.workers} workers ({args.worker_class}, {args.threads} thread), load: {args.load} with {args.clients} "
            "connections"
        )
        print(
            f"# {args.rounds} rounds of {args.seconds:g} s per row; median shown. Load average at start: "
            f"{os.getloadavg()[0]:.1f}\n"
        )
        results = {}
        for _round in range(args.rounds):
            for name, level, path, session, extra in rows:
                server = Gunicorn(environment(work / "var", work, level, **extra), args.workers, args.threads, args.worker_class)
                try:
                    drive(server.port, path, session, 2)  # warm up: imports, caches, key
                    rate, failed, _ = drive(server.port, path, session, args.seconds)
                finally:
                    server.stop()
                if failed:
                    sys.exit(f"{name}: {failed} requests failed")
                results.setdefault(name, []).append(rate)
        core = core_rate(1.0)

        print(f"| {'measurement':<58} | {'responses/s':>11} | note")
        print(f"|{'-' * 60}|{'-' * 12}:|------")
        for name, *_ in rows:
            print(
                f"| {name:<58} | {statistics.median(results[name]):>11.0f} | rounds: "
                + ", ".join(f"{r:.0f}" for r in results[name])
            )
        print(f"| {'core alone, one thread (bench/idp_response.py ours)':<58} | {core:>11.0f} | per core")
        bare_django, bare_runtime, defaults_row, off_row = (row[0] for row in rows[:4])
        for name in (defaults_row, off_row):
            sso = statistics.median(results[name])
            print(
                f"\n{name}: end to end ({args.workers} workers) / core rate on one core = {sso / core:.0%} "
                f"(target >= 100 %: {'met' if sso >= core else 'NOT MET'}); bare view / core = "
                f"{statistics.median(results[bare_django]) / core:.0%}",
                end="",
            )
        # The most a runtime view could serve if it did nothing but the core's work on top of its HTTP floor: each
        # response costs the floor's share of the machine plus the core's time on one of the two cores.
        floor = statistics.median(results[bare_runtime])
        print(
            f"\nbound with no runtime work beyond the core: 1 / (1/{floor:.0f} + 1/({args.workers} x {core:.0f})) = "
            f"{1 / (1 / floor + 1 / (args.workers * core)):.0f}/s"
        )
        print(
            f"CPU per response in one thread (WSGI handler called directly): bare view "
            f"{cpu['bare']:.2f} ms, bare runtime view {cpu['bare_runtime']:.2f} ms, SSO {cpu['sso']:.2f} ms (trace store off), {cpu['sso_traced']:.2f} ms (on), "
            f"with directory attributes {cpu['sso_directory']:.2f} ms; core {1000 / core:.2f} ms"
        )
        for sp, facts in queries.items():
            print(
                f"queries per request ({sp}): {facts['queries']} ({', '.join(facts['tables'])}) + {facts['trace_inserts']} "
                "trace-line inserts"
            )

        if args.memory_responses:
            # New client connections for every chunk, so both workers serve a share; the baseline is taken once both
            # have served a tenth of the run (imports, caches and the signing key are in place by then).
            server = Gunicorn(environment(work / "var", work, "INFO"), args.workers, args.threads, args.worker_class)
            chunk = args.memory_responses // 5
            # wrk runs for a time, not a count: each fifth lasts as long as the defaults row needs for it.
            chunk_seconds = chunk / max(1.0, statistics.median(results[defaults_row]))
            try:
                for _ in range(2):
                    drive(server.port, sso_static, cookie, chunk_seconds / 4, limit=args.memory_responses // 20)
                pids = sorted(server.worker_pids())
                series = {pid: [rss_mib(pid)] for pid in pids}
                mark, served, failures = time.monotonic(), 0, 0
                for _ in range(5):
                    fifth = 0
                    while fifth < chunk:  # wrk stops on time, not count: top each fifth up to its share
                        _, failed, done = drive(
                            server.port, sso_static, cookie, chunk_seconds * (chunk - fifth) / chunk, limit=chunk - fifth
                        )
                        fifth, failures = fifth + done, failures + failed
                        if failed and not done:
                            break
                    served += fifth
                    for pid in pids:
                        series[pid].append(rss_mib(pid))
            finally:
                server.stop()
            print(
                f"\nmemory per worker (RSS, MiB) after warm-up and after each fifth of {served} more responses "
                f"({failures} failed, {time.monotonic() - mark:.0f} s, embedded defaults, trace store on):"
            )
            for pid in pids:
                values = series[pid]
                print(f"  worker {pid}: " + " -> ".join(f"{v:.1f}" for v in values) + f"  ({values[-1] - values[0]:+.1f} MiB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        try:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(match=REDIS_PREFIX + "*"):
                client.delete(key)
        except Exception:  # noqa: BLE001 - no Redis here: nothing to clean
            pass


if __name__ == "__main__":
    main()
