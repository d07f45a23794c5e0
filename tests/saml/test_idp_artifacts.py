"""SAML 2.0 artifacts and artifact resolution (federation.saml.artifacts), with pysaml2's SP
as the resolving party: it maps our artifact to our resolution service, sends a signed
ArtifactResolve that we parse, and reads the ArtifactResponse we build."""

import base64
import hashlib
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.utils import CryptographyDeprecationWarning

from federation.saml import constants as C
from federation.saml.artifacts import (
    ArtifactError,
    ArtifactResolvePolicy,
    build_artifact,
    build_artifact_resolve,
    build_artifact_response,
    entity_for_source_id,
    parse_artifact,
    parse_artifact_resolve,
    parse_artifact_response,
    source_id,
    source_id_index,
)
from federation.saml.assertions import build_response
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
from federation.saml.errors import SignatureError, XMLSecurityError
from federation.saml.signing import verify
from federation.saml.xml import children, parse_xml, to_bytes

from . import idp_peers, messages, peers

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2.pack import make_soap_enveloped_saml_thingy
    from saml2.s_utils import sid
    from saml2.sigver import CryptoBackendXmlSec1
    from saml2.sigver import SignatureError as Pysaml2SignatureError


def raw(artifact_text):
    return base64.b64decode(artifact_text)


# --- The artifact itself ---------------------------------------------------------------------


def test_artifact_round_trip_and_layout():
    artifact = build_artifact(messages.IDP_ENTITY_ID, endpoint_index=3)
    octets = raw(artifact.value)
    assert len(octets) == 44
    assert octets[:2] == b"\x00\x04" and octets[2:4] == b"\x00\x03"
    assert octets[4:24] == hashlib.sha1(messages.IDP_ENTITY_ID.encode()).digest() == source_id(messages.IDP_ENTITY_ID)
    parsed = parse_artifact(artifact.value)
    assert parsed == artifact
    assert (parsed.type_code, parsed.endpoint_index, len(parsed.message_handle)) == (4, 3, 20)
    assert build_artifact(messages.IDP_ENTITY_ID).message_handle != build_artifact(messages.IDP_ENTITY_ID).message_handle


def test_source_id_lookup():
    index = source_id_index([messages.SP_ENTITY_ID, messages.IDP_ENTITY_ID])
    artifact = parse_artifact(build_artifact(messages.IDP_ENTITY_ID).value)
    assert entity_for_source_id(artifact, index) == messages.IDP_ENTITY_ID
    assert entity_for_source_id(artifact, [messages.SP_ENTITY_ID]) is None
    assert entity_for_source_id(source_id(messages.SP_ENTITY_ID), index) == messages.SP_ENTITY_ID


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (base64.b64encode(b"\x00\x01" + b"\x00" * 40).decode(), "artifact type 0x0001 is not supported"),
        (base64.b64encode(b"\x00\x02" + b"\x00" * 42).decode(), "artifact type 0x0002 is not supported"),
        (base64.b64encode(b"\x00\x04" + b"\x00" * 41).decode(), "a type 0x0004 artifact is 44 bytes long, this one is 43"),
        (base64.b64encode(b"\x00\x04" + b"\x00" * 43).decode(), "this one is 45"),
        ("AAQAAA==!", "not valid base64"),
        ("", "the SAMLart parameter is empty"),
        ("A" * 400, "too long"),
    ],
)
def test_bad_artifacts_are_refused(value, reason):
    with pytest.raises(ArtifactError, match=reason):
        parse_artifact(value)


def test_pysaml2_maps_our_artifact_to_our_resolution_service(tmp_path, sp_rsa, idp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    artifact = build_artifact(messages.IDP_ENTITY_ID, endpoint_index=0)
    assert client.artifact2destination(artifact.value, "idpsso") == idp_peers.IDP_ARTIFACT_URL


# --- Resolution over SOAP --------------------------------------------------------------------


def resolve_policy(sp, **overrides):
    values = {
        "requester_entity_id": messages.SP_ENTITY_ID,
        "verification_certificates": (sp.certificate,),
        "require_signed": True,
        "resolution_urls": (idp_peers.IDP_ARTIFACT_URL,),
    }
    values.update(overrides)
    return ArtifactResolvePolicy(**values)


def pysaml2_artifact_resolve(client, artifact, sign=True):
    request_id, request = client.create_artifact_resolve(
        artifact.value, idp_peers.IDP_ARTIFACT_URL, sid(), sign=sign, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256
    )
    return request_id, make_soap_enveloped_saml_thingy(str(request))


def test_pysaml2_resolves_a_response_through_our_artifact_service(tmp_path, sp_rsa, idp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    # The IdP issued a Response for Artifact delivery and stored it under the artifact. pysaml2
    # re-serialises SOAP bodies with ElementTree, which drops the xmlns:xs that xsi:type values
    # need, so this partnership sends untyped attribute values.
    assertion = idp_peers.assertion_settings("_authn-1", typed_attribute_values=False)
    stored = build_response(
        idp_peers.response_settings(idp_rsa, "_authn-1", binding=C.BINDING_HTTP_ARTIFACT, assertion=assertion)
    )
    artifact = build_artifact(messages.IDP_ENTITY_ID)

    request_id, body = pysaml2_artifact_resolve(client, artifact)
    resolve = parse_artifact_resolve(body.encode(), resolve_policy(sp_rsa))
    assert resolve.signed and resolve.id == request_id
    assert resolve.issuer == messages.SP_ENTITY_ID and resolve.artifact == artifact
    assert resolve.destination == idp_peers.IDP_ARTIFACT_URL

    # pysaml2 reads the ArtifactResponse and hands back the stored Response. (It cannot verify a
    # signed ArtifactResponse from any signer but itself: its SOAP path re-serialises the body
    # with ElementTree's ns0/ns1 prefixes, which changes the exc-c14n digest. The signed variant
    # is checked with the xmlsec1 tool in the next test.)
    envelope = build_artifact_response(issuer=messages.IDP_ENTITY_ID, in_response_to=resolve.id, message=stored.to_bytes())
    resolved = client.parse_artifact_resolve_response(to_bytes(envelope).decode())
    assert resolved.id == stored.response_id
    assert resolved.in_response_to == "_authn-1"
    assert resolved.assertion[0].subject.name_id.text == "alice-7f3a"
    values = [value.text for value in resolved.assertion[0].attribute_statement[0].attribute[1].attribute_value]
    assert values == ["admins", "staff", "R&D <lab>"]


def test_signed_artifact_response_verifies_with_xmlsec1_and_our_parser(tmp_path, idp_rsa):
    stored = build_response(idp_peers.response_settings(idp_rsa, "_authn-1", binding=C.BINDING_HTTP_ARTIFACT))
    envelope = build_artifact_response(
        issuer=messages.IDP_ENTITY_ID,
        in_response_to="_resolve-1",
        message=stored.element,
        signing=SigningKey(idp_rsa.key, idp_rsa.certificate),
    )
    body = to_bytes(envelope)
    response_id = unwrap_soap(body).get("ID")
    _, cert_file = idp_rsa.write(tmp_path, "xmlsec1-idp")
    backend = CryptoBackendXmlSec1(peers.XMLSEC1)
    node = f"{C.NS_SAMLP}:ArtifactResponse"
    assert backend.validate_signature(body, cert_file, "pem", node, response_id)
    with pytest.raises(Pysaml2SignatureError):
        backend.validate_signature(body.replace(b"_resolve-1", b"_resolve-2"), cert_file, "pem", node, response_id)

    answer = parse_artifact_response(body, [idp_rsa.certificate], require_signed=True)
    assert answer.signed and answer.status.success and answer.in_response_to == "_resolve-1"
    inner = answer.message
    assert inner.get("ID") == stored.response_id
    assert verify(inner, children(inner, C.NS_SAML, "Assertion")[0], [idp_rsa.certificate]) is not None
    with pytest.raises(SignatureError, match="modified after signing"):
        parse_artifact_response(body.replace(b"_resolve-1", b"_resolve-2"), [idp_rsa.certificate])


def test_unknown_artifact_gets_a_response_without_message(sp_rsa, idp_rsa):
    resolve = build_artifact_resolve(
        messages.SP_ENTITY_ID,
        build_artifact(messages.IDP_ENTITY_ID),
        idp_peers.IDP_ARTIFACT_URL,
        signing=SigningKey(sp_rsa.key, sp_rsa.certificate),
    )
    parsed = parse_artifact_resolve(encode_soap(resolve.element), resolve_policy(sp_rsa))
    envelope = build_artifact_response(issuer=messages.IDP_ENTITY_ID, in_response_to=parsed.id, message=None)
    answer = parse_artifact_response(to_bytes(envelope))
    assert answer.status.success and answer.message is None and answer.signed is False
    with pytest.raises(SignatureRequired):
        parse_artifact_response(to_bytes(envelope), [idp_rsa.certificate], require_signed=True)


def test_artifact_resolve_attacks(tmp_path, sp_rsa, idp_rsa, attacker_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    artifact = build_artifact(messages.IDP_ENTITY_ID)
    policy = resolve_policy(sp_rsa)
    _, unsigned = pysaml2_artifact_resolve(client, artifact, sign=False)
    with pytest.raises(SignatureRequired, match="requires signed ArtifactResolves"):
        parse_artifact_resolve(unsigned.encode(), policy)
    assert parse_artifact_resolve(unsigned.encode(), resolve_policy(sp_rsa, require_signed=False)).signed is False
    _, signed = pysaml2_artifact_resolve(client, artifact)
    other = build_artifact(messages.IDP_ENTITY_ID).value
    with pytest.raises(SignatureError, match="modified after signing"):
        parse_artifact_resolve(signed.replace(artifact.value, other).encode(), policy)
    with pytest.raises(SignatureError, match="signature invalid for every trusted certificate"):
        parse_artifact_resolve(signed.encode(), resolve_policy(attacker_rsa))
    with pytest.raises(InvalidMessage, match="not from"):
        parse_artifact_resolve(signed.encode(), resolve_policy(sp_rsa, requester_entity_id="https://other.example"))
    old = build_artifact_resolve(
        messages.SP_ENTITY_ID,
        artifact,
        idp_peers.IDP_ARTIFACT_URL,
        signing=SigningKey(sp_rsa.key, sp_rsa.certificate),
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    with pytest.raises(MessageExpired, match="the ArtifactResolve is too old"):
        parse_artifact_resolve(encode_soap(old.element), policy)
    with pytest.raises(InvalidMessage, match="expected a ArtifactResolve message, got AuthnRequest"):
        parse_artifact_resolve(encode_soap(messages.authn_request()), policy)
    bad = build_artifact_resolve(messages.SP_ENTITY_ID, base64.b64encode(b"\x00\x01" + b"\x00" * 40).decode(), None)
    with pytest.raises(ArtifactError, match="type 0x0001"):
        parse_artifact_resolve(encode_soap(bad.element), resolve_policy(sp_rsa, require_signed=False))


def test_issuer_lookup_policy(sp_rsa):
    resolve = build_artifact_resolve(
        messages.SP_ENTITY_ID, build_artifact(messages.IDP_ENTITY_ID), signing=SigningKey(sp_rsa.key, sp_rsa.certificate)
    )
    seen = []
    parsed = parse_artifact_resolve(encode_soap(resolve.element), lambda issuer: seen.append(issuer) or resolve_policy(sp_rsa))
    assert parsed.signed and seen == [messages.SP_ENTITY_ID]


# --- SOAP envelopes --------------------------------------------------------------------------


def test_soap_unwrap_rules():
    with pytest.raises(SOAPFault, match=r"SOAP fault \(SOAP-ENV:Client\): no such artifact") as caught:
        unwrap_soap(to_bytes(soap_fault("no such artifact", "Client")))
    assert caught.value.status == C.STATUS_RESPONDER and caught.value.fault_string == "no such artifact"
    soap12 = f'<e:Envelope xmlns:e="{C.NS_SOAP12}"><e:Body><x/></e:Body></e:Envelope>'
    with pytest.raises(InvalidMessage, match="SOAP 1.2"):
        unwrap_soap(soap12)
    two = f'<e:Envelope xmlns:e="{C.NS_SOAP11}"><e:Body><x/><y/></e:Body></e:Envelope>'
    with pytest.raises(InvalidMessage, match="exactly one element, not 2"):
        unwrap_soap(two)
    header = (
        f'<e:Envelope xmlns:e="{C.NS_SOAP11}"><e:Header><h e:mustUnderstand="1"/></e:Header><e:Body><x/></e:Body></e:Envelope>'
    )
    with pytest.raises(InvalidMessage, match="must be understood"):
        unwrap_soap(header)
    with pytest.raises(InvalidMessage, match="expected a SOAP 1.1 Envelope"):
        unwrap_soap("<Envelope><Body><x/></Body></Envelope>")
    with pytest.raises(XMLSecurityError, match="DTDs"):
        unwrap_soap(f'<!DOCTYPE e [<!ENTITY a "b">]><e:Envelope xmlns:e="{C.NS_SOAP11}"><e:Body><x>&a;</x></e:Body></e:Envelope>')
    with pytest.raises(XMLSecurityError, match="larger than the limit of 100 bytes"):
        unwrap_soap(b" " * 101, max_bytes=100)
    assert unwrap_soap(f'<e:Envelope xmlns:e="{C.NS_SOAP11}"><e:Body> <x/> </e:Body></e:Envelope>').tag == "x"
    assert parse_xml(to_bytes(soap_fault("x"))) is not None
