"""entities.metadata_import and entities.metadata_fetch: one-entity imports (create remote, update
remote, create local) from pysaml2, python3-saml and hand-written SAML 1.1 / WS-Fed metadata, the
certificate usage rules of the reference (F5.8), atomicity (any error stores nothing: no entity, no
certificate, no audit event), bulk import of an aggregate, and downloads from a real HTTP server
on 127.0.0.1 (timeouts, HTTP 500, size caps, TLS failures, redirects)."""

import base64
import ssl
from datetime import timedelta
from ipaddress import IPv4Address

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from entities import metadata_import as mi
from entities import services
from entities.keystore import fingerprint_sha256
from entities.metadata_fetch import FetchError, fetch_metadata
from entities.models import Binding, Endpoint, Entity, EntityType, KeystoreEntry, Location, MetadataSource
from federation.models import AuditEvent
from tests import metadata_fixtures as mf
from tests.keystore_fixtures import make_ca, name, new_key, self_signed
from tests.saml.credentials import Credential, make_credential

pytestmark = pytest.mark.django_db

POST, ARTIFACT, REDIRECT = Binding.HTTP_POST, Binding.HTTP_ARTIFACT, Binding.HTTP_REDIRECT


@pytest.fixture(scope="module")
def documents(tmp_path_factory, sp_cred, enc_cred):
    directory = tmp_path_factory.mktemp("peers")
    return {
        "sp": mf.pysaml2_sp(directory, sp_cred, encryption=enc_cred),
        "idp": mf.pysaml2_idp(directory, make_credential("rsa", "idp.example.org")),
        "directory": directory,
    }


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def source(tmp_path, data, name="metadata.xml", **kwargs):
    return mi.Source(path=write(tmp_path, name, data), **kwargs)


def stored():
    """What an import can write: entities with their rows, keystore entries, sources, audit events."""
    return (
        Entity.objects.count(),
        Endpoint.objects.count(),
        KeystoreEntry.objects.count(),
        MetadataSource.objects.count(),
        AuditEvent.objects.count(),
    )


@pytest.fixture
def anchor(fed):
    return services.import_trusted_certificate("federation-signer", fed.cert_pem)


# ---------------------------------------------------------------- create remote


def test_create_remote_sp_from_pysaml2_metadata(tmp_path, documents, sp_cred, enc_cred):
    entity, plan, info = mi.import_entity(
        source(tmp_path, documents["sp"], "sp.xml"),
        name="sp1",
        allow_unsigned=True,
        certificate_aliases={1: "sp1-signing", 2: "sp1-encryption"},
    )
    assert (entity.location, entity.entity_type, entity.entity_id, entity.name) == (
        Location.REMOTE,
        EntityType.SAML2_SP,
        "https://sp.example.org/sp",
        "sp1",
    )
    assert [(e.kind, e.binding, e.location, e.index) for e in entity.endpoints.all()] == [
        ("slo", REDIRECT, "https://sp.example.org/slo", None),
        ("acs", POST, "https://sp.example.org/acs/post", 1),
        ("acs", ARTIFACT, "https://sp.example.org/acs/artifact", 2),
    ]
    assert entity.name_id_formats == [mf.PERSISTENT, mf.TRANSIENT]
    assert entity.verification_certificate.alias == "sp1-signing"
    assert entity.verification_certificate.fingerprint_sha256 == fingerprint_sha256(sp_cred.certificate)
    assert entity.encryption_certificate.alias == "sp1-encryption"
    assert entity.metadata_source.location == "sp.xml" and entity.metadata_source.kind == MetadataSource.Kind.FILE
    assert entity.metadata_revision == 1 and entity.metadata_updated_at is not None
    assert not info.verified and [c.usage for c in plan.certificates] == ["Signing", "Encryption"]
    summary = AuditEvent.objects.filter(action="other", object_repr="sp1").get()
    assert summary.summary.startswith("created from metadata sp.xml (entity ID https://sp.example.org/sp)")


def test_signed_metadata_is_verified_with_the_trust_anchor(tmp_path, documents, fed, anchor):
    signed = mf.core_sign(documents["idp"], fed)
    entity, _plan, info = mi.import_entity(source(tmp_path, signed), name="idp1", trust_alias="federation-signer")
    assert info.verified and entity.entity_type == EntityType.SAML2_IDP
    assert entity.metadata_source.trust_anchor == anchor and entity.metadata_source.require_signature
    assert [(e.kind, e.binding) for e in entity.endpoints.all()] == [
        ("artifact_resolution", Binding.SOAP),
        ("slo", REDIRECT),
        ("sso", REDIRECT),
        ("sso", POST),
    ]


# ---------------------------------------------------------------- certificate usage rules (F5.8)


def test_same_certificate_for_signing_and_encryption_is_one_entry_with_the_first_alias(tmp_path):
    cred = make_credential("rsa", "p3.example.org")
    entity, plan, _ = mi.import_entity(
        source(tmp_path, mf.python3saml_sp(cred)),
        name="p3",
        allow_unsigned=True,
        certificate_aliases={1: "cert1", 2: "cert2"},
    )
    assert [(c.alias, c.usage, c.issued_to) for c in plan.certificates] == [("cert1", "Signing and Encryption", "p3.example.org")]
    assert entity.verification_certificate.alias == entity.encryption_certificate.alias == "cert1"
    assert not KeystoreEntry.objects.filter(alias="cert2").exists()


def test_no_use_means_signing_and_encryption(tmp_path, sp_cred):
    document = mf.entity_xml("https://nouse.example.org/sp", cert_base64=sp_cred.cert_base64, uses=("",))
    data = mi.scan_source(source(tmp_path, document), allow_unsigned=True).entities[0]
    (row,) = mi.certificate_rows(data, EntityType.SAML2_SP)
    assert row.usage == "Signing and Encryption"
    entity, _plan, _ = mi.import_entity(
        source(tmp_path, document), name="nouse", allow_unsigned=True, certificate_aliases={1: "nouse"}
    )
    assert entity.verification_certificate.alias == entity.encryption_certificate.alias == "nouse"


def test_two_different_certificates_give_two_rows(tmp_path, documents):
    data = mi.scan_source(source(tmp_path, documents["sp"]), allow_unsigned=True).entities[0]
    rows = mi.certificate_rows(data, EntityType.SAML2_SP)
    choices = mi.choose_certificates(rows, {1: "a", 2: "b"})
    assert [(c.alias, c.usage) for c in choices] == [("a", "Signing"), ("b", "Encryption")]
    assert mi.choose_certificates(rows, {2: "only-enc"})[0].usage == "Encryption"


def test_saml11_and_wsfed_certificates_are_for_signing(tmp_path):
    producer, plan, _ = mi.import_entity(
        source(tmp_path, mf.fixture("saml11-producer.xml")),
        name="producer",
        allow_unsigned=True,
        certificate_aliases={1: "producer-cert"},
    )
    assert producer.entity_type == EntityType.SAML11_PRODUCER
    assert [c.usage for c in plan.certificates] == ["Signing"]  # its KeyDescriptor said "encryption"
    assert producer.verification_certificate.alias == "producer-cert" and producer.encryption_certificate is None
    assert [(e.kind, e.binding) for e in producer.endpoints.all()] == [
        ("artifact_resolution", Binding.SAML11_SOAP),
        ("sso", Binding.SAML11_AUTHN_REQUEST),
    ]
    # transient is a SAML 2.0 format: dropped with a note; the Shibboleth 1 format is kept.
    assert producer.name_id_formats == ["urn:mace:shibboleth:1.0:nameIdentifier", mf.EMAIL]
    assert any("SAML 2.0 NameID format" in note for note in plan.notes)

    rp, plan, _ = mi.import_entity(source(tmp_path, mf.fixture("wsfed-rp.xml")), name="rp", allow_unsigned=True)
    assert (rp.entity_type, rp.saml_token_type) == (EntityType.WSFED_RP, "saml2")
    assert rp.wsfed_service_url == "https://rp.partner.example/wsfed/"
    assert rp.wsfed_signout_cleanup_url == "https://rp.partner.example/wsfed/signout-cleanup"
    assert [(c.alias, c.usage) for c in plan.certificates] == [("rp-signing", "Signing")]
    assert rp.verification_certificate.alias == "rp-signing"

    ip, _plan, _ = mi.import_entity(source(tmp_path, mf.fixture("wsfed-ip.xml")), name="ip", allow_unsigned=True)
    assert (ip.entity_type, ip.saml_token_type, ip.wsfed_service_url) == (
        EntityType.WSFED_IP,
        "saml11",
        "https://sts.partner.example/adfs/ls/",
    )
    # The same certificate as the RP's: reused, not stored twice.
    assert ip.verification_certificate.alias == "rp-signing"

    consumer, _plan, _ = mi.import_entity(
        source(tmp_path, mf.fixture("saml11-consumer.xml")), name="consumer", allow_unsigned=True
    )
    assert consumer.entity_type == EntityType.SAML11_CONSUMER and consumer.verification_certificate.alias == "producer-cert"
    assert [(e.binding, e.index, e.is_default) for e in consumer.endpoints.all()] == [
        (Binding.SAML11_POST, 1, True),
        (Binding.SAML11_ARTIFACT, 2, False),
    ]


def test_expired_certificates_are_listed_but_not_selectable(tmp_path):
    _key, old = self_signed("old.example.org", expires_in=timedelta(days=-2))
    body = base64.b64encode(old.public_bytes(serialization.Encoding.DER)).decode()
    document = mf.entity_xml("https://old-cert.example.org/sp", cert_base64=body, uses=("signing",))
    data = mi.scan_source(source(tmp_path, document), allow_unsigned=True).entities[0]
    (row,) = mi.certificate_rows(data, EntityType.SAML2_SP)
    assert row.problem.startswith("expired on") and not row.selectable
    with pytest.raises(mi.MetadataImportError, match="Certificate #1 cannot be imported: it is expired on"):
        mi.choose_certificates([row], {1: "old"})
    entity, plan, _ = mi.import_entity(source(tmp_path, document), name="oldcert", allow_unsigned=True)
    assert entity.verification_certificate is None and plan.certificates == []
    assert any("was not imported: it is expired" in note for note in plan.notes)


# ---------------------------------------------------------------- update remote, create local


def test_update_existing_remote_entity(tmp_path, documents, sp_cred, enc_cred):
    mi.import_entity(source(tmp_path, documents["sp"]), name="sp1", allow_unsigned=True, certificate_aliases={1: "s", 2: "e"})
    changed = documents["sp"].replace(b"https://sp.example.org/acs/post", b"https://sp.example.org/acs/post2")
    entity, plan, _ = mi.import_entity(
        source(tmp_path, changed, "sp-v2.xml"), operation=mi.UPDATE_REMOTE, allow_unsigned=True, certificate_aliases={}
    )
    assert entity.name == "sp1" and entity.metadata_revision == 2
    assert entity.endpoints.get(index=1).location == "https://sp.example.org/acs/post2"
    assert entity.verification_certificate.alias == "s"  # no certificate chosen: kept
    assert entity.metadata_source.location == "sp-v2.xml"
    update = AuditEvent.objects.filter(object_type="entities.Endpoint", action="update").get()
    assert update.changes["location"] == ["https://sp.example.org/acs/post", "https://sp.example.org/acs/post2"]


def test_update_needs_a_remote_entity_of_the_same_type(tmp_path, documents):
    with pytest.raises(mi.MetadataImportError, match="No remote entity has the entity ID 'https://sp.example.org/sp'"):
        mi.import_entity(source(tmp_path, documents["sp"]), operation=mi.UPDATE_REMOTE, allow_unsigned=True)
    mi.import_entity(source(tmp_path, documents["idp"]), name="idp1", allow_unsigned=True)
    with pytest.raises(
        mi.MetadataImportError, match="is a SAML2 IdP, and the metadata of 'https://sp.example.org/sp' has no such role"
    ):
        mi.import_entity(source(tmp_path, documents["sp"]), operation=mi.UPDATE_REMOTE, target="idp1", allow_unsigned=True)


def test_create_local_entity_from_local_metadata(tmp_path, documents):
    entity, plan, _ = mi.import_entity(
        source(tmp_path, documents["idp"]), operation=mi.CREATE_LOCAL, name="my-idp", allow_unsigned=True
    )
    assert (entity.location, entity.entity_type, entity.base_url) == (
        Location.LOCAL,
        EntityType.SAML2_IDP,
        "https://idp.example.org",
    )
    assert entity.endpoints.count() == 0 and entity.signing_key is None and entity.metadata_source is None
    assert plan.certificates == [] and any("Certificates in local metadata are not imported" in n for n in plan.notes)
    assert entity.runtime_urls()


# ---------------------------------------------------------------- atomicity: errors store nothing


def test_duplicate_remote_entity_id_stores_nothing(tmp_path, documents):
    mi.import_entity(source(tmp_path, documents["sp"]), name="sp1", allow_unsigned=True, certificate_aliases={1: "s1", 2: "e1"})
    before = stored()
    with pytest.raises(mi.MetadataImportError) as caught:
        mi.import_entity(
            source(tmp_path, documents["sp"]), name="sp2", allow_unsigned=True, certificate_aliases={1: "s2", 2: "e2"}
        )
    assert caught.value.message == "entity ID: The remote entity 'sp1' already has this entity ID; remote entity IDs are unique."
    assert stored() == before


def test_an_entity_error_after_the_certificates_rolls_them_back(tmp_path, sp_cred):
    document = mf.entity_xml("https://bad-url.example.org/sp", cert_base64=sp_cred.cert_base64, uses=("signing",)).replace(
        b'Location="https://bad-url.example.org/acs"', b'Location="https://bad-url.example.org/acs#fragment"'
    )
    before = stored()
    with pytest.raises(mi.MetadataImportError, match="Remove the #fragment"):
        mi.import_entity(source(tmp_path, document), name="bad", allow_unsigned=True, certificate_aliases={1: "bad-signing"})
    assert stored() == before and not KeystoreEntry.objects.filter(alias="bad-signing").exists()


def test_alias_conflicts_store_nothing(tmp_path, documents, make_key_pair):
    make_key_pair("taken")
    before = stored()
    with pytest.raises(mi.MetadataImportError, match="An entry with the alias 'taken' already exists") as caught:
        mi.import_entity(
            source(tmp_path, documents["sp"]), name="sp1", allow_unsigned=True, certificate_aliases={1: "ok", 2: "taken"}
        )
    assert caught.value.field == "alias_2"
    with pytest.raises(mi.MetadataImportError, match="given to two different certificates"):
        mi.import_entity(
            source(tmp_path, documents["sp"]), name="sp1", allow_unsigned=True, certificate_aliases={1: "same", 2: "SAME"}
        )
    assert stored() == before


BAD_DOCUMENTS = {
    "not XML": (mf.fixture("not-xml.txt"), "The document is not well-formed XML"),
    "XML bomb": (mf.fixture("billion-laughs.xml"), "The document contains a DTD or an entity declaration"),
    "XXE": (mf.fixture("xxe.xml"), "The document contains a DTD or an entity declaration"),
    "wrong root": (mf.fixture("wrong-root.xml"), "The root element is {urn:oasis:names:tc:SAML:2.0:protocol}Response"),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_bad_documents_store_nothing(case, tmp_path):
    document, message = BAD_DOCUMENTS[case]
    before = stored()
    with pytest.raises(mi.MetadataImportError) as caught:
        mi.import_entity(source(tmp_path, document), name="x", allow_unsigned=True)
    assert caught.value.message.startswith(message)
    assert stored() == before


def test_signature_problems_store_nothing(tmp_path, documents, fed, anchor):
    signed = mf.core_sign(mf.aggregate(documents["sp"], documents["idp"]), fed)
    before = stored()
    tampered = signed.replace(b"https://sp.example.org/slo", b"https://evil.example.org/slo")
    with pytest.raises(mi.MetadataImportError, match="digest mismatch"):
        mi.import_entity(
            source(tmp_path, tampered), entity_id="https://sp.example.org/sp", name="x", trust_alias="federation-signer"
        )
    services.import_trusted_certificate("someone-else", make_credential("rsa", "someone else").cert_pem)
    with pytest.raises(mi.MetadataImportError, match="signature invalid for every trusted certificate"):
        mi.import_entity(source(tmp_path, signed), entity_id="https://sp.example.org/sp", name="x", trust_alias="someone-else")
    with pytest.raises(mi.MetadataImportError, match="The metadata is not signed"):
        mi.import_entity(source(tmp_path, documents["sp"]), name="x", trust_alias="federation-signer")
    with pytest.raises(mi.MetadataImportError, match="Choose a trust anchor"):
        mi.import_entity(source(tmp_path, documents["sp"]), name="x")
    assert stored()[:4] == (before[0], before[1], before[2] + 1, before[3])


def test_expired_metadata_and_expired_entities_are_refused(tmp_path, documents):
    expired_document = mf.aggregate(documents["sp"], valid_until=mf.in_hours(-1))
    with pytest.raises(mi.MetadataImportError, match=r"The metadata expired on .* \(validUntil\)"):
        mi.import_entity(source(tmp_path, expired_document), name="x", allow_unsigned=True)
    document = mf.aggregate(documents["sp"], mf.entity_xml("https://old.example.org/sp", valid_until=mf.in_hours(-1)))
    with pytest.raises(mi.MetadataImportError, match="expired on .* it cannot be imported"):
        mi.import_entity(source(tmp_path, document), entity_id="https://old.example.org/sp", name="x", allow_unsigned=True)
    assert Entity.objects.count() == 0


def test_file_over_the_size_cap_is_refused(tmp_path, documents):
    big = tmp_path / "big.xml"
    with big.open("wb") as handle:
        handle.write(documents["sp"][:-30])
        handle.truncate(60 * 1024 * 1024)
    before = stored()
    with pytest.raises(mi.MetadataImportError) as caught:
        mi.import_entity(mi.Source(path=str(big), max_bytes=50 * 1024 * 1024), name="x", allow_unsigned=True)
    assert caught.value.message == "The file is 60 MB, over the size limit of 50 MB."
    assert stored() == before


def test_choose_among_several_entities(tmp_path, documents):
    document = mf.aggregate(documents["sp"], documents["idp"])
    with pytest.raises(mi.MetadataImportError, match="The document holds 2 entities; choose one by its entity ID"):
        mi.import_entity(source(tmp_path, document), name="x", allow_unsigned=True)
    with pytest.raises(mi.MetadataImportError, match="has no entity with the entity ID 'https://nope/'"):
        mi.import_entity(source(tmp_path, document), entity_id="https://nope/", name="x", allow_unsigned=True)
    entity, _plan, _ = mi.import_entity(source(tmp_path, document), entity_id="https://idp.example.org/idp", allow_unsigned=True)
    assert entity.name == "idp.example.org-idp"


# ---------------------------------------------------------------- bulk import


def _federation(count_sps=12, count_idps=4, certificates=3):
    creds = [make_credential("rsa", f"fed-member-{n}") for n in range(certificates)]
    entities = []
    for n in range(count_sps):
        entities.append(
            mf.entity_xml(
                f"https://sp{n}.campus{n % 3}.example.org/shibboleth",
                cert_base64=creds[(n // 3) % certificates].cert_base64,
                uses=("signing", "encryption"),
            )
        )
    for n in range(count_idps):
        entities.append(
            mf.entity_xml(f"https://idp{n}.example.org/idp", kind="idp", cert_base64=creds[n % certificates].cert_base64)
        )
    return entities, creds


def test_bulk_import_of_matching_sps_with_one_malformed(tmp_path, fed, anchor):
    entities, creds = _federation()
    malformed = mf.entity_xml("https://broken.campus1.example.org/shibboleth").replace(b' index="0"', b"")
    expired = mf.entity_xml("https://old.campus1.example.org/shibboleth", valid_until=mf.in_hours(-1))
    document = mf.core_sign(mf.aggregate(*entities[:5], malformed, expired, *entities[5:]), fed)
    progress = []
    result = mi.bulk_import(
        source(tmp_path, document, "federation.xml"),
        mi.BulkFilter("sp", match=r"\.campus1\."),
        trust_entry=anchor,
        batch_size=2,
        progress=lambda phase, done, total: progress.append((phase, done, total)),
    )
    # SPs 1, 4, 7, 10 are on campus1; the malformed one is reported, the expired one skipped.
    assert (result.matched, result.created, result.updated, result.skipped, result.failed) == (4, 4, 0, 1, 1)
    (error,) = result.errors
    assert (error["position"], error["entity_id"], error["message"]) == (
        6,
        "https://broken.campus1.example.org/shibboleth",
        "malformed: AssertionConsumerService #1 has no valid index (a whole number 0–65535 is required).",
    )
    assert isinstance(error["line"], int)
    names = sorted(Entity.objects.values_list("name", flat=True))
    assert names == [f"sp{n}.campus1.example.org-shibboleth" for n in (1, 10, 4, 7)]
    sp = Entity.objects.get(name="sp4.campus1.example.org-shibboleth")
    assert sp.verification_certificate == sp.encryption_certificate
    assert sp.metadata_source.location == "federation.xml"
    # The four SPs have three different certificates (sp1 and sp10 share one): each is stored once.
    assert KeystoreEntry.objects.filter(kind=KeystoreEntry.Kind.TRUSTED_CERTIFICATE).count() == 1 + 3
    assert ("import", 4, 4) in progress and any(phase == "verify" for phase, _d, _t in progress)
    bulk_event = AuditEvent.objects.filter(object_type="entities.MetadataSource", action="other").get()
    assert (
        bulk_event.summary
        == "bulk import of SPs matching '\\\\.campus1\\\\.': 4 matched: 4 created, 0 updated, 1 skipped, 1 failed"
    )

    # Again: the same entities are updated, nothing is duplicated.
    again = mi.bulk_import(
        source(tmp_path, document, "federation.xml"), mi.BulkFilter("sp", match=r"\.campus1\."), trust_entry=anchor
    )
    assert (again.created, again.updated) == (0, 4) and Entity.objects.count() == 4
    skip = mi.bulk_import(
        source(tmp_path, document, "federation.xml"), mi.BulkFilter("idp"), trust_entry=anchor, update_existing=False
    )
    assert (skip.matched, skip.created) == (4, 4) and Entity.objects.filter(entity_type=EntityType.SAML2_IDP).count() == 4


def test_bulk_import_refuses_a_bad_document_before_storing_anything(tmp_path, fed, anchor):
    entities, _creds = _federation(6, 0)
    document = mf.core_sign(mf.aggregate(*entities), fed)
    tampered = document.replace(b"https://sp5.campus2.example.org/acs", b"https://evil.example.org/acs")
    before = stored()
    with pytest.raises(mi.MetadataImportError, match="digest mismatch"):
        mi.bulk_import(source(tmp_path, tampered), mi.BulkFilter("sp"), trust_entry=anchor)
    assert stored() == before


def test_bulk_filter_by_registration_authority(tmp_path):
    def registered(entity_id, authority):
        return mf.entity_xml(entity_id).replace(
            b"><md:SPSSODescriptor",
            f'><md:Extensions><mdrpi:RegistrationInfo xmlns:mdrpi="urn:oasis:names:tc:SAML:metadata:rpi" '
            f'registrationAuthority="{authority}"/></md:Extensions><md:SPSSODescriptor'.encode(),
            1,
        )

    document = mf.aggregate(
        registered("https://a.example.org/", "https://fed-a.example/"),
        registered("https://b.example.org/", "https://fed-b.example/"),
    )
    result = mi.bulk_import(
        source(tmp_path, document), mi.BulkFilter("sp", registration_authority="https://fed-b.example/"), allow_unsigned=True
    )
    assert result.created == 1 and list(Entity.objects.values_list("entity_id", flat=True)) == ["https://b.example.org/"]
    with pytest.raises(mi.MetadataImportError, match="not a valid regular expression"):
        mi.BulkFilter("sp", match="(")


# ---------------------------------------------------------------- downloads


@pytest.fixture
def server():
    running = mf.MetadataServer()
    running.stall_seconds = 3
    yield running
    running.close()


def test_fetch_a_document_and_conditional_get(server, documents):
    url = server.serve("/metadata.xml", documents["sp"], etag='"v1"')
    result = fetch_metadata(url)
    assert result.file.read() == documents["sp"] and result.etag == '"v1"' and result.size == len(documents["sp"])
    result.close()
    again = fetch_metadata(url, etag='"v1"')
    assert again.not_modified and again.file is None
    assert server.requests[-1][1]["If-None-Match"] == '"v1"'


@pytest.mark.parametrize(
    ("path", "options", "message"),
    [
        ("/stall", {"timeout": 1}, "did not answer within 1 seconds (timed out)."),
        ("/trickle", {"timeout": 2}, "took longer than 2 seconds to send the metadata (timed out)."),
        ("/error", {}, "answered HTTP 500 Internal Server Error; the metadata was not downloaded."),
        ("/missing", {}, "answered HTTP 404 Not Found; the metadata was not downloaded."),
        ("/huge", {"max_bytes": 50 * 1024 * 1024}, "sends 60 MB, over the size limit of 50 MB; not downloaded."),
        (
            "/huge-unannounced",
            {"max_bytes": 50 * 1024 * 1024},
            "sent more than the size limit of 50 MB; the download was stopped.",
        ),
        (
            "/redirect-to-file",
            {},
            "redirects to 'file:///etc/passwd', which is not an http(s) URL; the redirect was not followed.",
        ),
    ],
)
def test_fetch_failures_are_clear(server, path, options, message):
    with pytest.raises(FetchError) as caught:
        fetch_metadata(server.url(path), **options)
    assert caught.value.message == f"{server.url(path)} {message}"


def test_fetch_refuses_other_schemes_and_closed_ports():
    with pytest.raises(FetchError, match="is not an http:// or https:// URL"):
        fetch_metadata("file:///etc/passwd")
    with pytest.raises(FetchError, match="Could not connect to http://127.0.0.1:9/"):
        fetch_metadata("http://127.0.0.1:9/", timeout=2)


@pytest.fixture
def tls_server(tmp_path):
    ca = make_ca("Metadata TLS CA")
    key = new_key("rsa")
    certificate = ca.issue(key.public_key(), name("127.0.0.1", "Metadata host"), san=[x509.IPAddress(IPv4Address("127.0.0.1"))])
    key_file, cert_file = Credential(key, certificate).write(tmp_path, "tls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    running = mf.MetadataServer(tls=context)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem)
    yield running, str(ca_file)
    running.close()


def test_tls_is_verified(tls_server, documents):
    running, ca_file = tls_server
    url = running.serve("/metadata.xml", documents["sp"])
    with pytest.raises(FetchError) as caught:
        fetch_metadata(url)
    assert caught.value.message.startswith(f"TLS verification failed for {url}: certificate verify failed")
    result = fetch_metadata(url, ca_bundle=ca_file)
    assert result.file.read() == documents["sp"]
    result.close()


def test_import_from_a_url_records_the_source(server, documents, tmp_path):
    url = server.serve("/sp.xml", documents["sp"], etag='"abc"')
    entity, _plan, _ = mi.import_entity(mi.Source(url=url), name="sp1", allow_unsigned=True, refresh_interval=timedelta(hours=6))
    source_row = entity.metadata_source
    assert (source_row.kind, source_row.location, source_row.refresh_interval) == ("url", url, timedelta(hours=6))
    assert source_row.next_refresh_at is not None and not source_row.require_signature
    before = stored()
    with pytest.raises(mi.MetadataImportError, match="answered HTTP 500"):
        mi.import_entity(mi.Source(url=server.url("/error")), name="sp2", allow_unsigned=True)
    with pytest.raises(mi.MetadataImportError, match="over the size limit of 50 MB"):
        mi.import_entity(mi.Source(url=server.url("/huge"), max_bytes=50 * 1024 * 1024), name="sp2", allow_unsigned=True)
    assert stored() == before


def test_uploaded_documents_are_read_back_in_chunks(documents):
    document = mf.aggregate(*[mf.entity_xml(f"https://sp{n}.example.org/sp") for n in range(6000)])
    assert len(document) > 2 * mi.UPLOAD_CHUNK_BYTES
    pieces = [document[i : i + 100_000] for i in range(0, len(document), 100_000)]
    upload = mi.store_upload("federation.xml", pieces, uploaded_by="alice")
    assert (upload.size, upload.chunks.count()) == (len(document), 3)
    reader = mi.UploadReader(upload)
    assert b"".join(iter(lambda: reader.read(65536), b"")) == document
    scan = mi.scan_source(mi.Source(upload=upload), allow_unsigned=True)
    assert scan.info.entity_count == 6000
    with pytest.raises(mi.MetadataImportError, match="over the size limit of 1 MB"):
        mi.scan_source(mi.Source(upload=upload, max_bytes=1024 * 1024), allow_unsigned=True)
    with pytest.raises(mi.MetadataImportError, match="larger than the limit of 1 MB"):
        mi.store_upload("big.xml", pieces, max_bytes=1024 * 1024)


def test_bulk_import_of_a_single_signed_entity_descriptor(tmp_path, documents, fed, anchor):
    signed = mf.core_sign(documents["sp"], fed)
    result = mi.bulk_import(source(tmp_path, signed), mi.BulkFilter("sp"), trust_entry=anchor)
    assert (result.matched, result.created, result.info.verified) == (1, 1, True)
    assert Entity.objects.get().metadata_revision == 1
