"""Exactly-once with real Celery worker processes: an installation of its own (SQLite under a temporary var folder),
two workers, the embedded file-system broker by default or the real Redis broker when FEDERATION_BROKER_URL is set
(CI sets it), and the loopback pysaml2 partner in this process counting what it receives.

- Two workers and a duplicate message for every job: every job is sent once and acted on once.
- A worker killed with SIGKILL while the partner is answering: nothing is lost (the sweeper queues the job again once
  the lease runs out) and the partner acts on the request once (it is re-sent under the same ID)."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.name_id_partner import OUR_IDP_ID, PARTNER_SP_ID, LoopbackPartner
from tests.processes import ROOT, manage, migrated_env
from tests.saml.credentials import make_credential

BROKER_URL = os.environ.get("FEDERATION_BROKER_URL", "")
BROKER = "redis" if BROKER_URL.startswith("redis") else "embedded file-system"


def _wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


class Installation:
    """The installation under test: its environment, database and worker processes."""

    def __init__(self, var_dir, **settings):
        extra = {f"FEDERATION_{name}": str(value) for name, value in settings.items()}
        if BROKER_URL:
            extra["FEDERATION_BROKER_URL"] = BROKER_URL
        self.var_dir = var_dir
        self.env = migrated_env(var_dir, **extra)
        self.workers = {}
        self.logs = {}
        if BROKER_URL:  # messages another run left on the shared broker must not reach these workers
            assert manage(self.env, "shell", "-c", "from federation.celery import app; app.control.purge()").returncode == 0

    def shell(self, code):
        done = manage(self.env, "shell", "-c", code)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def start_worker(self, name):
        command = [sys.executable, "-m", "celery", "-A", "federation", "worker", "--loglevel", "INFO", "--concurrency", "1"]
        command += ["-n", f"{name}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat"]
        log = open(self.var_dir / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        self.logs[name] = log
        self.workers[name] = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, name, sig=signal.SIGKILL):
        os.killpg(self.workers[name].pid, sig)
        self.workers[name].wait(timeout=30)

    def stop(self):
        for process in self.workers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.workers.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for log in self.logs.values():
            log.close()

    def rows(self, sql, *args):
        with sqlite3.connect(self.var_dir / "federation.sqlite3", timeout=20) as db:
            return db.execute(sql, args).fetchall()

    def jobs(self):
        return self.rows("SELECT id, state, attempts, last_error FROM partnerships_nameidjob ORDER BY id")

    def worker_of(self, pid):
        """The worker (name) whose process group holds process `pid`."""
        group = os.getpgid(pid)
        return next(name for name, process in self.workers.items() if process.pid == group)


@pytest.fixture
def installation(tmp_path):
    partner_credential = make_credential("rsa", PARTNER_SP_ID)
    partner = LoopbackPartner(
        role="sp",
        entity_id=PARTNER_SP_ID,
        key=partner_credential.key,
        certificate=partner_credential.certificate,
        our_entity_id=OUR_IDP_ID,
        directory=tmp_path / "peer",
    ).start()
    (tmp_path / "partner.crt").write_bytes(partner_credential.cert_pem)
    site = Installation(tmp_path / "var", NAME_ID_RETRY_INTERVAL_SECONDS=1, NAME_ID_LEASE_MARGIN_SECONDS=2)
    yield site, partner, tmp_path / "partner.crt"
    site.stop()
    partner.stop()


def _prepare(site, partner, certificate_path, users, soap_timeout=5):
    ours = site.shell(
        "from tests.name_id_partner import setup_installation; "
        f"setup_installation({partner.url!r}, {str(certificate_path)!r}, {users}, mni={{'mni_soap_timeout_seconds': {soap_timeout}}})"
    )
    from cryptography import x509

    partner.trust(x509.load_pem_x509_certificate(ours.encode()))
    partner.links.update({f"pid-{n}": f"user{n}" for n in range(users)})


def _all_finished(site, count):
    jobs = site.jobs()
    return jobs if len(jobs) == count and all(state != "PENDING" for _, state, _, _ in jobs) else None


def test_two_workers_and_duplicate_messages_send_every_request_once(installation):
    site, partner, certificate_path = installation
    jobs = 24
    _prepare(site, partner, certificate_path, jobs)
    partner.failures = ["http500", "responder"]  # two passing failures: those jobs are retried, still acted on once
    site.start_worker("w1")
    site.start_worker("w2")
    site.shell(f"from tests.name_id_partner import submit_installation_jobs; submit_installation_jobs(0, {jobs}, duplicates=1)")

    finished = _wait_for(lambda: _all_finished(site, jobs), 180, f"{jobs} jobs to finish on the {BROKER} broker")
    assert [state for _, state, _, _ in finished] == ["COMPLETED"] * jobs, finished
    assert sum(attempts for _, _, attempts, _ in finished) == jobs + 2
    # The partner acted on one request per job, and saw no request twice.
    assert sum(partner.acted.values()) == jobs and set(partner.acted.values()) == {1}
    assert set(partner.receipts.values()) == {1} and len(partner.receipts) == jobs + 2
    value_of = {request_id: value for request_id, _, value, _ in partner.requests}
    assert sorted(value_of[request_id] for request_id in partner.acted) == sorted(f"pid-{n}" for n in range(jobs))
    assert partner.links == {}
    # Both workers took part (each attempt records its worker's process).
    pids = {int(worker.split(":")[1]) for (worker,) in site.rows("SELECT DISTINCT worker FROM partnerships_nameidattempt")}
    assert {site.worker_of(pid) for pid in pids} == {"w1", "w2"}
    assert site.rows("SELECT COUNT(*) FROM federation_persistentidentifier") == [(0,)]


def test_a_worker_killed_mid_job_loses_nothing_and_the_partner_acts_once(installation):
    site, partner, certificate_path = installation
    _prepare(site, partner, certificate_path, 3, soap_timeout=6)
    partner.delays["pid-0"] = 4  # the partner takes 4 s over user0's request; the worker is killed meanwhile
    site.start_worker("w1")
    site.start_worker("w2")
    site.shell("from tests.name_id_partner import submit_installation_jobs; submit_installation_jobs(0, 1)")

    _wait_for(lambda: partner.requests_for("pid-0"), 60, "the request for user0 to reach the partner")
    (owner,) = _wait_for(
        lambda: site.rows("SELECT lease_owner FROM partnerships_nameidjob WHERE lease_owner != ''"), 10, "the lease"
    )[0]
    victim = site.worker_of(int(owner.split(":")[1]))
    site.kill(victim)  # SIGKILL to the worker and its pool process, mid-call
    survivor = "w2" if victim == "w1" else "w1"
    assert site.rows("SELECT state FROM partnerships_nameidjob") == [("PENDING",)]
    [(outcome, sends)] = site.rows("SELECT outcome, sends FROM partnerships_nameidattempt")
    assert (outcome, sends) == ("sending", 1)  # recorded before the call, no answer recorded

    site.shell("from tests.name_id_partner import submit_installation_jobs; submit_installation_jobs(1, 2)")  # life goes on
    # The sweeper (beat runs it every minute; here by hand) queues the job once its lease (6 s + 2 s) ran out.
    _wait_for(
        lambda: (
            "queued 1 jobs again"
            in site.shell("from django.core.management import call_command; call_command('nameid', 'resume')")
        ),
        30,
        "the lease to run out",
    )
    finished = _wait_for(lambda: _all_finished(site, 3), 120, "the jobs to finish")
    assert [state for _, state, _, _ in finished] == ["COMPLETED"] * 3, finished
    [(request_id, worker, sends, outcome)] = site.rows(
        "SELECT request_id, worker, sends, outcome FROM partnerships_nameidattempt WHERE name_id = 'pid-0'"
    )
    assert (sends, outcome) == (2, "success") and site.worker_of(int(worker.split(":")[1])) == survivor
    assert partner.receipts[request_id] == 2 and partner.acted[request_id] == 1  # re-sent under its ID, acted on once
    assert len(partner.requests_for("pid-0")) == 1 and finished[0][2] == 1
    assert partner.links == {}
