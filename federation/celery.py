"""The Celery application. Tasks are thin wrappers over service functions; federation/jobs.py
records each run and gives it its own transaction ID."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "federation.settings")

app = Celery("federation")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["federation"], related_name="jobs")
