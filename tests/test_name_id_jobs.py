"""Name-ID management jobs (partnerships.name_id_jobs) run in this process against a loopback partner that answers
with pysaml2 (tests/name_id_partner.py): terminate and change both ways, encrypted NameIDs, retries, SAML error
statuses, notifications, the in-doubt re-send, the sweeper. Real worker processes are in test_name_id_workers.py.

Each `run()` is what one Celery task run does; the retry spacing is 0 s here (NAME_ID_RETRY_INTERVAL_SECONDS), so a
retried job is due at once."""

import base64
import datetime
import ipaddress
import ssl
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.contrib.auth import get_user_model
from django.utils import timezone

from federation import persistent_ids
from federation.models import PersistentIdentifier
from partnerships import name_id_jobs, services
from partnerships.models import NameIdAttempt, NameIdJob
from tests.name_id_partner import (
    OUR_IDP_ID,
    OUR_SP_ID,
    PARTNER_IDP_ID,
    PARTNER_SP_ID,
    LoopbackPartner,
    clear_runtime_caches,
    closed_port_url,
    link,
    make_idp_side,
    make_sp_side,
)
from tests.saml.credentials import make_credential

EMBEDDED = "Embedded directory"


@pytest.fixture(autouse=True)
def fresh_caches():
    clear_runtime_caches()
    yield
    clear_runtime_caches()


@pytest.fixture
def fast_retries(settings):
    settings.NAME_ID_RETRY_INTERVAL_SECONDS = 0


def _partner(tmp_path, role, entity_id, our_entity_id):
    credential = make_credential("rsa", entity_id)
    partner = LoopbackPartner(
        role=role,
        entity_id=entity_id,
        key=credential.key,
        certificate=credential.certificate,
        our_entity_id=our_entity_id,
        directory=tmp_path,
    )
    return partner.start(), credential


@pytest.fixture
def sp_partner(db, tmp_path, fast_retries):
    """A pysaml2 SP partner and our active IdP → SP partnership with it; alice is federated as alice-pid-1."""
    partner, credential = _partner(tmp_path, "sp", PARTNER_SP_ID, OUR_IDP_ID)
    partnership, ours = make_idp_side(partner.url, credential.cert_pem)
    partner.trust(ours)
    partner.links["alice-pid-1"] = "alice"
    link(OUR_IDP_ID, PARTNER_SP_ID, "alice", "alice-pid-1")
    yield partner, partnership
    partner.stop()


@pytest.fixture
def idp_partner(db, tmp_path, fast_retries):
    """A pysaml2 IdP partner and our active SP → IdP partnership with it; bob is federated as bob-idp-7."""
    partner, credential = _partner(tmp_path, "idp", PARTNER_IDP_ID, OUR_SP_ID)
    partnership, ours = make_sp_side(partner.url, credential.cert_pem)
    partner.trust(ours)
    partner.links["bob-idp-7"] = "bob"
    link(OUR_SP_ID, PARTNER_IDP_ID, "bob", "bob-idp-7")
    yield partner, partnership
    partner.stop()


def submit(**item):
    values = {"OperationType": "sp", "ProviderID": PARTNER_SP_ID}
    if "UserName" not in item:
        values["UserDN"] = "alice"
    values.update(item)
    values = {key: value for key, value in values.items() if value is not None}
    [(job, created)] = name_id_jobs.submit_jobs([name_id_jobs.parse_job_request(values)], actor="test")
    assert created
    return job


def run(job, owner="worker-a"):
    outcome = name_id_jobs.process_job(job.pk, owner=owner)
    job.refresh_from_db()
    return outcome


def run_until_done(job, runs=10):
    for _ in range(runs):
        run(job)
        if job.state != NameIdJob.State.PENDING:
            return job
    raise AssertionError(f"still pending after {runs} runs: {job.last_error}")


def links(local, remote):
    return dict(
        PersistentIdentifier.objects.filter(local_entity_id=local, remote_entity_id=remote).values_list("user_key", "value")
    )


# --- Terminate and change, both directions ---------------------------------------------------------------------------


def test_our_idp_ends_alices_federation_with_the_sp(sp_partner):
    partner, partnership = sp_partner
    job = submit()
    assert job.state == NameIdJob.State.PENDING and job.max_attempts == 3 and job.partnership_name == "idp-to-sp"
    outcome = run(job)
    assert outcome.state == NameIdJob.State.COMPLETED and job.state == NameIdJob.State.COMPLETED and job.attempts == 1
    assert links(OUR_IDP_ID, PARTNER_SP_ID) == {}  # our link is gone ...
    assert "alice-pid-1" not in partner.links  # ... and the partner's
    [(request_id, operation, value, _)] = partner.requests
    assert operation == "terminate" and value == "alice-pid-1" and partner.acted[request_id] == 1
    [attempt] = job.attempt_log.all()
    assert attempt.request_id == request_id and attempt.outcome == NameIdAttempt.Outcome.SUCCESS and attempt.status == "Success"
    assert job.notification_state == NameIdJob.NotificationState.NONE
    # A redelivered message for the finished job does nothing.
    assert run(job, owner="worker-b").skipped and len(partner.requests) == 1


def test_our_idp_changes_the_identifier_and_the_next_sso_uses_it(sp_partner):
    partner, _ = sp_partner
    job = submit(Operation="change", NewID="alice-pid-2")
    run(job)
    assert job.state == NameIdJob.State.COMPLETED
    assert partner.links == {"alice-pid-2": "alice"}
    assert persistent_ids.find(OUR_IDP_ID, PARTNER_SP_ID, f"{EMBEDDED}:alice") == "alice-pid-2"  # what the next SSO sends


def test_change_without_new_id_makes_a_fresh_random_one(sp_partner):
    partner, _ = sp_partner
    job = submit(Operation="change")
    assert len(job.new_id) >= 40
    run(job)
    assert partner.links == {job.new_id: "alice"} and links(OUR_IDP_ID, PARTNER_SP_ID) == {f"{EMBEDDED}:alice": job.new_id}


def test_encrypted_name_id_and_new_id_reach_the_sp(db, tmp_path, fast_retries):
    partner, credential = _partner(tmp_path, "sp", PARTNER_SP_ID, OUR_IDP_ID)
    try:
        _, ours = make_idp_side(
            partner.url, credential.cert_pem, signature={"encrypt_name_id": True, "encryption_certificate": "nid-sp-partner"}
        )
        partner.trust(ours)
        partner.links["alice-pid-1"] = "alice"
        link(OUR_IDP_ID, PARTNER_SP_ID, "alice", "alice-pid-1")
        job = submit(Operation="change", NewID="alice-pid-9")
        run(job)
        assert job.state == NameIdJob.State.COMPLETED, job.last_error
        message = job.attempt_log.get().message
        assert (
            "EncryptedID" in message
            and "NewEncryptedID" in message
            and "alice-pid-1" not in message
            and "alice-pid-9" not in message
        )
        assert partner.links == {"alice-pid-9": "alice"}
    finally:
        partner.stop()


def test_our_sp_ends_and_changes_federations_with_the_idp(idp_partner):
    partner, _ = idp_partner
    change = submit(OperationType="idp", ProviderID=PARTNER_IDP_ID, UserDN="bob", Operation="change", NewID="bob-sp-chosen")
    run(change)
    assert change.state == NameIdJob.State.COMPLETED, change.last_error
    assert partner.links == {"bob-sp-chosen": "bob"} and links(OUR_SP_ID, PARTNER_IDP_ID) == {f"{EMBEDDED}:bob": "bob-sp-chosen"}
    terminate = submit(OperationType="idp", ProviderID=PARTNER_IDP_ID, UserName="bob")
    run(terminate)
    assert terminate.state == NameIdJob.State.COMPLETED, terminate.last_error
    assert partner.links == {} and links(OUR_SP_ID, PARTNER_IDP_ID) == {}


# --- Faults ----------------------------------------------------------------------------------------------------------


def test_partner_down_retries_then_fails_and_notifies(db, tmp_path, fast_retries):
    notifier, credential = _partner(tmp_path, "sp", PARTNER_SP_ID, OUR_IDP_ID)  # only its /notify is used
    try:
        make_idp_side(
            closed_port_url(), credential.cert_pem, mni={"mni_notification": True, "mni_notification_url": notifier.notify_url}
        )
        link(OUR_IDP_ID, PARTNER_SP_ID, "alice", "alice-pid-1")
        job = submit()
        assert job.notification_state == NameIdJob.NotificationState.WAITING
        outcomes = [run(job) for _ in range(3)]
        assert [o.state for o in outcomes] == ["PENDING", "PENDING", "FAILED"] and outcomes[0].retry_in == 0
        assert job.attempts == 3 and job.state == NameIdJob.State.FAILED
        assert job.last_error.startswith("Failed after 3 attempts. Last error: could not reach http://127.0.0.1:")
        assert "Connection refused" in job.last_error and "object at 0x" not in job.last_error
        assert [a.outcome for a in job.attempt_log.all()] == ["failed", "failed", "failed"]
        assert links(OUR_IDP_ID, PARTNER_SP_ID) == {f"{EMBEDDED}:alice": "alice-pid-1"}  # nothing changed here

        assert job.notification_state == NameIdJob.NotificationState.PENDING
        name_id_jobs.notify_job(job.pk, owner="worker-a")
        job.refresh_from_db()
        assert job.notification_state == NameIdJob.NotificationState.SENT and job.notification_attempts == 1
        [(headers, payload)] = notifier.notifications
        assert payload["Status"] == 0 and payload["State"] == "FAILED" and payload["JobID"] == str(job.uuid)
        assert (
            payload["UserDN"] == "alice"
            and payload["ProviderID"] == PARTNER_SP_ID
            and "Connection refused" in payload["LastError"]
        )
        assert headers["Idempotency-Key"] == f"{job.uuid}-notification"
    finally:
        notifier.stop()


def test_a_saml_error_status_fails_the_job_at_once_with_the_partners_reason(sp_partner):
    partner, _ = sp_partner
    partner.failures = ["requester"]
    job = submit()
    run(job)
    assert job.state == NameIdJob.State.FAILED and job.attempts == 1
    assert job.last_error == "The partner answered Requester/RequestDenied: we do not accept this request"
    assert links(OUR_IDP_ID, PARTNER_SP_ID) == {f"{EMBEDDED}:alice": "alice-pid-1"}
    assert job.attempt_log.get().outcome == NameIdAttempt.Outcome.REFUSED


def test_unknown_principal_at_the_partner_fails_with_a_clear_reason(sp_partner):
    partner, _ = sp_partner
    partner.links.clear()
    job = submit()
    run(job)
    assert (
        job.state == NameIdJob.State.FAILED and job.last_error == "The partner answered Requester/UnknownPrincipal: no such user"
    )


@pytest.mark.parametrize("failure, outcome", [("http500", "failed"), ("responder", "failed"), ("drop", "unknown")])
def test_a_passing_failure_is_retried_with_a_new_request(sp_partner, failure, outcome):
    partner, _ = sp_partner
    partner.failures = [failure]  # "drop": the connection closes after our request went out, without an answer
    job = submit()
    first = run(job)
    assert first.state == NameIdJob.State.PENDING and first.retry_in == 0 and job.attempts == 1 and job.last_error
    assert job.attempt_log.get().outcome == outcome
    run(job)
    assert job.state == NameIdJob.State.COMPLETED and job.attempts == 2
    assert len(partner.requests) == 2 and sum(partner.acted.values()) == 1  # two requests, one effect


def test_user_without_a_federation_with_that_partner(sp_partner):
    partner, _ = sp_partner
    job = submit(UserDN="carol")
    run(job)
    assert job.state == NameIdJob.State.FAILED and job.attempts == 0 and partner.requests == []
    assert job.last_error == (
        f"carol has no federation with {PARTNER_SP_ID}: no persistent identifier links them "
        f"(partnership idp-to-sp, directories {EMBEDDED})."
    )
    # A user already removed from the directory can still be de-provisioned: links are keyed by name (or DN).
    User = get_user_model()
    User.objects.create_user("dave", password="correct-horse-battery")
    link(OUR_IDP_ID, PARTNER_SP_ID, "dave", "dave-pid-1")
    partner.links["dave-pid-1"] = "dave"
    User.objects.filter(username="dave").delete()
    job = submit(UserName="dave")
    run(job)
    assert job.state == NameIdJob.State.COMPLETED and "dave-pid-1" not in partner.links


def test_a_partnership_deactivated_before_the_job_runs(sp_partner):
    partner, partnership = sp_partner
    job = submit()
    services.deactivate(partnership)
    run(job)
    assert job.state == NameIdJob.State.FAILED and partner.requests == []
    assert job.last_error == f"The partnership idp-to-sp is no longer active, so the request to {PARTNER_SP_ID} was not sent."


def test_a_notification_url_that_is_down_is_retried_then_given_up(db, tmp_path, fast_retries):
    partner, credential = _partner(tmp_path, "sp", PARTNER_SP_ID, OUR_IDP_ID)
    try:
        _, ours = make_idp_side(
            partner.url,
            credential.cert_pem,
            mni={"mni_notification": True, "mni_notification_url": closed_port_url("/notify"), "mni_retries": 1},
        )
        partner.trust(ours)
        partner.links["alice-pid-1"] = "alice"
        link(OUR_IDP_ID, PARTNER_SP_ID, "alice", "alice-pid-1")
        job = submit()
        run(job)
        assert job.state == NameIdJob.State.COMPLETED and job.notification_state == NameIdJob.NotificationState.PENDING
        assert name_id_jobs.notify_job(job.pk, owner="w").retry_in == 0
        name_id_jobs.notify_job(job.pk, owner="w")
        job.refresh_from_db()
        assert job.state == NameIdJob.State.COMPLETED  # the outcome stays; only the notification failed
        assert job.notification_state == NameIdJob.NotificationState.FAILED and job.notification_attempts == 2
        assert job.notification_error.startswith("Failed after 2 attempts: could not reach")
    finally:
        partner.stop()


def test_notification_with_basic_authentication_after_a_failure(db, tmp_path, fast_retries):
    partner, credential = _partner(tmp_path, "sp", PARTNER_SP_ID, OUR_IDP_ID)
    try:
        mni = {
            "mni_notification": True,
            "mni_notification_url": partner.notify_url,
            "mni_notification_auth": "basic",
            "mni_notification_user": "hr-app",
            "mni_notification_password": "s3cret-notify",
        }
        _, ours = make_idp_side(partner.url, credential.cert_pem, mni=mni)
        partner.trust(ours)
        partner.links["alice-pid-1"] = "alice"
        partner.notification_auth = ("hr-app", "s3cret-notify")
        partner.notification_failures = 1
        link(OUR_IDP_ID, PARTNER_SP_ID, "alice", "alice-pid-1")
        job = submit()
        run(job)
        assert name_id_jobs.notify_job(job.pk, owner="w").retry_in == 0  # HTTP 500 the first time
        name_id_jobs.notify_job(job.pk, owner="w")
        job.refresh_from_db()
        assert job.notification_state == NameIdJob.NotificationState.SENT and job.notified_at is not None
        [(_, payload)] = partner.notifications
        assert payload["Status"] == 1 and payload["State"] == "COMPLETED" and payload["Attempts"] == 1
    finally:
        partner.stop()


# --- Exactly once ----------------------------------------------------------------------------------------------------


def test_only_one_worker_can_hold_a_job(sp_partner):
    job = submit()
    now = timezone.now()
    assert name_id_jobs._claim(job.pk, "worker-a", 60, now)
    assert not name_id_jobs._claim(job.pk, "worker-b", 60, now)
    assert run(job, owner="worker-b").skipped  # a duplicate message while worker-a holds it
    assert job.attempts == 0 and job.lease_owner == "worker-a"
    assert name_id_jobs._claim(job.pk, "worker-b", 60, now + timedelta(seconds=61))  # a lease that ran out is free


def _die_after_recording_the_attempt(job, owner="dead-worker"):
    """What a worker killed mid-job leaves: the lease taken and the attempt recorded ("sending"), no outcome."""
    now = timezone.now()
    config = name_id_jobs._current_config(job)
    assert name_id_jobs._claim(job.pk, owner, 60, now)
    job.refresh_from_db()
    attempt, _ = name_id_jobs._attempt_to_send(job, config, owner, now)
    NameIdJob.objects.filter(pk=job.pk).update(lease_expires_at=now - timedelta(seconds=1))  # the lease runs out
    return attempt, config


def test_a_request_left_in_doubt_is_resent_under_the_same_id_and_acted_on_once(sp_partner):
    partner, _ = sp_partner
    job = submit()
    attempt, config = _die_after_recording_the_attempt(job)
    # The dead worker's request did reach the partner; only the answer was lost.
    name_id_jobs.http_post(config.partner_url, attempt.message.encode(), content_type="text/xml", timeout=5)
    assert partner.acted[attempt.request_id] == 1 and "alice-pid-1" not in partner.links

    run(job, owner="worker-b")
    assert job.state == NameIdJob.State.COMPLETED and job.attempts == 1
    assert partner.receipts[attempt.request_id] == 2 and partner.acted[attempt.request_id] == 1  # re-sent, acted on once
    assert len(partner.requests) == 1
    attempt.refresh_from_db()
    assert attempt.sends == 2 and attempt.outcome == NameIdAttempt.Outcome.SUCCESS and attempt.worker == "worker-b"
    assert links(OUR_IDP_ID, PARTNER_SP_ID) == {}


def test_a_request_in_doubt_that_never_left_is_sent_once(sp_partner):
    partner, _ = sp_partner
    job = submit()
    attempt, _ = _die_after_recording_the_attempt(job)
    run(job, owner="worker-b")
    assert job.state == NameIdJob.State.COMPLETED and partner.receipts == {attempt.request_id: 1}


def test_an_old_request_in_doubt_is_not_resent_and_unknown_principal_then_means_done(sp_partner, settings):
    partner, _ = sp_partner
    settings.NAME_ID_RESEND_WINDOW_SECONDS = 0
    job = submit()
    attempt, config = _die_after_recording_the_attempt(job)
    name_id_jobs.http_post(config.partner_url, attempt.message.encode(), content_type="text/xml", timeout=5)
    run(job, owner="worker-b")
    assert job.state == NameIdJob.State.COMPLETED and job.attempts == 2, job.last_error
    first, second = job.attempt_log.all()
    assert first.outcome == NameIdAttempt.Outcome.UNKNOWN and second.outcome == NameIdAttempt.Outcome.SUCCESS
    assert second.request_id != first.request_id and sum(partner.acted.values()) == 1


def test_a_timeout_is_in_doubt(sp_partner, settings):
    partner, partnership = sp_partner
    job = submit()
    NameIdJob.objects.filter(pk=job.pk).update(max_attempts=3)
    partner.failures = ["delay:2.5"]  # the partner acts, but only after our 2 s timeout
    snapshot = partnership.current_snapshot()
    snapshot.data["settings"]["sso_slo"]["mni_soap_timeout_seconds"] = 2
    type(snapshot).objects.filter(pk=snapshot.pk).update(data=snapshot.data)  # as if activated with a 2 s SOAP timeout
    clear_runtime_caches()
    first = run(job)
    assert first.state == NameIdJob.State.PENDING and "did not answer within 2 s" in job.last_error
    assert job.attempt_log.get().outcome == NameIdAttempt.Outcome.TIMEOUT
    run(job)
    assert job.state == NameIdJob.State.COMPLETED and job.attempts == 2  # UnknownPrincipal after a timeout: done before


# --- The sweeper -----------------------------------------------------------------------------------------------------


def test_resume_queues_what_was_left_behind(sp_partner, monkeypatch, settings):
    settings.NAME_ID_REQUEUE_AFTER_SECONDS = 60
    queued = []
    monkeypatch.setattr(name_id_jobs, "enqueue", lambda pk, phase="exchange", countdown=None: queued.append((pk, phase)))
    fresh = submit()
    dead = submit(UserDN="alice", Operation="change", NewID="x-1")
    lost = submit(UserDN="alice", Operation="change", NewID="x-2")
    now = timezone.now()
    NameIdJob.objects.filter(pk=dead.pk).update(
        enqueued_at=now - timedelta(seconds=30), lease_owner="gone", lease_expires_at=now - timedelta(seconds=1)
    )
    NameIdJob.objects.filter(pk=lost.pk).update(
        enqueued_at=now - timedelta(minutes=5), next_attempt_at=now - timedelta(minutes=5)
    )
    notify = submit(UserDN="alice", Operation="change", NewID="x-3")
    NameIdJob.objects.filter(pk=notify.pk).update(
        state="COMPLETED", notification_state="pending", notification_next_at=now - timedelta(minutes=5), enqueued_at=None
    )
    assert name_id_jobs.resume_jobs(now) == 3
    assert sorted(queued) == sorted([(dead.pk, "exchange"), (lost.pk, "exchange"), (notify.pk, "notification")])
    assert fresh.pk not in [pk for pk, _ in queued]
    assert name_id_jobs.resume_jobs(now) == 0  # each was queued once; again only when that message is stale too
    assert name_id_jobs.resume_jobs(now + timedelta(seconds=61)) == 4  # a minute on, no worker took any of them (nor fresh)


def test_the_sweeper_is_on_beats_schedule():
    from federation.celery import app
    from partnerships import tasks

    assert app.conf.beat_schedule["name-id-jobs-resume"] == {"task": tasks.RESUME, "schedule": 60.0}


# --- Back channel: Basic and client certificates ---------------------------------------------------------------------


def _tls_partner_context(tmp_path, client_certificate_pem):
    """A server TLS context: a certificate for 127.0.0.1 from a test CA, requiring a client certificate it trusts."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test partner CA")])
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC) - timedelta(minutes=5)
    ca_certificate = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = tmp_path / "server.pem"
    chain.write_bytes(
        server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + server_certificate.public_bytes(serialization.Encoding.PEM)
    )
    (tmp_path / "ca.pem").write_bytes(ca_certificate.public_bytes(serialization.Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=client_certificate_pem)
    return context, tmp_path / "ca.pem"


def test_back_channel_client_certificate_over_https(db, tmp_path, fast_retries, settings):
    from entities import services as keystore

    client = keystore.generate_key_pair("nid-client", "rsa2048", "CN=idp-to-sp", 30, [])
    context, ca_file = _tls_partner_context(tmp_path, client.certificate_pem)
    settings.NAME_ID_CA_BUNDLE = str(ca_file)
    credential = make_credential("rsa", PARTNER_SP_ID)
    partner = LoopbackPartner(
        role="sp",
        entity_id=PARTNER_SP_ID,
        key=credential.key,
        certificate=credential.certificate,
        our_entity_id=OUR_IDP_ID,
        directory=tmp_path,
    ).start(tls=context)
    try:
        assert partner.url.startswith("https://127.0.0.1:")
        _, ours = make_idp_side(
            partner.url,
            credential.cert_pem,
            mni={"backchannel_out_auth": "client_cert", "backchannel_out_client_key": "nid-client"},
        )
        partner.trust(ours)
        partner.links["alice-pid-1"] = "alice"
        link(OUR_IDP_ID, PARTNER_SP_ID, "alice", "alice-pid-1")
        job = submit()
        run(job)
        assert job.state == NameIdJob.State.COMPLETED, job.last_error
        assert partner.client_certificates[0]["subject"] == ((("commonName", "idp-to-sp"),),)

        # Without our CA bundle the partner's certificate is not trusted: a clear reason, and a retry.
        settings.NAME_ID_CA_BUNDLE = ""
        name_id_jobs._client_certificate_session.cache_clear()  # no kept-alive connection from the first job
        link(OUR_IDP_ID, PARTNER_SP_ID, "bob", "bob-pid-1")
        job = submit(UserDN="bob")
        run(job)
        assert job.state == NameIdJob.State.PENDING and "the TLS connection to https://127.0.0.1:" in job.last_error
        assert "CERTIFICATE_VERIFY_FAILED" in job.last_error
    finally:
        partner.stop()


def test_back_channel_basic_credentials_reach_the_partner(db, tmp_path, fast_retries):
    partner, credential = _partner(tmp_path, "sp", PARTNER_SP_ID, OUR_IDP_ID)
    try:
        mni = {"backchannel_out_auth": "basic", "backchannel_out_user": "our-idp", "backchannel_out_password": "bc-pass-9"}
        _, ours = make_idp_side(partner.url, credential.cert_pem, mni=mni)
        partner.trust(ours)
        partner.links["alice-pid-1"] = "alice"
        link(OUR_IDP_ID, PARTNER_SP_ID, "alice", "alice-pid-1")
        job = submit()
        run(job)
        assert job.state == NameIdJob.State.COMPLETED
        assert partner.authorizations == ["Basic " + base64.b64encode(b"our-idp:bc-pass-9").decode()]
    finally:
        partner.stop()
