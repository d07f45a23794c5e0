"""The consumer's replay cache: an assertion ID is accepted once, across every process and web
node of the installation (reference ch15-20 D2, PRODUCT.md §5 and §9).

`remember_once(assertion_id, issuer, not_on_or_after)` returns True the first time it sees an
(issuer, assertion ID) pair and False on every later call, until the entry expires. The decision
is atomic in the shared store itself, never a read-then-write in Python:

- **database** (the default, and what the embedded mode uses): an INSERT into
  `ReplayCacheEntry`, whose `key` column is unique. When two processes race, the database lets
  exactly one insert succeed; the other gets an `IntegrityError`, which means "replay". Works the
  same on SQLite and PostgreSQL (plain ORM, no vendor SQL).
- **redis** (for several web nodes sharing `FEDERATION_REDIS_URL`): `SET key 1 NX PXAT <ms>`,
  which Redis executes atomically and expires by itself at the given instant.

Entries are kept until `not_on_or_after`: pass the last moment the consumer would still accept the
assertion (its NotOnOrAfter *plus the consumer's skew*: `ValidatedAssertion.replay_expires_at`),
so an assertion cannot come back in the skew margin after its entry was swept. `sweep_expired()`
deletes the database rows past that moment; Celery beat runs it (federation.tasks).

Settings (read once per call, so tests can override them):
`REPLAY_CACHE_BACKEND` = "database" (default) or "redis"; "redis" needs `REDIS_URL`
(FEDERATION_REDIS_URL). `REPLAY_CACHE_REDIS_PREFIX` (default "federation:replay:") namespaces
the keys.
"""

import hashlib
import threading
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

DATABASE = "database"
REDIS = "redis"
DEFAULT_REDIS_PREFIX = "federation:replay:"
MAX_ASSERTION_ID_LENGTH = 256
MAX_ISSUER_LENGTH = 1024


class ReplayCacheError(Exception):
    """The replay cache is misconfigured or cannot be reached; the assertion must not be
    accepted (failing open would turn an outage into a replay window)."""


def replay_key(assertion_id, issuer):
    """The store key of an (issuer, assertion ID) pair: a SHA-256, so long issuers and IDs fit a
    fixed-size unique column and a Redis key, and one IdP cannot collide with another's IDs."""
    return hashlib.sha256(f"{issuer}\n{assertion_id}".encode()).hexdigest()


def _check(assertion_id, issuer, not_on_or_after):
    if not assertion_id or not issuer:
        raise ValueError("the replay cache needs the assertion ID and its issuer")
    if len(assertion_id) > MAX_ASSERTION_ID_LENGTH:
        raise ValueError(f"assertion ID longer than {MAX_ASSERTION_ID_LENGTH} characters")
    if len(issuer) > MAX_ISSUER_LENGTH:
        raise ValueError(f"issuer longer than {MAX_ISSUER_LENGTH} characters")
    if not isinstance(not_on_or_after, datetime) or not_on_or_after.tzinfo is None:
        raise ValueError("not_on_or_after must be an aware datetime")


class DatabaseReplayCache:
    """Entries in the `federation_replaycacheentry` table."""

    name = DATABASE

    def remember_once(self, assertion_id, issuer, not_on_or_after):
        from federation.models import ReplayCacheEntry

        _check(assertion_id, issuer, not_on_or_after)
        try:
            # A savepoint: a duplicate key must not break the caller's transaction on PostgreSQL.
            with transaction.atomic():
                ReplayCacheEntry.objects.create(
                    key=replay_key(assertion_id, issuer),
                    issuer=issuer,
                    assertion_id=assertion_id,
                    not_on_or_after=not_on_or_after,
                )
        except IntegrityError:
            return False
        return True

    def sweep_expired(self, now=None):
        from federation.models import ReplayCacheEntry

        deleted, _ = ReplayCacheEntry.objects.filter(not_on_or_after__lte=now or timezone.now()).delete()
        return deleted


class RedisReplayCache:
    """Entries as Redis keys that expire on their own (`PXAT`); nothing to sweep."""

    name = REDIS

    def __init__(self, url, prefix=DEFAULT_REDIS_PREFIX):
        import redis

        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)

    def remember_once(self, assertion_id, issuer, not_on_or_after):
        import redis

        _check(assertion_id, issuer, not_on_or_after)
        expires_ms = int(not_on_or_after.timestamp() * 1000)
        # An instant already past would make Redis drop the key at once; keep it a moment instead.
        expires_ms = max(expires_ms, int(datetime.now(UTC).timestamp() * 1000) + 1000)
        try:
            stored = self.client.set(self.prefix + replay_key(assertion_id, issuer), b"1", nx=True, pxat=expires_ms)
        except redis.RedisError as error:
            raise ReplayCacheError(f"the replay cache (Redis) cannot be reached: {error}") from None
        return bool(stored)

    def sweep_expired(self, now=None):
        return 0


_redis_caches = {}
_lock = threading.Lock()


def replay_cache():
    """The backend the settings select."""
    backend = getattr(settings, "REPLAY_CACHE_BACKEND", DATABASE) or DATABASE
    if backend == DATABASE:
        return DatabaseReplayCache()
    if backend == REDIS:
        url = getattr(settings, "REDIS_URL", None)
        if not url:
            raise ReplayCacheError("the replay cache is set to Redis but FEDERATION_REDIS_URL is not set")
        prefix = getattr(settings, "REPLAY_CACHE_REDIS_PREFIX", DEFAULT_REDIS_PREFIX)
        with _lock:
            # One client (and its connection pool) per URL and prefix, shared by the threads of a process.
            cache = _redis_caches.get((url, prefix))
            if cache is None:
                cache = _redis_caches[(url, prefix)] = RedisReplayCache(url, prefix)
        return cache
    raise ReplayCacheError(f"unknown replay cache backend {backend!r}: use {DATABASE!r} or {REDIS!r}")


def remember_once(assertion_id, issuer, not_on_or_after):
    """True the first time (issuer, assertion_id) is seen; False when it is a replay. Keeps the
    entry until `not_on_or_after` (an aware datetime)."""
    return replay_cache().remember_once(assertion_id, issuer, not_on_or_after)


def sweep_expired(now=None):
    """Delete the database entries whose time has passed; returns how many. Always sweeps the
    database table, also when Redis is selected (rows left from before a switch)."""
    return DatabaseReplayCache().sweep_expired(now)
