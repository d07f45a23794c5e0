"""entities.metadata_parser and entities.metadata_signature: reading real metadata (pysaml2,
python3-saml, hand-written SAML 1.1 and WS-Fed), aggregates with inherited validity and one
malformed entity, hostile input, and the streaming signature verification compared with
federation.saml.signing.verify on the same documents."""

import base64
import io
import re
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from entities.metadata_parser import (
    CertificateData,
    EntityData,
    MetadataError,
    TrustAnchor,
    parse_duration,
    read_metadata,
)
from federation.saml.errors import SAMLError
from federation.saml.signing import verify
from federation.saml.xml import parse_xml
from tests import metadata_fixtures as mf
from tests.keystore_fixtures import make_ca, name, new_key, self_signed
from tests.saml.credentials import Credential, make_credential

POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
ARTIFACT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"
SOAP = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"


def read(document, trust=None, allow_unsigned=True, **kwargs):
    entities = []
    info = read_metadata(io.BytesIO(document), entities.append, trust=trust, allow_unsigned=allow_unsigned, **kwargs)
    return info, entities


def refused(document, **kwargs):
    with pytest.raises(MetadataError) as caught:
        read(document, **kwargs)
    return caught.value.message


@pytest.fixture(scope="module")
def peers(tmp_path_factory, sp_cred, enc_cred, idp_cred):
    directory = tmp_path_factory.mktemp("peers")
    return {
        "sp": mf.pysaml2_sp(directory, sp_cred, encryption=enc_cred),
        "idp": mf.pysaml2_idp(directory, idp_cred),
        "p3": mf.python3saml_sp(make_credential("rsa", "p3.example.org")),
        "directory": directory,
    }


# ---------------------------------------------------------------- single entities from real peers


def test_pysaml2_sp_metadata(peers, sp_cred, enc_cred):
    info, (sp,) = read(peers["sp"])
    assert (info.root, info.entity_count, info.signed) == ("EntityDescriptor", 1, False)
    assert sp.entity_id == "https://sp.example.org/sp" and sp.entity_types() == ["saml2_sp"] and not sp.problems
    role = sp.role_for("saml2_sp")
    assert [(e.kind, e.binding, e.location, e.index, e.is_default) for e in role.endpoints] == [
        ("slo", REDIRECT, "https://sp.example.org/slo", None, False),
        ("acs", POST, "https://sp.example.org/acs/post", 1, False),
        ("acs", ARTIFACT, "https://sp.example.org/acs/artifact", 2, False),
    ]
    assert [(e.kind, e.binding) for e in role.endpoints if e.kind == "slo"] == [("slo", REDIRECT)]
    assert role.name_id_formats == [mf.PERSISTENT, mf.TRANSIENT]
    assert [(c.use, c.base64) for c in role.certificates] == [
        ("signing", sp_cred.cert_base64),
        ("encryption", enc_cred.cert_base64),
    ]
    assert role.certificates[0].issued_to == "sp.example.org" and role.certificates[0].problem() == ""
    assert sp.organization == "sp-sp.example.org display"


def test_pysaml2_idp_metadata(peers):
    _, (idp,) = read(peers["idp"])
    assert idp.entity_types() == ["saml2_idp"]
    role = idp.role_for("saml2_idp")
    assert [(e.kind, e.binding, e.index) for e in role.endpoints] == [
        ("artifact_resolution", SOAP, 1),
        ("slo", REDIRECT, None),
        ("sso", REDIRECT, None),
        ("sso", POST, None),
    ]
    assert role.name_id_formats == [mf.PERSISTENT, mf.EMAIL]


def test_python3saml_metadata_with_validity_and_the_same_certificate_twice():
    cred = make_credential("rsa", "p3.example.org")
    until = mf.in_hours(48).replace(microsecond=0)
    document = mf.python3saml_sp(cred, valid_until=until.strftime("%Y-%m-%dT%H:%M:%SZ"), cache_duration="PT6H")
    _, (sp,) = read(document)
    assert sp.valid_until == until and sp.cache_duration == timedelta(hours=6)
    certificates = sp.role_for("saml2_sp").certificates
    assert [c.use for c in certificates] == ["signing", "encryption"]
    assert certificates[0].fingerprint == certificates[1].fingerprint


def test_saml11_producer_and_consumer():
    _, (producer,) = read(mf.fixture("saml11-producer.xml"))
    assert producer.entity_types() == ["saml11_producer"]
    role = producer.role_for("saml11_producer")
    assert [(e.kind, e.binding) for e in role.endpoints] == [
        ("artifact_resolution", "urn:oasis:names:tc:SAML:1.0:bindings:SOAP-binding"),
        ("sso", "urn:mace:shibboleth:1.0:profiles:AuthnRequest"),
    ]
    assert role.certificates[0].use == "encryption" and role.certificates[0].key_name == "producer.partner.example"
    assert producer.display_name == "" and producer.organization == "Partner Producer"
    _, (consumer,) = read(mf.fixture("saml11-consumer.xml"))
    assert consumer.entity_types() == ["saml11_consumer"]
    acs = consumer.role_for("saml11_consumer").endpoints
    assert [(e.binding, e.index, e.is_default) for e in acs] == [
        ("urn:oasis:names:tc:SAML:1.0:profiles:browser-post", 1, True),
        ("urn:oasis:names:tc:SAML:1.0:profiles:artifact-01", 2, False),
    ]


def test_wsfed_role_descriptors():
    _, (rp,) = read(mf.fixture("wsfed-rp.xml"))
    assert rp.entity_types() == ["wsfed_rp"]
    role = rp.role_for("wsfed_rp")
    assert role.wsfed_service_url == "https://rp.partner.example/wsfed/"
    assert role.wsfed_signout_url == "https://rp.partner.example/wsfed/signout-cleanup"
    assert role.token_types == ["urn:oasis:names:tc:SAML:2.0:assertion"]
    assert [c.use for c in role.certificates] == ["signing"]  # WS-Fed keys sign, whatever `use` says
    _, (ip,) = read(mf.fixture("wsfed-ip.xml"))
    assert ip.entity_types() == ["wsfed_ip"]
    assert ip.role_for("wsfed_ip").wsfed_service_url == "https://sts.partner.example/adfs/ls/"


def test_an_entity_with_several_roles_lists_each_type():
    document = (
        f'<md:EntityDescriptor xmlns:md="{mf.MD}" entityID="https://both.example.org/">'
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol urn:oasis:names:tc:SAML:1.1:protocol">'
        f'<md:SingleSignOnService Binding="{REDIRECT}" Location="https://both.example.org/sso"/></md:IDPSSODescriptor>'
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'<md:AssertionConsumerService Binding="{POST}" Location="https://both.example.org/acs" index="0"/></md:SPSSODescriptor>'
        "</md:EntityDescriptor>"
    ).encode()
    _, (entity,) = read(document)
    assert entity.entity_types() == ["saml2_idp", "saml2_sp", "saml11_producer"]


# ---------------------------------------------------------------- aggregates


def test_nested_aggregate_inherits_validity_and_cache_duration(peers):
    outer_until, inner_until = mf.in_hours(72).replace(microsecond=0), mf.in_hours(24).replace(microsecond=0)
    inner = (
        f'<md:EntitiesDescriptor xmlns:md="{mf.MD}" Name="inner" validUntil="{inner_until:%Y-%m-%dT%H:%M:%SZ}" '
        'cacheDuration="PT2H">'.encode()
        + mf._clean(peers["idp"])
        + b"</md:EntitiesDescriptor>"
    )
    document = mf.aggregate(peers["sp"], inner, peers["p3"], valid_until=outer_until, cache_duration="P1D")
    info, entities = read(document)
    assert (info.root, info.name, info.entity_count) == ("EntitiesDescriptor", "urn:example:federation", 3)
    assert info.valid_until == outer_until and info.cache_duration == timedelta(days=1)
    by_id = {e.entity_id: e for e in entities}
    assert [e.position for e in entities] == [1, 2, 3]
    assert by_id["https://sp.example.org/sp"].valid_until == outer_until
    assert by_id["https://idp.example.org/idp"].valid_until == inner_until
    assert by_id["https://idp.example.org/idp"].cache_duration == timedelta(hours=2)
    assert by_id["https://p3.example.org/metadata"].cache_duration == timedelta(days=1)


def test_one_malformed_entity_is_reported_and_the_rest_read(peers):
    broken = mf.entity_xml("https://broken.example.org/sp").replace(b' Location="https://broken.example.org/acs"', b"")
    document = mf.aggregate(peers["sp"], broken, peers["idp"])
    info, entities = read(document)
    assert info.entity_count == 3 and info.malformed_count == 1
    assert [e.entity_id for e in entities if not e.problems] == ["https://sp.example.org/sp", "https://idp.example.org/idp"]
    bad = entities[1]
    assert bad.position == 2 and bad.problems == ["AssertionConsumerService #1 has no Location."] and not bad.importable


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ((b'entityID="https://x.example.org/sp"', b""), "The EntityDescriptor has no entityID."),
        ((b'index="0"', b'index="first"'), "AssertionConsumerService #1 has no valid index"),
        ((b'isDefault="true"', b'isDefault="yes"'), "isDefault must be true or false"),
        ((b"<ds:X509Certificate>", b"<ds:X509Certificate>!!"), "not valid base64"),
        ((b'entityID="https://x.example.org/sp"', b'entityID="https://x.example.org/sp" validUntil="tomorrow"'), "validUntil"),
    ],
)
def test_malformed_entities(change, problem, sp_cred):
    document = mf.entity_xml("https://x.example.org/sp", cert_base64=sp_cred.cert_base64).replace(*change)
    _, (entity,) = read(mf.aggregate(document))
    assert any(problem in text for text in entity.problems), entity.problems


def test_expired_entities_are_read_and_marked(peers):
    document = mf.aggregate(peers["sp"], mf.entity_xml("https://old.example.org/sp", valid_until=mf.in_hours(-1)))
    _, (fresh, old) = read(document)
    assert not fresh.expired() and old.expired()


def test_entity_data_survives_json(peers):
    _, (sp,) = read(peers["sp"])
    copy = EntityData.from_json(sp.to_json())
    assert copy == sp
    assert copy.role_for("saml2_sp").certificates[0].fingerprint == sp.role_for("saml2_sp").certificates[0].fingerprint


def test_durations():
    assert parse_duration("PT6H") == timedelta(hours=6)
    assert parse_duration("P1DT30M") == timedelta(days=1, minutes=30)
    assert parse_duration("P1Y") == timedelta(days=365)
    for bad in ("6 hours", "P", "PT", "-PT1H"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# ---------------------------------------------------------------- hostile and broken input


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (mf.fixture("not-xml.txt"), "not well-formed XML"),
        (b"", "empty"),
        (mf.fixture("billion-laughs.xml"), "DTD or an entity declaration"),
        (mf.fixture("xxe.xml"), "DTD or an entity declaration"),
        (mf.fixture("xxe-utf16.xml"), "DTD or an entity declaration"),
        (mf.fixture("wrong-root.xml"), "The root element is {urn:oasis:names:tc:SAML:2.0:protocol}Response"),
        (b"<html><body>metadata?</body></html>", "The root element is html"),
        (mf.entity_xml("https://x.example.org/sp")[:-30], "not well-formed XML"),
    ],
)
def test_bad_documents_are_refused_with_a_clear_message(document, message):
    assert message in refused(document)


def test_size_cap_is_enforced_while_reading(peers):
    document = mf.aggregate(*[mf.entity_xml(f"https://sp{i}.example.org/sp") for i in range(200)])
    assert len(document) > 64 * 1024
    message = refused(document, max_bytes=64 * 1024)
    assert message == "The metadata is larger than the limit of 64 KB."


def test_expired_document_is_refused(peers):
    assert "expired on" in refused(mf.aggregate(peers["sp"], valid_until=mf.in_hours(-2)))
    expired_single = peers["sp"].replace(
        b'entityID="', f'validUntil="{mf.in_hours(-2):%Y-%m-%dT%H:%M:%SZ}" entityID="'.encode(), 1
    )
    assert "(validUntil)" in refused(expired_single)


def test_unsigned_metadata_needs_explicit_permission(peers, fed):
    assert refused(peers["sp"], trust=TrustAnchor("fed", [fed.certificate]), allow_unsigned=False).startswith(
        "The metadata is not signed. Import it only from a source you trust"
    )
    assert refused(mf.aggregate(peers["sp"]), trust=TrustAnchor("fed", [fed.certificate]), allow_unsigned=False).startswith(
        "The metadata is not signed (its EntitiesDescriptor does not start with a ds:Signature)."
    )
    with pytest.raises(MetadataError, match="Choose a trust anchor"):
        read_metadata(io.BytesIO(peers["sp"]), lambda e: None)
    info, _ = read(mf.aggregate(peers["sp"]))
    assert not info.signed and not info.verified


# ---------------------------------------------------------------- signatures


def _signers(peers, fed):
    entities = (peers["sp"], peers["idp"], peers["p3"])
    plain = mf.aggregate(*entities)
    return {
        "core": mf.core_sign(plain, fed),
        "pysaml2": mf.pysaml2_signed_aggregate(peers["directory"], fed, *entities),
        "python3-saml": mf.python3saml_sign(plain, fed),
    }


def _core_verdict(document, certificate):
    """What signing.verify says about the whole document (the reference verifier)."""
    try:
        root = parse_xml(document, max_bytes=50 * 1024 * 1024)
        verify(root, root, [certificate])
        return "ok"
    except SAMLError as exc:
        return str(exc)


def _stream_verdict(document, certificate):
    try:
        info, _ = read(document, trust=TrustAnchor("fed", [certificate]), allow_unsigned=False)
    except MetadataError as exc:
        return exc.message
    assert info.verified
    return "ok"


@pytest.mark.parametrize("signer", ["core", "pysaml2", "python3-saml"])
def test_signed_aggregates_from_three_signers_verify_while_streaming(signer, peers, fed):
    document = _signers(peers, fed)[signer]
    assert _core_verdict(document, fed.certificate) == "ok"
    info, entities = read(document, trust=TrustAnchor("fed", [fed.certificate]), allow_unsigned=False)
    assert info.signed and info.verified and info.verified_with == fed.certificate.subject.rfc4514_string()
    assert [e.entity_id for e in entities] == [
        "https://sp.example.org/sp",
        "https://idp.example.org/idp",
        "https://p3.example.org/metadata",
    ]


def _tamper(document, pattern, replacement):
    changed = re.sub(pattern, replacement, document, count=1, flags=re.S)
    assert changed != document, pattern
    return changed


TAMPERING = {
    "endpoint URL changed": (rb"https://sp\.example\.org/acs/post", b"https://evil.example.org/acs/post"),
    "whitespace between entities": (rb"(</(?:md:|ns0:)?EntityDescriptor>)(\s*)(<)", rb"\1\2 \3"),
    "entity inserted": (
        rb"(</(?:md:|ns0:)?EntitiesDescriptor>\s*)$",
        b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://evil.example.org/"/>\\1',
    ),
    "root Name changed": (rb'Name="urn:example:[a-z0-9-]*federation"', b'Name="urn:example:evil"'),
    "entity removed": (
        rb"<(md:|ns0:)?EntityDescriptor[^>]*entityID=\"https://idp\.example\.org/idp\".*?</\1?EntityDescriptor>",
        b"",
    ),
}


@pytest.mark.parametrize("signer", ["core", "pysaml2", "python3-saml"])
@pytest.mark.parametrize("tampering", sorted(TAMPERING))
def test_tampered_aggregates_are_refused_by_both_verifiers(signer, tampering, peers, fed):
    document = _tamper(_signers(peers, fed)[signer], *TAMPERING[tampering])
    core = _core_verdict(document, fed.certificate)
    streaming = _stream_verdict(document, fed.certificate)
    assert core != "ok" and streaming != "ok", (core, streaming)
    assert streaming.startswith("The metadata signature is not valid") or "Unexpected content" in streaming, streaming


@pytest.mark.parametrize("signer", ["core", "pysaml2", "python3-saml"])
def test_comments_do_not_count_for_either_verifier(signer, peers, fed):
    document = _tamper(_signers(peers, fed)[signer], rb"(</(?:md:|ns0:)?EntityDescriptor>)", rb"\1<!-- a comment -->")
    assert _core_verdict(document, fed.certificate) == "ok" and _stream_verdict(document, fed.certificate) == "ok"


def test_untrusted_signer_is_refused(peers, fed):
    document = _signers(peers, fed)["core"]
    other = make_credential("rsa", "someone else")
    message = _stream_verdict(document, other.certificate)
    assert message == (
        "The metadata signature is not valid: signature invalid for every trusted certificate "
        "(the certificate in KeyInfo is not one of them)."
    )
    assert _core_verdict(document, other.certificate) != "ok"


def test_signature_must_be_first_and_the_id_unique(peers, fed):
    document = _signers(peers, fed)["core"]
    root = etree.fromstring(document)
    signature = root[0]
    root.remove(signature)
    root.append(signature)
    moved = etree.tostring(root)
    assert _stream_verdict(moved, fed.certificate).startswith(
        "The metadata is not signed (its EntitiesDescriptor does not start with a ds:Signature)."
    )
    assert refused(moved, trust=TrustAnchor("fed", [fed.certificate]), allow_unsigned=True) == (
        "The metadata signature must be the first element of the EntitiesDescriptor."
    )
    # Wrapping: a second element carrying the signed ID.
    twin = _tamper(document, rb'(<md:EntityDescriptor xmlns:md="[^"]*" )', rb'\1ID="federation-1" ')
    assert "is used by more than one element" in _stream_verdict(twin, fed.certificate)
    assert "more than one element" in _core_verdict(twin, fed.certificate)


def test_sha1_and_foreign_transforms_are_refused(peers, fed):
    document = _signers(peers, fed)["core"]
    sha1 = document.replace(
        b"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", b"http://www.w3.org/2000/09/xmldsig#rsa-sha1", 1
    )
    assert _stream_verdict(sha1, fed.certificate) == "The metadata signature is not valid: algorithm rsa-sha1 not allowed."
    xslt = document.replace(
        b'http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>',
        b'http://www.w3.org/TR/1999/REC-xslt-19991116"/></ds:Transforms>',
        1,
    )
    assert _stream_verdict(xslt, fed.certificate) == "The metadata signature is not valid: transform xslt not allowed."


def test_ca_trust_anchor_checks_the_signing_certificate_chain(peers):
    ca = make_ca("Federation Root CA")
    key = new_key("rsa")
    signer = Credential(key, ca.issue(key.public_key(), name("metadata signer", "Federation"), days=30))
    document = mf.core_sign(mf.aggregate(peers["sp"]), signer)
    info, _ = read(document, trust=TrustAnchor("fed-ca", cas=[ca.certificate]), allow_unsigned=False)
    assert info.verified and "metadata signer" in info.verified_with
    other_ca = make_ca("Other CA")
    with pytest.raises(MetadataError, match="not trusted through the CA 'fed-ca': No trusted CA issued this certificate"):
        read(document, trust=TrustAnchor("fed-ca", cas=[other_ca.certificate]), allow_unsigned=False)
    # The CA's own certificate is not the signer's: pinning it does not verify the signature.
    assert _stream_verdict(document, ca.certificate).startswith("The metadata signature is not valid")
    # A single EntityDescriptor goes through signing.verify with the same anchor rules.
    single = mf.core_sign(peers["sp"], signer)
    info, _ = read(single, trust=TrustAnchor("fed-ca", cas=[ca.certificate]), allow_unsigned=False)
    assert info.verified and info.root == "EntityDescriptor"


def test_single_entity_signature_uses_signing_verify(peers, fed):
    document = mf.core_sign(peers["idp"], fed)
    info, (idp,) = read(document, trust=TrustAnchor("fed", [fed.certificate]), allow_unsigned=False)
    assert info.verified and idp.entity_id == "https://idp.example.org/idp"
    bad = document.replace(b"https://idp.example.org/sso/post", b"https://evil.example.org/sso/post")
    message = _stream_verdict(bad, fed.certificate)
    assert message == "The metadata signature is not valid: signed content was modified after signing (digest mismatch)."


NAMESPACE_LAYOUTS = {
    "default namespace root, prefixed entities": (
        f'<EntitiesDescriptor xmlns="{mf.MD}" xmlns:x="urn:example:ext" Name="n" ID="agg">\n'
        f'  <Extensions><x:Info a="1 &amp; 2" b="tab&#9;cr&#13;nl&#10;">text &lt; &gt; &amp; &#13; done</x:Info></Extensions>\n'
        f'  <md:EntityDescriptor xmlns:md="{mf.MD}" entityID="https://a.example.org/">'
        f'<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'<AssertionConsumerService Binding="{POST}" Location="https://a.example.org/acs" index="0"/>'
        f"</md:SPSSODescriptor></md:EntityDescriptor>\n"
        f'  <EntitiesDescriptor Name="inner"><EntityDescriptor entityID="https://b.example.org/"><x:Unknown xmlns=""><plain/></x:Unknown>'
        f'<IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'<SingleSignOnService Binding="{REDIRECT}" Location="https://b.example.org/sso"/></IDPSSODescriptor>'
        f"</EntityDescriptor></EntitiesDescriptor>\n</EntitiesDescriptor>"
    ),
    "prefixed root, default-namespace entities, redeclared prefixes": (
        f'<m:EntitiesDescriptor xmlns:m="{mf.MD}" xmlns:md="urn:example:not-metadata" ID="agg">'
        f'<m:EntitiesDescriptor xmlns:m="{mf.MD}" xmlns:z="urn:example:z" z:attr="v">\r\n'
        f'<EntityDescriptor xmlns="{mf.MD}" xmlns:m="urn:example:shadow" entityID="https://c.example.org/" m:flag="1">'
        f'<SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'<AssertionConsumerService Binding="{POST}" Location="https://c.example.org/acs" index="3"/>'
        f"</SPSSODescriptor></EntityDescriptor></m:EntitiesDescriptor>  </m:EntitiesDescriptor>"
    ),
}


@pytest.mark.parametrize("layout", sorted(NAMESPACE_LAYOUTS))
def test_streaming_canonical_form_matches_libxml2_on_tricky_namespaces(layout, fed):
    """The pieces the streaming verifier digests add up to libxml2's canonical form of the whole
    document: a signature made over the whole tree verifies while streaming, and any change fails."""
    document = mf.core_sign(NAMESPACE_LAYOUTS[layout].encode(), fed)
    assert _core_verdict(document, fed.certificate) == "ok"
    assert _stream_verdict(document, fed.certificate) == "ok"
    changed = document.replace(b'index="', b'index="1', 1) if b'index="0"' in document else document.replace(b'v"', b'w"', 1)
    assert _stream_verdict(changed, fed.certificate) != "ok"


def test_replay_accepts_the_same_document_and_refuses_a_changed_one(peers, fed):
    document = _signers(peers, fed)["pysaml2"]
    info, first = read(document, trust=TrustAnchor("fed", [fed.certificate]), allow_unsigned=False)
    again = []
    replayed = read_metadata(io.BytesIO(document), again.append, replay=info)
    assert [e.entity_id for e in again] == [e.entity_id for e in first] and replayed.verified
    changed = document.replace(b"https://idp.example.org/sso/post", b"https://evil.example.org/sso/post")
    with pytest.raises(MetadataError, match="changed between its verification and the import"):
        read_metadata(io.BytesIO(changed), lambda e: None, replay=info)


def test_certificate_problems():
    _key, old = self_signed("old.example.org", expires_in=timedelta(days=-3))
    expired = CertificateData("signing", base64.b64encode(old.public_bytes(serialization.Encoding.DER)).decode())
    assert expired.problem().startswith("expired on ") and expired.issued_to == "old.example.org"
    broken = CertificateData("signing", "AAAA")
    assert broken.problem() == "not a valid X.509 certificate" and broken.issued_to == "?"


def test_ecdsa_signed_aggregate(peers, idp_cred):
    document = mf.core_sign(mf.aggregate(peers["sp"], peers["p3"]), idp_cred)  # an EC P-256 key
    assert b"ecdsa-sha256" in document
    assert _core_verdict(document, idp_cred.certificate) == "ok" and _stream_verdict(document, idp_cred.certificate) == "ok"
    tampered = document.replace(b"https://p3.example.org/acs", b"https://evil.example.org/acs")
    assert _stream_verdict(tampered, idp_cred.certificate).endswith("(digest mismatch).")


def test_inclusive_namespace_prefix_list_from_xmlsec1(tmp_path, fed):
    """xmlsec1 signs with an InclusiveNamespaces PrefixList: the xs prefix (used only inside an
    attribute value) is then part of what is digested, on every piece of the streaming digest."""
    body = b"".join(
        mf.entity_xml(f"https://sp{n}.example.org/sp").replace(
            b"<md:SPSSODescriptor",
            b'<md:Extensions><mdattr:EntityAttributes xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute">'
            b'<saml:Attribute xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Name="http://macedir.org/entity-category">'
            b'<saml:AttributeValue xsi:type="xs:string">http://refeds.org/category/research-and-scholarship</saml:AttributeValue>'
            b"</saml:Attribute></mdattr:EntityAttributes></md:Extensions><md:SPSSODescriptor",
        )
        for n in range(3)
    )
    document = mf.xmlsec1_signed_aggregate(tmp_path, fed, body)
    assert b'PrefixList="xs"' in document
    assert _core_verdict(document, fed.certificate) == "ok" and _stream_verdict(document, fed.certificate) == "ok"
    # Declaring xs differently on the root changes the canonical form of every piece: refused.
    changed = document.replace(b'xmlns:xs="http://www.w3.org/2001/XMLSchema"', b'xmlns:xs="urn:example:other"', 1)
    assert _core_verdict(changed, fed.certificate) != "ok" and _stream_verdict(changed, fed.certificate) != "ok"
