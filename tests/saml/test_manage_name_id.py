"""ManageNameID messages (federation.saml.manage_name_id) against pysaml2 in both roles: our IdP and SP send
Terminate and NewID requests (signed, NameID and NewID encrypted when asked) that pysaml2's SP and IdP verify and
read, and we read what pysaml2 sends and answers. Then the time window and the refusals.

pysaml2's SOAP reader re-serialises the body with its own prefixes, which breaks any signature it did not make
itself (docs/idp-protocol-core.md §7); so pysaml2 is handed the exact bytes of the message inside our SOAP envelope
(its POST-binding reader, which verifies over the bytes it is given)."""

import base64
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.utils import CryptographyDeprecationWarning

from federation.saml import constants as C
from federation.saml.assertions import NameID
from federation.saml.common import (
    InvalidMessage,
    MessageExpired,
    SignatureRequired,
    SigningKey,
    SOAPFault,
    encode_soap,
    soap_fault,
    unwrap_soap,
)
from federation.saml.errors import SignatureError
from federation.saml.manage_name_id import (
    ManageNameIDError,
    ManageNameIDPolicy,
    ManageNameIDRequestSettings,
    build_manage_name_id_request,
    build_manage_name_id_response,
    parse_manage_name_id_request_soap,
    parse_manage_name_id_response_soap,
)
from federation.saml.xml import children, parse_xml, to_bytes

from . import idp_peers, messages, sp_peers

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_SOAP, samlp
    from saml2.pack import make_soap_enveloped_saml_thingy
    from saml2.s_utils import error_status_factory
    from saml2.saml import NameID as Pysaml2NameID

IDP_MNI_URL = "https://idp.example.org/affwebservices/public/saml2nidsoap"
SP_MNI_URL = "https://sp.example.org/sp/mni"
NAME_ID = NameID("alice-7f3a", C.NAMEID_PERSISTENT, messages.IDP_ENTITY_ID, messages.SP_ENTITY_ID)


def request_settings(**overrides):
    values = {"issuer": messages.IDP_ENTITY_ID, "destination": SP_MNI_URL, "name_id": NAME_ID}
    values.update(overrides)
    return ManageNameIDRequestSettings(**values)


def policy(partner, partner_entity_id, **overrides):
    values = {
        "partner_entity_id": partner_entity_id,
        "verification_certificates": (partner.certificate,),
        "require_signed": True,
        "service_urls": (IDP_MNI_URL, SP_MNI_URL),
    }
    values.update(overrides)
    return ManageNameIDPolicy(**values)


def as_pysaml2_post(soap_body):
    """The message inside our SOAP envelope, exactly as signed, in the form pysaml2's verifying reader takes."""
    return base64.b64encode(to_bytes(unwrap_soap(soap_body))).decode()


def pysaml2_name_id(value="alice-7f3a"):
    return Pysaml2NameID(
        format=C.NAMEID_PERSISTENT, text=value, name_qualifier=messages.IDP_ENTITY_ID, sp_name_qualifier=messages.SP_ENTITY_ID
    )


# --- Our IdP -> pysaml2's SP -----------------------------------------------------------------------------------------


def test_pysaml2_sp_verifies_our_signed_terminate_and_we_read_its_signed_answer(tmp_path, sp_rsa, idp_rsa):
    sp = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    issued = build_manage_name_id_request(request_settings())
    body = encode_soap(issued.element, signing=SigningKey(idp_rsa.key, idp_rsa.certificate))

    received = sp.parse_manage_name_id_request(as_pysaml2_post(body), BINDING_HTTP_POST)
    assert received.message.id == issued.id and received.message.terminate is not None
    assert received.message.name_id.text == "alice-7f3a"
    assert received.message.name_id.sp_name_qualifier == messages.SP_ENTITY_ID
    tampered = base64.b64encode(base64.b64decode(as_pysaml2_post(body)).replace(b"alice-7f3a", b"bob-0000")).decode()
    with pytest.raises(Exception, match="(?i)sign"):
        sp.parse_manage_name_id_request(tampered, BINDING_HTTP_POST)

    answer = sp.create_manage_name_id_response(
        received.message, [BINDING_SOAP], issuer=sp._issuer(), sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256
    )
    parsed = parse_manage_name_id_response_soap(
        make_soap_enveloped_saml_thingy(answer).encode(), policy(sp_rsa, messages.SP_ENTITY_ID), in_response_to=issued.id
    )
    assert parsed.signed and parsed.status.success and parsed.in_response_to == issued.id
    assert parsed.issuer == messages.SP_ENTITY_ID


def test_pysaml2_sp_reads_our_new_id_and_answers_unknown_principal(tmp_path, sp_rsa, idp_rsa):
    sp = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    issued = build_manage_name_id_request(request_settings(new_id="alice-new-1"))
    body = encode_soap(issued.element, signing=SigningKey(idp_rsa.key, idp_rsa.certificate))
    received = sp.parse_manage_name_id_request(as_pysaml2_post(body), BINDING_HTTP_POST)
    assert received.message.new_id.text == "alice-new-1" and received.message.terminate is None

    status = error_status_factory((C.STATUS_UNKNOWN_PRINCIPAL, "nobody has that NameID here"))  # under Responder
    answer = sp.create_manage_name_id_response(
        received.message,
        [BINDING_SOAP],
        issuer=sp._issuer(),
        status=status,
        sign=True,
        sign_alg=C.RSA_SHA256,
        digest_alg=C.SHA256,
    )
    parsed = parse_manage_name_id_response_soap(
        make_soap_enveloped_saml_thingy(answer).encode(), policy(sp_rsa, messages.SP_ENTITY_ID)
    )
    assert not parsed.status.success
    assert parsed.status.sub_code == C.STATUS_UNKNOWN_PRINCIPAL and parsed.status.message == "nobody has that NameID here"


def test_encrypted_name_id_and_new_id_decrypt_with_pysaml2s_xmlsec1_and_with_ours(tmp_path, sp_rsa, idp_rsa):
    sp = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    issued = build_manage_name_id_request(request_settings(new_id="alice-new-2", encryption_certificate=sp_rsa.certificate))
    body = encode_soap(issued.element, signing=SigningKey(idp_rsa.key, idp_rsa.certificate))
    assert b"alice-7f3a" not in body and b"alice-new-2" not in body and b"NewEncryptedID" in body

    received = sp.parse_manage_name_id_request(as_pysaml2_post(body), BINDING_HTTP_POST)  # the signature covers the ciphertext
    assert received.message.encrypted_id is not None and received.message.new_encrypted_id is not None
    inner = unwrap_soap(body)
    for wrapper, plaintext in (("EncryptedID", b"alice-7f3a"), ("NewEncryptedID", b"alice-new-2")):
        namespace = C.NS_SAML if wrapper == "EncryptedID" else C.NS_SAMLP
        decrypted = sp.sec.decrypt(to_bytes(children(inner, namespace, wrapper)[0]).decode(), key_file=sp.config.key_file)
        assert plaintext in decrypted.encode()

    parsed = parse_manage_name_id_request_soap(body, policy(idp_rsa, messages.IDP_ENTITY_ID, decryption_key=sp_rsa.key))
    assert parsed.name_id == NAME_ID and parsed.new_id == "alice-new-2" and parsed.operation == "change"
    with pytest.raises(ManageNameIDError, match="no decryption key is configured") as caught:
        parse_manage_name_id_request_soap(body, policy(idp_rsa, messages.IDP_ENTITY_ID))
    assert caught.value.request.id == issued.id  # so the endpoint can still answer it


# --- pysaml2's SP -> our IdP -----------------------------------------------------------------------------------------


def test_we_verify_pysaml2_sp_terminate_and_it_verifies_our_answer(tmp_path, sp_rsa, idp_rsa):
    sp = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    request_id, request = sp.create_manage_name_id_request(
        IDP_MNI_URL, name_id=pysaml2_name_id(), terminate=samlp.Terminate(), sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256
    )
    parsed = parse_manage_name_id_request_soap(
        make_soap_enveloped_saml_thingy(str(request)).encode(), policy(sp_rsa, messages.SP_ENTITY_ID)
    )
    assert parsed.signed and parsed.id == request_id and parsed.operation == "terminate"
    assert parsed.name_id == NAME_ID and parsed.issuer == messages.SP_ENTITY_ID and parsed.binding == C.BINDING_SOAP

    answer = build_manage_name_id_response(issuer=messages.IDP_ENTITY_ID, destination=None, in_response_to=parsed.id)
    body = encode_soap(answer.element, signing=SigningKey(idp_rsa.key, idp_rsa.certificate))
    response = sp.parse_manage_name_id_request_response(as_pysaml2_post(body), BINDING_HTTP_POST)
    assert response.response.in_response_to == request_id
    assert response.response.status.status_code.value == C.STATUS_SUCCESS


def test_we_read_pysaml2_sp_new_id(tmp_path, sp_rsa, idp_rsa):
    sp = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    _, request = sp.create_manage_name_id_request(
        IDP_MNI_URL,
        name_id=pysaml2_name_id(),
        new_id=samlp.NewID(text="sp-chosen-7"),
        sign=True,
        sign_alg=C.RSA_SHA256,
        digest_alg=C.SHA256,
    )
    parsed = parse_manage_name_id_request_soap(
        make_soap_enveloped_saml_thingy(str(request)).encode(), policy(sp_rsa, messages.SP_ENTITY_ID)
    )
    assert parsed.operation == "change" and parsed.new_id == "sp-chosen-7"


# --- Our SP <-> pysaml2's IdP ----------------------------------------------------------------------------------------


def test_pysaml2_idp_verifies_our_sp_terminate_and_sends_us_a_new_id(tmp_path, sp_rsa, idp_rsa):
    idp = sp_peers.pysaml2_idp(tmp_path, idp_rsa, sp_rsa)
    ours = build_manage_name_id_request(request_settings(issuer=messages.SP_ENTITY_ID, destination=IDP_MNI_URL))
    body = encode_soap(ours.element, signing=SigningKey(sp_rsa.key, sp_rsa.certificate))
    received = idp.parse_manage_name_id_request(as_pysaml2_post(body), BINDING_HTTP_POST)
    assert received.message.issuer.text == messages.SP_ENTITY_ID and received.message.terminate is not None
    answer = idp.create_manage_name_id_response(
        received.message, [BINDING_SOAP], issuer=idp._issuer(), sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256
    )
    parsed = parse_manage_name_id_response_soap(
        make_soap_enveloped_saml_thingy(answer).encode(), policy(idp_rsa, messages.IDP_ENTITY_ID), in_response_to=ours.id
    )
    assert parsed.signed and parsed.status.success

    # The IdP changes the identifier it issued: our SP reads the NewID and answers.
    request_id, request = idp.create_manage_name_id_request(
        SP_MNI_URL,
        name_id=pysaml2_name_id(),
        new_id=samlp.NewID(text="idp-rotated-1"),
        sign=True,
        sign_alg=C.RSA_SHA256,
        digest_alg=C.SHA256,
    )
    parsed_request = parse_manage_name_id_request_soap(
        make_soap_enveloped_saml_thingy(str(request)).encode(), policy(idp_rsa, messages.IDP_ENTITY_ID)
    )
    assert parsed_request.new_id == "idp-rotated-1" and parsed_request.issuer == messages.IDP_ENTITY_ID
    answer = build_manage_name_id_response(issuer=messages.SP_ENTITY_ID, destination=None, in_response_to=request_id)
    body = encode_soap(answer.element, signing=SigningKey(sp_rsa.key, sp_rsa.certificate))
    response = idp.parse_manage_name_id_request_response(as_pysaml2_post(body), BINDING_HTTP_POST)
    assert response.response.in_response_to == request_id


# --- Our own rules ---------------------------------------------------------------------------------------------------

NOW = datetime(2026, 5, 1, 1, 0, 0, tzinfo=UTC)


def signed_request(key, **overrides):
    issued = build_manage_name_id_request(request_settings(**overrides), now=overrides.pop("now", None) or datetime.now(UTC))
    return issued, encode_soap(issued.element, signing=SigningKey(key.key, key.certificate))


def test_time_window(idp_rsa):
    issued = build_manage_name_id_request(request_settings(), now=NOW)
    body = encode_soap(issued.element, signing=SigningKey(idp_rsa.key, idp_rsa.certificate))
    rules = policy(idp_rsa, messages.IDP_ENTITY_ID, max_age_seconds=300, skew_seconds=60)
    assert parse_manage_name_id_request_soap(body, rules, now=NOW + timedelta(seconds=359)).id == issued.id
    with pytest.raises(MessageExpired, match="the ManageNameIDRequest is too old"):
        parse_manage_name_id_request_soap(body, rules, now=NOW + timedelta(seconds=361))
    with pytest.raises(MessageExpired, match="issued in the future"):
        parse_manage_name_id_request_soap(body, rules, now=NOW - timedelta(seconds=61))


def test_signature_rules(idp_rsa, attacker_rsa):
    issued = build_manage_name_id_request(request_settings())
    unsigned = encode_soap(issued.element)
    with pytest.raises(SignatureRequired, match="requires signed ManageNameIDRequests"):
        parse_manage_name_id_request_soap(unsigned, policy(idp_rsa, messages.IDP_ENTITY_ID))
    assert (
        parse_manage_name_id_request_soap(unsigned, policy(idp_rsa, messages.IDP_ENTITY_ID, require_signed=False)).signed is False
    )
    _, forged = signed_request(attacker_rsa)
    with pytest.raises(SignatureError):
        parse_manage_name_id_request_soap(forged, policy(idp_rsa, messages.IDP_ENTITY_ID))
    _, good = signed_request(idp_rsa)
    with pytest.raises(SignatureError):
        parse_manage_name_id_request_soap(good.replace(b"alice-7f3a", b"mallory-1"), policy(idp_rsa, messages.IDP_ENTITY_ID))


def test_refusals(idp_rsa):
    rules = policy(idp_rsa, messages.IDP_ENTITY_ID, require_signed=False)
    with pytest.raises(InvalidMessage, match="not from"):
        parse_manage_name_id_request_soap(
            encode_soap(build_manage_name_id_request(request_settings()).element),
            policy(idp_rsa, "https://x.example", require_signed=False),
        )
    elsewhere = build_manage_name_id_request(request_settings(destination="https://elsewhere.example/mni"))
    with pytest.raises(InvalidMessage, match="not our Manage NameID service URL"):
        parse_manage_name_id_request_soap(encode_soap(elsewhere.element), rules)
    with pytest.raises(InvalidMessage, match="expected a ManageNameIDRequest message, got LogoutRequest"):
        parse_manage_name_id_request_soap(encode_soap(messages.logout_request()), rules)

    def edited(old, new):
        return encode_soap(parse_xml(to_bytes(build_manage_name_id_request(request_settings()).element).replace(old, new)))

    with pytest.raises(ManageNameIDError, match="exactly one of NewID, NewEncryptedID or Terminate, not 0") as caught:
        parse_manage_name_id_request_soap(edited(b"<samlp:Terminate/>", b""), rules)
    assert caught.value.request is not None and caught.value.status == C.STATUS_REQUESTER
    with pytest.raises(ManageNameIDError, match="not 2"):
        parse_manage_name_id_request_soap(edited(b"<samlp:Terminate/>", b"<samlp:Terminate/><samlp:NewID>x</samlp:NewID>"), rules)
    base_id = build_manage_name_id_request(request_settings()).element
    children(base_id, C.NS_SAML, "NameID")[0].tag = f"{{{C.NS_SAML}}}BaseID"
    with pytest.raises(ManageNameIDError, match="BaseID") as caught:
        parse_manage_name_id_request_soap(encode_soap(base_id), rules)
    assert caught.value.sub_status == C.STATUS_UNKNOWN_PRINCIPAL
    with pytest.raises(InvalidMessage, match="the NewID is empty") as caught:
        parse_manage_name_id_request_soap(edited(b"<samlp:Terminate/>", b"<samlp:NewID> </samlp:NewID>"), rules)
    assert caught.value.request is not None
    with pytest.raises(ValueError, match="at most 256"):
        build_manage_name_id_request(request_settings(new_id="x" * 257))


def test_response_must_answer_our_request_and_faults_are_raised(sp_rsa):
    answer = build_manage_name_id_response(
        issuer=messages.SP_ENTITY_ID, destination=None, in_response_to="_ours-1", status=C.STATUS_RESPONDER, message="busy"
    )
    body = encode_soap(answer.element, signing=SigningKey(sp_rsa.key, sp_rsa.certificate))
    rules = policy(sp_rsa, messages.SP_ENTITY_ID)
    parsed = parse_manage_name_id_response_soap(body, rules, in_response_to="_ours-1")
    assert parsed.status.code == C.STATUS_RESPONDER and parsed.status.message == "busy"
    with pytest.raises(InvalidMessage, match="answers '_ours-1', not our request '_other'"):
        parse_manage_name_id_response_soap(body, rules, in_response_to="_other")
    with pytest.raises(SOAPFault, match=r"SOAP fault \(SOAP-ENV:Server\): database down"):
        parse_manage_name_id_response_soap(to_bytes(soap_fault("database down")), rules)
