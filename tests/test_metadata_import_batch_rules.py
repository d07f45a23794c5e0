"""The entity rules of a metadata bulk import, asked once per batch: `entity_services.check_new_entities`
answers the rules' database questions (names in use, remote entity IDs in use, keystore entries that
exist) for a whole batch in a few queries, with the same messages `check_new_entity` gives one entity
at a time; a bulk import's queries grow with its batches, not with its entities; and an entity that a
concurrent change makes break a rule is reported while the rest of its batch is stored.

Everything here is real: documents from tests/metadata_fixtures.py, the test database, and (for a
concurrent writer that wins the race for an entity ID) a real database trigger."""

import math

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from entities import entity_services, services
from entities import metadata_import as mi
from entities.models import Binding, Endpoint, Entity, EntityAttribute, KeystoreEntry, Location, MetadataSource
from tests import metadata_fixtures as mf
from tests.saml.credentials import make_credential

pytestmark = pytest.mark.django_db

POST = Binding.HTTP_POST


@pytest.fixture(scope="module")
def creds():
    return [make_credential("rsa", f"batch-rules-{n}") for n in range(3)]


def sp(number, cred):
    return mf.entity_xml(f"https://sp{number}.example.org/shibboleth", cert_base64=cred.cert_base64)


def bulk(tmp_path, document, **options):
    path = tmp_path / "federation.xml"
    path.write_bytes(document)
    return mi.bulk_import(mi.Source(path=str(path)), mi.BulkFilter("sp"), allow_unsigned=True, **options)


def remote_sp(name, entity_id, certificate=None, location="https://partner.example.org/acs"):
    values = {"location": "remote", "entity_type": "saml2_sp", "entity_id": entity_id, "name": name}
    if certificate is not None:
        values["verification_certificate"] = certificate
    return values, [{"kind": "acs", "binding": POST, "index": 0, "is_default": True, "location": location}], []


# ---------------------------------------------------------------- the batch check


def test_a_batch_check_gives_the_answers_of_one_by_one_checks_in_three_queries(django_assert_num_queries, creds):
    signer = services.import_trusted_certificate("partner-signing", creds[0].cert_pem)
    entity_services.create_entity(*remote_sp("Taken-Name", "https://taken.example.org/sp"))
    items = [
        remote_sp("fresh-one", "https://fresh1.example.org/sp", signer),
        remote_sp("taken-name", "https://fresh2.example.org/sp", signer),  # the name, in another case
        remote_sp("fresh-three", "https://taken.example.org/sp"),  # a remote entity already has this ID
        remote_sp("fresh-four", "https://fresh4.example.org/sp", location="https://fresh4.example.org/acs#top"),
        remote_sp("fresh five", "https://fresh5.example.org/sp", signer),
    ]

    # One query for the names, one for the remote entity IDs, one for the keystore entries referenced.
    with django_assert_num_queries(3):
        batch = entity_services.check_new_entities(items)

    one_by_one = []
    for item in items:
        try:
            one_by_one.append(entity_services.check_new_entity(*item))
        except entity_services.EntityError as error:
            one_by_one.append(error)
    assert [_answer(answer) for answer in batch] == [_answer(answer) for answer in one_by_one]
    assert [_answer(answer) for answer in batch] == [
        "ok",
        "entity name: The entity name 'Taken-Name' is already used by another entity; entity names are unique.",
        "entity ID: The remote entity 'Taken-Name' already has this entity ID; remote entity IDs are unique.",
        "endpoint row 1, location URL: Remove the #fragment; partners do not send it to the server.",
        "entity name: Use only letters, digits, '_', '-' and '.' in an entity name (no spaces).",
    ]
    assert batch[0].entity.verification_certificate == signer
    # One by one, each entity asks the database itself: the name, the entity ID, the keystore entry.
    with django_assert_num_queries(3):
        entity_services.check_new_entity(*items[0])


def test_a_keystore_entry_deleted_meanwhile_is_refused_as_one_by_one(django_assert_num_queries, creds):
    entry = services.import_trusted_certificate("partner-signing", creds[0].cert_pem)
    gone = KeystoreEntry.objects.get(pk=entry.pk)
    KeystoreEntry.objects.filter(pk=entry.pk).delete()  # the caller still holds the entry object
    (answer,) = entity_services.check_new_entities([remote_sp("fresh-one", "https://fresh1.example.org/sp", gone)])
    with pytest.raises(entity_services.EntityError) as one_by_one:
        entity_services.check_new_entity(*remote_sp("fresh-one", "https://fresh1.example.org/sp", gone))
    assert isinstance(answer, entity_services.EntityError)
    assert answer.messages() == one_by_one.value.messages()
    assert "verification certificate" in answer.messages()[0]


def _answer(answer):
    return "ok" if isinstance(answer, entity_services.CheckedEntity) else "; ".join(answer.messages())


# ---------------------------------------------------------------- queries of a bulk import


def _import_queries(tmp_path, creds, count):
    """The SQL a bulk import of `count` new SPs runs (one batch), in a database without entities."""
    _start_afresh()
    document = mf.aggregate(*(sp(number, creds[number % 3]) for number in range(count)))
    with CaptureQueriesContext(connection) as captured:
        result = bulk(tmp_path, document)
    assert (result.created, result.failed) == (count, 0)
    assert Endpoint.objects.count() == count
    return [query["sql"] for query in captured.captured_queries]


def _start_afresh():
    Entity.objects.all().delete()
    KeystoreEntry.objects.all().delete()
    MetadataSource.objects.all().delete()


def test_a_batch_makes_the_same_queries_for_50_entities_as_for_200(tmp_path, creds):
    small = _import_queries(tmp_path, creds, 50)
    large = _import_queries(tmp_path, creds, 200)

    def entity_inserts(queries):
        return [sql for sql in queries if sql.startswith(f'INSERT INTO "{Entity._meta.db_table}"')]

    def others(queries):
        return [sql for sql in queries if sql not in entity_inserts(queries)]

    # Every lookup, the certificates, the endpoint rows, the audit: the same statements for 4× the entities.
    assert len(others(large)) == len(others(small))
    # The entity rows: as few multi-row INSERTs as the database takes (SQLite: 999 parameters each).
    fields = [field for field in Entity._meta.concrete_fields if not field.primary_key]
    per_statement = connection.ops.bulk_batch_size(fields, [Entity()] * 200) or 200
    assert len(entity_inserts(large)) == math.ceil(200 / min(per_statement, 200))
    assert len(large) < 40  # before the batch checks: four queries per entity, over 800


def test_more_batches_add_the_same_queries_each(tmp_path, creds):
    def queries(count):
        _start_afresh()
        document = mf.aggregate(*(sp(number, creds[0]) for number in range(count)))
        with CaptureQueriesContext(connection) as captured:
            assert bulk(tmp_path, document, batch_size=10).created == count
        return len(captured.captured_queries)

    one, two, four = queries(10), queries(20), queries(40)
    per_batch = two - one
    assert four - two == 2 * per_batch
    assert per_batch <= 12


# ---------------------------------------------------------------- concurrent changes


def test_a_name_taken_by_someone_else_during_the_import_is_reported_and_the_rest_stored(tmp_path, creds):
    document = mf.aggregate(*(sp(number, creds[number % 3]) for number in range(1, 7)))

    def someone_else(phase, done, total):
        # After the first batch, an administrator creates an entity under the name the import derives
        # for sp5 (the import learnt the names in use when it started).
        if phase == "import" and done == 2:
            entity_services.create_entity(*remote_sp("SP5.example.org-shibboleth", "https://hand-made.example.org/sp"))

    result = bulk(tmp_path, document, batch_size=2, progress=someone_else)

    assert (result.matched, result.created, result.failed) == (6, 5, 1)
    (error,) = result.errors
    assert error["entity_id"] == "https://sp5.example.org/shibboleth"
    assert error["message"] == (
        "entity name: The entity name 'SP5.example.org-shibboleth' is already used by another entity; entity names are unique."
    )
    stored = set(Entity.objects.filter(metadata_source__isnull=False).values_list("entity_id", flat=True))
    assert stored == {f"https://sp{number}.example.org/shibboleth" for number in (1, 2, 3, 4, 6)}
    assert Entity.objects.get(entity_id="https://hand-made.example.org/sp").metadata_source is None


def _concurrent_writer_takes(entity_id):
    """A real trigger that, when a row for `entity_id` is inserted, first inserts another remote entity
    with that entity ID: a concurrent writer winning the race after the import's checks."""
    table = Entity._meta.db_table
    columns = "location, entity_type, saml_token_type, entity_id, name, description, base_url, name_id_formats, "
    columns += "wsfed_specific_id, wsfed_signout_confirm_url, wsfed_service_url, wsfed_signout_url, "
    columns += "wsfed_signout_cleanup_url, metadata_revision, created_at, updated_at"
    values = "'remote', 'saml2_sp', '', NEW.entity_id, 'concurrent-writer', '', '', '[]', '', '', '', '', '', 0, "
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER concurrent_writer BEFORE INSERT ON {table} "
                f"WHEN NEW.entity_id = '{entity_id}' AND NEW.name <> 'concurrent-writer' "
                f"BEGIN INSERT INTO {table} ({columns}) VALUES ({values}datetime('now'), datetime('now')); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION concurrent_writer() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.entity_id = '{entity_id}' AND NEW.name <> 'concurrent-writer' THEN "
                f"INSERT INTO {table} ({columns}) VALUES ({values}now(), now()); END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER concurrent_writer BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION concurrent_writer()"
            )


def test_an_entity_id_taken_after_the_checks_is_refused_by_the_database_and_the_rest_stored(tmp_path, creds):
    _concurrent_writer_takes("https://sp3.example.org/shibboleth")
    document = mf.aggregate(*(sp(number, creds[number % 3]) for number in range(1, 6)))

    result = bulk(tmp_path, document)

    # The batch's checks passed (no other entity had the ID then); the unique constraint refused the
    # batch write, and the batch was written again one entity at a time: sp3 is reported, the others stored.
    assert (result.matched, result.created, result.failed) == (5, 4, 1)
    (error,) = result.errors
    assert error["entity_id"] == "https://sp3.example.org/shibboleth"
    assert error["message"].startswith("database error:")
    assert set(Entity.objects.filter(location=Location.REMOTE).values_list("entity_id", flat=True)) == {
        f"https://sp{number}.example.org/shibboleth" for number in (1, 2, 4, 5)
    }
    assert Endpoint.objects.count() == 4 and EntityAttribute.objects.count() == 0
