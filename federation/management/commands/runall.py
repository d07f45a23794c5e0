"""Run the web server, one Celery worker and Celery beat together; Ctrl-C stops all three."""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start web + Celery worker + Celery beat (the embedded all-in-one mode of `make run`)."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=os.environ.get("FEDERATION_BIND", "127.0.0.1:8000"))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("FEDERATION_WEB_WORKERS", "2")))

    def handle(self, *args, bind, workers, **options):
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "federation"]
        filesystem_broker = settings.CELERY_BROKER_URL.startswith("filesystem://")
        worker = celery + ["worker", "--loglevel", "INFO", "--concurrency", "1"]
        if filesystem_broker:
            # The file-system transport has no fan-out exchange: no remote control, mingle or gossip.
            worker += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
        commands = {
            "web": [
                python,
                "-m",
                "gunicorn",
                "federation.wsgi:application",
                "--bind",
                bind,
                "--workers",
                str(workers),
                "--access-logfile",
                "-",
                "--graceful-timeout",
                "5",
            ],
            "worker": worker,
            "beat": celery + ["beat", "--loglevel", "INFO", "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME],
        }
        procs = {name: subprocess.Popen(command, start_new_session=True) for name, command in commands.items()}
        self.stdout.write(self.style.SUCCESS(f"\n  Console: http://{bind}/   (Ctrl-C stops web, worker and beat)\n"))

        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with status {proc.returncode}; stopping the others")
                        stopping = True
                time.sleep(0.5)
        finally:
            # Only the leaders get SIGTERM: gunicorn and Celery then stop their own children gracefully.
            for proc in procs.values():
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 15
            for proc in procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
            self.stdout.write("stopped web, worker and beat")
