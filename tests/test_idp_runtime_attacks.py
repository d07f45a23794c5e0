"""Attacks on saml2sso and the refusals around it: each one gets a clear HTTP status, a page in plain words (never the
detail) and a trace line with its checkpoint. (The replayed artifact is in test_idp_runtime_artifact.py; the expired
LogoutRequest belongs to single logout.)"""

import base64
import warnings
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import pytest
from cryptography.utils import CryptographyDeprecationWarning
from lxml import etree

from federation import runtime_paths
from federation.models import SsoSession, TraceLine
from federation.saml import constants as C
from tests import idp_runtime_support as support
from tests.saml.credentials import make_credential

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT


@pytest.fixture(autouse=True)
def fresh_caches():
    support.clear_runtime_caches()


@pytest.fixture
def world(make_partnership, django_user_model):
    return support.build_world(make_partnership, django_user_model)


def trace_lines(response, checkpoint):
    return list(
        TraceLine.objects.filter(transaction_id=response["X-Transaction-ID"], checkpoint=checkpoint).values_list(
            "message", flat=True
        )
    )


def refused(response, status, checkpoint, words):
    assert response.status_code == status, response.content[:600]
    assert words.encode() in response.content
    assert response["X-Transaction-ID"].encode() in response.content  # the user can quote it
    lines = trace_lines(response, checkpoint)
    assert lines, f"no {checkpoint} trace line"
    return lines[0]


def signed_post_request(sp, world, **kwargs):
    request_id, request = sp.create_authn_request(
        world.sso_url, binding=BINDING_HTTP_POST, sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256, **kwargs
    )
    return request_id, str(request).encode()


def post_request(client, xml, relay_state=None):
    fields = {"SAMLRequest": base64.b64encode(xml).decode()}
    if relay_state is not None:
        fields["RelayState"] = relay_state
    return client.post(runtime_paths.SAML2_SSO, fields, secure=True)


def test_unsigned_authn_request_where_signing_is_required(client, world, tmp_path):
    sp = support.pysaml2_sp(world, tmp_path, sign_requests=False)
    _, info = sp.prepare_for_authenticate(entityid=world.idp_entity_id, binding=BINDING_HTTP_REDIRECT, sign=False)
    response = client.get(support.local_part(support.redirect_binding_url(info)), secure=True)
    detail = refused(response, 403, "SSOSAML2_SIGNATURE_REQUIRED", "it is not signed")
    assert "requires signed AuthnRequests" in detail
    assert b"requires signed" not in response.content  # the detail is for the administrator only


def test_signature_over_a_different_element(client, world, tmp_path):
    """Signature wrapping: the signed original is kept inside, the outer request (another ID, the attacker's
    RelayState-carrying copy) is what would be used. The signature must cover the element we read."""
    sp = support.pysaml2_sp(world, tmp_path)
    _, xml = signed_post_request(sp, world)
    original = etree.fromstring(xml)
    wrapper = etree.fromstring(xml)
    wrapper.set("ID", "_attacker-request")
    wrapper.set("ForceAuthn", "false")
    extensions = etree.SubElement(wrapper, f"{{{C.NS_SAMLP}}}Extensions")
    signature = original.find(f"{{{C.NS_DS}}}Signature")
    original.remove(signature)
    extensions.append(original)  # the signed content, referenced by the wrapper's (moved) signature
    response = post_request(client, etree.tostring(wrapper))
    refused(response, 403, "SSOSAML2_SIGNATURE_INVALID", "signature is not valid")


def test_signature_by_someone_else(client, world, tmp_path):
    attacker = make_credential("rsa", "attacker")
    world.sp = attacker  # the attacker signs as the SP, with a key our partnership does not trust
    sp = support.pysaml2_sp(world, tmp_path)
    _, xml = signed_post_request(sp, world)
    refused(post_request(client, xml), 403, "SSOSAML2_SIGNATURE_INVALID", "signature is not valid")


def test_acs_url_not_registered_is_never_used(client, world, tmp_path):
    sp = support.pysaml2_sp(world, tmp_path)
    _, info = sp.prepare_for_authenticate(
        entityid=world.idp_entity_id,
        binding=BINDING_HTTP_REDIRECT,
        sigalg=C.RSA_SHA256,
        digest_alg=C.SHA256,
        assertion_consumer_service_url="https://evil.example/steal",
    )
    response = client.get(support.local_part(support.redirect_binding_url(info)), secure=True)
    detail = refused(response, 400, "SSOSAML2_ACS_REFUSED", "cannot be served as the service provider sent it")
    assert "https://evil.example/steal" in detail and b"evil.example" not in response.content


def test_acs_url_not_registered_with_negative_responses_goes_to_the_registered_acs(
    client, make_partnership, django_user_model, tmp_path
):
    world = support.build_world(make_partnership, django_user_model, settings={"sso_slo": {"negative_response": True}})
    sp = support.pysaml2_sp(world, tmp_path)
    _, info = sp.prepare_for_authenticate(
        entityid=world.idp_entity_id,
        binding=BINDING_HTTP_REDIRECT,
        sigalg=C.RSA_SHA256,
        digest_alg=C.SHA256,
        assertion_consumer_service_url="https://evil.example/steal",
    )
    response = client.get(support.local_part(support.redirect_binding_url(info)), secure=True)
    acs, fields = support.posted(response)
    assert acs == support.SP_ACS_POST  # never the unregistered URL
    xml = base64.b64decode(fields["SAMLResponse"])
    assert C.STATUS_REQUESTER.encode() in xml and b"Assertion" not in xml
    assert trace_lines(response, "SSOSAML2_NEGATIVE_RESPONSE")


def test_dtd_in_the_message(client, world):
    xml = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_x" Version="2.0" '
        b'IssueInstant="2030-01-01T00:00:00Z">&e;</samlp:AuthnRequest>'
    )
    detail = refused(post_request(client, xml), 400, "SSOSAML2_INVALID_MESSAGE", "could not be read")
    assert "DTD" in detail


def test_oversized_messages(client, world):
    big = base64.b64encode(b"<x>" + b"a" * (C.MAX_MESSAGE_BYTES + 10) + b"</x>").decode()
    response = client.post(runtime_paths.SAML2_SSO, {"SAMLRequest": big}, secure=True)
    refused(response, 413, "SSOSAML2_MESSAGE_TOO_LARGE", "larger than this service accepts")
    # A small Redirect message that inflates past the limit (a DEFLATE bomb).
    bomb = zlib.compress(b"<a>" + b" " * (C.MAX_REDIRECT_MESSAGE_BYTES + 1000) + b"</a>")[2:-4]
    response = client.get(runtime_paths.SAML2_SSO + "?SAMLRequest=" + quote_plus(base64.b64encode(bomb).decode()), secure=True)
    refused(response, 413, "SSOSAML2_MESSAGE_TOO_LARGE", "larger than this service accepts")
    response = client.get(runtime_paths.SAML2_SSO + "?SAMLRequest=" + "A" * 600_000, secure=True)
    refused(response, 413, "SSOSAML2_MESSAGE_TOO_LARGE", "larger than this service accepts")


def test_expired_authn_request(client, world, tmp_path):
    sp = support.pysaml2_sp(world, tmp_path)
    old = datetime.now(UTC) - timedelta(hours=1)
    _, xml = signed_post_request(sp, world)
    # pysaml2 stamps the current time; back-date its request and sign it again with the SP's key.
    from federation.saml.common import SigningKey, sign_element

    element = etree.fromstring(xml)
    element.remove(element.find(f"{{{C.NS_DS}}}Signature"))
    element.set("IssueInstant", old.strftime("%Y-%m-%dT%H:%M:%SZ"))
    sign_element(element, SigningKey(world.sp.key, world.sp.certificate))
    detail = refused(post_request(client, etree.tostring(element)), 400, "SSOSAML2_REQUEST_EXPIRED", "has expired")
    assert "too old" in detail


def test_unknown_sp_and_missing_message(client, world):
    response = client.get(runtime_paths.SAML2_SSO, {"SPID": "https://stranger.example/"}, secure=True)
    refused(response, 400, "SSOSAML2_UNKNOWN_PARTNER", "no active partnership")
    response = client.get(runtime_paths.SAML2_SSO, secure=True)
    refused(response, 400, "SSOSAML2_NO_MESSAGE", "needs a SAML AuthnRequest")
    response = client.put(runtime_paths.SAML2_SSO, secure=True)
    refused(response, 405, "SSOSAML2_METHOD_NOT_ALLOWED", "only GET and POST")


def test_binding_and_transaction_rules(client, make_partnership, django_user_model, tmp_path):
    world = support.build_world(
        make_partnership,
        django_user_model,
        settings={"sso_slo": {"authn_request_bindings": ["post"], "allowed_transactions": "sp_initiated"}},
    )
    sp = support.pysaml2_sp(world, tmp_path)
    _, info = sp.prepare_for_authenticate(
        entityid=world.idp_entity_id, binding=BINDING_HTTP_REDIRECT, sigalg=C.RSA_SHA256, digest_alg=C.SHA256
    )
    response = client.get(support.local_part(support.redirect_binding_url(info)), secure=True)
    refused(response, 400, "SSOSAML2_BINDING_NOT_ENABLED", "does not accept")
    response = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    refused(response, 403, "SSOSAML2_TRANSACTION_NOT_ALLOWED", "only when it starts at the service provider")
    assert not SsoSession.objects.exists()


def test_idp_initiated_protocol_binding_and_relay_state_rules(client, make_partnership, django_user_model):
    world = support.build_world(make_partnership, django_user_model, settings={"sso_slo": {"sso_bindings": ["post"]}})
    response = client.get(
        runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id, "ProtocolBinding": C.BINDING_HTTP_ARTIFACT}, secure=True
    )
    refused(response, 400, "SSOSAML2_BINDING_NOT_ENABLED", "not enabled for this partnership")
    response = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id, "ProtocolBinding": C.BINDING_SOAP}, secure=True)
    refused(response, 400, "SSOSAML2_BINDING_NOT_ENABLED", "must be the HTTP-POST or the HTTP-Artifact binding")
    response = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id, "RelayState": "x" * 1025}, secure=True)
    refused(response, 400, "SSOSAML2_RELAY_STATE_TOO_LONG", "RelayState is too long")


def test_protocol_binding_with_acs_index_is_refused(client, world, tmp_path):
    sp = support.pysaml2_sp(world, tmp_path)
    _, xml = signed_post_request(sp, world)
    element = etree.fromstring(xml)
    element.remove(element.find(f"{{{C.NS_DS}}}Signature"))
    element.attrib.pop("AssertionConsumerServiceURL", None)
    element.set("AssertionConsumerServiceIndex", "0")
    element.set("ProtocolBinding", C.BINDING_HTTP_POST)
    from federation.saml.common import SigningKey, sign_element

    sign_element(element, SigningKey(world.sp.key, world.sp.certificate))
    detail = refused(post_request(client, etree.tostring(element)), 400, "SSOSAML2_ACS_REFUSED", "cannot be served")
    assert "AssertionConsumerServiceIndex and ProtocolBinding" in detail
