"""Exported metadata against independent SAML implementations: pysaml2 (MetadataStore, signature
check with the xmlsec1 binary, a pysaml2 SP that sends an AuthnRequest to our IdP, a pysaml2 IdP
that encrypts an assertion to our SP's published certificate) and python3-saml (IdP metadata
parser, metadata signature check, SP metadata validation, an AuthnRequest built from our metadata).
Every document is also validated against the committed XSDs, and read back with our own parser and
verifier (round trip)."""

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils

with warnings.catch_warnings():
    # pysaml2 7.5.5 still imports CFB from its old place in cryptography.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_ARTIFACT, BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
    from saml2.attribute_converter import ac_factory
    from saml2.client import Saml2Client
    from saml2.config import IdPConfig, SPConfig
    from saml2.mdstore import MetaDataFile, MetadataStore
    from saml2.metadata import create_metadata_string
    from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
    from saml2.server import Server
    from saml2.sigver import SignatureError as Pysaml2SignatureError
    from saml2.sigver import security_context

from entities import metadata_export as me
from entities.models import EntityType
from federation import runtime_paths
from federation.saml import constants as c
from federation.saml import encryption, signing
from federation.saml.bindings import inflate_decode
from federation.saml.errors import DecryptionError
from federation.saml.keys import certificate_base64, certificate_pem
from federation.saml.xml import parse_xml
from tests.test_metadata_export import (
    BASES,
    NS,
    export,
    local_entity,
    local_idp,
    one,
    rsa_key_pair,
    validate,
)

XMLSEC1 = "/usr/bin/xmlsec1"
SP_ENTITY_ID = "https://sp.partner.example/sp"
SP_ACS_URL = "https://sp.partner.example/sp/acs"
IDP_BASE = BASES[EntityType.SAML2_IDP]
SP_BASE = BASES[EntityType.SAML2_SP]

pytestmark = pytest.mark.django_db


def at(base, path):
    return runtime_paths.join(base, path)


def write(directory, name, data):
    path = Path(directory) / name
    path.write_bytes(data)
    return str(path)


def key_files(directory, entry, name):
    """A keystore key pair as the key and certificate files pysaml2 reads."""
    key = entry.private_key_object().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return write(directory, f"{name}.key", key), write(directory, f"{name}.crt", certificate_pem(entry.certificate()))


def pysaml2_config(config_class=SPConfig, **values):
    config = config_class()
    config.load({"entityid": SP_ENTITY_ID, "xmlsec_binary": XMLSEC1, "crypto_backend": "xmlsec1", **values})
    return config


def certs_read_by_pysaml2(store, entity_id, descriptor, use):
    """The certificates pysaml2 found for (descriptor, use), as the bare base64 metadata carries."""
    return ["".join(body.split()) for _name, body in store.certs(entity_id, descriptor, use)]


@pytest.fixture
def idp_keys():
    return rsa_key_pair("idp-signing"), rsa_key_pair("idp-signing-next"), rsa_key_pair("idp-decryption")


@pytest.fixture
def signed_idp(idp_keys):
    """Our local IdP with a rollover key and a decryption key, exported signed (RSA-SHA256, 30 days)."""
    signing_entry, _next, _decryption = idp_keys
    idp = local_idp(next_signing_key="idp-signing-next", decryption_key="idp-decryption")
    result = export(idp, sign_with=signing_entry, valid_days=30)
    validate(result.xml)
    return idp, result


# ---------------------------------------------------------------- pysaml2


def test_pysaml2_checks_the_signature_and_reads_back_our_endpoints_and_keys(tmp_path, idp_keys, signed_idp):
    signing_entry, next_entry, decryption_entry = idp_keys
    idp, result = signed_idp
    metadata_file = write(tmp_path, "idp.xml", result.xml)
    cert_file = write(tmp_path, "idp-signing.crt", certificate_pem(signing_entry.certificate()))
    config = pysaml2_config()

    checked = MetaDataFile(ac_factory(), metadata_file, cert=cert_file, security=security_context(config))
    assert checked.load() is True  # pysaml2 verified the signature with xmlsec1 against our certificate
    assert idp.entity_id in checked

    store = MetadataStore(ac_factory(), config)
    store.load("local", metadata_file)
    sso = at(IDP_BASE, runtime_paths.SAML2_SSO)
    assert [s["location"] for s in store.single_sign_on_service(idp.entity_id, BINDING_HTTP_REDIRECT)] == [sso]
    assert [s["location"] for s in store.single_sign_on_service(idp.entity_id, BINDING_HTTP_POST)] == [sso]
    assert [s["location"] for s in store.single_logout_service(idp.entity_id, BINDING_SOAP, "idpsso")] == [
        at(IDP_BASE, runtime_paths.SAML2_SLO_SOAP)
    ]
    assert [s["location"] for s in store.artifact_resolution_service(idp.entity_id, BINDING_SOAP, "idpsso")] == [
        at(IDP_BASE, runtime_paths.SAML2_ARTIFACT_RESOLUTION)
    ]
    # Rollover: both signing certificates reach the partner, the current one first.
    assert certs_read_by_pysaml2(store, idp.entity_id, "idpsso", "signing") == [
        certificate_base64(signing_entry.certificate()),
        certificate_base64(next_entry.certificate()),
    ]
    assert certs_read_by_pysaml2(store, idp.entity_id, "idpsso", "encryption") == [
        certificate_base64(decryption_entry.certificate())
    ]


def test_pysaml2_refuses_a_tampered_document_and_a_wrong_certificate(tmp_path, idp_keys, signed_idp):
    signing_entry, next_entry, _decryption = idp_keys
    _idp, result = signed_idp
    security = security_context(pysaml2_config())
    good_cert = write(tmp_path, "good.crt", certificate_pem(signing_entry.certificate()))
    tampered = write(tmp_path, "tampered.xml", result.xml.replace(b"saml2sso", b"saml2ssX"))
    with pytest.raises(Pysaml2SignatureError):
        MetaDataFile(ac_factory(), tampered, cert=good_cert, security=security).load()
    wrong_cert = write(tmp_path, "wrong.crt", certificate_pem(next_entry.certificate()))
    original = write(tmp_path, "idp.xml", result.xml)
    with pytest.raises(Pysaml2SignatureError):
        MetaDataFile(ac_factory(), original, cert=wrong_cert, security=security).load()


def test_pysaml2_honours_valid_until(tmp_path, idp_keys):
    signing_entry, _next, _decryption = idp_keys
    idp = local_idp()
    old = me.export_entity_metadata(
        idp, me.ExportOptions(valid_days=1, sign_with=signing_entry), now=datetime.now(UTC) - timedelta(days=2)
    )
    store = MetadataStore(ac_factory(), pysaml2_config())
    store.load("local", write(tmp_path, "old.xml", old.xml))
    assert idp.entity_id not in store.keys()  # expired: pysaml2 drops it
    fresh = export(idp, valid_days=1, sign_with=signing_entry)
    store.load("local", write(tmp_path, "fresh.xml", fresh.xml))
    assert idp.entity_id in store.keys()


def test_round_trip_pysaml2_sp_sends_an_authn_request_to_our_exported_idp(tmp_path, idp_keys, signed_idp):
    """A pysaml2 SP configured only from our exported (signed) metadata sends its AuthnRequest to
    our SSO URL; the SP's own pysaml2-generated metadata validates against the same XSDs; and we
    read our document back with our hardened parser and verify it with our verifier."""
    signing_entry, _next, _decryption = idp_keys
    idp, result = signed_idp
    sp_key, sp_cert = key_files(tmp_path, rsa_key_pair("partner-sp"), "partner-sp")
    config = pysaml2_config(
        key_file=sp_key,
        cert_file=sp_cert,
        metadata={"local": [write(tmp_path, "idp.xml", result.xml)]},
        service={
            "sp": {
                "endpoints": {"assertion_consumer_service": [(SP_ACS_URL, BINDING_HTTP_POST)]},
                "authn_requests_signed": False,
                "want_assertions_signed": True,
            }
        },
    )
    client = Saml2Client(config=config)
    _request_id, info = client.prepare_for_authenticate(entityid=idp.entity_id, binding=BINDING_HTTP_REDIRECT)
    location = dict(info["headers"])["Location"]
    assert location.startswith(at(IDP_BASE, runtime_paths.SAML2_SSO) + "?SAMLRequest=")
    request = parse_xml(inflate_decode(parse_qs(urlsplit(location).query)["SAMLRequest"][0]))
    assert request.get("Destination") == at(IDP_BASE, runtime_paths.SAML2_SSO)
    assert one(request, "saml:Issuer").text == SP_ENTITY_ID

    sp_metadata = create_metadata_string(None, config=config, valid=24)
    sp_root = validate(etree.fromstring(sp_metadata))
    assert sp_root.get("entityID") == SP_ENTITY_ID

    ours = parse_xml(result.xml)
    verified = signing.verify(ours, ours, [signing_entry.certificate()])
    assert verified.get("entityID") == idp.entity_id
    assert [e.get("Location") for e in verified.findall("md:IDPSSODescriptor/md:SingleSignOnService", NS)] == [
        at(IDP_BASE, runtime_paths.SAML2_SSO)
    ] * 2


def test_pysaml2_idp_encrypts_to_the_certificate_our_sp_publishes(tmp_path):
    """Our exported SP metadata in a pysaml2 IdP: it finds our ACS, and the assertion it encrypts
    to the certificate we published is decrypted with our SP's decryption key."""
    rsa_key_pair("sp-signing")
    decryption_entry = rsa_key_pair("sp-decryption")
    sp = local_entity(EntityType.SAML2_SP, "sp1", signing_key="sp-signing", decryption_key="sp-decryption")
    result = export(sp, sign_with=sp.signing_key)
    validate(result.xml)
    idp_key, idp_cert = key_files(tmp_path, rsa_key_pair("partner-idp"), "partner-idp")
    config = pysaml2_config(
        IdPConfig,
        entityid="https://idp.partner.example/idp",
        key_file=idp_key,
        cert_file=idp_cert,
        metadata={"local": [write(tmp_path, "sp.xml", result.xml)]},
        service={
            "idp": {
                "endpoints": {"single_sign_on_service": [("https://idp.partner.example/sso", BINDING_HTTP_REDIRECT)]},
                "policy": {"default": {"lifetime": {"minutes": 5}}},
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
            }
        },
        allow_unknown_attributes=True,
    )
    server = Server(config=config)
    acs = at(SP_BASE, runtime_paths.SAML2_ASSERTION_CONSUMER)
    assert [s["location"] for s in server.metadata.assertion_consumer_service(sp.entity_id, BINDING_HTTP_POST)] == [acs]
    assert [s["location"] for s in server.metadata.assertion_consumer_service(sp.entity_id, BINDING_HTTP_ARTIFACT)] == [acs]
    assert certs_read_by_pysaml2(server.metadata, sp.entity_id, "spsso", "encryption") == [
        certificate_base64(decryption_entry.certificate())
    ]
    response = str(
        server.create_authn_response(
            identity={"mail": ["alice@example.org"]},
            in_response_to=None,
            destination=acs,
            sp_entity_id=sp.entity_id,
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text="alice"),
            userid="alice",
            authn={"class_ref": c.AC_PASSWORD_PROTECTED_TRANSPORT},
            sign_assertion=True,
            encrypt_assertion=True,
            encrypt_assertion_self_contained=True,
        )
    )
    root = parse_xml(response)
    encrypted = one(root, "saml:EncryptedAssertion/xenc:EncryptedData")
    # pysaml2 always encrypts with 3DES-CBC (its pre_encryption_part default), whatever
    # EncryptionMethod the metadata lists; our decrypt takes 3DES only when allowed, as a
    # partnership with such a partner would allow it.
    assert one(encrypted, "xenc:EncryptionMethod").get("Algorithm") == c.TRIPLEDES_CBC
    with pytest.raises(DecryptionError, match="tripledes-cbc not allowed"):
        encryption.decrypt(encrypted, decryption_entry.private_key_object())
    allowed = c.DEFAULT_ENCRYPTION_ALGORITHMS | {c.TRIPLEDES_CBC}
    assertion = encryption.decrypt(encrypted, decryption_entry.private_key_object(), allowed)
    assert etree.QName(assertion).localname == "Assertion"
    assert one(assertion, "saml:Subject/saml:NameID").text == "alice"


def test_pysaml2_reads_saml11_documents_as_not_saml2():
    """pysaml2 parses our SAML 1.1 producer metadata without error and, correctly, finds no SAML 2.0
    role in it: the protocol URI is SAML 1.1."""
    rsa_key_pair("producer-signing")
    producer = local_entity(EntityType.SAML11_PRODUCER, "producer1", signing_key="producer-signing")
    result = export(producer)
    store = MetadataStore(ac_factory(), pysaml2_config())
    store.load("inline", result.xml.decode())
    assert producer.entity_id not in store.keys()
    root = validate(result.xml)
    assert one(root, "md:IDPSSODescriptor").get("protocolSupportEnumeration") == c.PROTOCOL_SAML11


# ---------------------------------------------------------------- python3-saml


def test_python3saml_parser_reads_back_our_idp(idp_keys, signed_idp):
    signing_entry, next_entry, decryption_entry = idp_keys
    idp, result = signed_idp
    xml = result.xml.decode()
    for binding in (c.BINDING_HTTP_REDIRECT, c.BINDING_HTTP_POST):
        data = OneLogin_Saml2_IdPMetadataParser.parse(xml, required_sso_binding=binding, required_slo_binding=binding)
        settings = data["idp"]
        assert settings["entityId"] == idp.entity_id
        assert settings["singleSignOnService"] == {"url": at(IDP_BASE, runtime_paths.SAML2_SSO), "binding": binding}
        assert settings["singleLogoutService"] == {"url": at(IDP_BASE, runtime_paths.SAML2_SLO), "binding": binding}
        assert settings["x509certMulti"] == {
            "signing": [certificate_base64(signing_entry.certificate()), certificate_base64(next_entry.certificate())],
            "encryption": [certificate_base64(decryption_entry.certificate())],
        }
        assert data["sp"]["NameIDFormat"] == c.NAMEID_PERSISTENT  # our first NameID format
        assert "security" not in data  # WantAuthnRequestsSigned not stated


def test_python3saml_reads_want_authn_requests_signed_when_stated(idp_keys):
    idp = local_idp()
    result = export(idp, overrides={"want_authn_requests_signed": True})
    data = OneLogin_Saml2_IdPMetadataParser.parse(result.xml.decode())
    assert data["security"] == {"authnRequestsSigned": True}
    assert data["idp"]["x509cert"] == certificate_base64(idp_keys[0].certificate())


def test_python3saml_verifies_the_metadata_signature(idp_keys, signed_idp):
    signing_entry, next_entry, _decryption = idp_keys
    _idp, result = signed_idp
    assert OneLogin_Saml2_Utils.validate_metadata_sign(
        result.xml.decode(), cert=certificate_pem(signing_entry.certificate()).decode()
    )
    assert not OneLogin_Saml2_Utils.validate_metadata_sign(
        result.xml.decode(), cert=certificate_pem(next_entry.certificate()).decode()
    )


def test_python3saml_sp_sends_an_authn_request_to_our_exported_idp(tmp_path, signed_idp):
    idp, result = signed_idp
    sp_entry = rsa_key_pair("python3saml-sp")
    sp_cert = certificate_base64(sp_entry.certificate())
    idp_settings = OneLogin_Saml2_IdPMetadataParser.parse(result.xml.decode())
    settings = OneLogin_Saml2_IdPMetadataParser.merge_settings(
        {
            "strict": True,
            "sp": {
                "entityId": SP_ENTITY_ID,
                "assertionConsumerService": {"url": SP_ACS_URL, "binding": c.BINDING_HTTP_POST},
                "x509cert": sp_cert,
            },
        },
        idp_settings,
    )
    auth = OneLogin_Saml2_Auth(
        {"https": "on", "http_host": "sp.partner.example", "script_name": "/sp/login", "get_data": {}, "post_data": {}},
        old_settings=OneLogin_Saml2_Settings(settings),
    )
    location = auth.login()
    assert location.startswith(at(IDP_BASE, runtime_paths.SAML2_SSO) + "?SAMLRequest=")
    request = parse_xml(inflate_decode(parse_qs(urlsplit(location).query)["SAMLRequest"][0]))
    assert request.get("Destination") == at(IDP_BASE, runtime_paths.SAML2_SSO)


def test_python3saml_validates_our_sp_metadata_and_sees_expiry():
    rsa_key_pair("sp-signing")
    sp = local_entity(EntityType.SAML2_SP, "sp1", signing_key="sp-signing")
    settings = OneLogin_Saml2_Settings(
        {"sp": {"entityId": "urn:x", "assertionConsumerService": {"url": SP_ACS_URL}}}, sp_validation_only=True
    )
    current = export(sp, valid_days=1, cache_duration=timedelta(hours=6), sign_with=sp.signing_key)
    assert settings.validate_metadata(current.xml.decode()) == []
    expired = me.export_entity_metadata(sp, me.ExportOptions(valid_days=1), now=datetime.now(UTC) - timedelta(days=2))
    assert settings.validate_metadata(expired.xml.decode()) == ["expired_xml"]


# ---------------------------------------------------------------- every entity type: schema + our verifier


@pytest.mark.parametrize("entity_type", list(EntityType))
def test_every_local_entity_type_exports_schema_valid_signed_metadata_we_can_verify(entity_type):
    entry = rsa_key_pair("signer")
    rsa_key_pair("next")
    entity = local_entity(entity_type, signing_key="signer", next_signing_key="next")
    result = export(entity, sign_with=entry, valid_days=7, cache_duration=timedelta(hours=1))
    root = parse_xml(result.xml)
    validate(root)
    verified = signing.verify(root, root, [entry.certificate()])
    assert verified.get("entityID") == entity.entity_id
    signing_certs = verified.findall(".//md:KeyDescriptor[@use='signing']/ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    assert {node.text for node in signing_certs} == {
        certificate_base64(entity.signing_key.certificate()),
        certificate_base64(entity.next_signing_key.certificate()),
    }
