"""The assertion consumer with real peers: responses made by a pysaml2 IdP (xmlsec1 signatures,
xmlsec1 encryption) and by our own signer, signed and encrypted every way a partnership allows,
solicited by AuthnRequests we built and pysaml2 parsed, and unsolicited."""

import base64
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

from federation.saml import constants as C
from federation.saml.common import SignatureRequired, SigningKey, parse_instant
from federation.saml.consumer import (
    AuthnContextRejected,
    ConsumerSettings,
    InResponseToMismatch,
    SignatureRequirement,
    consume_post,
    consume_response,
)
from federation.saml.encryption import encrypt_attribute, encrypt_name_id
from federation.saml.errors import DecryptionError
from federation.saml.signing import sign
from federation.saml.sp_requests import AuthnRequestOptions, authn_request_post, authn_request_redirect
from federation.saml.xml import children, parse_xml, to_bytes
from partnerships.authn_context import Comparison, RequestedAuthnContext, build_template

from . import messages, sp_peers
from .credentials import make_credential

LEGACY = C.DEFAULT_ENCRYPTION_ALGORITHMS | C.LEGACY_ENCRYPTION_ALGORITHMS
NAME_ID_PATH = f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID"


@pytest.fixture
def idp_server(tmp_path, idp_rsa, sp_rsa):
    return sp_peers.pysaml2_idp(tmp_path, idp_rsa, sp_rsa)


def accept(xml, idp, sp=None, **overrides):
    return consume_post(sp_peers.post_value(xml), sp_peers.consumer_settings(idp, sp, **overrides))


# --- pysaml2 as the IdP: every signing and encryption combination ---------------------------------


def test_pysaml2_signed_assertion(idp_server, idp_rsa):
    validated = accept(sp_peers.pysaml2_response(idp_server, sign_response=False), idp_rsa)
    assert (validated.response_signed, validated.assertion_signed, validated.assertion_encrypted) == (False, True, False)
    assert validated.issuer == messages.IDP_ENTITY_ID
    assert validated.name_id == "alice" and validated.name_id_format == C.NAMEID_PERSISTENT
    assert validated.attributes == {"principalName": ["alice"], "groups": ["admins", "staff"]}
    # pysaml2 sends the uri name format whatever its policy's name_form says.
    assert validated.attribute_name_formats == {"principalName": C.ATTRNAME_URI, "groups": C.ATTRNAME_URI}
    assert validated.authn_context_class == C.AC_PASSWORD_PROTECTED_TRANSPORT
    assert validated.in_response_to == "_request-1"
    assert validated.session_index and validated.assertion_id
    assert validated.replay_expires_at == validated.not_on_or_after + timedelta(seconds=60)


def test_pysaml2_signed_response_only(idp_server, idp_rsa):
    xml = sp_peers.pysaml2_response(idp_server, sign_assertion=False)
    for requirement in (SignatureRequirement.RESPONSE, SignatureRequirement.EITHER):
        validated = accept(xml, idp_rsa, require_signed=requirement)
        assert (validated.response_signed, validated.assertion_signed) == (True, False)
        assert validated.name_id == "alice"


def test_pysaml2_signed_response_and_assertion(idp_server, idp_rsa):
    validated = accept(sp_peers.pysaml2_response(idp_server), idp_rsa, require_signed=SignatureRequirement.BOTH)
    assert (validated.response_signed, validated.assertion_signed) == (True, True)


def test_pysaml2_encrypted_assertion(idp_server, idp_rsa, sp_rsa):
    """pysaml2 encrypts with 3DES: accepted only where the partnership allows legacy algorithms."""
    xml = sp_peers.pysaml2_response(idp_server, sign_assertion=False, encrypt_for=sp_rsa)
    assert b"EncryptedAssertion" in xml and b">alice<" not in xml
    validated = accept(
        xml,
        idp_rsa,
        sp_rsa,
        require_signed=SignatureRequirement.RESPONSE,
        require_encrypted_assertion=True,
        allowed_encryption_algorithms=LEGACY,
    )
    assert validated.assertion_encrypted and validated.name_id == "alice"
    with pytest.raises(DecryptionError, match="the assertion: algorithm tripledes-cbc not allowed"):
        accept(xml, idp_rsa, sp_rsa, require_signed=SignatureRequirement.RESPONSE)


def test_pysaml2_encrypted_and_signed_assertion(idp_server, idp_rsa, sp_rsa):
    xml = sp_peers.pysaml2_response(idp_server, sign_response=False, encrypt_for=sp_rsa)
    validated = accept(xml, idp_rsa, sp_rsa, require_encrypted_assertion=True, allowed_encryption_algorithms=LEGACY)
    assert (validated.response_signed, validated.assertion_signed, validated.assertion_encrypted) == (False, True, True)
    assert validated.attributes["groups"] == ["admins", "staff"]


def test_pysaml2_encrypted_assertion_needs_our_key(idp_server, idp_rsa, sp_rsa):
    xml = sp_peers.pysaml2_response(idp_server, sign_response=False, encrypt_for=sp_rsa)
    with pytest.raises(DecryptionError, match="the assertion is encrypted, but this partnership has no decryption key"):
        accept(xml, idp_rsa, allowed_encryption_algorithms=LEGACY)
    with pytest.raises(DecryptionError, match="the assertion: could not decrypt the element with our key"):
        accept(xml, idp_rsa, make_credential("rsa", "another sp"), allowed_encryption_algorithms=LEGACY)


# --- Our signer: AES encryption, encrypted NameID and attributes, key rollover ----------------------


@pytest.mark.parametrize("algorithm", [C.AES128_CBC, C.AES256_CBC, C.AES128_GCM, C.AES256_GCM])
def test_our_encrypted_and_signed_assertion(algorithm, idp_rsa, sp_rsa):
    xml = sp_peers.our_response(idp_rsa, sign_response=True, encrypt_for=sp_rsa, algorithm=algorithm)
    validated = accept(xml, idp_rsa, sp_rsa, require_signed=SignatureRequirement.BOTH, require_encrypted_assertion=True)
    assert validated.assertion_encrypted and validated.name_id == "alice"
    assert len(validated.attributes) == 11


def test_encrypted_name_id_and_attribute_are_decrypted_in_place(idp_rsa, sp_rsa):
    root = messages.response(in_response_to="_request-1")
    assertion = children(root, C.NS_SAML, "Assertion")[0]
    encrypt_name_id(assertion.find(NAME_ID_PATH), sp_rsa.certificate)
    groups = assertion.find(f"{{{C.NS_SAML}}}AttributeStatement/{{{C.NS_SAML}}}Attribute[@Name='groups']")
    encrypt_attribute(groups, sp_rsa.certificate)
    sign(assertion, idp_rsa.key, idp_rsa.certificate)
    xml = to_bytes(root)
    assert b">alice</saml:NameID>" not in xml and b">admins<" not in xml
    validated = accept(xml, idp_rsa, sp_rsa, require_encrypted_name_id=True)
    assert validated.name_id == "alice" and validated.attributes["groups"] == ["admins", "staff"]
    # The returned assertion holds the decrypted elements, for XPath-based user identification.
    assert validated.assertion.findtext(NAME_ID_PATH) == "alice"
    assert validated.assertion.xpath("//saml:Attribute[@Name='groups']/saml:AttributeValue/text()", namespaces=C.NSMAP) == [
        "admins",
        "staff",
    ]


def test_certificate_and_decryption_key_rollover(idp_rsa, sp_rsa):
    """During a rollover the partnership holds the old and the new certificate and key; a
    response made with either is accepted."""
    old_idp, old_sp = make_credential("rsa", "idp old"), make_credential("rsa", "sp old")
    settings = sp_peers.consumer_settings(
        idp_rsa, None, idp_certificates=(old_idp.certificate, idp_rsa.certificate), decryption_keys=(old_sp.key, sp_rsa.key)
    )
    for signer, recipient in ((idp_rsa, sp_rsa), (old_idp, old_sp), (idp_rsa, old_sp)):
        xml = sp_peers.our_response(signer, encrypt_for=recipient)
        assert consume_post(sp_peers.post_value(xml), settings).name_id == "alice"


def test_validated_assertion_is_the_verified_copy(idp_rsa):
    xml = sp_peers.our_response(idp_rsa)
    validated = accept(xml, idp_rsa)
    # The element belongs to a document of its own: the verified copy, not the inbound tree.
    assert validated.assertion.getparent() is None
    assert validated.assertion.xpath("string(saml:Subject/saml:NameID)", namespaces=C.NSMAP) == "alice"
    assert validated.name_qualifier == messages.IDP_ENTITY_ID and validated.sp_name_qualifier == messages.SP_ENTITY_ID
    assert validated.attribute_friendly_names["urn:oid:1.3.6.1.4.1.5923.1.1.1.1"] == "attribute1"
    statement = parse_xml(xml).find(f".//{{{C.NS_SAML}}}AuthnStatement")
    assert validated.authn_instant == parse_instant(statement.get("AuthnInstant"))
    assert validated.session_index == statement.get("SessionIndex") and validated.session_not_on_or_after is None


# --- Solicited and unsolicited --------------------------------------------------------------------


def test_response_to_our_redirect_request_parsed_by_pysaml2(idp_server, idp_rsa, sp_rsa):
    request = authn_request_redirect(
        AuthnRequestOptions(
            messages.SP_ENTITY_ID, messages.IDP_SSO_URL, acs_url=messages.SP_ACS_URL, protocol_binding=C.BINDING_HTTP_POST
        ),
        "relay",
        signing=SigningKey(sp_rsa.key, None),
    )
    parts = {name: values[0] for name, values in parse_qs(urlsplit(request.url).query).items()}
    parsed = idp_server.parse_authn_request(
        parts["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        relay_state=parts["RelayState"],
        sigalg=parts["SigAlg"],
        signature=parts["Signature"],
    )
    xml = sp_peers.pysaml2_response(
        idp_server,
        in_response_to=parsed.message.id,
        destination=parsed.message.assertion_consumer_service_url,
        sign_response=False,
    )
    validated = accept(xml, idp_rsa, expected_in_response_to=request.request_id)
    assert validated.in_response_to == request.request_id
    with pytest.raises(InResponseToMismatch, match=f"answers request '{request.request_id}', which this SP did not send"):
        accept(xml, idp_rsa, expected_in_response_to="_another-request")


def test_response_to_our_post_request_parsed_by_pysaml2_with_a_lookup(idp_server, idp_rsa, sp_rsa):
    """The ACS looks the InResponseTo up among the requests it is still waiting for, and
    forgets it when it is used (a callable lookup)."""
    outstanding = set()
    ids = []
    for _ in range(2):
        request = authn_request_post(
            AuthnRequestOptions(
                messages.SP_ENTITY_ID, messages.IDP_SSO_URL, acs_url=messages.SP_ACS_URL, protocol_binding=C.BINDING_HTTP_POST
            ),
            signing=SigningKey(sp_rsa.key, sp_rsa.certificate),
        )
        outstanding.add(request.request_id)
        ids.append(request.request_id)
    parsed = idp_server.parse_authn_request(request.fields["SAMLRequest"], BINDING_HTTP_POST)
    xml = sp_peers.pysaml2_response(idp_server, in_response_to=parsed.message.id, sign_response=False)

    def take(request_id):
        if request_id in outstanding:
            outstanding.remove(request_id)
            return True
        return False

    assert accept(xml, idp_rsa, expected_in_response_to=take).in_response_to == ids[1]
    assert outstanding == {ids[0]}
    assert accept(xml, idp_rsa, expected_in_response_to=frozenset(ids)).in_response_to == ids[1]
    with pytest.raises(InResponseToMismatch, match="which this SP did not send"):
        accept(xml, idp_rsa, expected_in_response_to=take)


def test_unsolicited_response_accepted_when_allowed(idp_server, idp_rsa):
    xml = sp_peers.pysaml2_response(idp_server, in_response_to=None, sign_response=False)
    assert b"InResponseTo" not in xml
    validated = accept(xml, idp_rsa, allow_unsolicited=True, expected_in_response_to=None)
    assert validated.in_response_to is None and validated.name_id == "alice"


def test_unsolicited_response_refused_when_not_allowed(idp_server, idp_rsa):
    xml = sp_peers.pysaml2_response(idp_server, in_response_to=None, sign_response=False)
    with pytest.raises(
        InResponseToMismatch,
        match=r"the response answers no request \(IdP-initiated\), and this partnership does not accept unsolicited responses",
    ):
        accept(xml, idp_rsa, expected_in_response_to=None)


def test_a_solicited_response_is_not_accepted_as_unsolicited(idp_server, idp_rsa):
    """Allowing unsolicited responses does not let through a response to a request we never sent."""
    xml = sp_peers.pysaml2_response(idp_server, in_response_to="_forged-request", sign_response=False)
    with pytest.raises(InResponseToMismatch, match="answers request '_forged-request', which this SP did not send"):
        accept(xml, idp_rsa, allow_unsolicited=True, expected_in_response_to=None)


# --- Authentication context ------------------------------------------------------------------------


def test_authn_context_exact_and_by_strength(idp_server, idp_rsa):
    xml = sp_peers.pysaml2_response(idp_server, sign_response=False)
    exact = RequestedAuthnContext((C.AC_PASSWORD_PROTECTED_TRANSPORT,))
    assert accept(xml, idp_rsa, requested_authn_context=exact).authn_context_class == C.AC_PASSWORD_PROTECTED_TRANSPORT
    template = build_template([{"uri": C.AC_X509}, {"uri": C.AC_PASSWORD_PROTECTED_TRANSPORT}, {"uri": C.AC_PASSWORD}])
    minimum = RequestedAuthnContext((C.AC_PASSWORD,), Comparison.MINIMUM)
    assert accept(xml, idp_rsa, requested_authn_context=minimum, authn_context_template=template).name_id == "alice"


def test_authn_context_weaker_than_requested_is_refused(idp_server, idp_rsa):
    xml = sp_peers.pysaml2_response(idp_server, sign_response=False)
    template = build_template([{"uri": C.AC_X509}, {"uri": C.AC_PASSWORD_PROTECTED_TRANSPORT}, {"uri": C.AC_PASSWORD}])
    with pytest.raises(
        AuthnContextRejected,
        match="the authentication context does not satisfy this SP's request: PasswordProtectedTransport does not satisfy "
        "comparison better against PasswordProtectedTransport",
    ):
        accept(
            xml,
            idp_rsa,
            requested_authn_context=RequestedAuthnContext((C.AC_PASSWORD_PROTECTED_TRANSPORT,), Comparison.BETTER),
            authn_context_template=template,
        )
    with pytest.raises(AuthnContextRejected, match="PasswordProtectedTransport does not satisfy comparison exact against X509"):
        accept(xml, idp_rsa, requested_authn_context=RequestedAuthnContext((C.AC_X509,)))


# --- Settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"idp_certificates": ()}, "needs at least one IdP verification certificate"),
        ({"acs_urls": ()}, "at least one ACS URL"),
        ({"skew_seconds": -1}, "the skew time cannot be negative"),
        (
            {"requested_authn_context": RequestedAuthnContext((C.AC_X509,), Comparison.MINIMUM)},
            "comparison minimum needs an authentication",
        ),
        ({"require_signed": "never"}, "'never' is not a valid SignatureRequirement"),
    ],
)
def test_settings_refuse_what_cannot_work(overrides, message, idp_rsa):
    with pytest.raises(ValueError, match=message):
        sp_peers.consumer_settings(idp_rsa, **overrides)


def test_settings_take_certificates_as_pem_and_a_single_acs_url(idp_rsa):
    settings = ConsumerSettings(
        sp_entity_id=messages.SP_ENTITY_ID,
        acs_urls=messages.SP_ACS_URL,
        idp_entity_id=messages.IDP_ENTITY_ID,
        idp_certificates=idp_rsa.cert_pem,
        expected_in_response_to="_request-1",
    )
    assert settings.acs_urls == (messages.SP_ACS_URL,)
    assert consume_response(sp_peers.our_response(idp_rsa), settings).name_id == "alice"


def test_any_signature_present_is_checked_even_when_not_required(idp_rsa, attacker_rsa):
    """EITHER is satisfied by a good assertion signature, but a bad response signature beside it
    is still refused."""
    root = parse_xml(sp_peers.our_response(idp_rsa))
    sign(root, attacker_rsa.key, attacker_rsa.certificate)
    with pytest.raises(Exception, match="signature invalid for every trusted certificate"):
        accept(to_bytes(root), idp_rsa, require_signed=SignatureRequirement.EITHER)


def test_neither_signed_is_refused_under_either(idp_rsa):
    xml = sp_peers.our_response(idp_rsa, sign_assertion=False)
    with pytest.raises(SignatureRequired, match="neither the response nor the assertion is signed"):
        accept(xml, idp_rsa, require_signed=SignatureRequirement.EITHER)


def test_post_value_may_be_wrapped_in_lines(idp_rsa):
    encoded = base64.encodebytes(sp_peers.our_response(idp_rsa)).decode()
    assert "\n" in encoded
    assert consume_post(encoded, sp_peers.consumer_settings(idp_rsa)).name_id == "alice"


def test_signature_processing_disabled_accepts_unsigned_but_still_checks_a_present_signature(idp_rsa, attacker_rsa):
    """SignatureRequirement.NONE is the partnership's test-only "disable signature processing": an unsigned
    response is accepted, and a signature that is present is still verified."""
    unsigned = sp_peers.our_response(idp_rsa, sign_assertion=False)
    assert accept(unsigned, idp_rsa, require_signed=SignatureRequirement.NONE).name_id == "alice"
    root = parse_xml(sp_peers.our_response(idp_rsa))
    sign(root, attacker_rsa.key, attacker_rsa.certificate)
    with pytest.raises(Exception, match="signature invalid for every trusted certificate"):
        accept(to_bytes(root), idp_rsa, require_signed=SignatureRequirement.NONE)
