"""The shared SSO session store of this site as an asserting party (IdP; later SAML 1.1 Producer and WS-Fed IP).

A user who signed in at the runtime's login page has a session: who they are, which directory vouched for them,
when and how they authenticated, and which partners received an assertion in it (participants, for single logout).
The browser holds only a random key in the `FEDSESSION` cookie; the store keeps a SHA-256 of that key, so a copy of
the store cannot be replayed as cookies. Nothing lives in process memory, so any web node serves any request.

Backends (setting `FEDERATION_SSO_SESSION_STORE`):
- `database` (default): `SsoSession` and `SsoParticipant` rows (federation/models.py).
- `redis` (needs `FEDERATION_REDIS_URL`): a hash per session, a hash of its participants, and an index key per
  (partner, SessionIndex), all expiring with the session, so nothing needs sweeping.

Lifetimes: a session ends `FEDERATION_SSO_SESSION_IDLE_MINUTES` (default 60) after its last use, and at the latest
`FEDERATION_SSO_SESSION_MAX_MINUTES` (default 120) after the user authenticated (a ForceAuthn re-authentication
starts the maximum again). The idle expiry is pushed forward at most once per `touch_interval` so a busy session
does not cost a write per request.

Participants: one per (session, partner entity ID), holding the NameID and SessionIndex the partner received. A
second SSO to the same partner in the same session reuses the SessionIndex, so the partner's LogoutRequest matches
whichever assertion it kept. `get(…, participant_for=entity ID)` returns that participant with the session in one
read, which is what the SSO path needs to decide whether anything must be written.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver

from federation import runtime_paths

COOKIE_NAME = "FEDSESSION"
COOKIE_PATH = runtime_paths.PREFIX + "/"
DATABASE = "database"
REDIS = "redis"
DEFAULT_IDLE_MINUTES = 60
DEFAULT_MAX_MINUTES = 120
DEFAULT_REDIS_PREFIX = "federation:sso:"
_KEY_BYTES = 32


class SessionStoreError(Exception):
    """The session store is misconfigured or cannot be reached."""


def runtime_setting(name, default):
    """A runtime setting: the Django setting of that name, else the FEDERATION_* environment variable's value as read
    by settings.env, else the default. (The project settings module may not define the new runtime settings yet.)"""
    import os

    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name if name.startswith("FEDERATION_") else f"FEDERATION_{name}")
    return default if value in (None, "") else value


def idle_minutes():
    return int(runtime_setting("FEDERATION_SSO_SESSION_IDLE_MINUTES", DEFAULT_IDLE_MINUTES))


def max_minutes():
    return int(runtime_setting("FEDERATION_SSO_SESSION_MAX_MINUTES", DEFAULT_MAX_MINUTES))


def _now(now=None):
    return now or datetime.now(UTC)


def hashed(cookie_value):
    """What the store keeps for a cookie value: SHA-256 hex (64 characters, the `SsoSession.key` column)."""
    return hashlib.sha256(cookie_value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Participant:
    """A partner that received an assertion in a session, with what single logout must tell it."""

    partnership: str
    snapshot_id: int
    remote_entity_id: str
    name_id: str
    name_id_format: str = ""
    name_qualifier: str = ""
    sp_name_qualifier: str = ""
    session_index: str = ""


@dataclass
class SessionRecord:
    """One session as the runtime reads it. `key` is the stored (hashed) key; `cookie` the browser's value, known only
    when the session was just created or read from a request. `participant` is filled by `get(participant_for=…)`."""

    key: str
    username: str
    directory: str
    user_dn: str
    authn_instant: datetime
    authn_class: str
    protection_level: int
    attributes: dict
    created_at: datetime
    last_seen_at: datetime
    idle_expires_at: datetime
    expires_at: datetime
    cookie: str = ""
    participant: Participant | None = field(default=None, compare=False)

    @property
    def user_key(self):
        """'<directory>:<user DN or name>': how persistent identifiers name the user."""
        return f"{self.directory}:{self.user_dn or self.username}"

    def remaining_seconds(self, now=None):
        return max(0, int((min(self.idle_expires_at, self.expires_at) - _now(now)).total_seconds()))


_PARTICIPANT_FIELDS = tuple(Participant.__dataclass_fields__)


def _touch_interval(idle):
    # Push the idle expiry forward at most every minute (or a tenth of a short idle timeout).
    return min(timedelta(seconds=60), idle / 10)


class _Store:
    """What both backends share: lifetimes and the new-session arithmetic."""

    name = ""

    def __init__(self, idle=None, maximum=None):
        self.idle = timedelta(minutes=idle if idle is not None else idle_minutes())
        self.maximum = timedelta(minutes=maximum if maximum is not None else max_minutes())

    def _new_record(self, *, username, directory, user_dn, authn_class, protection_level, attributes, now):
        cookie = secrets.token_urlsafe(_KEY_BYTES)
        expires = now + self.maximum
        return SessionRecord(
            key=hashed(cookie),
            username=username,
            directory=directory,
            user_dn=user_dn or "",
            authn_instant=now,
            authn_class=authn_class or "",
            protection_level=int(protection_level or 0),
            attributes=dict(attributes or {}),
            created_at=now,
            last_seen_at=now,
            idle_expires_at=min(now + self.idle, expires),
            expires_at=expires,
            cookie=cookie,
        )

    def _due_for_touch(self, record, now):
        return now - record.last_seen_at >= _touch_interval(self.idle) and record.idle_expires_at < record.expires_at

    def touched(self, record, now):
        return replace(record, last_seen_at=now, idle_expires_at=min(now + self.idle, record.expires_at))


# --- database ----------------------------------------------------------------------------------------------------


class DatabaseSessionStore(_Store):
    """Sessions as SsoSession rows, participants as SsoParticipant rows."""

    name = DATABASE

    @staticmethod
    def _record(row, cookie=""):
        return SessionRecord(
            key=row.key,
            username=row.username,
            directory=row.directory,
            user_dn=row.user_dn,
            authn_instant=row.authn_instant,
            authn_class=row.authn_class,
            protection_level=row.protection_level,
            attributes=row.attributes or {},
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            idle_expires_at=row.idle_expires_at,
            expires_at=row.expires_at,
            cookie=cookie,
        )

    def create(self, *, username, directory, user_dn="", authn_class="", protection_level=0, attributes=None, now=None):
        from federation.models import SsoSession

        record = self._new_record(
            username=username,
            directory=directory,
            user_dn=user_dn,
            authn_class=authn_class,
            protection_level=protection_level,
            attributes=attributes,
            now=_now(now),
        )
        row = SsoSession.objects.create(
            key=record.key,
            username=record.username[:255],
            directory=record.directory[:100],
            user_dn=record.user_dn[:1024],
            authn_instant=record.authn_instant,
            authn_class=record.authn_class[:255],
            protection_level=record.protection_level,
            attributes=record.attributes,
            last_seen_at=record.last_seen_at,
            idle_expires_at=record.idle_expires_at,
            expires_at=record.expires_at,
        )
        record.created_at = row.created_at
        return record

    def get(self, cookie_value, *, now=None, participant_for=None):
        """The live session of a cookie value, or None (unknown, idle too long or past its lifetime: an expired row is
        deleted). With `participant_for` (a partner entity ID), its participant rides along in the same query."""
        from federation.models import SsoSession

        if not cookie_value or len(cookie_value) > 128:
            return None
        now = _now(now)
        row = _read_session_row(participant_for or "", hashed(cookie_value))
        if row is None:
            return None
        if now >= row.idle_expires_at or now >= row.expires_at:
            self.delete(row.key)
            return None
        record = self._record(row, cookie_value)
        if participant_for is not None and row.p_session_index is not None:
            record.participant = Participant(**{name: getattr(row, f"p_{name}") for name in _PARTICIPANT_FIELDS})
        if self._due_for_touch(record, now):
            record = self.touched(record, now)
            SsoSession.objects.filter(key=record.key).update(
                last_seen_at=record.last_seen_at, idle_expires_at=record.idle_expires_at
            )
        return record

    def find_by_key(self, key, now=None):
        """The live session with the stored key `key` (not a cookie value), or None."""
        from federation.models import SsoSession

        row = SsoSession.objects.filter(key=key, idle_expires_at__gt=_now(now), expires_at__gt=_now(now)).first()
        return self._record(row) if row else None

    def reauthenticated(self, record, *, authn_class, protection_level, now=None):
        """The user proved their credentials again (ForceAuthn): a new AuthnInstant, class and level, and a fresh
        maximum lifetime."""
        from federation.models import SsoSession

        now = _now(now)
        record = replace(
            record,
            authn_instant=now,
            authn_class=authn_class or "",
            protection_level=int(protection_level or 0),
            last_seen_at=now,
            expires_at=now + self.maximum,
            idle_expires_at=now + self.idle,
        )
        SsoSession.objects.filter(key=record.key).update(
            authn_instant=record.authn_instant,
            authn_class=record.authn_class[:255],
            protection_level=record.protection_level,
            last_seen_at=record.last_seen_at,
            idle_expires_at=record.idle_expires_at,
            expires_at=record.expires_at,
        )
        return record

    def record_participant(self, record, participant):
        """Remember that `participant` received an assertion in this session (one row per partner: replaced when
        the NameID or SessionIndex changed, left alone when it is the same)."""
        from federation.models import SsoParticipant, SsoSession

        if record.participant == participant:
            return participant
        with transaction.atomic():
            session_id = SsoSession.objects.filter(key=record.key).values_list("pk", flat=True).first()
            if session_id is None:
                return participant
            SsoParticipant.objects.filter(session_id=session_id, remote_entity_id=participant.remote_entity_id).delete()
            SsoParticipant.objects.create(session_id=session_id, **_participant_columns(participant))
        record.participant = participant
        return participant

    @staticmethod
    def _participant(row):
        return Participant(
            partnership=row.partnership,
            snapshot_id=row.snapshot_id,
            remote_entity_id=row.remote_entity_id,
            name_id=row.name_id,
            name_id_format=row.name_id_format,
            name_qualifier=row.name_qualifier,
            sp_name_qualifier=row.sp_name_qualifier,
            session_index=row.session_index,
        )

    def participants(self, record):
        from federation.models import SsoParticipant

        rows = SsoParticipant.objects.filter(session__key=record.key).order_by("created_at", "id")
        return [self._participant(row) for row in rows]

    def remove_participant(self, record, remote_entity_id):
        from federation.models import SsoParticipant

        SsoParticipant.objects.filter(session__key=record.key, remote_entity_id=remote_entity_id).delete()

    def find_by_participant(self, remote_entity_id, session_index, now=None):
        """The live session in which `remote_entity_id` received SessionIndex `session_index` (SOAP logout)."""
        from federation.models import SsoParticipant

        row = (
            SsoParticipant.objects.filter(remote_entity_id=remote_entity_id, session_index=session_index)
            .select_related("session")
            .first()
        )
        if row is None:
            return None
        now = _now(now)
        session = row.session
        if now >= session.idle_expires_at or now >= session.expires_at:
            return None
        record = self._record(session)
        record.participant = self._participant(row)
        return record

    def delete(self, key):
        """End the session with the stored key `key` (its participants go with it)."""
        from federation.models import SsoSession

        SsoSession.objects.filter(key=key).delete()

    def sweep(self, now=None):
        """Delete sessions past their idle or maximum expiry; returns how many."""
        from django.db.models import Q

        from federation.models import SsoSession

        now = _now(now)
        _deleted, by_model = SsoSession.objects.filter(Q(idle_expires_at__lte=now) | Q(expires_at__lte=now)).delete()
        return by_model.get("federation.SsoSession", 0)


@lru_cache(maxsize=4)
def _session_sql():
    """The session read of `DatabaseSessionStore.get`: the session LEFT JOIN its participant for one partner, as one
    raw statement (parameters: partner entity ID, hashed key). Written by hand because building the equivalent ORM
    query cost more than running it on the SSO hot path; table and column names come from the models."""
    from django.db import connection

    from federation.models import SsoParticipant, SsoSession

    q = connection.ops.quote_name
    session_columns = ", ".join(f"s.{q(f.column)}" for f in SsoSession._meta.concrete_fields)
    participant_columns = ", ".join(f"p.{q(name)} AS {q('p_' + name)}" for name in _PARTICIPANT_FIELDS)
    return (
        f"SELECT {session_columns}, {participant_columns} FROM {q(SsoSession._meta.db_table)} s "
        f"LEFT JOIN {q(SsoParticipant._meta.db_table)} p ON p.{q('session_id')} = s.{q('id')} "
        f"AND p.{q('remote_entity_id')} = %s WHERE s.{q('key')} = %s"
    )


@lru_cache(maxsize=4)
def _session_row_converters(vendor):
    """Per column of the session read: the database value converters the ORM would apply (datetimes made aware on
    SQLite, the JSON attributes decoded), worked out once instead of on every read."""
    from django.db import connection
    from django.db.models.expressions import Col

    from federation.models import SsoSession

    converters = []
    for model_field in SsoSession._meta.concrete_fields:
        column = Col(SsoSession._meta.db_table, model_field)
        functions = connection.ops.get_db_converters(column) + model_field.get_db_converters(connection)
        converters.append((model_field.attname, column, functions))
    converters += [(f"p_{name}", None, []) for name in _PARTICIPANT_FIELDS]
    return converters


def _read_session_row(participant_for, key):
    """The session row with the partner's participant columns (p_…), as attributes, or None. A cursor rather than
    the ORM's raw(): building model instances cost more than the query on the SSO hot path."""
    from types import SimpleNamespace

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(_session_sql(), [participant_for, key])
        values = cursor.fetchone()
    if values is None:
        return None
    row = {}
    for value, (name, column, functions) in zip(values, _session_row_converters(connection.vendor), strict=True):
        for function in functions:
            value = function(value, column, connection)
        row[name] = value
    return SimpleNamespace(**row)


def _participant_columns(participant):
    return {
        "partnership": participant.partnership[:128],
        "snapshot_id": participant.snapshot_id,
        "remote_entity_id": participant.remote_entity_id[:1024],
        "name_id": participant.name_id[:1024],
        "name_id_format": (participant.name_id_format or "")[:255],
        "name_qualifier": (participant.name_qualifier or "")[:1024],
        "sp_name_qualifier": (participant.sp_name_qualifier or "")[:1024],
        "session_index": participant.session_index[:128],
    }


# --- Redis -------------------------------------------------------------------------------------------------------


def _encode(record):
    data = asdict(record)
    data.pop("cookie", None)
    data.pop("participant", None)
    for name in ("authn_instant", "created_at", "last_seen_at", "idle_expires_at", "expires_at"):
        data[name] = data[name].isoformat()
    data["attributes"] = json.dumps(data["attributes"])
    return {name: str(value) for name, value in data.items()}


def _decode(raw, cookie=""):
    data = {key.decode(): value.decode() for key, value in raw.items()}
    for name in ("authn_instant", "created_at", "last_seen_at", "idle_expires_at", "expires_at"):
        data[name] = datetime.fromisoformat(data[name])
    data["protection_level"] = int(data["protection_level"])
    data["attributes"] = json.loads(data["attributes"])
    return SessionRecord(cookie=cookie, **data)


class RedisSessionStore(_Store):
    """Sessions in Redis. Keys (under the prefix): `s:<key>` the session hash, `p:<key>` its participants (entity ID
    → JSON), `i:<sha256 of entity ID>:<SessionIndex>` → session key. Every key expires with the session."""

    name = REDIS

    def __init__(self, url, prefix=DEFAULT_REDIS_PREFIX, idle=None, maximum=None):
        import redis

        super().__init__(idle, maximum)
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)

    def _keys(self, key):
        return f"{self.prefix}s:{key}", f"{self.prefix}p:{key}"

    def _index_key(self, remote_entity_id, session_index):
        return f"{self.prefix}i:{hashlib.sha256(remote_entity_id.encode()).hexdigest()}:{session_index}"

    @staticmethod
    def _expiry_ms(record):
        return int(min(record.idle_expires_at, record.expires_at).timestamp() * 1000)

    def _call(self, action):
        import redis

        try:
            return action()
        except redis.RedisError as error:
            raise SessionStoreError(f"the SSO session store (Redis) cannot be reached: {error}") from None

    def create(self, *, username, directory, user_dn="", authn_class="", protection_level=0, attributes=None, now=None):
        record = self._new_record(
            username=username,
            directory=directory,
            user_dn=user_dn,
            authn_class=authn_class,
            protection_level=protection_level,
            attributes=attributes,
            now=_now(now),
        )
        session_key, _ = self._keys(record.key)

        def write():
            pipe = self.client.pipeline()
            pipe.hset(session_key, mapping=_encode(record))
            pipe.pexpireat(session_key, self._expiry_ms(record))
            pipe.execute()

        self._call(write)
        return record

    def get(self, cookie_value, *, now=None, participant_for=None):
        if not cookie_value or len(cookie_value) > 128:
            return None
        now = _now(now)
        key = hashed(cookie_value)
        session_key, participants_key = self._keys(key)

        def read():
            pipe = self.client.pipeline()
            pipe.hgetall(session_key)
            if participant_for is not None:
                pipe.hget(participants_key, participant_for)
            return pipe.execute()

        found = self._call(read)
        if not found[0]:
            return None
        record = _decode(found[0], cookie_value)
        if now >= record.idle_expires_at or now >= record.expires_at:
            self.delete(key)
            return None
        if participant_for is not None and found[1]:
            record.participant = Participant(**json.loads(found[1]))
        if self._due_for_touch(record, now):
            record = self.touched(record, now)
            self._call(lambda: self._refresh(record, {"last_seen_at": record.last_seen_at.isoformat()}))
        return record

    def _refresh(self, record, fields):
        session_key, participants_key = self._keys(record.key)
        pipe = self.client.pipeline()
        fields = dict(fields, idle_expires_at=record.idle_expires_at.isoformat())
        pipe.hset(session_key, mapping=fields)
        expiry = self._expiry_ms(record)
        pipe.pexpireat(session_key, expiry)
        pipe.pexpireat(participants_key, expiry)
        for raw in self.client.hvals(participants_key):
            pipe.pexpireat(self._index_key(*_index_parts(raw)), expiry)
        pipe.execute()

    def find_by_key(self, key, now=None):
        raw = self._call(lambda: self.client.hgetall(self._keys(key)[0]))
        if not raw:
            return None
        record = _decode(raw)
        now = _now(now)
        return None if now >= record.idle_expires_at or now >= record.expires_at else record

    def reauthenticated(self, record, *, authn_class, protection_level, now=None):
        now = _now(now)
        record = replace(
            record,
            authn_instant=now,
            authn_class=authn_class or "",
            protection_level=int(protection_level or 0),
            last_seen_at=now,
            expires_at=now + self.maximum,
            idle_expires_at=now + self.idle,
        )
        fields = {
            "authn_instant": record.authn_instant.isoformat(),
            "authn_class": record.authn_class,
            "protection_level": str(record.protection_level),
            "last_seen_at": record.last_seen_at.isoformat(),
            "expires_at": record.expires_at.isoformat(),
        }
        self._call(lambda: self._refresh(record, fields))
        return record

    def record_participant(self, record, participant):
        if record.participant == participant:
            return participant
        session_key, participants_key = self._keys(record.key)
        expiry = self._expiry_ms(record)

        def write():
            previous = self.client.hget(participants_key, participant.remote_entity_id)
            pipe = self.client.pipeline()
            if previous:
                pipe.delete(self._index_key(*_index_parts(previous)))
            pipe.hset(participants_key, participant.remote_entity_id, json.dumps(asdict(participant)))
            pipe.pexpireat(participants_key, expiry)
            index_key = self._index_key(participant.remote_entity_id, participant.session_index)
            pipe.set(index_key, record.key, pxat=expiry)
            pipe.execute()

        self._call(write)
        record.participant = participant
        return participant

    def participants(self, record):
        _, participants_key = self._keys(record.key)
        values = self._call(lambda: self.client.hvals(participants_key))
        return [Participant(**json.loads(value)) for value in values]

    def remove_participant(self, record, remote_entity_id):
        _, participants_key = self._keys(record.key)

        def write():
            previous = self.client.hget(participants_key, remote_entity_id)
            pipe = self.client.pipeline()
            if previous:
                pipe.delete(self._index_key(*_index_parts(previous)))
            pipe.hdel(participants_key, remote_entity_id)
            pipe.execute()

        self._call(write)

    def find_by_participant(self, remote_entity_id, session_index, now=None):
        key = self._call(lambda: self.client.get(self._index_key(remote_entity_id, session_index)))
        if not key:
            return None
        record = self.find_by_key(key.decode(), now)
        if record is None:
            return None
        raw = self._call(lambda: self.client.hget(self._keys(record.key)[1], remote_entity_id))
        record.participant = Participant(**json.loads(raw)) if raw else None
        return record

    def delete(self, key):
        session_key, participants_key = self._keys(key)

        def write():
            pipe = self.client.pipeline()
            for raw in self.client.hvals(participants_key):
                pipe.delete(self._index_key(*_index_parts(raw)))
            pipe.delete(session_key, participants_key)
            pipe.execute()

        self._call(write)

    def sweep(self, now=None):
        return 0  # Redis expires every key by itself


def _index_parts(raw):
    data = json.loads(raw)
    return data["remote_entity_id"], data["session_index"]


# --- choosing the backend and the cookie -------------------------------------------------------------------------

_redis_stores = {}
_lock = threading.Lock()


_selected_store = None


def session_store():
    """The backend the settings select (FEDERATION_SSO_SESSION_STORE: database or redis), made once per process:
    reading the settings behind it cost more on every sign-on than the session query. A changed setting (tests do
    that) makes it anew."""
    global _selected_store
    store = _selected_store
    if store is None:
        store = _selected_store = _store_from_settings()
    return store


@receiver(setting_changed)
def _forget_selected_store(**kwargs):
    global _selected_store
    _selected_store = None


def _store_from_settings():
    backend = str(runtime_setting("FEDERATION_SSO_SESSION_STORE", DATABASE)).strip().lower()
    if backend == DATABASE:
        return DatabaseSessionStore()
    if backend == REDIS:
        url = getattr(settings, "REDIS_URL", None)
        if not url:
            raise SessionStoreError("the SSO session store is set to Redis but FEDERATION_REDIS_URL is not set")
        prefix = runtime_setting("FEDERATION_SSO_SESSION_REDIS_PREFIX", DEFAULT_REDIS_PREFIX)
        lifetimes = (idle_minutes(), max_minutes())
        with _lock:
            # One client (and connection pool) per URL, prefix and lifetimes, shared by the threads of a process.
            store = _redis_stores.get((url, prefix, lifetimes))
            if store is None:
                store = _redis_stores[(url, prefix, lifetimes)] = RedisSessionStore(url, prefix, *lifetimes)
        return store
    raise SessionStoreError(f"unknown SSO session store {backend!r}: use {DATABASE!r} or {REDIS!r}")


def cookie_value(request):
    return request.COOKIES.get(COOKIE_NAME, "")


def cookie_is_secure(request):
    return request.is_secure() or bool(getattr(settings, "FEDERATION_REQUIRE_HTTPS", False))


def set_cookie(response, request, record):
    """Put the session's key in the FEDSESSION cookie: HttpOnly (scripts never see it), limited to the runtime's
    paths, Secure on https (or when the site requires https). A browser-session cookie: the store decides expiry.

    SameSite: an SP using the HTTP-POST binding sends the browser here with a cross-site form POST; with Lax the
    browser would leave FEDSESSION out of that POST and an existing session would look absent, so the user would be
    asked to sign in again. SameSite=None keeps the cookie on such POSTs, and browsers accept None only together
    with Secure, so plain-http development falls back to Lax (Redirect-binding GETs still carry Lax cookies)."""
    secure = cookie_is_secure(request)
    response.set_cookie(
        COOKIE_NAME,
        record.cookie,
        path=COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="None" if secure else "Lax",
    )
    return response


def clear_cookie(response, request):
    secure = cookie_is_secure(request)
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, samesite="None" if secure else "Lax")
    return response
