"""Name-ID management jobs through real Celery workers: terminate jobs per second with 1, 2 and 4 worker processes
against a loopback partner that answers in 5 ms, and a run where 10 % of the partner calls fail once (HTTP 503) to
show that every job completes and none is sent twice (counted at the partner). Not a test: it prints a table.

Each configuration gets an installation of its own (SQLite and the embedded file-system broker under a temporary var
folder, or the broker of --broker-url), the jobs are submitted first, then the workers start; the rate is
jobs / (last job finished - first attempt started), so submission and worker start-up are not counted.

    .venv/bin/python bench/name_id_jobs.py                                # 10,000 jobs, 1/2/4 workers, then 10 % failing
    .venv/bin/python bench/name_id_jobs.py --jobs 2000 --workers 1 2      # a smaller run
    .venv/bin/python bench/name_id_jobs.py --broker-url redis://127.0.0.1:6379/0
"""

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402

from tests.name_id_partner import OUR_IDP_ID, PARTNER_SP_ID, LoopbackPartner  # noqa: E402
from tests.processes import manage, migrated_env  # noqa: E402
from tests.saml.credentials import make_credential  # noqa: E402


def _parse_time(text):
    return datetime.fromisoformat(text.replace(" ", "T"))


class Installation:
    def __init__(self, var_dir, broker_url, poll_seconds=None):
        extra = {"FEDERATION_NAME_ID_RETRY_INTERVAL_SECONDS": "1", "FEDERATION_LOG_LEVEL": "WARNING"}
        if broker_url:
            extra["FEDERATION_BROKER_URL"] = broker_url
        if poll_seconds is not None:
            # The file-system transport looks for new messages once a second (kombu's default polling interval); a
            # settings module of the benchmark's own sets another interval, the shipped settings stay untouched.
            (var_dir.parent / "bench_settings.py").write_text(
                "from federation.settings import *  # noqa: F403\n"
                f"CELERY_BROKER_TRANSPORT_OPTIONS = {{**CELERY_BROKER_TRANSPORT_OPTIONS, 'polling_interval': {poll_seconds}}}  # noqa: F405\n"
            )
            extra["PYTHONPATH"] = str(var_dir.parent)
            extra["DJANGO_SETTINGS_MODULE"] = "bench_settings"
        self.var_dir = var_dir
        self.env = migrated_env(var_dir, **extra)
        self.workers = []
        if broker_url:
            self.shell("from federation.celery import app; app.control.purge()")

    def shell(self, code):
        done = manage(self.env, "shell", "-c", code, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        return done.stdout

    def start_workers(self, count):
        for n in range(count):
            command = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "federation",
                "worker",
                "--loglevel",
                "WARNING",
                "--concurrency",
                "1",
            ]
            command += ["-n", f"bench{n}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat"]
            log = open(self.var_dir / f"worker{n}.log", "w")  # noqa: SIM115 - the worker owns it until stop()
            self.workers.append(
                subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )

    def stop(self):
        for process in self.workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def rows(self, sql):
        with sqlite3.connect(self.var_dir / "federation.sqlite3", timeout=60) as db:
            return db.execute(sql).fetchall()


def run(workers, jobs, failing, broker_url, folder, poll_seconds=None):
    credential = make_credential("rsa", PARTNER_SP_ID)
    partner = LoopbackPartner(
        role="sp",
        entity_id=PARTNER_SP_ID,
        key=credential.key,
        certificate=credential.certificate,
        our_entity_id=OUR_IDP_ID,
        engine="core",
        answer_delay=0.005,
    ).start()
    (folder / "partner.crt").write_bytes(credential.cert_pem)
    site = Installation(folder / "var", broker_url, poll_seconds)
    try:
        ours = site.shell(
            "from tests.name_id_partner import setup_installation; "
            f"setup_installation({partner.url!r}, {str(folder / 'partner.crt')!r}, {jobs}, mni={{'mni_soap_timeout_seconds': 30}})"
        )
        partner.trust(x509.load_pem_x509_certificate(ours.encode()))
        partner.links.update({f"pid-{n}": f"user{n}" for n in range(jobs)})
        if failing:
            partner.fail_first_for = {f"pid-{n}" for n in range(0, jobs, 10)}
        started = time.perf_counter()
        site.shell(f"from tests.name_id_partner import submit_installation_jobs; submit_installation_jobs(0, {jobs})")
        submitted = time.perf_counter() - started
        site.start_workers(workers)
        deadline = time.monotonic() + 3 * 3600
        while time.monotonic() < deadline:
            (pending,) = site.rows("SELECT COUNT(*) FROM partnerships_nameidjob WHERE state = 'PENDING'")[0]
            if pending == 0:
                break
            time.sleep(1)
        else:
            raise SystemExit(f"{pending} jobs still pending after 3 hours")
        (first,) = site.rows("SELECT MIN(started_at) FROM partnerships_nameidattempt")[0]
        (last,) = site.rows("SELECT MAX(finished_at) FROM partnerships_nameidjob")[0]
        states = dict(site.rows("SELECT state, COUNT(*) FROM partnerships_nameidjob GROUP BY state"))
        (attempts,) = site.rows("SELECT SUM(attempts) FROM partnerships_nameidjob")[0]
        seconds = (_parse_time(last) - _parse_time(first)).total_seconds()
        acted = sum(partner.acted.values())
        return {
            "workers": workers,
            "jobs": jobs,
            "failing": "10 % once" if failing else "none",
            "submit_s": submitted,
            "seconds": seconds,
            "rate": jobs / seconds,
            "completed": states.get("COMPLETED", 0),
            "attempts": attempts,
            "receipts": sum(partner.receipts.values()),
            "acted": acted,
            "acted_twice": sum(1 for count in partner.acted.values() if count > 1),
            "resent": sum(1 for count in partner.receipts.values() if count > 1),
            "links_left": len(partner.links),
        }
    finally:
        site.stop()
        partner.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--failing-workers", type=int, default=2, help="workers for the 10 %% failing run (0 skips it)")
    parser.add_argument("--broker-url", default="", help="default: the embedded file-system broker")
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help="file-system broker: look for messages this often (default: 1 s, as shipped)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the workers (finally) when the run is stopped

    results = []
    plan = [(workers, False) for workers in args.workers]
    if args.failing_workers:
        plan.append((args.failing_workers, True))
    for workers, failing in plan:
        folder = Path(tempfile.mkdtemp(prefix="bench-nameid-"))
        try:
            result = run(workers, args.jobs, failing, args.broker_url, folder, args.poll_seconds)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        results.append(result)
        print(
            f"{workers} worker(s), {args.jobs} jobs, failing {result['failing']}: {result['rate']:.1f} jobs/s "
            f"({result['seconds']:.1f} s; submitted in {result['submit_s']:.1f} s)",
            flush=True,
        )

    broker = args.broker_url.split("://", 1)[0] if args.broker_url else "file system"
    if not args.broker_url:
        broker += f", polling every {args.poll_seconds if args.poll_seconds is not None else 1} s"
    print(f"\nbroker: {broker}; loopback partner answering in 5 ms (+ its signature check and signing)\n")
    print(
        "| workers | jobs | partner failures | jobs/s | seconds | completed | attempts | partner receipts | acted on | acted twice | re-sent | links left |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['workers']} | {r['jobs']} | {r['failing']} | {r['rate']:.1f} | {r['seconds']:.1f} | {r['completed']} | {r['attempts']} "
            f"| {r['receipts']} | {r['acted']} | {r['acted_twice']} | {r['resent']} | {r['links_left']} |"
        )


if __name__ == "__main__":
    main()
