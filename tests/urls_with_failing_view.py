"""The project's URLs plus a view that fails, to test the 500 page, and one that logs inside a rolled-back
transaction, to test the trace store."""

import logging

from django.db import transaction
from django.http import HttpResponse
from django.urls import path

from federation.urls import handler400, handler403, handler404, handler500, urlpatterns  # noqa: F401


def failing_view(request):
    raise RuntimeError("database exploded: secret detail that must not reach the page")


def rolled_back_view(request):
    log = logging.getLogger("federation.tests")
    log.info("before the transaction", extra={"checkpoint": "TEST_BEFORE"})
    try:
        with transaction.atomic():
            log.warning("inside the transaction that is rolled back", extra={"checkpoint": "TEST_INSIDE"})
            raise ValueError("refused")
    except ValueError:
        pass
    return HttpResponse(b"ok")


urlpatterns = [*urlpatterns, path("boom/", failing_view), path("rolled-back/", rolled_back_view)]
