"""The "Import metadata" wizard, the bulk import page, job progress and the metadata sources,
driven with the Django test client the way a browser does (tests/wizard_helpers.py). Celery runs
eagerly here; URL sources come from a real HTTP server on 127.0.0.1."""

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from lxml import html

from entities import services
from entities.models import (
    Entity,
    EntityType,
    KeystoreEntry,
    Location,
    MetadataImportJob,
    MetadataScanEntry,
    MetadataSource,
    MetadataUpload,
)
from federation.models import AuditEvent
from tests import metadata_fixtures as mf
from tests.saml.credentials import make_credential
from tests.wizard_helpers import field_errors, follow, page_form, submit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True


@pytest.fixture(scope="module")
def p3_cred():
    return make_credential("rsa", "p3.example.org")


@pytest.fixture
def server():
    running = mf.MetadataServer()
    running.stall_seconds = 3
    yield running
    running.close()


def text(response):
    return html.fromstring(response.content.decode()).text_content()


def start(client):
    response = client.get(reverse("entities:metadata_import"))
    assert response.status_code == 302 and re.fullmatch(r"/entities/metadata/import/[A-Za-z0-9_-]+/source/", response["Location"])
    return client.get(response["Location"])


def upload_in_wizard(client, page, document, name="federation.xml"):
    """Press "Upload file…" on step 1, upload on the detour page, come back to step 1."""
    detour = submit(client, page, action="detour:upload")
    assert detour.status_code == 302 and detour["Location"].startswith(reverse("entities:metadata_upload") + "?next=")
    upload_page = follow(client, detour)
    assert upload_page.status_code == 200 and "Upload metadata" in upload_page.content.decode()
    posted = client.post(
        detour["Location"],
        {"file": SimpleUploadedFile(name, document, "application/xml"), "next": page_form(upload_page)["next"][0]},
    )
    assert posted.status_code == 302 and "created=" in posted["Location"]
    back = follow(client, posted)
    assert back.status_code == 302
    return client.get(back["Location"])


def step1(client, document, name="federation.xml", **changes):
    page = upload_in_wizard(client, start(client), document, name)
    values = {"operation": "create-remote", "allow_unsigned": "on"}
    values.update(changes)
    return submit(client, page, values)


def row_ids(page):
    return {
        entity_id: value
        for value, entity_id in re.findall(
            r'<input type="radio" name="entry" value="(\d+)"[^>]*aria-label="([^"]+)"', page.content.decode()
        )
    }


def test_import_an_aggregate_pick_one_sp_name_its_certificate_and_finish(admin_client, tmp_path, p3_cred):
    listing = admin_client.get(reverse("entities:list"))
    assert 'href="/entities/metadata/import/">Import metadata</a>' in listing.content.decode()
    document = mf.aggregate(
        mf.pysaml2_sp(tmp_path, make_credential("rsa", "sp.example.org")),
        mf.python3saml_sp(p3_cred),
        mf.pysaml2_idp(tmp_path, make_credential("rsa", "idp.example.org")),
        mf.entity_xml("https://old.example.org/sp", valid_until=mf.in_hours(-1)),
    )
    page = upload_in_wizard(admin_client, start(admin_client), document)
    assert "Step 1 of 4: Select metadata" in page.content.decode()
    assert re.search(r"<code>federation.xml</code> \(\d+(\.\d)?\sKB\)", page.content.decode())
    response = submit(admin_client, page, {"operation": "create-remote", "allow_unsigned": "on"})
    assert response.status_code == 302 and response["Location"].endswith("/entity/")
    entity_page = admin_client.get(response["Location"])
    body = entity_page.content.decode()
    assert "Step 2 of 4: Select entity defined in file" in body
    ids = row_ids(entity_page)
    assert set(ids) == {"https://sp.example.org/sp", "https://p3.example.org/metadata", "https://idp.example.org/idp"}
    assert "Expired or unusable entries (1)" in body and "https://old.example.org/sp" in body
    assert "Expired on" in text(entity_page)

    # The search box narrows the list (server side).
    searched = admin_client.get(response["Location"], {"q": "p3"})
    assert set(row_ids(searched)) == {"https://p3.example.org/metadata"}

    values = {"entry": ids["https://p3.example.org/metadata"], "name": "p3"}
    response = submit(admin_client, entity_page, values)
    assert response.status_code == 302 and response["Location"].endswith("/certificates/")
    certificates = admin_client.get(response["Location"])
    body = certificates.content.decode()
    assert "Step 3 of 4: Certificate import" in body
    rows = html.fromstring(body).xpath("//table[@class='metadata-certificates']/tbody/tr")
    assert [[cell.text_content().strip() for cell in row.xpath("./td")][3:5] for row in rows] == [
        ["p3.example.org", "Signing"],
        ["p3.example.org", "Encryption"],
    ]
    response = submit(admin_client, certificates, {"use_1": "on", "alias_1": "cert1", "use_2": "on", "alias_2": "cert2"})
    assert response.status_code == 302 and response["Location"].endswith("/confirm/")
    confirm = admin_client.get(response["Location"])
    document_html = html.fromstring(confirm.content.decode())
    (table,) = document_html.xpath("//table[@class='selected-certificates']")
    assert [th.text_content() for th in table.xpath(".//th")] == ["Alias", "Issued To", "Usage"]
    assert [[td.text_content() for td in tr.xpath("./td")] for tr in table.xpath("./tbody/tr")] == [
        ["cert1", "p3.example.org", "Signing and Encryption"]
    ]
    assert "Selected Certificate Data" in confirm.content.decode()
    assert not Entity.objects.exists() and not KeystoreEntry.objects.exists()

    finished = submit(admin_client, confirm, action="finish")
    entity = Entity.objects.get()
    assert finished.status_code == 302 and finished["Location"] == reverse("entities:detail", args=[entity.pk])
    assert (entity.name, entity.entity_type, entity.location) == ("p3", EntityType.SAML2_SP, Location.REMOTE)
    assert entity.verification_certificate.alias == entity.encryption_certificate.alias == "cert1"
    assert list(KeystoreEntry.objects.values_list("alias", flat=True)) == ["cert1"]
    detail = admin_client.get(finished["Location"])
    assert "Entity &#x27;p3&#x27; created from metadata." in detail.content.decode()
    assert "federation.xml" in detail.content.decode() and "revision 1" in detail.content.decode()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (mf.fixture("billion-laughs.xml"), "The document contains a DTD or an entity declaration"),
        (mf.fixture("not-xml.txt"), "The document is not well-formed XML"),
        (mf.fixture("wrong-root.xml"), "The root element is {urn:oasis:names:tc:SAML:2.0:protocol}Response"),
    ],
)
def test_bad_documents_send_the_admin_back_to_step_one(admin_client, document, message):
    response = step1(admin_client, document, "bad.xml")
    entity_step = admin_client.get(response["Location"])
    assert entity_step.status_code == 302 and entity_step["Location"].endswith("/source/?check=1")
    page = admin_client.get(entity_step["Location"])
    assert message in text(page)
    assert not Entity.objects.exists() and not MetadataScanEntry.objects.exists()


def test_signature_errors_show_at_step_one(admin_client, fed):
    services.import_trusted_certificate("fed", fed.cert_pem)
    signed = mf.core_sign(mf.aggregate(mf.entity_xml("https://a.example.org/sp")), fed)
    tampered = signed.replace(b"https://a.example.org/acs", b"https://evil.example.org/acs")
    response = step1(admin_client, tampered, trust_anchor="fed", allow_unsigned=None)
    back = admin_client.get(admin_client.get(response["Location"])["Location"])
    assert "digest mismatch" in text(back)
    # Unsigned while a signature is required.
    response = step1(
        admin_client, mf.aggregate(mf.entity_xml("https://a.example.org/sp")), trust_anchor="fed", allow_unsigned=None
    )
    back = admin_client.get(admin_client.get(response["Location"])["Location"])
    assert "The metadata is not signed" in text(back)
    # The good one goes through, verified.
    response = step1(admin_client, signed, trust_anchor="fed", allow_unsigned=None)
    page = admin_client.get(response["Location"])
    assert page.status_code == 200 and "signature: verified" in text(page)


def test_step_one_needs_a_source_and_trust_and_respects_the_size_cap(admin_client):
    page = start(admin_client)
    response = submit(admin_client, page, {"operation": "create-remote"})
    assert field_errors(response, "id_url") == ["Upload a metadata file or enter a metadata URL (one of them)."]
    response = submit(admin_client, page, {"url": "ftp://example.org/md.xml"})
    assert field_errors(response, "id_url") == [
        "'ftp://example.org/md.xml' is not an http:// or https:// URL; metadata is fetched only over HTTP(S)."
    ]
    assert field_errors(response, "id_trust_anchor") == [
        "Choose a trust anchor to verify the signature, or allow unsigned metadata."
    ]
    big = mf.aggregate(*[mf.entity_xml(f"https://sp{n}.example.org/sp") for n in range(4000)])
    page = upload_in_wizard(admin_client, start(admin_client), big)
    response = submit(admin_client, page, {"allow_unsigned": "on", "max_size_mb": "1"})
    assert response.status_code == 200
    assert field_errors(response, "id_max_size_mb") == ["The file is 1.7 MB, over the size limit of 1 MB you set."]
    assert not MetadataImportJob.objects.exists()


def test_large_aggregates_are_paged_and_searched_server_side(admin_client, django_assert_max_num_queries):
    document = mf.aggregate(*[mf.entity_xml(f"https://sp{n:03d}.example.org/sp") for n in range(120)])
    response = step1(admin_client, document)
    page = admin_client.get(response["Location"])
    assert len(row_ids(page)) == 25 and "Page 1 of 5 (120 in all)" in text(page)
    with django_assert_max_num_queries(40):
        last = admin_client.get(response["Location"], {"page": 5})
    assert sorted(row_ids(last)) == [f"https://sp{n:03d}.example.org/sp" for n in range(100, 120)]
    assert set(row_ids(admin_client.get(response["Location"], {"q": "sp07"}))) == {
        f"https://sp07{n}.example.org/sp" for n in range(10)
    }
    # A chosen entity stays chosen (and shown) while the admin pages on.
    chosen = row_ids(last)["https://sp110.example.org/sp"]
    submit(admin_client, last, {"entry": chosen, "name": "sp110"}, action="back")
    again = admin_client.get(response["Location"])
    assert f'<input type="radio" name="entry" value="{chosen}" checked>' in again.content.decode()


def test_expired_entities_cannot_be_chosen_and_all_expired_is_refused(admin_client):
    document = mf.aggregate(
        mf.entity_xml("https://new.example.org/sp"), mf.entity_xml("https://old.example.org/sp", valid_until=mf.in_hours(-1))
    )
    response = step1(admin_client, document)
    page = admin_client.get(response["Location"])
    job = MetadataImportJob.objects.get()
    expired = MetadataScanEntry.objects.get(job=job, entity_id="https://old.example.org/sp")
    assert expired.expired and "https://old.example.org/sp" not in row_ids(page)
    refused = submit(admin_client, page, {"entry": str(expired.pk), "name": "old"})
    assert refused.status_code == 200 and "https://old.example.org/sp has expired (validUntil)" in text(refused)

    all_old = mf.aggregate(mf.entity_xml("https://old.example.org/sp", valid_until=mf.in_hours(-1)))
    response = step1(admin_client, all_old)
    back = admin_client.get(admin_client.get(response["Location"])["Location"])
    assert "Every entity in this document has expired (validUntil); upload a current document." in text(back)


def test_duplicate_entity_id_is_refused_at_step_two(admin_client):
    services_document = mf.entity_xml("https://dup.example.org/sp")
    from entities import metadata_import as mi

    mi.import_entity(mi.Source(path=_write(services_document)), name="dup", allow_unsigned=True)
    response = step1(admin_client, services_document)
    page = admin_client.get(response["Location"])
    response = submit(admin_client, page, {"entry": row_ids(page)["https://dup.example.org/sp"], "name": "dup2"})
    assert response.status_code == 200
    assert "The remote entity 'dup' already has this entity ID; remote entity IDs are unique." in text(response)
    response = submit(admin_client, page, {"entry": row_ids(page)["https://dup.example.org/sp"], "name": "DUP"})
    assert "The entity name 'dup' is already used by another entity" in text(response)
    assert Entity.objects.count() == 1


def _write(data):
    import tempfile

    handle = tempfile.NamedTemporaryFile(suffix=".xml", delete=False)
    handle.write(data)
    handle.close()
    return handle.name


def test_update_remote_and_create_local_through_the_wizard(admin_client, tmp_path):
    from entities import metadata_import as mi

    sp_document = mf.entity_xml("https://upd.example.org/sp")
    mi.import_entity(mi.Source(path=_write(sp_document)), name="upd", allow_unsigned=True)
    changed = sp_document.replace(b"https://upd.example.org/acs", b"https://upd.example.org/acs2")
    response = step1(admin_client, changed, operation="update-remote")
    page = admin_client.get(response["Location"])
    assert "Entity to update" in text(page) and "New entity name" not in text(page)
    response = submit(admin_client, page, {"entry": row_ids(page)["https://upd.example.org/sp"]})
    assert response["Location"].endswith("/confirm/")  # no certificate in the metadata: step 3 skipped
    confirm = admin_client.get(response["Location"])
    assert "Entity after the update" in text(confirm) and "https://upd.example.org/acs2" in text(confirm)
    submit(admin_client, confirm, action="finish")
    entity = Entity.objects.get(name="upd")
    assert entity.endpoints.get().location == "https://upd.example.org/acs2" and entity.metadata_revision == 2

    idp = mf.pysaml2_idp(tmp_path, make_credential("rsa", "idp.example.org"))
    response = step1(admin_client, idp, "idp.xml", operation="create-local")
    page = admin_client.get(response["Location"])
    response = submit(admin_client, page, {"entry": row_ids(page)["https://idp.example.org/idp"], "name": "local-idp"})
    assert response["Location"].endswith("/confirm/")  # local: certificates are not imported
    submit(admin_client, admin_client.get(response["Location"]), action="finish")
    local = Entity.objects.get(name="local-idp")
    assert (local.location, local.base_url, local.entity_type) == (
        Location.LOCAL,
        "https://idp.example.org",
        EntityType.SAML2_IDP,
    )


def test_url_source_through_the_wizard(admin_client, server, tmp_path):
    url = server.serve("/sp.xml", mf.pysaml2_sp(tmp_path, make_credential("rsa", "sp.example.org")), etag='"1"')
    page = start(admin_client)
    response = submit(admin_client, page, {"url": url, "allow_unsigned": "on", "refresh_hours": "6"})
    entity_page = admin_client.get(response["Location"])
    response = submit(admin_client, entity_page, {"entry": row_ids(entity_page)["https://sp.example.org/sp"], "name": "sp1"})
    certificates = admin_client.get(response["Location"])
    response = submit(admin_client, certificates, {"use_1": "on", "alias_1": "sp1-signing"})
    confirm = admin_client.get(response["Location"])
    assert "every 6 hours" in text(confirm)
    submit(admin_client, confirm, action="finish")
    entity = Entity.objects.get(name="sp1")
    source = entity.metadata_source
    assert (source.kind, source.location, source.etag, source.refresh_interval.total_seconds()) == ("url", url, '"1"', 6 * 3600)
    # A URL that fails shows its error at step 1.
    page = start(admin_client)
    response = submit(admin_client, page, {"url": server.url("/error"), "allow_unsigned": "on"})
    back = admin_client.get(admin_client.get(response["Location"])["Location"])
    assert field_errors(back, "id_url") == [
        f"{server.url('/error')} answered HTTP 500 Internal Server Error; the metadata was not downloaded."
    ]
    page = start(admin_client)
    response = submit(admin_client, page, {"url": server.url("/huge"), "allow_unsigned": "on", "max_size_mb": "50"})
    back = admin_client.get(admin_client.get(response["Location"])["Location"])
    assert field_errors(back, "id_url") == [f"{server.url('/huge')} sends 60 MB, over the size limit of 50 MB; not downloaded."]


def test_running_scan_shows_a_progress_page(admin_client):
    page = upload_in_wizard(admin_client, start(admin_client), mf.aggregate(mf.entity_xml("https://a.example.org/sp")))
    response = submit(admin_client, page, {"allow_unsigned": "on"})
    token = response["Location"].split("/")[-3]
    # Pretend the scan is still running (as when a worker has it).
    upload = MetadataUpload.objects.get()
    from entities import metadata_import as mi

    options = {"upload": str(upload.pk), "url": "", "trust_anchor": "", "allow_unsigned": True, "max_bytes": 100 * 1024 * 1024}
    job = MetadataImportJob.objects.create(
        kind="scan",
        key=mi.job_key({**options, "token": token}),
        wizard_token=token,
        options=options,
        state="running",
        bytes_total=1000,
        bytes_read=250,
    )
    progress = admin_client.get(response["Location"])
    body = progress.content.decode()
    assert progress.status_code == 200 and "Reading metadata" in body
    assert f'<noscript><meta http-equiv="refresh" content="2;url={response["Location"]}"></noscript>' in body
    assert '<progress id="job-progress" max="100" value="25"' in body
    status = admin_client.get(reverse("entities:metadata_job_status", args=[job.pk])).json()
    assert (status["state"], status["percent"], status["done"]) == ("running", 25, False)


def test_bulk_import_page_runs_a_job_and_reports(admin_client, fed):
    services.import_trusted_certificate("fed", fed.cert_pem)
    cred = make_credential("rsa", "member")
    entities = [
        mf.entity_xml(f"https://sp{n}.uni.example.org/sp", cert_base64=cred.cert_base64, uses=("signing",)) for n in range(5)
    ]
    entities.append(mf.entity_xml("https://broken.uni.example.org/sp").replace(b' index="0"', b""))
    entities.append(mf.entity_xml("https://idp.uni.example.org/idp", kind="idp"))
    document = mf.core_sign(mf.aggregate(*entities), fed)
    form = admin_client.get(reverse("entities:metadata_bulk"))
    assert form.status_code == 200
    response = admin_client.post(
        reverse("entities:metadata_bulk"),
        {
            "file": SimpleUploadedFile("uni.xml", document, "application/xml"),
            "trust_anchor": "fed",
            "role": "sp",
            "match": r"\.uni\.example\.org/",
            "update_existing": "on",
            "max_size_mb": "100",
            "refresh_hours": "",
        },
    )
    job = MetadataImportJob.objects.get(kind="bulk")
    assert response.status_code == 302 and response["Location"] == reverse("entities:metadata_job", args=[job.pk])
    assert (job.state, job.created_count, job.failed_count, job.total) == ("succeeded", 5, 1, 5)
    page = admin_client.get(response["Location"])
    body = text(page)
    assert "Created5" in body.replace(" ", "").replace("\n", "") and "https://broken.uni.example.org/sp" in body
    assert "has no valid index" in body and "signature verified" in body
    assert Entity.objects.filter(entity_type=EntityType.SAML2_SP).count() == 5
    assert KeystoreEntry.objects.filter(kind="trusted_certificate").count() == 2  # the anchor and the shared member certificate
    status = json.loads(admin_client.get(reverse("entities:metadata_job_status", args=[job.pk])).content)
    assert status["done"] and status["percent"] == 100
    # A bad pattern and missing trust are form errors.
    response = admin_client.post(
        reverse("entities:metadata_bulk"), {"url": "https://x.example.org/md", "role": "sp", "match": "(", "max_size_mb": "10"}
    )
    assert response.status_code == 400
    assert field_errors(response, "id_match") == [
        "The entity ID pattern is not a valid regular expression: missing ), unterminated subpattern at position 0."
    ]


def test_sources_pages_and_refresh_now(admin_client, auditor_user, server):
    from django.test import Client

    from entities import metadata_import as mi

    auditor_client = Client()
    auditor_client.force_login(auditor_user)

    url = server.serve("/md.xml", mf.aggregate(mf.entity_xml("https://a.example.org/sp")), etag='"1"')
    mi.bulk_import(mi.Source(url=url), mi.BulkFilter("sp"), allow_unsigned=True, refresh_interval=None)
    source = MetadataSource.objects.get()
    listing = admin_client.get(reverse("entities:metadata_sources"))
    assert url in listing.content.decode() and "ok" in text(listing)
    server.serve("/md.xml", mf.aggregate(mf.entity_xml("https://a.example.org/sp").replace(b"/acs", b"/acs-new")), etag='"2"')
    response = admin_client.post(reverse("entities:metadata_source", args=[source.pk]), {"action": "refresh"})
    assert response.status_code == 302
    assert Entity.objects.get().endpoints.get().location == "https://a.example.org/acs-new"
    response = admin_client.post(
        reverse("entities:metadata_source", args=[source.pk]), {"action": "save", "trust_anchor": "", "refresh_hours": "12"}
    )
    source.refresh_from_db()
    assert response.status_code == 302 and source.refresh_interval.total_seconds() == 12 * 3600 and not source.require_signature
    assert AuditEvent.objects.filter(object_type="entities.MetadataSource", action="update").exists()
    detail = auditor_client.get(reverse("entities:metadata_source", args=[source.pk]))
    assert detail.status_code == 200 and "Refresh now" not in detail.content.decode()
    assert auditor_client.post(reverse("entities:metadata_source", args=[source.pk]), {"action": "refresh"}).status_code == 403
    assert auditor_client.get(reverse("entities:metadata_import")).status_code == 403
    assert auditor_client.get(reverse("entities:metadata_bulk")).status_code == 403
