"""Interoperability with python3-saml (OneLogin), both ways: XML signatures, Redirect-binding
query signatures, and encryption."""

import pytest
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from federation.saml import constants as C
from federation.saml.bindings import deflate_encode, inflate_decode
from federation.saml.encryption import decrypt, encrypt_assertion
from federation.saml.errors import SignatureError
from federation.saml.signing import sign, sign_query, verify, verify_query
from federation.saml.xml import children, is_element, parse_xml, to_bytes

from . import messages, peers
from .test_redirect import RELAY_STATE


def signed_response(idp, sign_assertion=True, sign_response=True, encrypt_for=None, algorithm=C.AES256_GCM, **kwargs):
    root = messages.response(in_response_to="_request-1", **kwargs)
    assertion = children(root, C.NS_SAML, "Assertion")[0]
    if sign_assertion:
        sign(assertion, idp.key, idp.certificate)
    if encrypt_for is not None:
        encrypt_assertion(assertion, encrypt_for.certificate, algorithm)
    if sign_response:
        sign(root, idp.key, idp.certificate)
    return to_bytes(root)


def python3saml_accepts(response_xml, sp, idp):
    settings = peers.python3saml_settings(sp, idp.cert_base64)
    response = OneLogin_Saml2_Response(settings, peers.b64(response_xml))
    request = peers.python3saml_request("/sp/acs", post_data={"SAMLResponse": peers.b64(response_xml)})
    valid = response.is_valid(request, request_id="_request-1", raise_exceptions=False)
    return valid, response


# --- Our signatures, their verification --------------------------------------------------------


def test_our_signed_response_passes_full_python3saml_validation(idp_rsa, sp_rsa):
    valid, response = python3saml_accepts(signed_response(idp_rsa), sp_rsa, idp_rsa)
    assert valid, response.get_error()
    assert response.get_nameid() == "alice"
    assert response.get_attributes()["groups"] == ["admins", "staff"]


def test_python3saml_rejects_our_response_when_tampered(idp_rsa, sp_rsa):
    """Control for the test above: the peer's validation can fail."""
    tampered = signed_response(idp_rsa).replace(b">alice</saml:NameID>", b">admin</saml:NameID>")
    valid, response = python3saml_accepts(tampered, sp_rsa, idp_rsa)
    assert not valid
    assert "Signature validation failed" in response.get_error()


def test_our_ecdsa_signed_assertion_validates_with_python3saml(idp_ec):
    assertion = messages.assertion()
    sign(assertion, idp_ec.key, idp_ec.certificate, algorithm=C.ECDSA_SHA256)
    xml = to_bytes(assertion)
    assert OneLogin_Saml2_Utils.validate_sign(xml, cert=idp_ec.cert_pem.decode(), xpath="/saml:Assertion/ds:Signature")
    assert not OneLogin_Saml2_Utils.validate_sign(
        xml.replace(b">alice<", b">eve<"), cert=idp_ec.cert_pem.decode(), xpath="/saml:Assertion/ds:Signature"
    )


def test_our_signed_metadata_validates_with_python3saml(idp_rsa):
    root = parse_xml(messages.idp_metadata_xml(idp_rsa.cert_base64))
    sign(root, idp_rsa.key, idp_rsa.certificate)
    assert OneLogin_Saml2_Utils.validate_metadata_sign(to_bytes(root), cert=idp_rsa.cert_pem.decode())


# --- Their signatures, our verification --------------------------------------------------------


def test_python3saml_signed_metadata_fixture_verifies(fixture_bytes, committed):
    root = parse_xml(fixture_bytes("peers/python3saml-metadata-signed.xml"))
    verified = verify(root, root, [committed["sp-rsa"].certificate])
    assert verified.get("entityID") == messages.SP_ENTITY_ID


def test_python3saml_add_sign_verifies_with_ours(idp_rsa, attacker_rsa):
    xml = OneLogin_Saml2_Utils.add_sign(messages.assertion_xml(), idp_rsa.key_pem.decode(), idp_rsa.cert_pem.decode())
    root = parse_xml(xml)
    verify(root, root, [idp_rsa.certificate])
    with pytest.raises(SignatureError, match="signature invalid for every trusted certificate"):
        verify(root, root, [attacker_rsa.certificate])


# --- Redirect binding, both ways ---------------------------------------------------------------


def test_our_signed_logout_request_is_accepted_by_python3saml(idp_rsa, sp_rsa):
    query = sign_query(
        [("SAMLRequest", deflate_encode(to_bytes(messages.logout_request()))), ("RelayState", RELAY_STATE)],
        idp_rsa.key,
        C.RSA_SHA256,
    )
    auth = peers.python3saml_auth(peers.python3saml_settings(sp_rsa, idp_rsa.cert_base64), query_string=query)
    redirect = auth.process_slo(keep_local_session=True)
    assert auth.get_errors() == [], auth.get_last_error_reason()
    assert redirect.startswith(messages.IDP_SLO_URL)


def test_python3saml_rejects_our_query_with_a_tampered_relay_state(idp_rsa, sp_rsa):
    query = sign_query(
        [("SAMLRequest", deflate_encode(to_bytes(messages.logout_request()))), ("RelayState", RELAY_STATE)], idp_rsa.key
    )
    tampered = query.replace("RelayState=https%3A%2F%2Fsp", "RelayState=https%3A%2F%2Fevil")
    auth = peers.python3saml_auth(peers.python3saml_settings(sp_rsa, idp_rsa.cert_base64), query_string=tampered)
    auth.process_slo(keep_local_session=True)
    assert "invalid_logout_request_signature" in auth.get_errors()


def test_python3saml_signed_login_redirect_verifies_with_ours(sp_rsa, idp_rsa):
    auth = peers.python3saml_auth(peers.python3saml_settings(sp_rsa, idp_rsa.cert_base64), path="/sp/login")
    url = auth.login(return_to=RELAY_STATE)
    verified = verify_query(peers.query_of(url), [sp_rsa.certificate])
    assert verified.relay_state == RELAY_STATE
    request = parse_xml(inflate_decode(verified.message))
    assert is_element(request, C.NS_SAMLP, "AuthnRequest")
    assert request.get("ID") == auth.get_last_request_id()


def test_python3saml_signed_logout_redirect_verifies_with_ours(sp_rsa, idp_rsa):
    auth = peers.python3saml_auth(peers.python3saml_settings(sp_rsa, idp_rsa.cert_base64), path="/sp/logout")
    url = auth.logout(return_to=RELAY_STATE, name_id="alice", name_id_format=C.NAMEID_PERSISTENT)
    verified = verify_query(peers.query_of(url), [sp_rsa.certificate])
    assert is_element(parse_xml(inflate_decode(verified.message)), C.NS_SAMLP, "LogoutRequest")


def test_python3saml_redirect_fixture_verifies(fixture_bytes, committed):
    verified = verify_query(
        fixture_bytes("peers/python3saml-authn-request-redirect.txt").decode().strip(), [committed["sp-rsa"].certificate]
    )
    assert verified.relay_state == RELAY_STATE and verified.algorithm == C.RSA_SHA256


# --- Encryption, both ways ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [C.AES128_CBC, C.AES256_CBC, C.AES128_GCM, C.AES256_GCM])
def test_our_encrypted_assertion_passes_full_python3saml_validation(algorithm, idp_rsa, sp_rsa):
    xml = signed_response(idp_rsa, encrypt_for=sp_rsa, algorithm=algorithm)
    assert b"EncryptedAssertion" in xml and b">alice<" not in xml
    valid, response = python3saml_accepts(xml, sp_rsa, idp_rsa)
    assert valid, response.get_error()
    assert response.get_nameid() == "alice"


def test_python3saml_decrypts_rsa_1_5_key_transport(sp_rsa):
    wrapper = encrypt_assertion(messages.assertion(), sp_rsa.certificate, C.AES128_CBC, C.RSA_1_5)
    decrypted = OneLogin_Saml2_Utils.decrypt_element(wrapper[0], sp_rsa.key_pem.decode())
    assert is_element(decrypted, C.NS_SAML, "Assertion")


def test_python3saml_encrypted_name_id_decrypts_with_ours(sp_rsa):
    text = OneLogin_Saml2_Utils.generate_name_id(
        "alice", messages.SP_ENTITY_ID, C.NAMEID_PERSISTENT, cert=sp_rsa.cert_pem.decode()
    )
    subject = parse_xml(f'<saml:Subject xmlns:saml="{C.NS_SAML}">{text}</saml:Subject>')
    name_id = decrypt(children(subject, C.NS_SAML, "EncryptedID")[0], sp_rsa.key)
    assert is_element(name_id, C.NS_SAML, "NameID") and name_id.text == "alice"
    assert name_id.get("Format") == C.NAMEID_PERSISTENT


def test_python3saml_encrypted_name_id_fixture_decrypts(fixture_bytes, committed):
    subject = parse_xml(fixture_bytes("peers/python3saml-encrypted-nameid.xml"))
    assert decrypt(children(subject, C.NS_SAML, "EncryptedID")[0], committed["sp-rsa"].key).text == "alice"
