"""Interoperability with pysaml2 (an independent SAML implementation that signs, verifies and
encrypts with the xmlsec1 tool), both ways."""

import base64
from urllib.parse import parse_qs

import pytest
from saml2 import BINDING_HTTP_POST
from saml2.sigver import CryptoBackendXmlSec1, RSACrypto, verify_redirect_signature
from saml2.sigver import SignatureError as Pysaml2SignatureError

from federation.saml import constants as C
from federation.saml.bindings import deflate_encode, inflate_decode
from federation.saml.encryption import decrypt
from federation.saml.errors import DecryptionError, SignatureError
from federation.saml.signing import allowed_signature_algorithms, sign, sign_query, verify, verify_query
from federation.saml.xml import children, is_element, parse_xml, to_bytes

from . import messages, peers
from .test_interop_python3saml import signed_response
from .test_redirect import RELAY_STATE

NAME_ID = f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID"


def pysaml2_consumes(tmp_path, response_xml, sp, idp):
    """Hand a POSTed response to a pysaml2 SP that sent AuthnRequest `_request-1`."""
    client = peers.pysaml2_sp(tmp_path, sp, idp)
    encoded = base64.b64encode(response_xml).decode()
    return client.parse_authn_request_response(encoded, BINDING_HTTP_POST, outstanding={"_request-1": "/"})


# --- Our messages, pysaml2 consumes --------------------------------------------------------------


def test_pysaml2_sp_accepts_our_signed_response(tmp_path, idp_rsa, sp_rsa):
    response = pysaml2_consumes(tmp_path, signed_response(idp_rsa), sp_rsa, idp_rsa)
    assert response.name_id.text == "alice"
    assert response.ava["groups"] == ["admins", "staff"]


def test_pysaml2_sp_rejects_our_response_when_tampered(tmp_path, idp_rsa, sp_rsa):
    """Control for the test above."""
    tampered = signed_response(idp_rsa, sign_response=False).replace(b">alice</saml:NameID>", b">admin</saml:NameID>")
    with pytest.raises(Pysaml2SignatureError):
        pysaml2_consumes(tmp_path, tampered, sp_rsa, idp_rsa)


@pytest.mark.parametrize("algorithm", [C.AES128_CBC, C.AES256_CBC, C.AES128_GCM, C.AES256_GCM])
def test_pysaml2_sp_decrypts_our_encrypted_assertion(algorithm, tmp_path, idp_rsa, sp_rsa):
    xml = signed_response(idp_rsa, encrypt_for=sp_rsa, algorithm=algorithm)
    assert b"EncryptedAssertion" in xml
    response = pysaml2_consumes(tmp_path, xml, sp_rsa, idp_rsa)
    assert response.name_id.text == "alice"


def test_xmlsec1_tool_verifies_our_ecdsa_signature(tmp_path, idp_ec):
    assertion = messages.assertion(assertion_id="_ec-assertion")
    sign(assertion, idp_ec.key, idp_ec.certificate, algorithm=C.ECDSA_SHA384, digest=C.SHA384)
    _, cert_file = idp_ec.write(tmp_path, "idp-ec")
    backend = CryptoBackendXmlSec1(peers.XMLSEC1)
    node = f"{C.NS_SAML}:Assertion"
    assert backend.validate_signature(to_bytes(assertion), cert_file, "pem", node, "_ec-assertion")
    with pytest.raises(Pysaml2SignatureError):
        backend.validate_signature(to_bytes(assertion).replace(b">alice<", b">eve<"), cert_file, "pem", node, "_ec-assertion")


def test_pysaml2_verifies_our_redirect_query_signature(sp_rsa):
    query = sign_query(
        [("SAMLRequest", deflate_encode(to_bytes(messages.authn_request()))), ("RelayState", RELAY_STATE)], sp_rsa.key
    )
    received = {name: values[0] for name, values in parse_qs(query).items()}
    assert verify_redirect_signature(received, RSACrypto(None), cert=sp_rsa.cert_base64)
    received["RelayState"] = "https://evil.example.net/"
    assert not verify_redirect_signature(received, RSACrypto(None), cert=sp_rsa.cert_base64)


# --- pysaml2's messages, we consume --------------------------------------------------------------


def test_pysaml2_idp_response_verifies_with_ours(tmp_path, idp_rsa, sp_rsa):
    server = peers.pysaml2_idp(tmp_path, idp_rsa, sp_rsa)
    root = parse_xml(peers.pysaml2_authn_response(server, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256))
    verify(root, root, [idp_rsa.certificate])
    assertion = verify(root, children(root, C.NS_SAML, "Assertion")[0], [idp_rsa.certificate])
    assert assertion.findtext(NAME_ID) == "alice"


def test_pysaml2_default_rsa_sha1_needs_the_partnership_to_allow_sha1(tmp_path, idp_rsa, sp_rsa):
    server = peers.pysaml2_idp(tmp_path, idp_rsa, sp_rsa)
    root = parse_xml(peers.pysaml2_authn_response(server))
    with pytest.raises(SignatureError, match="algorithm rsa-sha1 not allowed"):
        verify(root, root, [idp_rsa.certificate])
    verify(root, root, [idp_rsa.certificate], allowed_signature_algorithms(sha1=True))


def test_pysaml2_idp_encrypted_assertion_3des(tmp_path, idp_rsa, sp_rsa):
    """pysaml2's IdP encrypts with 3DES by default: refused unless the partnership allows it."""
    server = peers.pysaml2_idp(tmp_path, idp_rsa, sp_rsa)
    text = peers.pysaml2_authn_response(
        server,
        sign_alg=C.RSA_SHA256,
        digest_alg=C.SHA256,
        encrypt_assertion=True,
        encrypt_cert_assertion=sp_rsa.cert_pem.decode(),
    )
    root = parse_xml(text)
    encrypted = children(root, C.NS_SAML, "EncryptedAssertion")[0]
    with pytest.raises(DecryptionError, match="algorithm tripledes-cbc not allowed"):
        decrypt(encrypted, sp_rsa.key)
    assertion = decrypt(encrypted, sp_rsa.key, C.DEFAULT_ENCRYPTION_ALGORITHMS | {C.TRIPLEDES_CBC})
    assert verify(assertion, assertion, [idp_rsa.certificate]).findtext(NAME_ID) == "alice"


def test_pysaml2_encrypted_fixtures_decrypt_and_verify(fixture_bytes, committed):
    sp, idp = committed["sp-rsa"], committed["idp-rsa"]
    root = parse_xml(fixture_bytes("peers/pysaml2-assertion-encrypted-aes256-gcm.xml"))
    assertion = decrypt(children(root, C.NS_SAML, "EncryptedAssertion")[0], sp.key)
    assert verify(assertion, assertion, [idp.certificate]).findtext(NAME_ID) == "alice"
    root = parse_xml(fixture_bytes("peers/pysaml2-response-encrypted-3des.xml"))
    verify(root, root, [idp.certificate])
    assertion = decrypt(
        children(root, C.NS_SAML, "EncryptedAssertion")[0], sp.key, C.DEFAULT_ENCRYPTION_ALGORITHMS | {C.TRIPLEDES_CBC}
    )
    assert verify(assertion, assertion, [idp.certificate]).findtext(NAME_ID) == "alice"


def test_pysaml2_sp_redirect_authn_request_verifies_with_ours(tmp_path, sp_rsa, idp_rsa):
    client = peers.pysaml2_sp(tmp_path, sp_rsa, idp_rsa)
    request_id, info = client.prepare_for_authenticate(
        entityid=messages.IDP_ENTITY_ID, relay_state=RELAY_STATE, sign=True, sigalg=C.RSA_SHA256
    )
    verified = verify_query(peers.query_of(dict(info["headers"])["Location"]), [sp_rsa.certificate])
    assert verified.relay_state == RELAY_STATE
    request = parse_xml(inflate_decode(verified.message))
    assert is_element(request, C.NS_SAMLP, "AuthnRequest") and request.get("ID") == request_id


def test_pysaml2_redirect_fixture_verifies(fixture_bytes, committed):
    query = fixture_bytes("peers/pysaml2-authn-request-redirect.txt").decode().strip()
    verified = verify_query(query, [committed["sp-rsa"].certificate])
    assert verified.relay_state == RELAY_STATE
    with pytest.raises(SignatureError, match="signature invalid for every trusted certificate"):
        verify_query(query, [committed["idp-rsa"].certificate])
