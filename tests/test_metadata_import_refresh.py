"""Scheduled metadata refresh against a real HTTP server on 127.0.0.1: a changed endpoint is
applied and audited, an unchanged document (ETag) changes nothing, failures keep the last good copy
and are recorded on the source, logged at WARNING and listed for the dashboard, a new signing
certificate is imported and switched to, one broken entity of an aggregate does not stop the
others, and the Celery beat task queues due sources once."""

import logging
from datetime import timedelta

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from entities import metadata_import as mi
from entities import services
from entities.keystore import fingerprint_sha256
from entities.models import Entity, KeystoreEntry, MetadataSource
from entities.tasks import refresh_metadata_source, refresh_metadata_sources
from federation.models import AuditEvent, JobRun
from tests import metadata_fixtures as mf
from tests.saml.credentials import make_credential

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def creds():
    return [make_credential("rsa", f"member-{n}") for n in range(3)]


@pytest.fixture
def server():
    running = mf.MetadataServer()
    yield running
    running.close()


@pytest.fixture
def anchor(fed):
    return services.import_trusted_certificate("federation-signer", fed.cert_pem)


def sp(entity_id, cred, host=None, acs_path="/acs"):
    document = mf.entity_xml(entity_id, cert_base64=cred.cert_base64, uses=("signing",), host=host)
    return document.replace(b'/acs" index="0"', f'{acs_path}" index="0"'.encode())


def publish(server, fed, *entities, path="/federation.xml", etag='"1"', **kwargs):
    return server.serve(path, mf.core_sign(mf.aggregate(*entities, **kwargs), fed), etag=etag)


def import_all(url):
    return mi.bulk_import(
        mi.Source(url=url),
        mi.BulkFilter("sp"),
        trust_entry=KeystoreEntry.objects.get(alias="federation-signer"),
        refresh_interval=timedelta(hours=6),
    )


def test_changed_endpoint_is_applied_and_audited(server, fed, creds, anchor):
    url = publish(server, fed, sp("https://a.example.org/sp", creds[0]), sp("https://b.example.org/sp", creds[1]))
    assert import_all(url).created == 2
    source_row = MetadataSource.objects.get(location=url)
    assert source_row.refresh_interval == timedelta(hours=6) and source_row.etag == ""  # bulk reads twice; ETag kept by refresh
    publish(
        server,
        fed,
        sp("https://a.example.org/sp", creds[0], acs_path="/acs/v2"),
        sp("https://b.example.org/sp", creds[1]),
        etag='"2"',
    )
    before = timezone.now()
    result = mi.refresh_source(source_row)
    assert result.line() == "1 entity(ies) updated, 1 unchanged" and result.changed == ["a.example.org-sp"]
    a = Entity.objects.get(name="a.example.org-sp")
    assert a.endpoints.get().location == "https://a.example.org/acs/v2"
    assert a.metadata_revision == 2 and a.metadata_updated_at >= before
    assert Entity.objects.get(name="b.example.org-sp").metadata_revision == 1
    event = AuditEvent.objects.filter(action="other", object_repr="a.example.org-sp").get()
    assert event.summary == f"metadata refresh from {url}: endpoints +1 −1"
    assert event.changes["endpoints"] == {
        "added": ["acs https://a.example.org/acs/v2"],
        "removed": ["acs https://a.example.org/acs"],
        "reordered_or_flags": False,
    }
    row_event = AuditEvent.objects.filter(object_type="entities.Endpoint", action="update").get()
    assert row_event.changes["location"] == ["https://a.example.org/acs", "https://a.example.org/acs/v2"]
    source_row.refresh_from_db()
    assert source_row.etag == '"2"' and source_row.last_error == "" and source_row.last_success_at >= before
    assert source_row.next_refresh_at > before + timedelta(hours=5)

    # Unchanged (the server answers 304 to the ETag): nothing is written.
    events = AuditEvent.objects.count()
    again = mi.refresh_source(source_row)
    assert again.not_modified and AuditEvent.objects.count() == events
    assert server.requests[-1][1].get("If-None-Match") == '"2"'


def test_failing_url_keeps_the_last_good_copy_and_records_the_error(server, fed, creds, anchor, caplog):
    url = publish(server, fed, sp("https://a.example.org/sp", creds[0]))
    import_all(url)
    source_row = MetadataSource.objects.get(location=url)
    entity = Entity.objects.get()
    source_row.location = server.url("/error")  # the publisher's server now fails
    source_row.save()
    with caplog.at_level(logging.WARNING, logger="entities.metadata"):
        result = mi.refresh_source(source_row)
    assert result.failed and result.errors == [
        f"{server.url('/error')} answered HTTP 500 Internal Server Error; the metadata was not downloaded."
    ]
    source_row.refresh_from_db()
    assert source_row.last_error == result.errors[0] and source_row.consecutive_failures == 1
    assert source_row.next_refresh_at <= timezone.now() + timedelta(minutes=16)
    record = next(r for r in caplog.records if getattr(r, "checkpoint", "") == "METADATA_REFRESH_FAILED")
    assert record.levelno == logging.WARNING and "keep their last good copy" in record.getMessage()
    entity.refresh_from_db()
    assert entity.endpoints.get().location == "https://a.example.org/acs" and entity.metadata_revision == 1
    failures = mi.metadata_failures()
    assert [(f.location, f.entity_count) for f in failures] == [(server.url("/error"), 1)]
    html = render_to_string("entities/_metadata_failures.html", {"metadata_failures": failures})
    assert "answered HTTP 500" in html and server.url("/error") in html and "last good copy" in html
    # A second failure backs off further; a success clears the error.
    mi.refresh_source(source_row)
    source_row.refresh_from_db()
    assert source_row.consecutive_failures == 2
    source_row.location = url
    source_row.save()
    assert not mi.refresh_source(source_row, force=True).failed
    source_row.refresh_from_db()
    assert (source_row.last_error, source_row.consecutive_failures) == ("", 0) and mi.metadata_failures() == []
    assert "No metadata source is failing" in render_to_string("entities/_metadata_failures.html", {"metadata_failures": []})


def test_bad_signature_on_refresh_keeps_the_last_good_copy(server, fed, creds, anchor):
    url = publish(server, fed, sp("https://a.example.org/sp", creds[0]))
    import_all(url)
    good = server.documents["/federation.xml"][0]
    server.serve("/federation.xml", good.replace(b"https://a.example.org/acs", b"https://evil.example.org/acs"), etag='"evil"')
    result = mi.refresh_source(MetadataSource.objects.get(location=url))
    assert result.failed and "digest mismatch" in result.errors[0]
    assert Entity.objects.get().endpoints.get().location == "https://a.example.org/acs"


def test_new_signing_certificate_is_imported_and_switched_to(server, fed, creds, anchor):
    url = publish(server, fed, sp("https://a.example.org/sp", creds[0]))
    import_all(url)
    entity = Entity.objects.get()
    old = entity.verification_certificate
    # Rollover published: old and new side by side → nothing changes yet.
    both = mf.entity_xml("https://a.example.org/sp", cert_base64=creds[0].cert_base64, uses=("signing",)).replace(
        b"</md:KeyDescriptor>",
        b'</md:KeyDescriptor><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
        + creds[2].cert_base64.encode()
        + b"</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
        1,
    )
    publish(server, fed, both, etag='"2"')
    assert mi.refresh_source(MetadataSource.objects.get(location=url)).changed == []
    # The old certificate is gone from the metadata → the entity switches to the new one.
    publish(server, fed, sp("https://a.example.org/sp", creds[2]), etag='"3"')
    result = mi.refresh_source(MetadataSource.objects.get(location=url))
    assert result.changed == ["a.example.org-sp"]
    entity.refresh_from_db()
    new = entity.verification_certificate
    fingerprint = fingerprint_sha256(creds[2].certificate)
    assert (
        new.fingerprint_sha256 == fingerprint
        and new.alias == f"a.example.org-sp-signing-{fingerprint.replace(':', '')[:8].lower()}"
    )
    assert KeystoreEntry.objects.filter(pk=old.pk).exists()
    event = AuditEvent.objects.filter(action="other", object_repr="a.example.org-sp").get()
    assert event.summary == f"metadata refresh from {url}: verification certificate {old.alias} → {new.alias}"


def test_one_broken_entity_of_an_aggregate_does_not_stop_the_others(server, fed, creds, anchor):
    url = publish(
        server,
        fed,
        sp("https://a.example.org/sp", creds[0]),
        sp("https://b.example.org/sp", creds[1]),
        sp("https://c.example.org/sp", creds[2]),
    )
    import_all(url)
    broken_b = sp("https://b.example.org/sp", creds[1]).replace(b' index="0"', b"")
    publish(server, fed, sp("https://a.example.org/sp", creds[0], acs_path="/new"), broken_b, etag='"2"')
    source_row = MetadataSource.objects.get(location=url)
    result = mi.refresh_source(source_row)
    assert result.changed == ["a.example.org-sp"]
    assert result.errors == [
        "'b.example.org-sp': the entity is malformed in the new metadata: AssertionConsumerService #1 has no valid index "
        "(a whole number 0–65535 is required). Kept as it was.",
        "'c.example.org-sp': entity ID https://c.example.org/sp is no longer in the metadata; kept as it was.",
    ]
    source_row.refresh_from_db()
    assert "b.example.org-sp" in source_row.last_error and "c.example.org-sp" in source_row.last_error
    assert Entity.objects.get(name="b.example.org-sp").endpoints.get().location == "https://b.example.org/acs"


def test_expired_metadata_is_refused_on_refresh(server, fed, creds, anchor):
    url = publish(server, fed, sp("https://a.example.org/sp", creds[0]))
    import_all(url)
    publish(server, fed, sp("https://a.example.org/sp", creds[0], acs_path="/x"), etag='"2"', valid_until=mf.in_hours(-1))
    result = mi.refresh_source(MetadataSource.objects.get(location=url))
    assert result.failed and "expired on" in result.errors[0]
    assert Entity.objects.get().endpoints.get().location == "https://a.example.org/acs"


def test_schedule_honours_cache_duration_and_valid_until(server, fed, creds, anchor):
    url = publish(server, fed, sp("https://a.example.org/sp", creds[0]), cache_duration="PT1H")
    import_all(url)
    source_row = MetadataSource.objects.get(location=url)
    now = timezone.now()
    assert source_row.cache_duration == timedelta(hours=1)
    assert now + timedelta(minutes=55) < source_row.next_refresh_at <= now + timedelta(hours=1)
    source_row.valid_until = now + timedelta(minutes=30)
    assert mi.next_refresh(source_row, now) == now + timedelta(minutes=15)
    source_row.valid_until = now + timedelta(minutes=2)
    assert mi.next_refresh(source_row, now) == now + mi.MIN_REFRESH


def test_beat_task_queues_each_due_source_once(server, fed, creds, anchor, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    url = publish(server, fed, sp("https://a.example.org/sp", creds[0]))
    import_all(url)
    source_row = MetadataSource.objects.get(location=url)
    assert refresh_metadata_sources.apply().get().startswith("0 metadata source(s) queued")  # not due yet
    MetadataSource.objects.filter(pk=source_row.pk).update(next_refresh_at=timezone.now() - timedelta(minutes=1))
    publish(server, fed, sp("https://a.example.org/sp", creds[0], acs_path="/beat"), etag='"2"')
    assert refresh_metadata_sources.apply().get().startswith("1 metadata source(s) queued")
    assert Entity.objects.get().endpoints.get().location == "https://a.example.org/beat"
    assert refresh_metadata_sources.apply().get().startswith("0 metadata source(s) queued")  # rescheduled in 6 h
    runs = JobRun.objects.filter(name="entities.tasks.refresh_metadata_source")
    assert runs.count() == 1 and runs.get().state == JobRun.State.SUCCEEDED
    assert runs.get().result == "1 entity(ies) updated, 0 unchanged"
    # A source no entity uses any more is not refreshed; a deleted one is reported as gone.
    Entity.objects.all().delete()
    MetadataSource.objects.filter(pk=source_row.pk).update(next_refresh_at=None)
    assert refresh_metadata_sources.apply().get().startswith("0 metadata source(s) queued")
    assert refresh_metadata_source.apply(args=[999999]).get() == "metadata source gone"


def test_cli_refresh(server, fed, creds, anchor):
    from io import StringIO

    from django.core.management import call_command

    url = publish(server, fed, sp("https://a.example.org/sp", creds[0]))
    import_all(url)
    publish(server, fed, sp("https://a.example.org/sp", creds[0], acs_path="/cli"), etag='"2"')
    out = StringIO()
    call_command("metadata", "refresh", "--source", url, stdout=out)
    assert out.getvalue() == f"{url}: 1 entity(ies) updated, 0 unchanged\n"
