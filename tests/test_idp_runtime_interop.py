"""Interop of the IdP runtime with real SPs: pysaml2 with signed responses, encrypted assertions and NameIDs, AllowCreate
persistent NameIDs; python3-saml (Redirect→POST, signed response, encrypted assertion); and the seed 004 scenario
(an APM console SP imported from its metadata, principalName and multi-valued groups, signed response, 60 s skew)."""

import warnings

import pytest
from cryptography.utils import CryptographyDeprecationWarning
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from entities import metadata_import
from entities.models import EntityType, Location
from federation import runtime_paths
from federation.directories import EMBEDDED_NAME
from federation.models import PersistentIdentifier, UserAttribute
from federation.saml import constants as C
from partnerships import services as partnership_services
from tests import idp_runtime_support as support
from tests.saml.peers import XMLSEC1

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.client import Saml2Client
    from saml2.config import SPConfig
    from saml2.metadata import entity_descriptor


@pytest.fixture(autouse=True)
def fresh_caches():
    support.clear_runtime_caches()


def redirect_sso(client, sp, world, **kwargs):
    request_id, info = sp.prepare_for_authenticate(
        entityid=world.idp_entity_id, binding=BINDING_HTTP_REDIRECT, sigalg=C.RSA_SHA256, digest_alg=C.SHA256, **kwargs
    )
    start = client.get(support.local_part(support.redirect_binding_url(info)), secure=True)
    if start.status_code == 302:
        start = support.sign_in(client, start)
    return request_id, support.posted(start)[1]


def test_pysaml2_signed_response_and_encrypted_assertion(client, make_partnership, django_user_model, tmp_path):
    world = support.build_world(
        make_partnership,
        django_user_model,
        settings={"signature": {"sign_post": "both", "encrypt_assertion": True, "encryption_certificate": "sp-verify"}},
    )
    sp = support.pysaml2_sp(world, tmp_path, want_response_signed=True)
    request_id, fields = redirect_sso(client, sp, world)
    assert b"EncryptedAssertion" in __import__("base64").b64decode(fields["SAMLResponse"])
    parsed = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert parsed.assertion.subject.name_id.text == "alice@example.test"
    assert {a.name for a in parsed.assertion.attribute_statement[0].attribute} >= {support.MAIL, "groups"}


def test_pysaml2_encrypted_name_id(client, make_partnership, django_user_model, tmp_path):
    world = support.build_world(
        make_partnership,
        django_user_model,
        settings={
            "signature": {
                "encrypt_name_id": True,
                "encryption_certificate": "sp-verify",
                "encryption_block_algorithm": "aes128-cbc",
            }
        },
    )
    sp = support.pysaml2_sp(world, tmp_path)
    request_id, fields = redirect_sso(client, sp, world)
    assert b"EncryptedID" in __import__("base64").b64decode(fields["SAMLResponse"])
    parsed = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert parsed.name_id.text == "alice@example.test"


def test_pysaml2_encrypted_name_id_inside_an_encrypted_assertion(client, make_partnership, django_user_model, tmp_path):
    """Both boxes ticked: the NameID is an EncryptedID inside the (signed, then encrypted) assertion."""
    from federation.saml import encryption
    from federation.saml.xml import parse_xml

    world = support.build_world(
        make_partnership,
        django_user_model,
        settings={
            "signature": {
                "sign_post": "assertion",
                "encrypt_assertion": True,
                "encrypt_name_id": True,
                "encryption_certificate": "sp-verify",
            }
        },
    )
    sp = support.pysaml2_sp(world, tmp_path)
    request_id, fields = redirect_sso(client, sp, world)
    response = parse_xml(__import__("base64").b64decode(fields["SAMLResponse"]))
    encrypted = response.find(f"{{{C.NS_SAML}}}EncryptedAssertion")
    assert encrypted is not None and response.find(f"{{{C.NS_SAML}}}Assertion") is None
    assertion = encryption.decrypt(encrypted, world.sp.key)
    assert assertion.find(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}EncryptedID") is not None
    assert assertion.find(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID") is None
    parsed = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert parsed.name_id.text == "alice@example.test"


def test_allow_create_persistent_name_id_is_stable(client, make_partnership, django_user_model, tmp_path):
    world = support.build_world(
        make_partnership,
        django_user_model,
        settings={
            "assertion": {
                "name_id_format": C.NAMEID_PERSISTENT,
                "name_id_type": "user",
                "name_id_value": "employeeNumber",  # alice has none: the IdP makes one up (AllowCreate)
                "allow_create": True,
            }
        },
    )
    sp = support.pysaml2_sp(world, tmp_path, name_id_format=C.NAMEID_PERSISTENT)
    request_id, fields = redirect_sso(client, sp, world, allow_create="true")
    first = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    name_id = first.assertion.subject.name_id
    assert name_id.format == C.NAMEID_PERSISTENT
    assert name_id.name_qualifier == world.idp_entity_id and name_id.sp_name_qualifier == world.sp_entity_id
    stored = PersistentIdentifier.objects.get()
    assert stored.value == name_id.text and stored.user_key == f"{EMBEDDED_NAME}:alice"

    # The second SSO (even without AllowCreate) gets the same value; nothing new is stored.
    request_id, fields = redirect_sso(client, sp, world, allow_create="false")
    second = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert second.assertion.subject.name_id.text == name_id.text
    assert PersistentIdentifier.objects.count() == 1


def test_persistent_name_id_without_allow_create_is_refused(client, make_partnership, django_user_model, tmp_path):
    world = support.build_world(
        make_partnership,
        django_user_model,
        settings={"assertion": {"name_id_format": C.NAMEID_PERSISTENT, "name_id_value": "employeeNumber", "allow_create": True}},
    )
    sp = support.pysaml2_sp(world, tmp_path, name_id_format=C.NAMEID_PERSISTENT)
    request_id, fields = redirect_sso(client, sp, world, allow_create="false")
    from saml2.response import StatusError

    with pytest.raises(StatusError, match="InvalidNameIDPolicy|No identifier"):
        sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert not PersistentIdentifier.objects.exists()


def test_transient_name_id_changes_every_time(client, make_partnership, django_user_model, tmp_path):
    world = support.build_world(
        make_partnership, django_user_model, settings={"assertion": {"name_id_format": C.NAMEID_TRANSIENT}}
    )
    sp = support.pysaml2_sp(world, tmp_path, name_id_format=C.NAMEID_TRANSIENT)
    values = []
    for _ in range(2):
        request_id, fields = redirect_sso(client, sp, world)
        values.append(sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"}).name_id.text)
    assert values[0] != values[1]


# --- python3-saml ----------------------------------------------------------------------------------------------


def python3saml_settings(world, *, want_messages_signed=False, want_assertions_encrypted=False):
    sp = world.sp
    return OneLogin_Saml2_Settings(
        {
            "strict": True,
            "debug": False,
            "sp": {
                "entityId": world.sp_entity_id,
                "assertionConsumerService": {"url": support.SP_ACS_POST, "binding": C.BINDING_HTTP_POST},
                "NameIDFormat": C.NAMEID_EMAIL,
                "x509cert": sp.cert_base64,
                "privateKey": sp.key_pem.decode(),
            },
            "idp": {
                "entityId": world.idp_entity_id,
                "singleSignOnService": {"url": world.sso_url, "binding": C.BINDING_HTTP_REDIRECT},
                "x509cert": world.idp_cert_base64,
            },
            "security": {
                "authnRequestsSigned": True,
                "wantMessagesSigned": want_messages_signed,
                "wantAssertionsSigned": True,
                "wantAssertionsEncrypted": want_assertions_encrypted,
                "signatureAlgorithm": C.RSA_SHA256,
                "digestAlgorithm": C.SHA256,
                "rejectDeprecatedAlgorithm": True,
            },
        }
    )


def python3saml_request(post_data=None):
    return {
        "https": "on",
        "http_host": "sp.example.test",
        "script_name": "/sp/acs/post",
        "get_data": {},
        "post_data": post_data or {},
    }


@pytest.mark.parametrize(
    "signature_settings,encrypted",
    [
        ({"sign_post": "both"}, False),
        ({"sign_post": "assertion", "encrypt_assertion": True, "encryption_certificate": "sp-verify"}, True),
    ],
    ids=["signed-response", "encrypted-assertion"],
)
def test_python3saml_redirect_then_post(client, make_partnership, django_user_model, signature_settings, encrypted):
    # python3-saml asks for PasswordProtectedTransport (RequestedAuthnContext) by default; a predefined-class
    # partnership answers it only with "Ignore RequestedAuthnContext" (reference ch15-20 B5).
    world = support.build_world(
        make_partnership,
        django_user_model,
        settings={"signature": signature_settings, "sso_slo": {"ignore_requested_authn_context": True}},
    )
    settings = python3saml_settings(world, want_messages_signed=not encrypted, want_assertions_encrypted=encrypted)
    auth = OneLogin_Saml2_Auth(python3saml_request(), old_settings=settings)
    url = auth.login(return_to="https://sp.example.test/app")
    request_id = auth.get_last_request_id()
    start = client.get(support.local_part(url), secure=True)
    acs, fields = support.posted(support.sign_in(client, start))
    assert acs == support.SP_ACS_POST and fields["RelayState"] == "https://sp.example.test/app"

    consumer = OneLogin_Saml2_Auth(python3saml_request({"SAMLResponse": fields["SAMLResponse"]}), old_settings=settings)
    consumer.process_response(request_id=request_id)
    assert consumer.get_errors() == [], consumer.get_last_error_reason()
    assert consumer.is_authenticated()
    assert consumer.get_nameid() == "alice@example.test"
    assert consumer.get_attributes()["groups"] == ["staff", "admins"]
    assert consumer.get_session_index()


def test_python3saml_refuses_a_tampered_response(client, make_partnership, django_user_model):
    """Control for the test above: python3-saml's validation can fail on what we send."""
    import base64

    world = support.build_world(
        make_partnership,
        django_user_model,
        settings={"signature": {"sign_post": "both"}, "sso_slo": {"ignore_requested_authn_context": True}},
    )
    settings = python3saml_settings(world, want_messages_signed=True)
    auth = OneLogin_Saml2_Auth(python3saml_request(), old_settings=settings)
    url = auth.login()
    start = client.get(support.local_part(url), secure=True)
    _, fields = support.posted(support.sign_in(client, start))
    forged = base64.b64encode(base64.b64decode(fields["SAMLResponse"]).replace(b"alice@example.test", b"admin@example.test"))
    consumer = OneLogin_Saml2_Auth(python3saml_request({"SAMLResponse": forged.decode()}), old_settings=settings)
    consumer.process_response(request_id=auth.get_last_request_id())
    assert not consumer.is_authenticated() and consumer.get_errors()


# --- seed 004: an APM console as the SP ------------------------------------------------------------------------

APM_ENTITY_ID = "com.ca.apm.webview.serviceprovider"
APM_ACS = "https://apm.example.test:8443/ApmServer/saml/SSO"


def apm_sp(tmp_path, world_like):
    """pysaml2 standing in for the APM console: its entity ID, POST ACS, 60 s clock skew, wants a signed response."""
    sp = support.sp_credential()
    key_file, cert_file = sp.write(tmp_path, "apm")
    config = SPConfig()
    values = {
        "entityid": APM_ENTITY_ID,
        "xmlsec_binary": XMLSEC1,
        "crypto_backend": "xmlsec1",
        "key_file": key_file,
        "cert_file": cert_file,
        "service": {
            "sp": {
                "endpoints": {"assertion_consumer_service": [(APM_ACS, BINDING_HTTP_POST)]},
                "want_response_signed": True,
                "want_assertions_signed": False,
                "authn_requests_signed": False,
                "name_id_format": [C.NAMEID_UNSPECIFIED],
            }
        },
        "accepted_time_diff": 60,
        "allow_unknown_attributes": True,
    }
    if world_like is not None:
        values["metadata"] = {"inline": [support.idp_metadata(world_like, want_signed_requests=False)]}
    config.load(values)
    return Saml2Client(config=config)


def test_seed_004_apm_console_sp(client, make_partnership, django_user_model, tmp_path):
    from entities import services as keystore
    from tests.partnership_fixtures import entity

    # The SP's metadata file (saml-sp-metadata.xml), imported into the IdP as the seed describes.
    metadata = str(entity_descriptor(apm_sp(tmp_path, None).config)).encode()
    (tmp_path / "saml-sp-metadata.xml").write_bytes(metadata)
    remote, _plan, _info = metadata_import.import_entity(
        metadata_import.Source(path=str(tmp_path / "saml-sp-metadata.xml")), name="apm-webview", allow_unsigned=True
    )
    assert (remote.entity_id, remote.entity_type, remote.location) == (APM_ENTITY_ID, EntityType.SAML2_SP, Location.REMOTE)

    keystore.generate_key_pair("idp-apm-signing", "rsa2048", "CN=idp.example.test", 365, [])
    local = entity(
        "idp-apm",
        Location.LOCAL,
        EntityType.SAML2_IDP,
        signing_key="idp-apm-signing",
        base_url=support.IDP_BASE,
        entity_id=support.IDP_BASE + "/idp",
    )
    partnership = make_partnership(
        "apm-webview",
        "saml2_idp_sp",
        local,
        remote,
        settings={
            "configure": {"skew_seconds": 60},
            "assertion": {
                "name_id_format": C.NAMEID_UNSPECIFIED,
                "name_id_type": "user",
                "name_id_value": "username",
                "attributes": [
                    {
                        "name": "principalName",
                        "retrieval": "sso",
                        "name_format": C.ATTRNAME_BASIC,
                        "value_type": "user",
                        "value": "username",
                    },
                    {
                        "name": "groups",
                        "retrieval": "sso",
                        "name_format": C.ATTRNAME_BASIC,
                        "value_type": "user",
                        "value": "groups",
                    },
                ],
            },
            "signature": {"sign_post": "both"},
        },
    )
    partnership_services.activate(partnership)
    user = support.make_alice(django_user_model)
    UserAttribute.objects.create(user=user, name="groups", value="APM Admins")

    world_like = support.World(
        partnership, local, remote, local.entity_id, support.IDP_BASE, APM_ENTITY_ID, None, local.signing_key.certificate_pem
    )
    sp = apm_sp(tmp_path, world_like)
    # The console posts its AuthnRequest (introscope.saml.request.binding=POST) to …/affwebservices/public/saml2sso.
    request_id, info = sp.prepare_for_authenticate(entityid=world_like.idp_entity_id, binding=BINDING_HTTP_POST, sign=False)
    action, fields = support.form_of(type("R", (), {"content": info["data"].encode()})())
    assert action == support.IDP_BASE + "/affwebservices/public/saml2sso" == support.IDP_BASE + runtime_paths.SAML2_SSO
    start = client.post(support.local_part(action), fields, secure=True)
    acs, posted = support.posted(support.sign_in(client, start))
    assert acs == APM_ACS
    parsed = sp.parse_authn_request_response(posted["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert parsed.response.signature is not None  # the response itself is signed
    values = {a.name: [v.text for v in a.attribute_value] for a in parsed.assertion.attribute_statement[0].attribute}
    assert values["principalName"] == ["alice"]
    assert values["groups"] == ["staff", "admins", "APM Admins"]
    conditions = parsed.assertion.conditions
    from federation.saml.common import parse_instant

    window = parse_instant(conditions.not_on_or_after) - parse_instant(conditions.not_before)
    assert window.total_seconds() == 60 + 60 + 60  # skew 60 before, validity 60 + skew 60 after
