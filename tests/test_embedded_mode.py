"""The embedded mode of `make run`: web, one Celery worker and beat on SQLite and the file-system
broker, started by `manage.py runall` as real processes and stopped by Ctrl-C (SIGINT)."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.processes import ROOT, manage, migrated_env


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _healthz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return json.load(response)
    except OSError:
        return None


@pytest.fixture
def embedded(tmp_path):
    env = migrated_env(tmp_path / "var")
    assert manage(env, "createcachetable").returncode == 0
    return env, tmp_path / "var"


def test_runall_serves_console_runs_jobs_and_stops_on_ctrl_c(embedded):
    env, var_dir = embedded
    created = manage(env, "ensure_admin", "--username", "first-admin")
    assert created.returncode == 0 and "with password:" in created.stdout  # generated, printed once
    again = manage(env, "ensure_admin", "--username", "first-admin")
    assert "with password:" not in again.stdout

    port = _free_port()
    log_path = var_dir / "runall.log"
    with open(log_path, "w") as log_file:
        runall = subprocess.Popen(
            [sys.executable, "manage.py", "runall", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        health = _wait_for(lambda: _healthz(port), 60, "the web server")
        assert health["status"] == "ok" and health["checks"]["broker"]["detail"] == "filesystem"

        queued = manage(env, "shell", "-c", "from federation.tasks import prune_trace_lines; prune_trace_lines.delay()")
        assert queued.returncode == 0, queued.stderr

        def job_succeeded():
            with sqlite3.connect(var_dir / "federation.sqlite3") as db:
                return db.execute(
                    "SELECT state FROM federation_jobrun WHERE name = 'federation.tasks.prune_trace_lines' AND state = 'SUCCEEDED'"
                ).fetchone()

        _wait_for(job_succeeded, 60, "the worker to run the queued job")
        assert f"http://127.0.0.1:{port}/" in log_path.read_text()
    finally:
        os.killpg(runall.pid, signal.SIGINT)
        try:
            runall.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(runall.pid, signal.SIGKILL)
            raise
    output = log_path.read_text()
    assert "stopped web, worker and beat" in output, output[-2000:]
    assert "beat: Starting" in output, "Celery beat ran alongside"
    assert _healthz(port) is None
    leftovers = subprocess.run(["pgrep", "-f", f"127.0.0.1:{port}"], capture_output=True, text=True).stdout.split()
    assert leftovers == []
