"""The consumer's replay cache (federation/replay.py): the database backend (SQLite here, PostgreSQL
in CI), the Redis backend against the real Redis server, atomicity across processes, and the sweep."""

import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings as django_settings
from django.db import transaction

from federation import replay, tasks
from federation.models import ReplayCacheEntry
from tests.processes import ROOT, migrated_env

ISSUER = "https://idp.example.org/affwebservices"


def later(seconds=300):
    return datetime.now(UTC) + timedelta(seconds=seconds)


def new_assertion_id():
    return "_" + secrets.token_hex(16)


# --- Database backend ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_database_backend_accepts_an_id_once():
    assertion_id = new_assertion_id()
    assert replay.remember_once(assertion_id, ISSUER, later()) is True
    assert replay.remember_once(assertion_id, ISSUER, later()) is False
    assert replay.remember_once(assertion_id, ISSUER, later(900)) is False
    entry = ReplayCacheEntry.objects.get()
    assert (entry.assertion_id, entry.issuer, entry.key) == (assertion_id, ISSUER, replay.replay_key(assertion_id, ISSUER))


@pytest.mark.django_db
def test_database_backend_keys_by_issuer_and_id():
    assertion_id = new_assertion_id()
    assert replay.remember_once(assertion_id, ISSUER, later())
    assert replay.remember_once(assertion_id, "https://other-idp.example.net/", later())
    assert replay.remember_once(new_assertion_id(), ISSUER, later())
    assert ReplayCacheEntry.objects.count() == 3


@pytest.mark.django_db
def test_a_replay_does_not_break_the_callers_transaction():
    """PostgreSQL aborts a transaction after an error unless the failing INSERT ran in a savepoint."""
    assertion_id = new_assertion_id()
    with transaction.atomic():
        assert replay.remember_once(assertion_id, ISSUER, later())
        assert not replay.remember_once(assertion_id, ISSUER, later())
        assert ReplayCacheEntry.objects.filter(assertion_id=assertion_id).count() == 1


@pytest.mark.django_db
def test_remember_once_refuses_bad_arguments():
    with pytest.raises(ValueError, match="needs the assertion ID and its issuer"):
        replay.remember_once("", ISSUER, later())
    with pytest.raises(ValueError, match="must be an aware datetime"):
        replay.remember_once(new_assertion_id(), ISSUER, datetime.now())
    with pytest.raises(ValueError, match="assertion ID longer than 256 characters"):
        replay.remember_once("_" + "a" * 300, ISSUER, later())


@pytest.mark.django_db
def test_sweep_deletes_only_expired_entries_and_frees_their_ids():
    expired, current = new_assertion_id(), new_assertion_id()
    replay.remember_once(expired, ISSUER, later(-10))
    replay.remember_once(current, ISSUER, later(600))
    assert replay.sweep_expired() == 1
    assert list(ReplayCacheEntry.objects.values_list("assertion_id", flat=True)) == [current]
    assert not replay.remember_once(current, ISSUER, later())
    # Past its time the consumer refuses the assertion anyway, so its ID may be forgotten.
    assert replay.remember_once(expired, ISSUER, later())
    assert replay.sweep_expired(now=later(3600)) == 2
    assert not ReplayCacheEntry.objects.exists()


@pytest.mark.django_db
def test_the_beat_task_sweeps():
    replay.remember_once(new_assertion_id(), ISSUER, later(-1))
    replay.remember_once(new_assertion_id(), ISSUER, later(60))
    assert tasks.sweep_replay_cache() == 1
    assert ReplayCacheEntry.objects.count() == 1


RACE_SCRIPT = """
import os, sys, time
from datetime import UTC, datetime, timedelta
from pathlib import Path
import django
django.setup()
from federation.replay import remember_once
folder = Path(sys.argv[1])
(folder / f"ready-{os.getpid()}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
print("FIRST" if remember_once(sys.argv[2], sys.argv[3], datetime.now(UTC) + timedelta(minutes=5)) else "REPLAY")
"""


def test_database_backend_is_atomic_across_processes(tmp_path):
    """Four processes share one SQLite file (the embedded mode's web, worker and beat do) and try
    to remember the same assertion ID at the same moment: exactly one wins."""
    env = migrated_env(tmp_path / "var")
    script = tmp_path / "race.py"
    script.write_text(RACE_SCRIPT)
    env["PYTHONPATH"] = str(ROOT)
    assertion_id = new_assertion_id()
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), assertion_id, ISSUER],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < len(processes):
        assert time.monotonic() < deadline, "the racing processes did not start"
        assert all(process.poll() is None for process in processes), [p.communicate() for p in processes]
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outputs = [process.communicate(timeout=120) for process in processes]
    results = sorted(out.strip() for out, _ in outputs)
    assert results == ["FIRST", "REPLAY", "REPLAY", "REPLAY"], outputs


# --- Redis backend ------------------------------------------------------------------------------


def redis_test_url():
    """The machine's Redis (in CI: the host of FEDERATION_REDIS_URL), database 15, kept for tests."""
    configured = urlsplit(django_settings.REDIS_URL or "redis://127.0.0.1:6379/0")
    return f"redis://{configured.hostname or '127.0.0.1'}:{configured.port or 6379}/15"


@pytest.fixture
def redis_prefix():
    prefix = f"test-federation-replay:{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_test_url())
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


def test_redis_backend_accepts_an_id_once_and_expires_it_at_not_on_or_after(redis_prefix):
    cache = replay.RedisReplayCache(redis_test_url(), prefix=redis_prefix)
    assertion_id, expires = new_assertion_id(), later(120)
    assert cache.remember_once(assertion_id, ISSUER, expires) is True
    assert cache.remember_once(assertion_id, ISSUER, expires) is False
    assert cache.remember_once(assertion_id, "https://other-idp.example.net/", expires) is True
    key = redis_prefix + replay.replay_key(assertion_id, ISSUER)
    assert abs(cache.client.pexpiretime(key) - int(expires.timestamp() * 1000)) <= 1
    assert cache.sweep_expired() == 0


def test_redis_backend_forgets_an_entry_at_its_time(redis_prefix):
    cache = replay.RedisReplayCache(redis_test_url(), prefix=redis_prefix)
    assertion_id = new_assertion_id()
    # An instant already past is kept for one second rather than dropped at once.
    assert cache.remember_once(assertion_id, ISSUER, later(-30))
    assert not cache.remember_once(assertion_id, ISSUER, later())
    deadline = time.monotonic() + 5
    while cache.client.exists(redis_prefix + replay.replay_key(assertion_id, ISSUER)):
        assert time.monotonic() < deadline, "Redis did not expire the entry"
        time.sleep(0.1)
    assert cache.remember_once(assertion_id, ISSUER, later())


def test_redis_backend_is_atomic_across_clients(redis_prefix):
    """Eight clients (own connections, as on eight web nodes) race for one assertion ID."""
    assertion_id, expires = new_assertion_id(), later()
    caches = [replay.RedisReplayCache(redis_test_url(), prefix=redis_prefix) for _ in range(8)]
    barrier, results = threading.Barrier(len(caches)), []

    def race(cache):
        barrier.wait()
        results.append(cache.remember_once(assertion_id, ISSUER, expires))

    threads = [threading.Thread(target=race, args=(cache,)) for cache in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


@pytest.mark.django_db
def test_settings_select_the_redis_backend(settings, redis_prefix):
    settings.REPLAY_CACHE_BACKEND = "redis"
    settings.REDIS_URL = redis_test_url()
    settings.REPLAY_CACHE_REDIS_PREFIX = redis_prefix
    assertion_id = new_assertion_id()
    assert replay.remember_once(assertion_id, ISSUER, later())
    assert not replay.remember_once(assertion_id, ISSUER, later())
    assert not ReplayCacheEntry.objects.exists()
    assert redis.Redis.from_url(redis_test_url()).exists(redis_prefix + replay.replay_key(assertion_id, ISSUER))


def test_redis_backend_without_a_url_or_unreachable_fails_closed(settings):
    settings.REPLAY_CACHE_BACKEND = "redis"
    settings.REDIS_URL = None
    with pytest.raises(replay.ReplayCacheError, match="set to Redis but FEDERATION_REDIS_URL is not set"):
        replay.remember_once(new_assertion_id(), ISSUER, later())
    settings.REPLAY_CACHE_BACKEND = "memcached"
    with pytest.raises(replay.ReplayCacheError, match="unknown replay cache backend 'memcached'"):
        replay.remember_once(new_assertion_id(), ISSUER, later())
    unreachable = replay.RedisReplayCache("redis://127.0.0.1:1/15")
    with pytest.raises(replay.ReplayCacheError, match=r"the replay cache \(Redis\) cannot be reached"):
        unreachable.remember_once(new_assertion_id(), ISSUER, later())
