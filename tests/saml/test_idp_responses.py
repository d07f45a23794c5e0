"""Responses built by the IdP protocol core (federation.saml.assertions), consumed by the real
peers: pysaml2's SP (Saml2Client.parse_authn_request_response, xmlsec1 tool) and python3-saml's
OneLogin_Saml2_Response.is_valid in strict mode. Both for an InResponseTo taken from an
AuthnRequest the peer created, and for IdP-initiated (unsolicited) responses."""

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.response import OneLogin_Saml2_Response
from saml2 import BINDING_HTTP_POST
from saml2.response import StatusNoPassive
from saml2.sigver import SignatureError as Pysaml2SignatureError

from federation.saml import constants as C
from federation.saml.assertions import (
    AssertionBuildError,
    Attribute,
    EncryptionSettings,
    NameID,
    SignatureOption,
    build_error_response,
    build_response,
)
from federation.saml.common import SigningKey, read_status
from federation.saml.encryption import decrypt
from federation.saml.errors import EncryptionError
from federation.saml.signing import verify
from federation.saml.xml import children, parse_xml

from . import idp_peers, messages, peers

# --- pysaml2 as SP ---------------------------------------------------------------------------


def pysaml2_request_id(client):
    """An AuthnRequest the pysaml2 SP really created; its ID is what our Response answers."""
    request_id, _ = client.create_authn_request(messages.IDP_SSO_URL, binding=BINDING_HTTP_POST)
    return request_id


def pysaml2_consume(client, xml, request_id=None):
    outstanding = {request_id: "/"} if request_id else {}
    return client.parse_authn_request_response(base64.b64encode(xml).decode(), BINDING_HTTP_POST, outstanding=outstanding)


@pytest.mark.parametrize(
    ("option", "want_response_signed", "want_assertions_signed"),
    [
        (SignatureOption.ASSERTION, False, True),
        (SignatureOption.RESPONSE, True, False),
        (SignatureOption.BOTH, True, True),
    ],
)
def test_pysaml2_sp_accepts_our_response_for_each_signing_option(
    option, want_response_signed, want_assertions_signed, tmp_path, idp_rsa, sp_rsa
):
    client = idp_peers.pysaml2_sp_client(
        tmp_path, sp_rsa, idp_rsa, want_response_signed=want_response_signed, want_assertions_signed=want_assertions_signed
    )
    request_id = pysaml2_request_id(client)
    # Response-only signing is refused on POST by the product rule, so say Artifact delivery here.
    binding = C.BINDING_HTTP_ARTIFACT if option == SignatureOption.RESPONSE else C.BINDING_HTTP_POST
    issued = build_response(idp_peers.response_settings(idp_rsa, request_id, sign=option, binding=binding))
    response = pysaml2_consume(client, issued.to_bytes(), request_id)
    assert response.in_response_to == request_id
    assert response.name_id.text == "alice-7f3a"
    assert response.name_id.format == C.NAMEID_PERSISTENT
    assert response.name_id.sp_name_qualifier == messages.SP_ENTITY_ID
    assert response.name_id.name_qualifier == messages.IDP_ENTITY_ID
    assert response.ava["mail"] == ["alice@example.org"]
    assert response.ava["groups"] == ["admins", "staff", "R&D <lab>"]
    assert response.ava["givenName"] == ["Alice"]
    assert response.session_info()["session_index"] == issued.session_index
    assert response.authn_info()[0][0] == C.AC_PASSWORD_PROTECTED_TRANSPORT


def test_pysaml2_sp_requires_the_signature_it_asked_for(tmp_path, idp_rsa, sp_rsa):
    """Control: pysaml2 does reject a response whose assertion is unsigned when it wants one."""
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa, want_assertions_signed=True)
    request_id = pysaml2_request_id(client)
    issued = build_response(idp_peers.response_settings(idp_rsa, request_id, sign="none"))
    with pytest.raises(Pysaml2SignatureError):
        pysaml2_consume(client, issued.to_bytes(), request_id)


def test_pysaml2_sp_rejects_our_response_after_tampering(tmp_path, idp_rsa, sp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    request_id = pysaml2_request_id(client)
    xml = build_response(idp_peers.response_settings(idp_rsa, request_id)).to_bytes()
    with pytest.raises(Pysaml2SignatureError):
        pysaml2_consume(client, xml.replace(b">alice-7f3a<", b">admin<"), request_id)


def test_pysaml2_sp_accepts_our_unsolicited_response(tmp_path, idp_rsa, sp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa, allow_unsolicited=True)
    issued = build_response(idp_peers.response_settings(idp_rsa, None))
    assert b"InResponseTo" not in issued.to_bytes()
    response = pysaml2_consume(client, issued.to_bytes())
    assert response.name_id.text == "alice-7f3a"
    assert response.ava["groups"] == ["admins", "staff", "R&D <lab>"]


@pytest.mark.parametrize(
    ("block", "transport"),
    [(C.AES128_CBC, C.RSA_OAEP_MGF1P), (C.AES256_CBC, C.RSA_1_5), (C.AES128_GCM, C.RSA_OAEP_MGF1P), (C.AES256_GCM, C.RSA_1_5)],
)
def test_pysaml2_sp_decrypts_our_encrypted_assertion(block, transport, tmp_path, idp_rsa, sp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    request_id = pysaml2_request_id(client)
    encryption = EncryptionSettings(sp_rsa.certificate, block, transport, encrypt_assertion=True)
    xml = build_response(idp_peers.response_settings(idp_rsa, request_id, encryption=encryption)).to_bytes()
    assert b"EncryptedAssertion" in xml and b"alice-7f3a" not in xml
    response = pysaml2_consume(client, xml, request_id)
    assert response.name_id.text == "alice-7f3a"
    assert response.ava["mail"] == ["alice@example.org"]


def test_pysaml2_sp_decrypts_our_encrypted_name_id(tmp_path, idp_rsa, sp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    request_id = pysaml2_request_id(client)
    encryption = EncryptionSettings(sp_rsa.certificate, C.AES256_CBC, encrypt_name_id=True)
    xml = build_response(idp_peers.response_settings(idp_rsa, request_id, encryption=encryption)).to_bytes()
    assert b"EncryptedID" in xml and b"alice-7f3a" not in xml
    response = pysaml2_consume(client, xml, request_id)
    assert response.name_id.text == "alice-7f3a"
    assert response.name_id.sp_name_qualifier == messages.SP_ENTITY_ID
    assert response.ava["groups"] == ["admins", "staff", "R&D <lab>"]


def test_xmlsec1_tool_decrypts_our_encrypted_attribute(tmp_path, idp_rsa, sp_rsa):
    """pysaml2's SP cannot read an EncryptedAttribute whose EncryptedKey sits in the
    EncryptedData's KeyInfo (it passes an object where it needs text: a TypeError in
    Saml2Client.parse_authn_request_response), though SAML core §2.7.3.2 allows that placement
    and python3-saml does not read EncryptedAttribute at all. So the independent decryption here
    is the xmlsec1 tool through pysaml2's crypto backend."""
    from saml2.sigver import CryptoBackendXmlSec1

    settings = idp_peers.assertion_settings(
        attributes=(
            Attribute(idp_peers.MAIL, ("alice@example.org",), C.ATTRNAME_URI, "mail", encrypt=True),
            Attribute("groups", ("admins", "staff"), C.ATTRNAME_BASIC),
        )
    )
    encryption = EncryptionSettings(sp_rsa.certificate, C.AES128_CBC)
    xml = build_response(idp_peers.response_settings(idp_rsa, encryption=encryption, assertion=settings)).to_bytes()
    assert xml.count(b"<saml:EncryptedAttribute") == 1 and b"alice@example.org" not in xml
    root = parse_xml(xml)
    assertion = verify(root, children(root, C.NS_SAML, "Assertion")[0], [idp_rsa.certificate])
    statement = children(assertion, C.NS_SAML, "AttributeStatement")[0]
    assert [attribute.get("Name") for attribute in children(statement, C.NS_SAML, "Attribute")] == ["groups"]
    encrypted = children(statement, C.NS_SAML, "EncryptedAttribute")[0]
    key_file, _ = sp_rsa.write(tmp_path, "xmlsec1-sp")
    decrypted = CryptoBackendXmlSec1(peers.XMLSEC1).decrypt(etree.tostring(encrypted).decode(), key_file)
    attribute = parse_xml(decrypted.encode()).find(f".//{{{C.NS_SAML}}}Attribute")
    assert attribute.get("Name") == idp_peers.MAIL and attribute[0].text == "alice@example.org"
    assert decrypt(encrypted, sp_rsa.key).get("FriendlyName") == "mail"


def test_pysaml2_sp_reads_our_negative_response(tmp_path, idp_rsa, sp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa, want_response_signed=True)
    request_id = pysaml2_request_id(client)
    issued = build_error_response(
        issuer=messages.IDP_ENTITY_ID,
        destination=messages.SP_ACS_URL,
        in_response_to=request_id,
        status=C.STATUS_RESPONDER,
        sub_status=C.STATUS_NO_PASSIVE,
        message="the user has no session and the SP asked for IsPassive",
        signing=SigningKey(idp_rsa.key, idp_rsa.certificate),
    )
    with pytest.raises(StatusNoPassive, match="IsPassive"):
        pysaml2_consume(client, issued.to_bytes(), request_id)


# --- python3-saml as SP ----------------------------------------------------------------------


def python3saml_validate(settings, xml, request_id):
    encoded = base64.b64encode(xml).decode()
    response = OneLogin_Saml2_Response(settings, encoded)
    request = peers.python3saml_request("/sp/acs", post_data={"SAMLResponse": encoded})
    return response.is_valid(request, request_id=request_id, raise_exceptions=False), response


def python3saml_request_id(settings):
    return OneLogin_Saml2_Authn_Request(settings).get_id()


@pytest.mark.parametrize(
    ("option", "want_messages_signed", "want_assertions_signed"),
    [(SignatureOption.RESPONSE, True, False), (SignatureOption.ASSERTION, False, True), (SignatureOption.BOTH, True, True)],
)
def test_python3saml_accepts_our_response_for_each_signing_option(
    option, want_messages_signed, want_assertions_signed, idp_rsa, sp_rsa
):
    settings = idp_peers.python3saml_sp_settings(
        sp_rsa, idp_rsa, want_messages_signed=want_messages_signed, want_assertions_signed=want_assertions_signed
    )
    request_id = python3saml_request_id(settings)
    binding = C.BINDING_HTTP_ARTIFACT if option == SignatureOption.RESPONSE else C.BINDING_HTTP_POST
    issued = build_response(idp_peers.response_settings(idp_rsa, request_id, sign=option, binding=binding))
    valid, response = python3saml_validate(settings, issued.to_bytes(), request_id)
    assert valid, response.get_error()
    assert response.get_nameid() == "alice-7f3a"
    assert response.get_nameid_spnq() == messages.SP_ENTITY_ID
    assert response.get_attributes()["groups"] == ["admins", "staff", "R&D <lab>"]
    assert response.get_session_index() == issued.session_index


def test_python3saml_rejects_a_response_signed_the_wrong_way(idp_rsa, sp_rsa):
    """Control: python3-saml wanting a signed response refuses one with only the assertion signed."""
    settings = idp_peers.python3saml_sp_settings(sp_rsa, idp_rsa, want_messages_signed=True)
    request_id = python3saml_request_id(settings)
    issued = build_response(idp_peers.response_settings(idp_rsa, request_id, sign="assertion"))
    valid, response = python3saml_validate(settings, issued.to_bytes(), request_id)
    assert not valid
    assert "not signed" in response.get_error()


def test_python3saml_rejects_an_answer_to_another_request(idp_rsa, sp_rsa):
    settings = idp_peers.python3saml_sp_settings(sp_rsa, idp_rsa)
    issued = build_response(idp_peers.response_settings(idp_rsa, "_some-other-request"))
    valid, response = python3saml_validate(settings, issued.to_bytes(), python3saml_request_id(settings))
    assert not valid and "InResponseTo" in response.get_error()


@pytest.mark.parametrize("block", [C.AES128_CBC, C.AES256_CBC, C.AES128_GCM, C.AES256_GCM])
def test_python3saml_decrypts_our_encrypted_assertion(block, idp_rsa, sp_rsa):
    settings = idp_peers.python3saml_sp_settings(sp_rsa, idp_rsa, want_assertions_encrypted=True)
    request_id = python3saml_request_id(settings)
    encryption = EncryptionSettings(sp_rsa.certificate, block, encrypt_assertion=True)
    issued = build_response(idp_peers.response_settings(idp_rsa, request_id, encryption=encryption))
    valid, response = python3saml_validate(settings, issued.to_bytes(), request_id)
    assert valid, response.get_error()
    assert response.get_nameid() == "alice-7f3a"
    assert response.get_attributes()[idp_peers.MAIL] == ["alice@example.org"]


def test_python3saml_decrypts_our_encrypted_name_id(idp_rsa, sp_rsa):
    settings = idp_peers.python3saml_sp_settings(sp_rsa, idp_rsa)
    request_id = python3saml_request_id(settings)
    encryption = EncryptionSettings(sp_rsa.certificate, C.AES128_GCM, encrypt_name_id=True)
    issued = build_response(idp_peers.response_settings(idp_rsa, request_id, encryption=encryption))
    assert b"alice-7f3a" not in issued.to_bytes()
    valid, response = python3saml_validate(settings, issued.to_bytes(), request_id)
    assert valid, response.get_error()
    assert response.get_nameid() == "alice-7f3a"


def test_python3saml_accepts_our_unsolicited_response(idp_rsa, sp_rsa):
    settings = idp_peers.python3saml_sp_settings(sp_rsa, idp_rsa, want_messages_signed=True)
    issued = build_response(idp_peers.response_settings(idp_rsa, None, sign="both"))
    valid, response = python3saml_validate(settings, issued.to_bytes(), None)
    assert valid, response.get_error()
    assert response.get_nameid() == "alice-7f3a"


# --- Our own checks of what we build ---------------------------------------------------------

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_time_window_follows_the_reference_formula(idp_rsa):
    """Issued 12:00:00, skew 30 s, validity 60 s: NotBefore 11:59:30, NotOnOrAfter 12:01:30."""
    settings = idp_peers.response_settings(
        idp_rsa,
        "_req",
        assertion=idp_peers.assertion_settings(
            "_req", validity_seconds=60, skew_seconds=30, session_not_on_or_after=NOW + timedelta(hours=8)
        ),
    )
    issued = build_response(settings, now=NOW)
    root = issued.element
    assertion = children(root, C.NS_SAML, "Assertion")[0]
    conditions = children(assertion, C.NS_SAML, "Conditions")[0]
    assert (conditions.get("NotBefore"), conditions.get("NotOnOrAfter")) == ("2026-05-01T11:59:30Z", "2026-05-01T12:01:30Z")
    data = assertion.find(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}SubjectConfirmation/{{{C.NS_SAML}}}SubjectConfirmationData")
    assert data.attrib == {"NotOnOrAfter": "2026-05-01T12:01:30Z", "Recipient": messages.SP_ACS_URL, "InResponseTo": "_req"}
    statement = children(assertion, C.NS_SAML, "AuthnStatement")[0]
    assert statement.get("SessionNotOnOrAfter") == "2026-05-01T20:00:00Z"
    assert statement.get("AuthnInstant") == "2026-05-01T12:00:00Z"
    assert issued.not_on_or_after == NOW + timedelta(seconds=90)
    assert root.get("IssueInstant") == assertion.get("IssueInstant") == "2026-05-01T12:00:00Z"
    assert not children(conditions, C.NS_SAML, "OneTimeUse")


def test_one_time_use_and_several_audiences(idp_rsa):
    settings = idp_peers.response_settings(
        idp_rsa, assertion=idp_peers.assertion_settings(one_time_use=True, audiences=("https://a.example", "https://b.example"))
    )
    assertion = children(build_response(settings).element, C.NS_SAML, "Assertion")[0]
    conditions = children(assertion, C.NS_SAML, "Conditions")[0]
    assert len(children(conditions, C.NS_SAML, "OneTimeUse")) == 1
    audiences = conditions.findall(f"{{{C.NS_SAML}}}AudienceRestriction/{{{C.NS_SAML}}}Audience")
    assert [audience.text for audience in audiences] == ["https://a.example", "https://b.example"]


def test_values_are_escaped_by_construction(idp_rsa):
    hostile = 'x"/><saml:Attribute Name="role"><saml:AttributeValue>admin</saml:AttributeValue></saml:Attribute><x a="'
    settings = idp_peers.response_settings(
        idp_rsa, assertion=idp_peers.assertion_settings(attributes=(Attribute("cn", (hostile,)),))
    )
    root = parse_xml(build_response(settings).to_bytes())
    assertion = verify(root, children(root, C.NS_SAML, "Assertion")[0], [idp_rsa.certificate])
    attributes = assertion.findall(f".//{{{C.NS_SAML}}}Attribute")
    assert [attribute.get("Name") for attribute in attributes] == ["cn"]
    assert attributes[0][0].text == hostile


def test_attribute_value_types_and_omitted_name_format(idp_rsa):
    settings = idp_peers.response_settings(
        idp_rsa,
        assertion=idp_peers.assertion_settings(
            attributes=(Attribute("objectGUID", (b"\x01\x02\xff",), None), Attribute("manager", (None,), None))
        ),
    )
    attributes = build_response(settings).element.findall(f".//{{{C.NS_SAML}}}Attribute")
    assert all(attribute.get("NameFormat") is None for attribute in attributes)
    guid, manager = (attribute[0] for attribute in attributes)
    assert guid.get(f"{{{C.NS_XSI}}}type") == "xs:base64Binary" and base64.b64decode(guid.text) == b"\x01\x02\xff"
    assert manager.get(f"{{{C.NS_XSI}}}nil") == "true"


@pytest.mark.parametrize(
    ("kind", "algorithm", "digest"),
    [
        ("rsa", C.RSA_SHA256, C.SHA256),
        ("rsa", C.RSA_SHA1, C.SHA1),
        ("rsa", C.RSA_SHA512, C.SHA512),
        ("ec", C.ECDSA_SHA256, C.SHA256),
    ],
)
def test_signature_algorithms(kind, algorithm, digest, idp_rsa, idp_ec):
    credential = idp_rsa if kind == "rsa" else idp_ec
    settings = idp_peers.response_settings(idp_rsa, sign="both")
    settings = replace(settings, signing=SigningKey(credential.key, credential.certificate, algorithm))
    root = parse_xml(build_response(settings).to_bytes())
    for element in (root, children(root, C.NS_SAML, "Assertion")[0]):
        signature = children(element, C.NS_DS, "Signature")[0]
        assert signature.find(f".//{{{C.NS_DS}}}SignatureMethod").get("Algorithm") == algorithm
        assert signature.find(f".//{{{C.NS_DS}}}DigestMethod").get("Algorithm") == digest
        verify(root, element, [credential.certificate], C.DEFAULT_SIGNATURE_ALGORITHMS | C.SHA1_SIGNATURE_ALGORITHMS)


def test_encrypted_assertion_is_signed_inside(idp_rsa, sp_rsa):
    """The assertion is signed before it is encrypted, so the SP verifies it after decrypting."""
    encryption = EncryptionSettings(sp_rsa.certificate, encrypt_assertion=True)
    root = parse_xml(build_response(idp_peers.response_settings(idp_rsa, sign="both", encryption=encryption)).to_bytes())
    verify(root, root, [idp_rsa.certificate])
    assertion = decrypt(children(root, C.NS_SAML, "EncryptedAssertion")[0], sp_rsa.key)
    verified = verify(assertion, assertion, [idp_rsa.certificate])
    assert verified.find(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID").text == "alice-7f3a"


def test_encrypted_name_id_inside_an_encrypted_assertion(idp_rsa, sp_rsa):
    """The inner EncryptedID keeps its own xmlns:xenc, so the decrypted assertion parses on its own."""
    encryption = EncryptionSettings(sp_rsa.certificate, encrypt_assertion=True, encrypt_name_id=True)
    root = parse_xml(build_response(idp_peers.response_settings(idp_rsa, encryption=encryption)).to_bytes())
    assertion = decrypt(children(root, C.NS_SAML, "EncryptedAssertion")[0], sp_rsa.key)
    subject = children(verify(assertion, assertion, [idp_rsa.certificate]), C.NS_SAML, "Subject")[0]
    assert decrypt(children(subject, C.NS_SAML, "EncryptedID")[0], sp_rsa.key).text == "alice-7f3a"


def test_schema_valid(idp_rsa, sp_rsa):
    """The Response validates against the SAML 2.0 protocol schema (python3-saml ships it)."""
    from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

    encryption = EncryptionSettings(sp_rsa.certificate, encrypt_name_id=True)
    settings = idp_peers.response_settings(idp_rsa, "_req", sign="both", encryption=encryption)
    for xml in (
        build_response(settings).to_bytes(),
        build_error_response(issuer="https://idp", destination=None, status=C.STATUS_REQUESTER).to_bytes(),
    ):
        assert not isinstance(OneLogin_Saml2_XML.validate_xml(xml, "saml-schema-protocol-2.0.xsd"), str)


def test_rules_of_the_signing_options(idp_rsa):
    with pytest.raises(AssertionBuildError, match="on the HTTP-POST binding the assertion must be signed"):
        build_response(idp_peers.response_settings(idp_rsa, sign="response"))
    settings = idp_peers.response_settings(idp_rsa)
    with pytest.raises(AssertionBuildError, match="needs a signing key"):
        build_response(replace(settings, signing=None))
    with pytest.raises(EncryptionError, match="marked for encryption but the partnership has no encryption certificate"):
        build_response(
            idp_peers.response_settings(
                idp_rsa, assertion=idp_peers.assertion_settings(attributes=(Attribute("mail", ("a@b",), encrypt=True),))
            )
        )
    with pytest.raises(AssertionBuildError, match="cannot be written"):
        build_response(
            idp_peers.response_settings(idp_rsa, assertion=idp_peers.assertion_settings(attributes=(Attribute("x", ("a\x01",)),)))
        )


def test_negative_response_carries_the_status(idp_rsa):
    issued = build_error_response(
        issuer=messages.IDP_ENTITY_ID,
        destination=messages.SP_ACS_URL,
        in_response_to="_req",
        status=C.STATUS_REQUESTER,
        sub_status=C.STATUS_NO_AUTHN_CONTEXT,
        message="the requested authentication context cannot be satisfied",
        signing=SigningKey(idp_rsa.key, idp_rsa.certificate),
    )
    root = parse_xml(issued.to_bytes())
    status = read_status(verify(root, root, [idp_rsa.certificate]))
    assert (status.code, status.sub_code) == (C.STATUS_REQUESTER, C.STATUS_NO_AUTHN_CONTEXT)
    assert status.describe() == "Requester/NoAuthnContext: the requested authentication context cannot be satisfied"
    assert not children(root, C.NS_SAML, "Assertion")
    with pytest.raises(ValueError):
        build_error_response(issuer="x", destination=None, status=C.STATUS_SUCCESS)


def test_responses_of_one_partnership_share_nothing_but_constants(idp_rsa):
    """Responses start from a cached copy of the partnership's constant part; what one response
    sets (InResponseTo, a nil value, SPProvidedID) must not show up in the next."""
    first = idp_peers.assertion_settings(
        "_req-1",
        name_id=NameID("u1", C.NAMEID_PERSISTENT, sp_provided_id="sp-1"),
        attributes=(Attribute("a", (None, b"\x00")), Attribute("b", ("x",))),
        session_not_on_or_after=NOW + timedelta(hours=1),
    )
    second = idp_peers.assertion_settings(
        None,
        name_id=NameID("u2", C.NAMEID_PERSISTENT),
        attributes=(Attribute("a", ("p", "q")), Attribute("b", ("y",))),
    )
    one = build_response(idp_peers.response_settings(idp_rsa, assertion=first, sign="none"), now=NOW).element
    two = build_response(idp_peers.response_settings(idp_rsa, assertion=second, sign="none"), now=NOW).element
    assert one.get("InResponseTo") == "_req-1" and two.get("InResponseTo") is None
    assert b"InResponseTo" not in etree.tostring(two) and b"SessionNotOnOrAfter" not in etree.tostring(two)
    name_one, name_two = (element.find(f".//{{{C.NS_SAML}}}NameID") for element in (one, two))
    assert (name_one.text, name_one.get("SPProvidedID")) == ("u1", "sp-1")
    assert (name_two.text, name_two.get("SPProvidedID")) == ("u2", None)
    values_one = one.findall(f".//{{{C.NS_SAML}}}AttributeValue")
    values_two = two.findall(f".//{{{C.NS_SAML}}}AttributeValue")
    assert values_one[0].attrib == {f"{{{C.NS_XSI}}}nil": "true"}
    assert values_one[1].get(f"{{{C.NS_XSI}}}type") == "xs:base64Binary" and values_one[1].text == "AA=="
    assert [(value.text, value.get(f"{{{C.NS_XSI}}}type")) for value in values_two] == [
        ("p", "xs:string"),
        ("q", "xs:string"),
        ("y", "xs:string"),
    ]
    assert one.get("ID") != two.get("ID") and one[2].get("ID") != two[2].get("ID")
    # The first settings again give the same XML as the first time (with the same IDs).
    fixed = idp_peers.response_settings(idp_rsa, assertion=replace(first, session_index="_s"), sign="none")
    before = etree.tostring(build_response(fixed, now=NOW, response_id="_r", assertion_id="_a").element)
    build_response(idp_peers.response_settings(idp_rsa, assertion=second, sign="none"), now=NOW)
    assert etree.tostring(build_response(fixed, now=NOW, response_id="_r", assertion_id="_a").element) == before
