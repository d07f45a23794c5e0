"""The batched write path of a metadata bulk import (entities.metadata_import.bulk_import): each new
entity checked with every rule of a hand-made one (entity_services.check_new_entities), then a batch
written together (bulk_create of certificates, entities, endpoints, attributes) in one transaction
with one audit event naming its entities; bad entities reported and skipped without failing their
batch; duplicates inside the document and against the database; certificates shared between
entities stored once; a batch whose write fails written again one entity at a time; an import that
is cancelled midway leaves whole batches only; what is stored is what was verified.

Everything here is real: documents from tests/metadata_fixtures.py, signatures by our signing core,
the test database. The one failure that cannot happen on its own, a row the database refuses after
the checks passed, is made by a real database trigger."""

import pytest
from django.db import connection
from django.test import override_settings

from entities import entity_services, services
from entities import metadata_import as mi
from entities.keystore import fingerprint_sha256
from entities.models import Binding, Endpoint, Entity, EntityType, KeystoreEntry, Location
from federation.models import AuditEvent
from tests import metadata_fixtures as mf
from tests.saml.credentials import make_credential

pytestmark = pytest.mark.django_db

POST = Binding.HTTP_POST


@pytest.fixture(scope="module")
def creds():
    return [make_credential("rsa", f"bulk-member-{n}") for n in range(3)]


@pytest.fixture
def anchor(fed):
    return services.import_trusted_certificate("federation-signer", fed.cert_pem)


def source(tmp_path, data, name="federation.xml"):
    path = tmp_path / name
    path.write_bytes(data)
    return mi.Source(path=str(path))


def sp(number, cred=None, *, uses=("signing", "encryption"), extra="", host=None):
    return mf.entity_xml(
        f"https://sp{number}.example.org/shibboleth",
        cert_base64=cred.cert_base64 if cred else "",
        uses=uses,
        extra=extra,
        host=host,
    )


def bulk(tmp_path, document, **options):
    options.setdefault("allow_unsigned", True)
    return mi.bulk_import(source(tmp_path, document), mi.BulkFilter(options.pop("role", "sp")), **options)


def batch_events():
    return list(AuditEvent.objects.filter(object_type="entities.Entity", action="other").order_by("id"))


def row_events(model):
    """Audit events written for single rows of `model` (create/update), as create_entity writes them."""
    return AuditEvent.objects.filter(object_type=model._meta.label, action__in=("create", "update")).count()


def errors_by_id(result):
    return {error["entity_id"]: error["message"] for error in result.errors}


# ---------------------------------------------------------------- one bad entity does not fail its batch


def test_malformed_and_invalid_entities_are_reported_and_the_rest_of_the_batch_is_stored(tmp_path, creds):
    malformed = sp(2, creds[0]).replace(b' index="0"', b"")  # the parser refuses an ACS without index
    fragment = sp(
        4,
        creds[1],
        extra=f'<md:AssertionConsumerService Binding="{POST}" Location="https://sp4.example.org/acs#top" index="1"/>',
    )
    document = mf.aggregate(sp(1, creds[0]), malformed, sp(3, creds[1]), fragment, sp(5, creds[2]))

    result = bulk(tmp_path, document, batch_size=500)

    assert (result.matched, result.created, result.failed) == (4, 3, 2)
    errors = errors_by_id(result)
    assert errors["https://sp2.example.org/shibboleth"].startswith("malformed: AssertionConsumerService #1 has no valid index")
    assert errors["https://sp4.example.org/shibboleth"] == (
        "endpoint row 1, location URL: Remove the #fragment; partners do not send it to the server."
    )
    assert {error["position"] for error in result.errors} == {2, 4}
    stored = Entity.objects.order_by("name")
    assert [entity.entity_id for entity in stored] == [f"https://sp{n}.example.org/shibboleth" for n in (1, 3, 5)]
    for entity in stored:
        assert entity.location == Location.REMOTE and entity.entity_type == EntityType.SAML2_SP
        assert list(entity.endpoints.values_list("kind", "binding", "index", "is_default", "position")) == [
            ("acs", POST, 0, True, 0)
        ]
        assert entity.verification_certificate is not None and entity.verification_certificate == entity.encryption_certificate
        assert (entity.metadata_source.location, entity.metadata_revision) == ("federation.xml", 1)
    # sp4 was refused after its certificate was planned: that certificate is stored only because sp3 uses it too.
    assert KeystoreEntry.objects.count() == 3


@override_settings(FEDERATION_REQUIRE_HTTPS=True)
def test_the_entity_rules_are_those_of_a_hand_made_entity(tmp_path, creds):
    plain_http = mf.entity_xml("http://sp9.example.org/shibboleth").replace(b"https://sp9", b"http://sp9")
    document = mf.aggregate(sp(1, creds[0]), plain_http)
    result = bulk(tmp_path, document)
    assert result.created == 1
    message = errors_by_id(result)["http://sp9.example.org/shibboleth"]
    # The same message create_entity gives for the same rows.
    with pytest.raises(entity_services.EntityError) as refused:
        entity_services.create_entity(
            {"location": "remote", "entity_type": "saml2_sp", "entity_id": "x", "name": "x"},
            [{"kind": "acs", "binding": POST, "index": 0, "is_default": True, "location": "http://sp9.example.org/acs"}],
        )
    assert message == "; ".join(refused.value.messages())
    assert "requires https://" in message


# ---------------------------------------------------------------- duplicates


def test_an_entity_id_listed_twice_is_imported_from_its_first_descriptor(tmp_path, creds):
    first = sp(1, creds[0], host="first.example.org")
    again = sp(1, creds[1], host="again.example.org")
    document = mf.aggregate(first, sp(2, creds[0]), sp(3), again)

    result = bulk(tmp_path, document, batch_size=2)  # the second one is in the next batch

    assert (result.matched, result.created, result.updated, result.failed) == (4, 3, 0, 1)
    (error,) = result.errors
    assert (error["position"], error["entity_id"]) == (4, "https://sp1.example.org/shibboleth")
    assert error["message"] == "The document lists this entity ID again (first as entity #1); only the first one is imported."
    entity = Entity.objects.get(entity_id="https://sp1.example.org/shibboleth")
    assert entity.endpoints.get().location == "https://first.example.org/acs"
    assert entity.metadata_revision == 1

    # Within one batch too.
    Entity.objects.all().delete()
    result = bulk(tmp_path, document, batch_size=500)
    assert (result.created, result.failed) == (3, 1)
    assert Entity.objects.get(entity_id="https://sp1.example.org/shibboleth").endpoints.get().location == (
        "https://first.example.org/acs"
    )


def test_entity_ids_already_in_the_database(tmp_path, creds):
    hand_made = entity_services.create_entity(
        {
            "location": "remote",
            "entity_type": "saml2_sp",
            "entity_id": "https://sp1.example.org/shibboleth",
            "name": "partner-one",
        },
        [{"kind": "acs", "binding": POST, "index": 0, "is_default": True, "location": "https://old.example.org/acs"}],
    )
    other_type = entity_services.create_entity(
        {"location": "remote", "entity_type": "saml2_idp", "entity_id": "https://sp2.example.org/shibboleth", "name": "idp-two"},
        [{"kind": "sso", "binding": Binding.HTTP_REDIRECT, "location": "https://idp2.example.org/sso"}],
    )
    local = entity_services.create_entity(
        {
            "location": "local",
            "entity_type": "saml2_sp",
            "entity_id": "https://sp3.example.org/shibboleth",
            "name": "sp3.example.org-shibboleth",
            "base_url": "https://local.example.org",
        }
    )
    document = mf.aggregate(sp(1, creds[0]), sp(2, creds[0]), sp(3, creds[0]), sp(4, creds[0]))

    result = bulk(tmp_path, document, batch_size=500)

    # sp1 is updated (name kept), sp2 is a remote IdP: not the type asked for, skipped; sp3 only repeats a
    # *local* entity ID (allowed), so a remote entity is created beside it, under a free name.
    assert (result.matched, result.created, result.updated, result.skipped, result.failed) == (4, 2, 1, 1, 0)
    hand_made.refresh_from_db()
    assert hand_made.name == "partner-one" and hand_made.metadata_revision == 1
    assert hand_made.endpoints.get().location == "https://sp1.example.org/acs"
    assert hand_made.verification_certificate.fingerprint_sha256 == _fingerprint(creds[0])
    other_type.refresh_from_db()
    assert other_type.metadata_source is None
    remote3 = Entity.objects.get(location=Location.REMOTE, entity_id="https://sp3.example.org/shibboleth")
    assert remote3.name == "sp3.example.org-shibboleth-2" and local.name == "sp3.example.org-shibboleth"

    # Again without updates: everything that exists is skipped, nothing changes.
    again = bulk(tmp_path, document, update_existing=False)
    assert (again.created, again.updated, again.skipped) == (0, 0, 4)
    hand_made.refresh_from_db()
    assert hand_made.metadata_revision == 1


# ---------------------------------------------------------------- certificates


def test_a_certificate_shared_by_entities_is_stored_once(tmp_path, creds):
    shared, own = creds[0], creds[1]
    invalid_first = sp(
        1,
        shared,
        uses=("",),
        extra=f'<md:AssertionConsumerService Binding="{POST}" Location="relative/acs" index="1"/>',
    )
    document = mf.aggregate(
        invalid_first,  # refused by the entity rules: the shared certificate is named after sp2 instead
        sp(2, shared, uses=("",)),
        sp(3, shared, uses=("signing",)),
        mf.entity_xml("https://sp4.example.org/shibboleth", cert_base64=own.cert_base64, uses=("signing",)).replace(
            b"</md:KeyDescriptor>", b"</md:KeyDescriptor>" + _key(shared, "encryption"), 1
        ),
        sp(5, shared, uses=("encryption",)),
    )

    result = bulk(tmp_path, document, batch_size=3)  # sp4 and sp5 come in the second batch

    assert (result.created, result.failed) == (4, 1)
    entries = {entry.fingerprint_sha256: entry for entry in KeystoreEntry.objects.all()}
    assert len(entries) == 2
    shared_entry = entries[_fingerprint(shared)]
    assert shared_entry.alias == f"sp2.example.org-shibboleth-signing-encryption-{_fp8(shared)}"
    assert shared_entry.kind == KeystoreEntry.Kind.TRUSTED_CERTIFICATE
    assert entries[_fingerprint(own)].alias == f"sp4.example.org-shibboleth-signing-{_fp8(own)}"
    entity = {entity.name.split(".")[0]: entity for entity in Entity.objects.select_related("verification_certificate")}
    assert entity["sp2"].verification_certificate == shared_entry == entity["sp2"].encryption_certificate
    assert entity["sp3"].verification_certificate == shared_entry and entity["sp3"].encryption_certificate is None
    assert entity["sp4"].verification_certificate == entries[_fingerprint(own)]
    assert entity["sp4"].encryption_certificate == shared_entry
    assert entity["sp5"].verification_certificate is None and entity["sp5"].encryption_certificate == shared_entry


def test_a_new_certificate_name_already_in_the_keystore_refuses_that_entity(tmp_path, creds):
    squatter = services.import_trusted_certificate(f"sp1.example.org-shibboleth-signing-{_fp8(creds[0])}", creds[1].cert_pem)
    document = mf.aggregate(sp(1, creds[0], uses=("signing",)), sp(2, creds[0], uses=("signing",)))
    result = bulk(tmp_path, document)
    assert (result.created, result.failed) == (1, 1)
    assert errors_by_id(result)["https://sp1.example.org/shibboleth"] == (
        f"An entry with the alias '{squatter.alias}' already exists; choose another alias or delete that entry first."
    )
    # The certificate went to the next entity that lists it.
    entry = Entity.objects.get().verification_certificate
    assert entry.alias == f"sp2.example.org-shibboleth-signing-{_fp8(creds[0])}"


def _key(cred, use):
    return (
        f'<md:KeyDescriptor use="{use}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cred.cert_base64}'
        "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
    ).encode()


def _fingerprint(cred):
    return fingerprint_sha256(cred.certificate)


def _fp8(cred):
    return _fingerprint(cred).replace(":", "")[:8].lower()


# ---------------------------------------------------------------- audit


def test_one_audit_event_per_batch_names_its_entities(tmp_path, creds):
    existing = entity_services.create_entity(
        {"location": "remote", "entity_type": "saml2_sp", "entity_id": "https://sp5.example.org/shibboleth", "name": "five"},
        [{"kind": "acs", "binding": POST, "index": 0, "is_default": True, "location": "https://old.example.org/acs"}],
    )
    AuditEvent.objects.all().delete()
    document = mf.aggregate(
        *(sp(n, creds[n % 2]) for n in range(1, 6)), sp(6, extra="<md:Bogus/>").replace(b"https://sp6", b"https://sp6 x")
    )

    result = bulk(tmp_path, document, batch_size=2)

    assert (result.created, result.updated) == (4, 1)
    first, second, third = batch_events()
    assert first.summary == (
        "bulk import, batch 1: 2 created, 0 updated, 0 failed: sp1.example.org-shibboleth, sp2.example.org-shibboleth"
    )
    assert first.object_repr == "2 entities from federation.xml"
    assert first.changes["created"] == ["sp1.example.org-shibboleth", "sp2.example.org-shibboleth"]
    assert first.changes["certificates_stored"] == [
        f"sp1.example.org-shibboleth-signing-{_fp8(creds[1])}",
        f"sp2.example.org-shibboleth-signing-{_fp8(creds[0])}",
    ]
    assert (third.changes["created_count"], third.changes["updated"]) == (0, ["five"])
    assert second.changes["certificates_stored"] == []  # sp3 and sp4 reuse the two certificates
    # No audit event per created row: the batch events stand for them. The updated entity keeps its
    # field-level diff (only what changed).
    assert row_events(Entity) == 1 and row_events(KeystoreEntry) == 0
    assert row_events(Endpoint) == 1
    update = AuditEvent.objects.get(object_type="entities.Endpoint")
    assert update.changes["location"] == ["https://old.example.org/acs", "https://sp5.example.org/acs"]
    existing.refresh_from_db()
    assert existing.metadata_revision == 1
    # The run's own summary, as before.
    assert AuditEvent.objects.filter(object_type="entities.MetadataSource", action="other").count() == 1


# ---------------------------------------------------------------- failures


def _poison_endpoints():
    """A real trigger that makes the database refuse an endpoint row whose URL contains 'poison'
    (as a concurrent change or a constraint the checks do not know would), after the checks passed."""
    table = Endpoint._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER poison_endpoint BEFORE INSERT ON {table} WHEN NEW.location LIKE '%poison%' "
                "BEGIN SELECT RAISE(ABORT, 'poisoned endpoint row'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION poison_endpoint() RETURNS trigger AS $$ BEGIN "
                "IF NEW.location LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned endpoint row'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER poison_endpoint BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION poison_endpoint()"
            )


def test_a_batch_the_database_refuses_is_written_one_entity_at_a_time(tmp_path, creds):
    _poison_endpoints()
    document = mf.aggregate(
        sp(1, creds[0]),
        sp(2, creds[1]),
        mf.entity_xml("https://poison.example.org/shibboleth", cert_base64=creds[2].cert_base64),
        sp(3, creds[2]),
        sp(4, creds[0]),
    )

    result = bulk(tmp_path, document, batch_size=4)

    assert (result.matched, result.created, result.failed) == (5, 4, 1)
    (error,) = result.errors
    assert error["entity_id"] == "https://poison.example.org/shibboleth"
    assert error["message"].startswith("database error:") and "poisoned endpoint row" in error["message"]
    assert sorted(Entity.objects.values_list("name", flat=True)) == [f"sp{n}.example.org-shibboleth" for n in (1, 2, 3, 4)]
    assert Endpoint.objects.count() == 4
    # Nothing of the refused entity: not even its certificate (sp3 stored the same one under its own name;
    # its two KeyDescriptors hold one certificate, named after the first, for signing).
    assert sorted(KeystoreEntry.objects.values_list("alias", flat=True)) == sorted(
        f"sp{n}.example.org-shibboleth-signing-{_fp8(cred)}" for n, cred in ((1, creds[0]), (2, creds[1]), (3, creds[2]))
    )
    # The first batch was written one by one (create_entity's own audit events), then summarised.
    first, second = batch_events()
    assert (first.changes["created_count"], second.changes["created_count"]) == (3, 1)
    assert sorted(first.changes["certificates_stored"]) == sorted(KeystoreEntry.objects.values_list("alias", flat=True))
    assert row_events(Entity) == 3


def test_what_is_imported_is_what_was_verified(tmp_path, fed, anchor, creds):
    document = mf.core_sign(mf.aggregate(*(sp(n, creds[n % 3]) for n in range(1, 201))), fed)
    path = tmp_path / "federation.xml"
    path.write_bytes(document)
    assert len(document) > 4 * 64 * 1024  # read in several chunks
    late = document.index(b"https://sp190.example.org/acs")

    def change_the_file(phase, done, total):
        # After the first batch is stored, the file changes under the running import (a download
        # replaced in place): the document was read once, so the import goes on with what was verified.
        if phase == "import" and done == 20:
            with open(path, "r+b") as handle:
                handle.seek(late)
                handle.write(b"https://sp190.example.org/ac5")

    result = mi.bulk_import(
        mi.Source(path=str(path)), mi.BulkFilter("sp"), trust_entry=anchor, batch_size=20, progress=change_the_file
    )

    assert (result.matched, result.created, result.failed) == (200, 200, 0)
    assert path.read_bytes() != document
    assert Entity.objects.get(entity_id="https://sp190.example.org/shibboleth").endpoints.get().location == (
        "https://sp190.example.org/acs"
    )
    assert Endpoint.objects.count() == 200
    assert Entity.objects.filter(verification_certificate__isnull=True).count() == 0
    assert [event.changes["created_count"] for event in batch_events()] == [20] * 10


def test_an_import_cancelled_during_a_batch_keeps_the_batches_before_it(tmp_path, creds):
    document = mf.aggregate(*(sp(n, creds[n % 3]) for n in range(1, 8)))
    calls = []

    def cancel(phase, done, total):
        if phase == "import":
            calls.append(done)
            if done == 3:
                raise KeyboardInterrupt  # Ctrl-C in `manage.py metadata import`

    with pytest.raises(KeyboardInterrupt):
        bulk(tmp_path, document, batch_size=3, progress=cancel)
    assert calls == [3] and Entity.objects.count() == 3 and Endpoint.objects.count() == 3

    # Running it again finishes the job: the first three are updated, the rest created; the progress
    # (the job page's bar, the CLI's line) moves on after each batch.
    progress = []
    result = bulk(tmp_path, document, batch_size=3, progress=lambda *step: progress.append(step))
    assert (result.created, result.updated) == (4, 3) and Entity.objects.count() == 7
    assert [step for step in progress if step[0] == "import"] == [("import", 3, 7), ("import", 6, 7), ("import", 7, 7)]


def test_a_failure_inside_a_batch_write_rolls_the_whole_batch_back(tmp_path, creds):
    # A trigger that refuses every endpoint row: the bulk write and then each one-by-one write fail,
    # and the batch's certificates (written first) are rolled back with it.
    _poison_endpoints()
    document = mf.aggregate(
        *(mf.entity_xml(f"https://poison{n}.example.org/shibboleth", cert_base64=creds[n].cert_base64) for n in range(3))
    )
    result = bulk(tmp_path, document)
    assert (result.created, result.failed) == (0, 3)
    assert Entity.objects.count() == 0 and KeystoreEntry.objects.count() == 0 and not batch_events()


# ---------------------------------------------------------------- same result as a one-entity import


def _stored_entities():
    """Everything an import writes about each entity, by entity ID, without ids and times."""
    found = {}
    for entity in Entity.objects.select_related("verification_certificate", "encryption_certificate"):
        values = {field: getattr(entity, field) for field in entity_services.ENTITY_FIELDS if field not in _KEYS}
        for field in ("verification_certificate", "encryption_certificate"):
            entry = getattr(entity, field)
            values[field] = None if entry is None else (entry.alias, entry.kind, entry.fingerprint_sha256, entry.subject)
        values["metadata"] = (entity.metadata_source.location, entity.metadata_revision)
        values["endpoints"] = list(entity.endpoints.values_list(*entity_services.ENDPOINT_FIELDS, "position"))
        values["attributes"] = list(entity.attributes.values_list(*entity_services.ATTRIBUTE_FIELDS, "position"))
        found[entity.entity_id] = values
    return found


_KEYS = ("verification_certificate", "encryption_certificate")


def _keystore():
    fields = ("alias", "kind", "certificate_pem", "chain_pem", "private_key", "subject", "issuer", "serial_number")
    more = ("not_before", "not_after", "key_type", "key_size", "fingerprint_sha256", "is_ca", "self_signed", "subject_alt_names")
    return sorted(KeystoreEntry.objects.values_list(*fields, *more))


def test_bulk_written_entities_equal_one_entity_imports(tmp_path, sp_cred, enc_cred, idp_cred, creds):
    attributes = (
        '<saml:Attribute xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Name="urn:oid:0.9.2342.19200300.100.1.3" '
        'NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri" FriendlyName="mail"/>'
        '<saml:Attribute xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Name="groups"/>'
    )
    document = mf.aggregate(
        mf.pysaml2_sp(tmp_path, sp_cred, encryption=enc_cred),
        mf.pysaml2_idp(tmp_path, idp_cred),
        mf.entity_xml("https://idp2.example.org/idp", kind="idp", cert_base64=creds[0].cert_base64, extra=attributes),
        sp(7, creds[0], uses=("signing",)),
    )
    result = bulk(tmp_path, document, role="all")
    assert (result.created, result.failed) == (4, 0)
    bulk_entities, bulk_keystore = _stored_entities(), _keystore()
    names = {entity.entity_id: entity.name for entity in Entity.objects.all()}
    alias_of = {entry.fingerprint_sha256: entry.alias for entry in KeystoreEntry.objects.all()}
    assert len(bulk_entities["https://idp2.example.org/idp"]["attributes"]) == 2
    Entity.objects.all().delete()
    KeystoreEntry.objects.all().delete()

    # The same entities through the one-entity path (create_entity, import_trusted_certificate), each
    # with the name and certificate aliases the bulk import gave it.
    entities = {data.entity_id: data for data in mi.scan_source(source(tmp_path, document), allow_unsigned=True).entities}
    for entity_id, stored in bulk_entities.items():
        rows = mi.certificate_rows(entities[entity_id], stored["entity_type"])
        mi.import_entity(
            source(tmp_path, document),
            entity_id=entity_id,
            name=names[entity_id],
            allow_unsigned=True,
            certificate_aliases={row.number: alias_of[row.data.fingerprint] for row in rows if not row.problem},
        )
    assert _stored_entities() == bulk_entities
    assert _keystore() == bulk_keystore
