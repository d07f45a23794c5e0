"""Single Logout messages (federation.saml.logout) against the real peers: pysaml2's SP accepts
our LogoutRequest and LogoutResponse on Redirect, POST and SOAP, and we parse the ones it sends;
python3-saml the same on Redirect. Then the time window and the refusals."""

import base64
import re
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.utils import CryptographyDeprecationWarning
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.logout_response import OneLogin_Saml2_Logout_Response

from federation.saml import constants as C
from federation.saml.assertions import NameID, build_response
from federation.saml.bindings import inflate_decode
from federation.saml.common import (
    InvalidMessage,
    MessageExpired,
    SignatureRequired,
    SigningKey,
    encode_post,
    encode_redirect,
    encode_soap,
)
from federation.saml.errors import SignatureError
from federation.saml.logout import (
    LogoutError,
    LogoutPolicy,
    LogoutRequestSettings,
    build_logout_request,
    build_logout_response,
    parse_logout_request_post,
    parse_logout_request_redirect,
    parse_logout_request_soap,
    parse_logout_response_post,
    parse_logout_response_redirect,
    parse_logout_response_soap,
)
from federation.saml.xml import parse_xml, to_bytes

from . import idp_peers, messages, peers

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
    from saml2.pack import make_soap_enveloped_saml_thingy
    from saml2.request import IncorrectlySigned
    from saml2.response import StatusPartialLogout
    from saml2.saml import NameID as Pysaml2NameID
    from saml2.sigver import RSACrypto, verify_redirect_signature

NAME_ID = NameID("alice-7f3a", C.NAMEID_PERSISTENT, messages.IDP_ENTITY_ID, messages.SP_ENTITY_ID)
RELAY_STATE = "https://idp.example.org/after-logout?x=1&y=é"


def logout_settings(**overrides):
    values = {
        "issuer": messages.IDP_ENTITY_ID,
        "destination": messages.SP_SLO_URL,
        "name_id": NAME_ID,
        "session_indexes": ("_session-1",),
    }
    values.update(overrides)
    return LogoutRequestSettings(**values)


def policy_for_sp(sp, **overrides):
    """Our IdP's rules for logout messages from the test SP."""
    values = {
        "partner_entity_id": messages.SP_ENTITY_ID,
        "verification_certificates": (sp.certificate,),
        "require_signed": True,
        "slo_urls": (messages.IDP_SLO_URL, idp_peers.IDP_SLO_SOAP_URL),
    }
    values.update(overrides)
    return LogoutPolicy(**values)


def signed_in_pysaml2_sp(tmp_path, sp, idp):
    """A pysaml2 SP where alice has just signed in with a Response from us, so that its logout
    handling finds her session."""
    client = idp_peers.pysaml2_sp_client(tmp_path, sp, idp, allow_unsolicited=True)
    issued = build_response(idp_peers.response_settings(idp, None))
    response = client.parse_authn_request_response(base64.b64encode(issued.to_bytes()).decode(), BINDING_HTTP_POST)
    assert client.is_logged_in(response.name_id)
    return client, response.name_id, issued.session_index


def form_value(html, name):
    return re.search(rf'name="{name}" value="([^"]+)"', html).group(1)


# --- Our LogoutRequest, pysaml2's SP consumes and answers ------------------------------------


def test_pysaml2_sp_accepts_our_redirect_logout_request(tmp_path, sp_rsa, idp_rsa):
    client, name_id, session_index = signed_in_pysaml2_sp(tmp_path, sp_rsa, idp_rsa)
    issued = build_logout_request(logout_settings(session_indexes=(session_index,)))
    url = encode_redirect(
        messages.SP_SLO_URL, issued.element, relay_state=RELAY_STATE, signing=SigningKey(idp_rsa.key, idp_rsa.certificate)
    )
    values = idp_peers.query_values(url)
    assert verify_redirect_signature(values, RSACrypto(None), cert=idp_rsa.cert_base64)
    request = client.parse_logout_request(
        values["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        relay_state=values["RelayState"],
        sigalg=values["SigAlg"],
        signature=values["Signature"],
    )
    assert request.message.id == issued.id
    assert request.message.name_id.text == "alice-7f3a"
    assert [index.text for index in request.message.session_index] == [session_index]

    # The SP logs alice out and answers on the same binding; we read its LogoutResponse.
    info = client.handle_logout_request(
        values["SAMLRequest"],
        name_id,
        BINDING_HTTP_REDIRECT,
        sign=True,
        sign_alg=C.RSA_SHA256,
        relay_state=values["RelayState"],
        sigalg=values["SigAlg"],
        signature=values["Signature"],
    )
    assert not client.is_logged_in(name_id)
    location = dict(info["headers"])["Location"]
    answer = parse_logout_response_redirect(peers.query_of(location), policy_for_sp(sp_rsa))
    assert answer.signed and answer.in_response_to == issued.id
    assert answer.status.success and answer.relay_state == RELAY_STATE


def test_pysaml2_sp_accepts_our_post_logout_request(tmp_path, sp_rsa, idp_rsa):
    client, name_id, session_index = signed_in_pysaml2_sp(tmp_path, sp_rsa, idp_rsa)
    issued = build_logout_request(logout_settings(session_indexes=(session_index,)))
    value = encode_post(issued.element, signing=SigningKey(idp_rsa.key, idp_rsa.certificate))
    tampered = base64.b64encode(base64.b64decode(value).replace(b"alice-7f3a", b"bob")).decode()
    with pytest.raises(IncorrectlySigned):
        client.parse_logout_request(tampered, BINDING_HTTP_POST)
    request = client.parse_logout_request(value, BINDING_HTTP_POST)
    assert request.message.name_id.text == "alice-7f3a" and request.message.reason == "urn:oasis:names:tc:SAML:2.0:logout:user"

    info = client.handle_logout_request(value, name_id, BINDING_HTTP_POST, sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256)
    answer = parse_logout_response_post(form_value(info["data"], "SAMLResponse"), None, policy_for_sp(sp_rsa))
    assert answer.signed and answer.in_response_to == issued.id and answer.status.success


def test_pysaml2_sp_accepts_our_soap_logout_request(tmp_path, sp_rsa, idp_rsa):
    """Unsigned: pysaml2's SOAP path re-serialises the body with its own prefixes, which breaks
    any signature not made by pysaml2 (the back channel is protected by TLS / client auth)."""
    client, name_id, _ = signed_in_pysaml2_sp(tmp_path, sp_rsa, idp_rsa)
    issued = build_logout_request(logout_settings(destination=idp_peers.SP_SLO_SOAP_URL))
    body = encode_soap(issued.element).decode()
    request = client.parse_logout_request(body, BINDING_SOAP)
    assert request.message.name_id.text == "alice-7f3a"
    info = client.handle_logout_request(body, name_id, BINDING_SOAP, sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256)
    answer = parse_logout_response_soap(info["data"].encode(), policy_for_sp(sp_rsa))
    assert answer.signed and answer.in_response_to == issued.id and answer.status.success
    assert answer.binding == C.BINDING_SOAP


# --- pysaml2's LogoutRequest, we parse and answer --------------------------------------------


def pysaml2_logout_request(client, sign):
    return client.create_logout_request(
        messages.IDP_SLO_URL,
        messages.IDP_ENTITY_ID,
        name_id=Pysaml2NameID(format=C.NAMEID_PERSISTENT, text="alice-7f3a", sp_name_qualifier=messages.SP_ENTITY_ID),
        session_indexes=["_session-1", "_session-2"],
        reason="urn:oasis:names:tc:SAML:2.0:logout:user",
        sign=sign,
        sign_alg=C.RSA_SHA256,
        digest_alg=C.SHA256,
    )


def test_we_parse_pysaml2_redirect_logout_request_and_it_accepts_our_answer(tmp_path, sp_rsa, idp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    request_id, request = pysaml2_logout_request(client, sign=False)
    info = client.apply_binding(
        BINDING_HTTP_REDIRECT, str(request), messages.IDP_SLO_URL, RELAY_STATE, sign=True, sigalg=C.RSA_SHA256
    )
    parsed = parse_logout_request_redirect(peers.query_of(dict(info["headers"])["Location"]), policy_for_sp(sp_rsa))
    assert parsed.signed and parsed.id == request_id and parsed.relay_state == RELAY_STATE
    assert parsed.name_id == NameID("alice-7f3a", C.NAMEID_PERSISTENT, sp_name_qualifier=messages.SP_ENTITY_ID)
    assert parsed.session_indexes == ("_session-1", "_session-2")
    assert parsed.not_on_or_after is None and parsed.binding == C.BINDING_HTTP_REDIRECT  # pysaml2 sends none

    answer = build_logout_response(issuer=messages.IDP_ENTITY_ID, destination=messages.SP_SLO_URL, in_response_to=parsed.id)
    url = encode_redirect(
        messages.SP_SLO_URL, answer.element, relay_state=parsed.relay_state, signing=SigningKey(idp_rsa.key, idp_rsa.certificate)
    )
    values = idp_peers.query_values(url)
    assert verify_redirect_signature(values, RSACrypto(None), cert=idp_rsa.cert_base64)
    response = client.parse_logout_request_response(values["SAMLResponse"], BINDING_HTTP_REDIRECT)
    assert response.in_response_to == request_id and response.status_ok()


def test_we_parse_pysaml2_post_logout_request_and_it_accepts_our_answer(tmp_path, sp_rsa, idp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    request_id, signed = pysaml2_logout_request(client, sign=True)
    parsed = parse_logout_request_post(base64.b64encode(str(signed).encode()), "rs", policy_for_sp(sp_rsa))
    assert parsed.signed and parsed.id == request_id and parsed.binding == C.BINDING_HTTP_POST

    answer = build_logout_response(
        issuer=messages.IDP_ENTITY_ID,
        destination=messages.SP_SLO_URL,
        in_response_to=parsed.id,
        status=C.STATUS_RESPONDER,
        sub_status=C.STATUS_PARTIAL_LOGOUT,
        message="one service provider could not be reached",
    )
    value = encode_post(answer.element, signing=SigningKey(idp_rsa.key, idp_rsa.certificate))
    tampered = base64.b64encode(base64.b64decode(value).replace(b"could not", b"could")).decode()
    with pytest.raises(Exception, match="(?i)signature"):
        client.parse_logout_request_response(tampered, BINDING_HTTP_POST)
    # pysaml2 verifies the signature, then reports the partial logout as an exception.
    with pytest.raises(StatusPartialLogout, match="one service provider could not be reached"):
        client.parse_logout_request_response(value, BINDING_HTTP_POST)


def test_we_parse_pysaml2_soap_logout_request_and_it_accepts_our_answer(tmp_path, sp_rsa, idp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    request_id, signed = pysaml2_logout_request(client, sign=True)
    parsed = parse_logout_request_soap(make_soap_enveloped_saml_thingy(str(signed)).encode(), policy_for_sp(sp_rsa))
    assert parsed.signed and parsed.id == request_id and parsed.binding == C.BINDING_SOAP
    answer = build_logout_response(issuer=messages.IDP_ENTITY_ID, destination=None, in_response_to=parsed.id)
    response = client.parse_logout_request_response(encode_soap(answer.element).decode(), BINDING_SOAP)
    assert response.in_response_to == request_id and response.status_ok()


# --- python3-saml ----------------------------------------------------------------------------


def test_python3saml_accepts_our_redirect_logout_request_and_we_read_its_answer(sp_rsa, idp_rsa):
    issued = build_logout_request(logout_settings())
    url = encode_redirect(
        messages.SP_SLO_URL, issued.element, relay_state=RELAY_STATE, signing=SigningKey(idp_rsa.key, idp_rsa.certificate)
    )
    settings = idp_peers.python3saml_sp_settings(sp_rsa, idp_rsa)
    auth = peers.python3saml_auth(settings, "/sp/slo", peers.query_of(url))
    redirect = auth.process_slo(keep_local_session=True)
    assert auth.get_errors() == [], auth.get_last_error_reason()
    answer = parse_logout_response_redirect(peers.query_of(redirect), policy_for_sp(sp_rsa))
    assert answer.signed and answer.in_response_to == issued.id and answer.status.success


def test_python3saml_decrypts_our_encrypted_name_id(sp_rsa):
    issued = build_logout_request(logout_settings(encryption_certificate=sp_rsa.certificate))
    xml = to_bytes(issued.element)
    assert b"EncryptedID" in xml and b"alice-7f3a" not in xml
    data = OneLogin_Saml2_Logout_Request.get_nameid_data(xml.decode(), sp_rsa.key_pem.decode())
    assert data["Value"] == "alice-7f3a" and data["SPNameQualifier"] == messages.SP_ENTITY_ID


def test_we_parse_python3saml_logout_response(sp_rsa, idp_rsa):
    settings = idp_peers.python3saml_sp_settings(sp_rsa, idp_rsa)
    response = OneLogin_Saml2_Logout_Response(settings)
    response.build("_our-request")
    auth = peers.python3saml_auth(settings)
    parameters = {"SAMLResponse": response.get_response(), "RelayState": RELAY_STATE}
    auth.add_response_signature(parameters, C.RSA_SHA256)
    url = auth.redirect_to(messages.IDP_SLO_URL, parameters)
    answer = parse_logout_response_redirect(peers.query_of(url), policy_for_sp(sp_rsa))
    assert answer.signed and answer.in_response_to == "_our-request" and answer.status.success


# --- Our own rules ---------------------------------------------------------------------------

NOW = datetime(2026, 5, 1, 1, 0, 0, tzinfo=UTC)


def test_validity_window_and_expiry(sp_rsa):
    """Issued 1:00:00 with 30 s skew and 60 s validity: valid until 1:01:30."""
    issued = build_logout_request(logout_settings(issuer=messages.SP_ENTITY_ID, skew_seconds=30, validity_seconds=60), now=NOW)
    assert issued.element.get("NotOnOrAfter") == "2026-05-01T01:01:30Z"
    assert issued.not_on_or_after == NOW + timedelta(seconds=90)
    value = encode_post(issued.element, signing=SigningKey(sp_rsa.key, sp_rsa.certificate))
    policy = policy_for_sp(sp_rsa, slo_urls=(messages.SP_SLO_URL,), skew_seconds=10)
    assert parse_logout_request_post(value, None, policy, now=NOW + timedelta(seconds=99)).id == issued.id
    with pytest.raises(MessageExpired, match=r"the LogoutRequest expired at 2026-05-01T01:01:30Z") as caught:
        parse_logout_request_post(value, None, policy, now=NOW + timedelta(seconds=100))
    assert caught.value.status == C.STATUS_REQUESTER and caught.value.sub_status == C.STATUS_REQUEST_DENIED


def test_expired_logout_request_is_refused(sp_rsa):
    issued = build_logout_request(logout_settings(issuer=messages.SP_ENTITY_ID), now=datetime.now(UTC) - timedelta(hours=2))
    with pytest.raises(MessageExpired, match="the LogoutRequest expired at"):
        parse_logout_request_post(
            encode_post(issued.element, signing=SigningKey(sp_rsa.key, sp_rsa.certificate)),
            None,
            policy_for_sp(sp_rsa, slo_urls=()),
        )


def test_encrypted_name_id_round_trip_and_missing_key(sp_rsa, idp_rsa):
    issued = build_logout_request(logout_settings(issuer=messages.SP_ENTITY_ID, encryption_certificate=idp_rsa.certificate))
    body = encode_soap(issued.element, signing=SigningKey(sp_rsa.key, sp_rsa.certificate))
    parsed = parse_logout_request_soap(body, policy_for_sp(sp_rsa, slo_urls=(), decryption_key=idp_rsa.key))
    assert parsed.name_id == NAME_ID
    with pytest.raises(LogoutError, match="no decryption key is configured"):
        parse_logout_request_soap(body, policy_for_sp(sp_rsa, slo_urls=()))


def test_refusals(sp_rsa, attacker_rsa):
    own = build_logout_request(logout_settings(issuer=messages.SP_ENTITY_ID, destination=messages.IDP_SLO_URL))
    unsigned = encode_post(own.element)
    with pytest.raises(SignatureRequired, match="the partnership requires signed LogoutRequests"):
        parse_logout_request_post(unsigned, None, policy_for_sp(sp_rsa))
    assert parse_logout_request_post(unsigned, None, policy_for_sp(sp_rsa, require_signed=False)).signed is False
    with pytest.raises(SignatureError, match="signature invalid for every trusted certificate"):
        parse_logout_request_redirect(
            peers.query_of(
                encode_redirect(messages.IDP_SLO_URL, own.element, signing=SigningKey(attacker_rsa.key, attacker_rsa.certificate))
            ),
            policy_for_sp(sp_rsa),
        )
    elsewhere = build_logout_request(logout_settings(issuer=messages.SP_ENTITY_ID, destination="https://other.example/slo"))
    with pytest.raises(InvalidMessage, match="not our SLO service URL"):
        parse_logout_request_post(
            encode_post(elsewhere.element, signing=SigningKey(sp_rsa.key, sp_rsa.certificate)), None, policy_for_sp(sp_rsa)
        )
    with pytest.raises(InvalidMessage, match="not from"):
        parse_logout_request_post(
            unsigned, None, policy_for_sp(sp_rsa, require_signed=False, partner_entity_id="https://x.example")
        )
    with pytest.raises(InvalidMessage, match="expected a LogoutRequest message, got AuthnRequest"):
        parse_logout_request_post(base64.b64encode(to_bytes(messages.authn_request())), None, policy_for_sp(sp_rsa))
    with pytest.raises(ValueError, match="carries no XML signature"):
        element = build_logout_request(logout_settings()).element
        encode_post(element, signing=SigningKey(sp_rsa.key, sp_rsa.certificate))
        encode_redirect(messages.SP_SLO_URL, element)
    two_subjects = parse_xml(
        to_bytes(own.element).replace(b"<samlp:SessionIndex>", b"<saml:NameID>bob</saml:NameID><samlp:SessionIndex>")
    )
    with pytest.raises(InvalidMessage, match="exactly one subject"):
        parse_logout_request_post(encode_post(two_subjects), None, policy_for_sp(sp_rsa, require_signed=False))


def test_logout_response_status_and_redirect_encoding(sp_rsa):
    answer = build_logout_response(
        issuer=messages.SP_ENTITY_ID,
        destination=messages.IDP_SLO_URL,
        in_response_to="_r1",
        status=C.STATUS_REQUESTER,
        sub_status=C.STATUS_UNKNOWN_PRINCIPAL,
    )
    url = encode_redirect(messages.IDP_SLO_URL + "?tenant=a", answer.element)
    assert url.startswith(messages.IDP_SLO_URL + "?tenant=a&SAMLResponse=")
    assert parse_xml(inflate_decode(idp_peers.query_values(url)["SAMLResponse"])).get("ID") == answer.id
    parsed = parse_logout_response_redirect(peers.query_of(url), policy_for_sp(sp_rsa, require_signed=False))
    assert not parsed.status.success and parsed.status.sub_code == C.STATUS_UNKNOWN_PRINCIPAL
    assert parsed.signed is False and parsed.relay_state is None
