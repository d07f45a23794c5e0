"""Shared fixtures. Area fixtures live in their own modules, registered here as plugins."""

import os

import pytest
from django.contrib.auth.models import Group

# Trace lines are stored before each response leaves (not by the background writer), so a test reads them right after
# the request, inside its own database transaction; servers the tests start in other processes inherit this.
os.environ["FEDERATION_TRACE_FLUSH_SECONDS"] = "0"

from federation.roles import ADMINISTRATORS, AUDITORS

pytest_plugins = [
    "tests.slapd",
    "tests.keystore_fixtures",
    "tests.browser",
    "tests.metadata_fixtures",
    "tests.partnership_fixtures",
]

PASSWORD = "correct-horse-battery"


@pytest.fixture
def admin_user(django_user_model):
    user = django_user_model.objects.create_user("alice-admin", password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name=ADMINISTRATORS)[0])
    return user


@pytest.fixture
def auditor_user(django_user_model):
    user = django_user_model.objects.create_user("eve-auditor", password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name=AUDITORS)[0])
    return user


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def auditor_client(client, auditor_user):
    client.force_login(auditor_user)
    return client


@pytest.fixture(autouse=True)
def _fresh_runtime_caches():
    """The runtime caches activated snapshots (and what it derives from them) per process by primary key. Keys are
    never reused in a real database, but every test's rolled-back database reuses them, so each test starts empty."""
    from federation import idp_runtime, slo_runtime
    from partnerships import name_id_jobs, runtime

    for cached in (
        runtime.load_snapshot,
        idp_runtime._config,
        idp_runtime._signing_key,
        slo_runtime._partner,
        slo_runtime._key_pair,
        name_id_jobs._key_pair_for,
    ):
        cached.cache_clear()
    yield


@pytest.fixture(autouse=True)
def _trace_lines_stored_per_request(settings):
    """Whatever the environment says (settings may have been read before this module set it), tests store a request's
    trace lines in its own thread; test_trace_store_background.py sets a flush interval itself."""
    settings.TRACE_FLUSH_SECONDS = 0
