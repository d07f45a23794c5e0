"""What our SP sends: AuthnRequests on the Redirect and POST bindings (accepted by a pysaml2 IdP
that wants signed requests, valid against the SAML protocol schema python3-saml ships) and the
ArtifactResolve / ArtifactResponse round trip with pysaml2 as the IdP."""

import base64
import warnings
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.utils import CryptographyDeprecationWarning
from lxml import etree
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from federation.saml import constants as C
from federation.saml.artifacts import ArtifactError, parse_artifact, source_id
from federation.saml.bindings import inflate_decode
from federation.saml.common import InvalidMessage, SignatureRequired, SigningKey, SOAPFault, soap_fault
from federation.saml.consumer import IdPStatusError, InResponseToMismatch, IssuerMismatch, consume_response
from federation.saml.errors import SignatureError
from federation.saml.signing import verify, verify_query
from federation.saml.sp_requests import (
    AuthnRequestOptions,
    artifact_resolve,
    authn_request_post,
    authn_request_redirect,
    build_authn_request,
    read_artifact_response,
)
from federation.saml.xml import children, parse_xml, to_bytes
from partnerships.authn_context import Comparison, RequestedAuthnContext

from . import messages, sp_peers

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
    from saml2.pack import make_soap_enveloped_saml_thingy
    from saml2.response import IncorrectlySigned
    from saml2.s_utils import error_status_factory
    from saml2.samlp import response_from_string

RELAY_STATE = "https://sp.example.org/app/start?tab=1&lang=en"
NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def options(**overrides):
    values = {
        "sp_entity_id": messages.SP_ENTITY_ID,
        "destination": messages.IDP_SSO_URL,
        "acs_url": messages.SP_ACS_URL,
        "protocol_binding": C.BINDING_HTTP_POST,
        "name_id_format": C.NAMEID_PERSISTENT,
        "allow_create": True,
    }
    values.update(overrides)
    return AuthnRequestOptions(**values)


def schema_valid(element_or_bytes):
    return not isinstance(OneLogin_Saml2_XML.validate_xml(element_or_bytes, "saml-schema-protocol-2.0.xsd"), str)


def redirect_parts(url):
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


# --- Building the AuthnRequest -----------------------------------------------------------------


def test_authn_request_carries_every_option_in_schema_order():
    requested = RequestedAuthnContext((C.AC_PASSWORD_PROTECTED_TRANSPORT, C.AC_X509), Comparison.MINIMUM)
    request = build_authn_request(
        options(force_authn=True, sp_name_qualifier="https://affiliation.example.org", requested_authn_context=requested),
        request_id="_fixed-id",
        now=NOW,
    )
    assert dict(request.attrib) == {
        "ID": "_fixed-id",
        "Version": "2.0",
        "IssueInstant": "2026-05-01T12:00:00Z",
        "Destination": messages.IDP_SSO_URL,
        "ForceAuthn": "true",
        "ProtocolBinding": C.BINDING_HTTP_POST,
        "AssertionConsumerServiceURL": messages.SP_ACS_URL,
    }
    assert [etree.QName(child).localname for child in request] == ["Issuer", "NameIDPolicy", "RequestedAuthnContext"]
    assert request.findtext(f"{{{C.NS_SAML}}}Issuer") == messages.SP_ENTITY_ID
    policy = request.find(f"{{{C.NS_SAMLP}}}NameIDPolicy")
    assert dict(policy.attrib) == {
        "Format": C.NAMEID_PERSISTENT,
        "SPNameQualifier": "https://affiliation.example.org",
        "AllowCreate": "true",
    }
    context = request.find(f"{{{C.NS_SAMLP}}}RequestedAuthnContext")
    assert context.get("Comparison") == "minimum"
    assert [ref.text for ref in context] == [C.AC_PASSWORD_PROTECTED_TRANSPORT, C.AC_X509]
    assert schema_valid(request)


def test_authn_request_by_acs_index_and_passive():
    request = build_authn_request(
        AuthnRequestOptions(messages.SP_ENTITY_ID, messages.IDP_SSO_URL, acs_index=2, is_passive=True, allow_create=False)
    )
    assert request.get("AssertionConsumerServiceIndex") == "2"
    assert request.get("IsPassive") == "true"
    assert request.get("ProtocolBinding") is None and request.get("AssertionConsumerServiceURL") is None
    assert request.find(f"{{{C.NS_SAMLP}}}NameIDPolicy").attrib == {"AllowCreate": "false"}
    assert request.get("ID").startswith("_") and len(request.get("ID")) == 41
    assert schema_valid(request)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"acs_index": 1}, "ProtocolBinding and AssertionConsumerServiceIndex cannot be used together"),
        ({"acs_url": None, "protocol_binding": None, "acs_index": 70000}, "must be a number from 0 to 65535"),
        ({"force_authn": True, "is_passive": True}, "ForceAuthn and IsPassive exclude each other"),
        ({"protocol_binding": C.BINDING_HTTP_REDIRECT}, "is not a binding a response can use"),
        ({"destination": ""}, "needs our SP entity ID and the IdP's SSO service URL"),
    ],
)
def test_authn_request_options_that_contradict_each_other_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        options(**overrides)


# --- Redirect binding ------------------------------------------------------------------------------


def test_redirect_request_signed_in_the_binding_order(sp_rsa):
    message = authn_request_redirect(options(), RELAY_STATE, signing=SigningKey(sp_rsa.key, None))
    url = urlsplit(message.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == messages.IDP_SSO_URL
    assert [part.split("=")[0] for part in url.query.split("&")] == ["SAMLRequest", "RelayState", "SigAlg", "Signature"]
    verified = verify_query(url.query, [sp_rsa.certificate])
    assert verified.relay_state == RELAY_STATE and verified.algorithm == C.RSA_SHA256
    request = parse_xml(inflate_decode(verified.message))
    assert request.get("ID") == message.request_id
    assert not children(request, C.NS_DS, "Signature"), "the Redirect binding carries no XML signature"
    assert schema_valid(request)


def test_unsigned_redirect_request_keeps_the_destinations_own_query():
    message = authn_request_redirect(options(destination=messages.IDP_SSO_URL + "?tenant=a b"))
    parts = redirect_parts(message.url)
    assert set(parts) == {"tenant", "SAMLRequest"}
    assert parse_xml(inflate_decode(parts["SAMLRequest"])).get("ID") == message.request_id


def test_pysaml2_idp_accepts_our_signed_redirect_request(tmp_path, idp_rsa, sp_rsa):
    server = sp_peers.pysaml2_idp(tmp_path, idp_rsa, sp_rsa)
    requested = RequestedAuthnContext((C.AC_PASSWORD_PROTECTED_TRANSPORT,))
    message = authn_request_redirect(
        options(force_authn=True, requested_authn_context=requested), RELAY_STATE, signing=SigningKey(sp_rsa.key, None)
    )
    parts = redirect_parts(message.url)
    parsed = server.parse_authn_request(
        parts["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        relay_state=parts["RelayState"],
        sigalg=parts["SigAlg"],
        signature=parts["Signature"],
    )
    assert parsed.message.id == message.request_id
    assert parsed.message.issuer.text == messages.SP_ENTITY_ID
    assert parsed.message.assertion_consumer_service_url == messages.SP_ACS_URL
    assert parsed.message.force_authn == "true"
    assert parsed.message.name_id_policy.allow_create == "true"
    assert parsed.message.requested_authn_context.authn_context_class_ref[0].text == C.AC_PASSWORD_PROTECTED_TRANSPORT


def test_pysaml2_idp_refuses_our_redirect_request_when_tampered_or_unsigned(tmp_path, idp_rsa, sp_rsa):
    """Control for the test above: the peer does check the query signature."""
    server = sp_peers.pysaml2_idp(tmp_path, idp_rsa, sp_rsa)
    parts = redirect_parts(authn_request_redirect(options(), RELAY_STATE, signing=SigningKey(sp_rsa.key, None)).url)
    with pytest.raises(IncorrectlySigned):
        server.parse_authn_request(
            parts["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            relay_state="https://evil.example.net/",
            sigalg=parts["SigAlg"],
            signature=parts["Signature"],
        )
    unsigned = redirect_parts(authn_request_redirect(options(), RELAY_STATE).url)
    with pytest.raises(IncorrectlySigned):
        server.parse_authn_request(unsigned["SAMLRequest"], BINDING_HTTP_REDIRECT, relay_state=RELAY_STATE)


# --- POST binding ----------------------------------------------------------------------------------


def test_post_request_has_an_enveloped_signature(sp_rsa):
    message = authn_request_post(options(), RELAY_STATE, signing=SigningKey(sp_rsa.key, sp_rsa.certificate))
    assert message.url == messages.IDP_SSO_URL
    assert message.fields["RelayState"] == RELAY_STATE
    request = parse_xml(base64.b64decode(message.fields["SAMLRequest"]))
    assert request.get("ID") == message.request_id
    assert [etree.QName(child).localname for child in request][:2] == ["Issuer", "Signature"]
    verify(request, request, [sp_rsa.certificate])
    assert schema_valid(request)


def test_pysaml2_idp_accepts_our_signed_post_request(tmp_path, idp_rsa, sp_rsa):
    server = sp_peers.pysaml2_idp(tmp_path, idp_rsa, sp_rsa)
    message = authn_request_post(options(), RELAY_STATE, signing=SigningKey(sp_rsa.key, sp_rsa.certificate))
    parsed = server.parse_authn_request(message.fields["SAMLRequest"], BINDING_HTTP_POST)
    assert parsed.message.id == message.request_id
    assert parsed.message.protocol_binding == C.BINDING_HTTP_POST


def test_pysaml2_idp_refuses_our_post_request_when_tampered_or_unsigned(tmp_path, idp_rsa, sp_rsa, attacker_rsa):
    server = sp_peers.pysaml2_idp(tmp_path, idp_rsa, sp_rsa)
    message = authn_request_post(options(), signing=SigningKey(sp_rsa.key, sp_rsa.certificate))
    tampered = message.xml.replace(messages.SP_ACS_URL.encode(), b"https://evil.example.net/acs")
    with pytest.raises(IncorrectlySigned):
        server.parse_authn_request(base64.b64encode(tampered).decode(), BINDING_HTTP_POST)
    other_key = authn_request_post(options(), signing=SigningKey(attacker_rsa.key, attacker_rsa.certificate))
    with pytest.raises(IncorrectlySigned):
        server.parse_authn_request(other_key.fields["SAMLRequest"], BINDING_HTTP_POST)
    with pytest.raises(IncorrectlySigned):
        server.parse_authn_request(authn_request_post(options()).fields["SAMLRequest"], BINDING_HTTP_POST)


# --- Artifact resolution -----------------------------------------------------------------------------


def pysaml2_artifact(server, response_xml):
    """The SAMLart value the pysaml2 IdP would send for `response_xml`."""
    return server.use_artifact(response_from_string(response_xml.decode()), 0)


def pysaml2_answers(server, envelope, sign=True, status=None):
    """The pysaml2 IdP's SOAP answer to our ArtifactResolve `envelope`."""
    resolve = server.parse_artifact_resolve(envelope.decode())
    answer = server.create_artifact_response(
        resolve, resolve.artifact.text, bindings=[BINDING_SOAP], sign=False, issuer=server._issuer(), status=status
    )
    if sign:
        # pysaml2 signs an ArtifactResponse before adding the message when asked to sign it, so it signs afterwards here.
        answer = server.sign(answer, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256)
    else:
        # Serialised first: pysaml2's envelope serialiser renames namespace prefixes in a message object, which breaks
        # the assertion's signature (exclusive canonicalisation keeps prefixes).
        answer = str(answer)
    envelope = make_soap_enveloped_saml_thingy(answer)
    return envelope if isinstance(envelope, bytes) else envelope.encode(), resolve


def resolve_with_pysaml2(tmp_path, idp, sp, **answer):
    server = sp_peers.pysaml2_idp(tmp_path, idp, sp)
    artifact = pysaml2_artifact(server, sp_peers.pysaml2_response(server, sign_response=False))
    message = artifact_resolve(
        artifact,
        sp_entity_id=messages.SP_ENTITY_ID,
        destination=sp_peers.IDP_ARTIFACT_URL,
        signing=SigningKey(sp.key, sp.certificate),
    )
    envelope, resolve = pysaml2_answers(server, message.envelope, **answer)
    return artifact, message, envelope, resolve


def test_pysaml2_artifact_names_its_issuer(tmp_path, idp_rsa, sp_rsa):
    """The SP finds the IdP that made an artifact by its SourceID (SHA-1 of the entity ID)."""
    server = sp_peers.pysaml2_idp(tmp_path, idp_rsa, sp_rsa)
    artifact = parse_artifact(pysaml2_artifact(server, sp_peers.pysaml2_response(server)))
    assert artifact.source_id == source_id(messages.IDP_ENTITY_ID) != source_id(messages.SP_ENTITY_ID)


def test_a_broken_artifact_is_not_resolved():
    with pytest.raises(ArtifactError, match="artifact type 0x0001 is not supported"):
        artifact_resolve(
            base64.b64encode(b"\x00\x01" + b"\x00" * 42).decode(),
            sp_entity_id=messages.SP_ENTITY_ID,
            destination=sp_peers.IDP_ARTIFACT_URL,
        )


def test_artifact_round_trip_with_pysaml2_idp(tmp_path, idp_rsa, sp_rsa):
    artifact, message, envelope, resolve = resolve_with_pysaml2(tmp_path, idp_rsa, sp_rsa)
    # pysaml2 read our signed ArtifactResolve; the signature is valid for our certificate.
    assert resolve.id == message.request_id and resolve.artifact.text == artifact
    request = children(parse_xml(message.envelope)[0], C.NS_SAMLP, "ArtifactResolve")[0]
    verify(request, request, [sp_rsa.certificate])
    assert schema_valid(request)

    resolved = read_artifact_response(
        envelope, request_id=message.request_id, idp_entity_id=messages.IDP_ENTITY_ID, idp_certificates=[idp_rsa.certificate]
    )
    assert resolved.signed
    validated = consume_response(resolved.response, sp_peers.consumer_settings(idp_rsa, sp_rsa), signed_envelope=resolved.signed)
    assert validated.name_id == "alice" and validated.assertion_signed and not validated.response_signed


def test_artifact_response_for_another_request_is_refused(tmp_path, idp_rsa, sp_rsa):
    _, _, envelope, _ = resolve_with_pysaml2(tmp_path, idp_rsa, sp_rsa)
    with pytest.raises(InResponseToMismatch, match="the ArtifactResponse answers '.*', not our ArtifactResolve '_other'"):
        read_artifact_response(
            envelope, request_id="_other", idp_entity_id=messages.IDP_ENTITY_ID, idp_certificates=[idp_rsa.certificate]
        )


def test_artifact_response_from_another_issuer_or_signer_is_refused(tmp_path, idp_rsa, sp_rsa, attacker_rsa):
    _, message, envelope, _ = resolve_with_pysaml2(tmp_path, idp_rsa, sp_rsa)
    with pytest.raises(
        IssuerMismatch, match="the ArtifactResponse was issued by 'https://idp.example.org/affwebservices', not by"
    ):
        read_artifact_response(
            envelope,
            request_id=message.request_id,
            idp_entity_id="https://other.example.net",
            idp_certificates=[idp_rsa.certificate],
        )
    with pytest.raises(SignatureError, match="signature invalid for every trusted certificate"):
        read_artifact_response(
            envelope,
            request_id=message.request_id,
            idp_entity_id=messages.IDP_ENTITY_ID,
            idp_certificates=[attacker_rsa.certificate],
        )


def test_unsigned_artifact_response_needs_the_partnership_to_allow_it(tmp_path, idp_rsa, sp_rsa):
    _, message, envelope, _ = resolve_with_pysaml2(tmp_path, idp_rsa, sp_rsa, sign=False)
    arguments = {
        "request_id": message.request_id,
        "idp_entity_id": messages.IDP_ENTITY_ID,
        "idp_certificates": [idp_rsa.certificate],
    }
    with pytest.raises(SignatureRequired, match="the partnership requires signed ArtifactResponses and this one is not signed"):
        read_artifact_response(envelope, **arguments)
    resolved = read_artifact_response(envelope, require_signed=False, **arguments)
    assert not resolved.signed
    # The assertion inside is still signed by the IdP, which the consumer requires by default.
    assert consume_response(resolved.response, sp_peers.consumer_settings(idp_rsa, sp_rsa)).assertion_signed


def test_artifact_response_with_an_error_status_or_no_message(tmp_path, idp_rsa, sp_rsa):
    denied = error_status_factory((C.STATUS_REQUEST_DENIED, "artifact already used"))
    _, message, envelope, _ = resolve_with_pysaml2(tmp_path, idp_rsa, sp_rsa, status=denied)
    arguments = {
        "request_id": message.request_id,
        "idp_entity_id": messages.IDP_ENTITY_ID,
        "idp_certificates": [idp_rsa.certificate],
    }
    with pytest.raises(
        IdPStatusError,
        match="error status instead of an assertion in the ArtifactResponse: Responder/RequestDenied: artifact already used",
    ):
        read_artifact_response(envelope, **arguments)

    _, message, envelope, _ = resolve_with_pysaml2(tmp_path, idp_rsa, sp_rsa, sign=False)
    arguments["request_id"] = message.request_id
    root = parse_xml(envelope)
    artifact_response = root[0][0]
    artifact_response.remove(children(artifact_response, C.NS_SAMLP, "Response")[0])
    with pytest.raises(InvalidMessage, match="the IdP returned no message for the artifact"):
        read_artifact_response(to_bytes(root), require_signed=False, **arguments)


def test_soap_fault_instead_of_an_artifact_response():
    with pytest.raises(SOAPFault, match=r"SOAP fault \(SOAP-ENV:Server\): artifact store unavailable"):
        read_artifact_response(
            to_bytes(soap_fault("artifact store unavailable")), request_id="_x", idp_entity_id="x", idp_certificates=[]
        )
