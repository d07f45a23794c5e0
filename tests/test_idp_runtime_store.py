"""The IdP runtime's shared state: the SSO session store (database and Redis), persistent identifiers, the artifact
store (one-time retrieval, atomic across real processes), the sweep task, and the error/POST-form helpers."""

import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings as django_settings
from django.test import RequestFactory

from federation import artifact_store, persistent_ids, sso_sessions, tasks
from federation.models import ArtifactMessage, SsoParticipant, SsoSession
from federation.runtime_errors import post_form, runtime_error
from federation.saml.artifacts import build_artifact
from federation.tracing import bind_saml_transaction, request_transactions_of, saml_transaction_id, transaction
from tests.processes import ROOT, migrated_env

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def redis_url():
    configured = urlsplit(django_settings.REDIS_URL or "redis://127.0.0.1:6379/0")
    return f"redis://{configured.hostname or '127.0.0.1'}:{configured.port or 6379}/15"


@pytest.fixture(params=["database", "redis"])
def store(request, db):
    if request.param == "database":
        yield sso_sessions.DatabaseSessionStore(idle=30, maximum=120)
        return
    prefix = f"test-federation-sso:{secrets.token_hex(6)}:"
    yield sso_sessions.RedisSessionStore(redis_url(), prefix, idle=30, maximum=120)
    client = redis.Redis.from_url(redis_url())
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)


def participant(session_index="_s1", name_id="alice@example.test", sp="https://sp.example.test/sp"):
    return sso_sessions.Participant("p1", 7, sp, name_id, "urn:email", "https://idp", sp, session_index)


def test_session_lifecycle(store):
    record = store.create(username="alice", directory="Embedded directory", authn_class="urn:pw", protection_level=5, now=NOW)
    assert record.cookie and record.key == sso_sessions.hashed(record.cookie) and record.key != record.cookie
    assert record.idle_expires_at == NOW + timedelta(minutes=30) and record.expires_at == NOW + timedelta(minutes=120)

    found = store.get(record.cookie, now=NOW + timedelta(minutes=10))
    assert (found.username, found.authn_class, found.protection_level) == ("alice", "urn:pw", 5)
    assert found.idle_expires_at == NOW + timedelta(minutes=40)  # touched: used again after 10 minutes
    assert store.get(record.cookie, now=NOW + timedelta(minutes=10, seconds=30)).last_seen_at == NOW + timedelta(minutes=10)

    assert store.get("not-a-session", now=NOW) is None
    assert store.get(record.cookie, now=NOW + timedelta(minutes=41)) is None  # idle too long
    assert store.find_by_key(record.key, now=NOW) is None  # and gone


def test_maximum_lifetime_and_reauthentication(store):
    record = store.create(username="alice", directory="d", now=NOW)
    moment = NOW
    for _ in range(5):  # busy all the time: idle never expires, but the maximum does
        moment += timedelta(minutes=25)
        record = store.get(record.cookie, now=moment) or record
    assert moment >= NOW + timedelta(minutes=120) and store.get(record.cookie, now=moment) is None

    fresh = store.create(username="alice", directory="d", now=NOW)
    renewed = store.reauthenticated(fresh, authn_class="urn:pw", protection_level=9, now=NOW + timedelta(minutes=100))
    assert renewed.expires_at == NOW + timedelta(minutes=220)
    again = store.get(fresh.cookie, now=NOW + timedelta(minutes=125))
    assert again is not None and again.protection_level == 9 and again.authn_instant == NOW + timedelta(minutes=100)


def test_participants_for_single_logout(store):
    record = store.create(username="alice", directory="d", now=NOW)
    store.record_participant(record, participant("_s1"))
    store.record_participant(record, participant("_s9", sp="https://other.example/sp"))
    found = store.get(record.cookie, now=NOW, participant_for="https://sp.example.test/sp")
    assert found.participant == participant("_s1")
    assert store.get(record.cookie, now=NOW, participant_for="https://nobody.example/").participant is None
    assert {p.session_index for p in store.participants(found)} == {"_s1", "_s9"}

    store.record_participant(found, participant("_s2"))  # a new index for the same SP replaces the old one
    assert store.find_by_participant("https://sp.example.test/sp", "_s1", now=NOW) is None
    by_index = store.find_by_participant("https://sp.example.test/sp", "_s2", now=NOW)
    assert by_index.key == record.key and by_index.participant.session_index == "_s2"

    store.remove_participant(found, "https://other.example/sp")
    assert [p.session_index for p in store.participants(found)] == ["_s2"]
    store.delete(record.key)
    assert store.get(record.cookie, now=NOW) is None
    assert store.find_by_participant("https://sp.example.test/sp", "_s2", now=NOW) is None


def test_database_sweep_and_beat_task(db):
    store = sso_sessions.DatabaseSessionStore(idle=30, maximum=120)
    old = store.create(username="old", directory="d", now=datetime.now(UTC) - timedelta(hours=3))
    store.record_participant(old, participant())
    store.create(username="new", directory="d")
    artifact_store.store(build_artifact("https://idp"), issuer="i", recipient="r", partnership="p", message="<x/>", lifetime=-1)
    artifact_store.store(build_artifact("https://idp"), issuer="i", recipient="r", partnership="p", message="<y/>")
    assert tasks.sweep_idp_runtime_state() == {"sessions": 1, "artifacts": 1}
    assert list(SsoSession.objects.values_list("username", flat=True)) == ["new"]
    assert not SsoParticipant.objects.exists() and ArtifactMessage.objects.count() == 1


def test_settings_select_the_store(settings, db):
    settings.FEDERATION_SSO_SESSION_STORE = "redis"
    settings.REDIS_URL = redis_url()
    assert isinstance(sso_sessions.session_store(), sso_sessions.RedisSessionStore)
    settings.REDIS_URL = None
    with pytest.raises(sso_sessions.SessionStoreError, match="FEDERATION_REDIS_URL is not set"):
        sso_sessions.session_store()
    settings.FEDERATION_SSO_SESSION_STORE = "memcached"
    with pytest.raises(sso_sessions.SessionStoreError, match="unknown SSO session store"):
        sso_sessions.session_store()
    settings.FEDERATION_SSO_SESSION_STORE = "database"
    assert isinstance(sso_sessions.session_store(), sso_sessions.DatabaseSessionStore)


def test_unreachable_redis_is_a_clear_error(db):
    store = sso_sessions.RedisSessionStore("redis://127.0.0.1:1/0", "x:")
    with pytest.raises(sso_sessions.SessionStoreError, match="cannot be reached"):
        store.create(username="alice", directory="d")


def test_cookie_flags():
    from django.http import HttpResponse

    record = sso_sessions.SessionRecord("k", "u", "d", "", NOW, "", 0, {}, NOW, NOW, NOW, NOW, cookie="value")
    secure = sso_sessions.set_cookie(HttpResponse(), RequestFactory().get("/", secure=True), record).cookies["FEDSESSION"]
    plain = sso_sessions.set_cookie(HttpResponse(), RequestFactory().get("/"), record).cookies["FEDSESSION"]
    assert (secure["secure"], secure["samesite"], secure["httponly"], secure["path"]) == (True, "None", True, "/affwebservices/")
    assert (plain["secure"], plain["samesite"]) == ("", "Lax")


# --- persistent identifiers and artifacts --------------------------------------------------------------------------


def test_persistent_identifier_per_user_and_sp(db):
    value, created = persistent_ids.get_or_create("https://idp", "https://sp1", "dir:alice")
    assert created and len(value) >= 20
    assert persistent_ids.get_or_create("https://idp", "https://sp1", "dir:alice") == (value, False)
    other, _ = persistent_ids.get_or_create("https://idp", "https://sp2", "dir:alice")
    assert other != value  # SPs cannot correlate the user
    assert persistent_ids.find("https://idp", "https://sp1", "dir:bob") is None


def test_artifact_is_taken_once_by_its_recipient(db):
    artifact = build_artifact("https://idp")
    artifact_store.store(artifact, issuer="https://idp", recipient="https://sp", partnership="p", message=b"<r/>")
    assert artifact_store.take(artifact, recipient="https://other") is None
    assert artifact_store.take(artifact, recipient="https://sp") == "<r/>"
    assert artifact_store.take(artifact, recipient="https://sp") is None
    assert "already resolved" in artifact_store.describe_missing(artifact, recipient="https://sp")


RACE_SCRIPT = """
import os, sys, time
from pathlib import Path
import django
django.setup()
folder = Path(sys.argv[1])
(folder / f"ready-{os.getpid()}").touch()
while not (folder / "go").exists():
    time.sleep(0.002)
if sys.argv[2] == "artifact":
    from federation import artifact_store
    from federation.saml.artifacts import parse_artifact
    taken = artifact_store.take(parse_artifact(sys.argv[3]), recipient="https://sp")
    print("GOT" if taken else "NONE")
else:
    from federation import persistent_ids
    print(persistent_ids.get_or_create("https://idp", "https://sp", "dir:alice")[0])
"""


def race(tmp_path, env, *args, processes=4):
    script = tmp_path / "race.py"
    script.write_text(RACE_SCRIPT)
    folder = tmp_path / secrets.token_hex(4)
    folder.mkdir()
    running = [
        subprocess.Popen(
            [sys.executable, str(script), str(folder), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    deadline = time.monotonic() + 120
    while len(list(folder.glob("ready-*"))) < processes:
        assert time.monotonic() < deadline and all(p.poll() is None for p in running), [p.communicate() for p in running]
        time.sleep(0.05)
    (folder / "go").touch()
    outputs = [p.communicate(timeout=120) for p in running]
    assert all(p.returncode == 0 for p in running), outputs
    return sorted(out.strip() for out, _ in outputs)


def test_one_time_retrieval_and_persistent_ids_are_atomic_across_processes(tmp_path):
    """Four processes share one SQLite file, as the embedded mode's web processes do: one of them gets the artifact's
    message, and all four first logins agree on one persistent identifier."""
    env = migrated_env(tmp_path / "var")
    env["PYTHONPATH"] = str(ROOT)
    artifact = build_artifact("https://idp")
    script = (
        "import django; django.setup()\n"
        "from federation import artifact_store\n"
        "from federation.saml.artifacts import parse_artifact\n"
        f"artifact_store.store(parse_artifact({artifact.value!r}), issuer='https://idp', recipient='https://sp',"
        " partnership='p', message='<r/>')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert race(tmp_path, env, "artifact", artifact.value) == ["GOT", "NONE", "NONE", "NONE"]
    values = race(tmp_path, env, "persistent")
    assert len(set(values)) == 1 and values[0]


# --- tracing and the shared error helpers ----------------------------------------------------------------------


@pytest.mark.django_db
def test_saml_transaction_binding():
    with transaction("request-one-0001"):
        bind_saml_transaction("_authn-request-1", "AuthnRequest")
        assert saml_transaction_id() == "_authn-request-1"
    with transaction("request-two-0002"):
        assert saml_transaction_id() == ""  # another request never inherits the binding
        bind_saml_transaction("_authn-request-1", "login")
    assert request_transactions_of("_authn-request-1") == ["request-one-0001", "request-two-0002"]


@pytest.mark.django_db
def test_runtime_error_page_and_redirects():
    request = RequestFactory().get("/affwebservices/public/saml2sso")
    request.transaction_id = "tx-0123456789"
    page = runtime_error(request, status=500, message="Sign-on is not available.", checkpoint="X_FAILED", detail="secret")
    assert page.status_code == 500 and b"Sign-on is not available." in page.content and b"secret" not in page.content
    assert b"tx-0123456789" in page.content and page["Cache-Control"] == "no-store"
    redirects = [
        {"condition": "server_error", "url": "https://help.example/500", "method": "302"},
        {"condition": "user_not_found", "url": "https://help.example/signup", "method": "post"},
    ]
    moved = runtime_error(request, status=500, message="m", checkpoint="X", redirects=redirects)
    assert moved.status_code == 302 and moved["Location"] == "https://help.example/500"
    posted = runtime_error(request, status=403, message="m", checkpoint="X", redirects=redirects, condition="user_not_found")
    assert posted.status_code == 200 and b'action="https://help.example/signup"' in posted.content
    assert runtime_error(request, status=405, message="m", checkpoint="X", redirects=redirects).status_code == 405


def test_post_form_escapes_and_works_without_javascript():
    request = RequestFactory().get("/")
    page = post_form(request, "https://sp.example/acs?a=1&b=2", {"SAMLResponse": 'x"><script>', "RelayState": "", "Other": None})
    html = page.content.decode()
    assert 'action="https://sp.example/acs?a=1&amp;b=2"' in html
    assert 'value="x&quot;&gt;&lt;script&gt;"' in html and "RelayState" not in html and "Other" not in html
    assert "<noscript>" in html and ">Continue</button>" in html
