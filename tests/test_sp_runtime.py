"""The SAML 2.0 SP runtime through Django's test client with pysaml2 as the IdP: SP-initiated SSO on POST and
Artifact, the AuthnRequest service's parameters, IdP-initiated SSO allowed and refused, encrypted assertions,
status redirects, the IdP discovery service and the site-selection page, and the sweep of expired state."""

import base64
import warnings
from datetime import timedelta
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from cryptography.utils import CryptographyDeprecationWarning
from django.test import Client

from federation import runtime_paths, sp_runtime, tasks
from federation.models import SpRequestState, SpSession
from federation.saml import constants as C
from federation.saml.bindings import inflate_decode
from federation.saml.common import utc_now
from federation.saml.signing import sign, verify
from federation.saml.xml import children, parse_xml
from partnerships import authn_context_services
from tests import sp_runtime_support as support
from tests.idp_runtime_support import form_of
from tests.sp_runtime_support import (
    ACS_PATH,
    ACS_URL,
    AUTHN_PATH,
    IDP_ENTITY_ID,
    IDP_SSO,
    SP_ENTITY_ID,
    TARGET,
    LoopbackIdP,
    core_response,
    idp_response,
    make_world,
    post_response,
    pysaml2_idp,
    sso,
    start,
    trace_lines,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

pytestmark = pytest.mark.django_db


@pytest.fixture
def idp_key():
    return support.keys()[0]


@pytest.fixture
def sp_key():
    return support.keys()[1]


@pytest.fixture
def world(db, django_user_model):
    return support.default_world(django_user_model)


@pytest.fixture
def idp(tmp_path):
    """The pysaml2 IdP of the partnership (it does not require signed AuthnRequests)."""
    return support.pysaml2_idp(tmp_path, *support.keys())


def authn_request_of(response):
    """(AuthnRequest element, query parts) of a Redirect-binding answer."""
    assert response.status_code == 302, response.content
    parts = {name: values[0] for name, values in parse_qs(urlsplit(response["Location"]).query).items()}
    return parse_xml(inflate_decode(parts["SAMLRequest"])), parts


def session_cookie(response):
    return response.cookies[sp_runtime.SESSION_COOKIE].value


# --- SP-initiated SSO over HTTP-POST -----------------------------------------------------------------------------------


def test_sp_initiated_post_with_signed_assertion(client, world, idp):
    response = sso(client, idp)
    assert response.status_code == 302, response.content
    assert response["Location"] == TARGET
    cookie = response.cookies[sp_runtime.SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["max-age"] == 120 * 60
    session = SpSession.objects.get()
    assert (session.username, session.directory, session.partnership) == ("alice", "Embedded directory", "DemoSP")
    assert session.name_id == "alice" and session.name_id_format == C.NAMEID_PERSISTENT
    assert session.authn_class == C.AC_PASSWORD_PROTECTED_TRANSPORT
    assert session.key != cookie.value and len(session.key) == 64  # the cookie's SHA-256, not the cookie itself
    assert not SpRequestState.objects.exists()  # the request was claimed once
    assert trace_lines("SSOSAML2SP_ACS_ACCEPTED", "IdP-initiated") == []
    assert trace_lines("SSOSAML2SP_SESSION_CREATED", "alice")


def test_signed_response_only_needs_the_partnership_to_accept_it(client, world, idp):
    refused = sso(client, idp, sign_response=True, sign_assertion=False)
    assert refused.status_code == 400
    assert trace_lines("SSOSAML2SP_ACS_REFUSED", "the assertion is not signed, and this partnership requires a signed assertion")
    world.reactivate(signature={"require_signed_assertions": False, "require_signed_responses": True})
    accepted = sso(client, idp, sign_response=True, sign_assertion=False)
    assert accepted.status_code == 302 and accepted["Location"] == TARGET


def test_response_and_assertion_both_signed(client, world, idp):
    world.reactivate(signature={"require_signed_assertions": True, "require_signed_responses": True})
    assert sso(client, idp, sign_response=False).status_code == 400
    accepted = sso(client, idp, sign_response=True, sign_assertion=True)
    assert accepted.status_code == 302 and SpSession.objects.count() == 1
    assert trace_lines("SSOSAML2SP_ACS_ACCEPTED", "signed response")


def test_relay_state_of_the_request_is_where_the_user_lands(client, world, idp):
    world.reactivate(application={"relay_state_overrides_target": True})
    _, request_id = start(client, RelayState="https://app.example.org/reports/42")
    # The IdP echoes RelayState; what we stored with the request is what counts.
    response = post_response(client, idp_response(idp, request_id), relay_state="https://app.example.org/other")
    assert response["Location"] == "https://app.example.org/reports/42"


def test_a_response_posted_from_another_browser_is_refused(client, world, idp):
    _, request_id = start(client)
    other_browser = Client()
    response = post_response(other_browser, idp_response(idp, request_id))
    assert response.status_code == 400
    assert trace_lines("SSOSAML2SP_ACS_REFUSED", "which was started in another browser")
    # The request was not used up by the attempt: the right browser still finishes.
    assert post_response(client, idp_response(idp, request_id)).status_code == 302


# --- HTTP-Artifact -----------------------------------------------------------------------------------------------------


def artifact_world(idp_key, sp_key, loopback, **sso_slo):
    return make_world(idp_key, sp_key, artifact_url=loopback.url, settings={"sso_slo": sso_slo} if sso_slo else None)


def test_artifact_binding_resolved_over_soap_with_pysaml2(client, db, idp_key, sp_key, django_user_model, tmp_path):
    django_user_model.objects.create_user("alice")
    with LoopbackIdP(tmp_path, idp_key, sp_key) as loopback:
        artifact_world(idp_key, sp_key, loopback)
        _, request_id = start(client, ProtocolBinding=C.BINDING_HTTP_ARTIFACT)
        artifact = loopback.artifact_for(idp_response(loopback.idp, request_id))
        response = client.get(ACS_PATH, {"SAMLart": artifact})
    assert response.status_code == 302, response.content
    assert response["Location"] == TARGET and SpSession.objects.get().username == "alice"
    # Our ArtifactResolve was signed with the SP's key and sent without authentication (the default: none).
    (call,) = loopback.requests
    assert call["authorization"] is None
    resolve = children(parse_xml(call["body"])[0], C.NS_SAMLP, "ArtifactResolve")[0]
    verify(resolve, resolve, [sp_key.certificate])
    assert trace_lines("SSOSAML2SP_ARTIFACT_RESOLVED")


def test_artifact_back_channel_with_basic_authentication(client, db, idp_key, sp_key, django_user_model, tmp_path):
    django_user_model.objects.create_user("alice")
    with LoopbackIdP(tmp_path, idp_key, sp_key, basic=("sp-backchannel", "s3cret-pass")) as loopback:
        world = artifact_world(
            idp_key,
            sp_key,
            loopback,
            backchannel_out_auth="basic",
            backchannel_out_user="sp-backchannel",
            backchannel_out_password="s3cret-pass",
        )
        response = client.get(ACS_PATH, {"SAMLart": loopback.artifact_for(idp_response(loopback.idp))})
        assert response.status_code == 302, response.content
        assert loopback.requests[-1]["authorization"] == "Basic " + base64.b64encode(b"sp-backchannel:s3cret-pass").decode()
        world.reactivate(sso_slo={"backchannel_out_password": "wrong-password"})
        refused = client.get(ACS_PATH, {"SAMLart": loopback.artifact_for(idp_response(loopback.idp))})
    assert refused.status_code == 502
    assert b"could not be reached" in refused.content and refused["X-Transaction-ID"].encode() in refused.content
    assert trace_lines("SSOSAML2SP_BACKCHANNEL_FAILED", "HTTP 401 Unauthorized")


def test_unsigned_artifact_response_over_plain_http_is_refused(client, db, idp_key, sp_key, tmp_path):
    with LoopbackIdP(tmp_path, idp_key, sp_key, sign_answer=False) as loopback:
        artifact_world(idp_key, sp_key, loopback)
        response = client.get(ACS_PATH, {"SAMLart": loopback.artifact_for(idp_response(loopback.idp))})
    assert response.status_code == 400
    assert trace_lines("SSOSAML2SP_ARTIFACT_REFUSED", "requires signed ArtifactResponses")


def test_artifact_back_channel_over_tls_with_a_client_certificate(client, db, idp_key, sp_key, django_user_model, tmp_path):
    """The IdP's artifact resolution service on https (a CA the keystore trusts) requires our client certificate."""
    from entities import services as keystore
    from tests.sp_runtime_support import tls_server_context

    django_user_model.objects.create_user("alice")
    context, ca_pem = tls_server_context(tmp_path, sp_key.cert_pem)
    with LoopbackIdP(tmp_path, idp_key, sp_key, tls=context) as loopback:
        world = artifact_world(idp_key, sp_key, loopback, backchannel_out_auth="client_cert", backchannel_out_client_key="sp-key")
        # The server's CA is not trusted yet: the TLS handshake fails and nothing is resolved.
        refused = client.get(ACS_PATH, {"SAMLart": loopback.artifact_for(idp_response(loopback.idp))})
        assert refused.status_code == 502 and not loopback.requests
        assert trace_lines("SSOSAML2SP_BACKCHANNEL_FAILED", "CERTIFICATE_VERIFY_FAILED")
        keystore.import_trusted_ca_chain("loopback-ca", ca_pem)
        _, request_id = start(client)
        response = client.get(ACS_PATH, {"SAMLart": loopback.artifact_for(idp_response(loopback.idp, request_id))})
        assert response.status_code == 302, response.content
        subject = dict(pair[0] for pair in loopback.requests[-1]["client_certificate"]["subject"])
        assert subject["commonName"] == "sp.example.org"
        # Without the client certificate the IdP's server refuses the connection.
        world.reactivate(sso_slo={"backchannel_out_auth": "none"})
        count = len(loopback.requests)
        anonymous = client.get(ACS_PATH, {"SAMLart": loopback.artifact_for(idp_response(loopback.idp))})
        assert anonymous.status_code == 502 and len(loopback.requests) == count


def test_artifact_from_an_unknown_idp_or_when_artifact_is_off(client, world, idp, tmp_path, idp_key, sp_key):
    from federation.saml.artifacts import build_artifact

    unknown = build_artifact("https://stranger.example.net/idp").value
    assert client.get(ACS_PATH, {"SAMLart": unknown}).status_code == 400
    assert trace_lines("SSOSAML2SP_ARTIFACT_UNKNOWN_SOURCE")
    assert client.get(ACS_PATH, {"SAMLart": "not-an-artifact"}).status_code == 400
    world.reactivate(sso_slo={"sso_bindings": ["post"]})
    ours = build_artifact(IDP_ENTITY_ID).value
    assert client.get(ACS_PATH, {"SAMLart": ours}).status_code == 400
    assert trace_lines("SSOSAML2SP_ACS_REFUSED", "the IdP used HTTP-Artifact, which partnership 'DemoSP' does not enable")


# --- Encrypted assertions ----------------------------------------------------------------------------------------------


def test_encrypted_assertion_aes_gcm_is_decrypted_with_our_key(client, world, idp_key, sp_key):
    world.reactivate(signature={"require_encrypted_assertion": True})
    _, request_id = start(client)
    response = post_response(client, core_response(idp_key, request_id, encrypt_for=sp_key))
    assert response.status_code == 302, response.content
    assert trace_lines("SSOSAML2SP_ACS_ACCEPTED", "encrypted assertion")


def test_pysaml2_encrypted_assertion_needs_legacy_algorithms(client, world, idp, sp_key):
    """pysaml2 always encrypts with 3DES and RSA v1.5 key transport, which the SP accepts only when asked."""
    refused = sso(client, idp, encrypt_for=sp_key)
    assert refused.status_code == 400
    assert trace_lines("SSOSAML2SP_ACS_REFUSED", "not allowed")
    world.reactivate(signature={"accept_legacy_encryption": True, "require_encrypted_assertion": True})
    assert sso(client, idp, encrypt_for=sp_key).status_code == 302


# --- IdP-initiated (unsolicited) ---------------------------------------------------------------------------------------


def test_idp_initiated_sso_when_allowed(client, world, idp):
    world.reactivate(application={"relay_state_overrides_target": True})
    response = post_response(client, idp_response(idp, None), relay_state="https://app.example.org/inbox")
    assert response.status_code == 302 and response["Location"] == "https://app.example.org/inbox"
    assert trace_lines("SSOSAML2SP_ACS_ACCEPTED", "IdP-initiated")
    # Without the override, the partnership's target.
    world.reactivate(application={"relay_state_overrides_target": False})
    assert post_response(client, idp_response(idp, None), relay_state="https://app.example.org/inbox")["Location"] == TARGET


def test_idp_initiated_sso_refused_when_only_sp_initiated_is_allowed(client, world, idp):
    world.reactivate(sso_slo={"allowed_transactions": "sp_initiated"})
    response = post_response(client, idp_response(idp, None))
    assert response.status_code == 400 and not SpSession.objects.exists()
    assert trace_lines("SSOSAML2SP_ACS_REFUSED", "this partnership does not accept unsolicited responses")
    assert sso(client, idp).status_code == 302  # SP-initiated still works


def test_sp_initiated_start_refused_when_only_idp_initiated_is_allowed(client, world):
    world.reactivate(sso_slo={"allowed_transactions": "idp_initiated"})
    response, _ = start(client)
    assert response.status_code == 403 and not SpRequestState.objects.exists()
    assert trace_lines("SSOSAML2SP_AUTHNREQUEST_NOT_ALLOWED")


# --- The AuthnRequest service ------------------------------------------------------------------------------------------


def test_authn_request_defaults(client, world, idp):
    response, request_id = start(client)
    assert response["Location"].startswith(IDP_SSO + "?SAMLRequest=")
    request, parts = authn_request_of(response)
    assert request.get("Destination") == IDP_SSO
    assert request.get("ProtocolBinding") == C.BINDING_HTTP_POST and request.get("AssertionConsumerServiceURL") == ACS_URL
    assert request.get("ForceAuthn") is None and "RelayState" not in parts and "Signature" not in parts
    assert children(request, C.NS_SAML, "Issuer")[0].text == SP_ENTITY_ID
    assert not children(request, C.NS_SAMLP, "NameIDPolicy") and not children(request, C.NS_SAMLP, "RequestedAuthnContext")
    state = SpRequestState.objects.get(request_id=request_id)
    assert state.partnership == "DemoSP" and state.data["binding"] == "post" and len(state.data["browser"]) == 64
    browser = response.cookies[sp_runtime.BROWSER_COOKIE]
    assert browser["httponly"] and browser["samesite"] == "Lax"  # plain http in tests: Lax (SameSite=None needs Secure)
    # pysaml2 reads it (it does not require signed requests here).
    assert idp.parse_authn_request(parts["SAMLRequest"], BINDING_HTTP_REDIRECT).message.id == request_id


def test_authn_request_parameters(client, world):
    request, _ = authn_request_of(start(client, ProtocolBinding=C.BINDING_HTTP_ARTIFACT, ForceAuthn="yes")[0])
    assert request.get("ProtocolBinding") == C.BINDING_HTTP_ARTIFACT and request.get("ForceAuthn") == "true"
    request, _ = authn_request_of(start(client, AssertionConsumerServiceIndex="1")[0])
    assert request.get("AssertionConsumerServiceIndex") == "1"
    assert request.get("ProtocolBinding") is None and request.get("AssertionConsumerServiceURL") is None
    request, parts = authn_request_of(start(client, RelayState="https://app.example.org/x")[0])
    assert parts["RelayState"] == "https://app.example.org/x"
    # Parameter names are matched ignoring case, as the reference's own sample link does.
    response = client.get(AUTHN_PATH, {"providerid": IDP_ENTITY_ID, "forceauthn": "true"})
    assert authn_request_of(response)[0].get("ForceAuthn") == "true"


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({}, "saml2authnrequest needs ProviderID"),
        ({"ProviderID": "https://stranger.example.net/idp"}, "There is no active saml2_sp_idp partnership"),
        (
            {"ProviderID": IDP_ENTITY_ID, "ProtocolBinding": C.BINDING_HTTP_POST, "AssertionConsumerServiceIndex": "0"},
            "ProtocolBinding and AssertionConsumerServiceIndex cannot be used together",
        ),
        ({"ProviderID": IDP_ENTITY_ID, "ProtocolBinding": C.BINDING_PAOS}, "is not HTTP-POST or HTTP-Artifact"),
        ({"ProviderID": IDP_ENTITY_ID, "AssertionConsumerServiceIndex": "7"}, "is not one of this SP's ACS indexes"),
        ({"ProviderID": IDP_ENTITY_ID, "ForceAuthn": "perhaps"}, "ForceAuthn='perhaps' is not yes/no"),
        ({"ProviderID": IDP_ENTITY_ID, "RelayState": "x" * 1025}, "RelayState is longer than 1024 bytes"),
    ],
)
def test_bad_authn_request_parameters_get_a_400_page(client, world, params, detail):
    response = client.get(AUTHN_PATH, params)
    assert response.status_code == 400
    assert response["X-Transaction-ID"].encode() in response.content and b"Traceback" not in response.content
    assert any(detail in line for line in trace_lines())
    assert not SpRequestState.objects.exists()


def test_a_binding_the_partnership_does_not_enable_is_refused(client, world):
    world.reactivate(sso_slo={"sso_bindings": ["post"]})
    assert client.get(AUTHN_PATH, {"ProviderID": IDP_ENTITY_ID, "ProtocolBinding": C.BINDING_HTTP_ARTIFACT}).status_code == 400
    assert client.get(AUTHN_PATH, {"ProviderID": IDP_ENTITY_ID, "AssertionConsumerServiceIndex": "1"}).status_code == 400
    assert trace_lines("SSOSAML2SP_AUTHNREQUEST_BAD_PARAMETER", "which this partnership does not enable")


def test_a_parameter_given_twice_is_refused(client, world):
    response = client.get(AUTHN_PATH + f"?ProviderID={quote(IDP_ENTITY_ID)}&RelayState=a&relaystate=b")
    assert response.status_code == 400
    assert trace_lines("SSOSAML2SP_BAD_PARAMETER", "appears more than once")


def test_allow_create_and_its_query_override(client, world):
    world.reactivate(user_identification={"allow_create": True})
    policy = children(authn_request_of(start(client)[0])[0], C.NS_SAMLP, "NameIDPolicy")[0]
    assert policy.get("AllowCreate") == "true" and policy.get("Format") == C.NAMEID_PERSISTENT
    # Without "query parameter overrides", AllowCreate=false is ignored (and traced).
    policy = children(authn_request_of(start(client, AllowCreate="false")[0])[0], C.NS_SAMLP, "NameIDPolicy")[0]
    assert policy.get("AllowCreate") == "true"
    assert trace_lines("SSOSAML2SP_ALLOWCREATE_IGNORED")
    world.reactivate(user_identification={"allow_create": True, "allow_create_query_override": True})
    policy = children(authn_request_of(start(client, AllowCreate="false")[0])[0], C.NS_SAMLP, "NameIDPolicy")[0]
    assert policy.get("AllowCreate") == "false"


def test_relay_state_that_is_not_an_allowed_target_is_refused_before_sign_in(client, world):
    world.reactivate(
        application={
            "relay_state_overrides_target": True,
            "status_redirects": [{"condition": "unauthorized", "url": "https://www.example.org/denied", "method": "302"}],
        }
    )
    for evil in (
        "https://evil.example.net/",
        "https://app.example.org.evil.net/",
        "//evil.example.net/",
        "https://app.example.org@evil.net/",
    ):
        response = client.get(AUTHN_PATH, {"ProviderID": IDP_ENTITY_ID, "RelayState": evil})
        assert response.status_code == 302 and response["Location"] == "https://www.example.org/denied", evil
    assert not SpRequestState.objects.exists()
    assert trace_lines("SSOSAML2SP_TARGET_REFUSED")
    assert start(client, RelayState="https://app.example.org/deep/link?x=1")[1] is not None


def test_signed_authn_requests_on_both_bindings_are_verified_by_pysaml2(client, world, tmp_path, idp_key, sp_key):
    strict_idp = pysaml2_idp(tmp_path, idp_key, sp_key, want_signed_requests=True)
    world.reactivate(signature={"sign_authn_requests": True})
    response, request_id = start(client, RelayState="https://app.example.org/a")
    _, parts = authn_request_of(response)
    assert parts["SigAlg"] == C.RSA_SHA256
    parsed = strict_idp.parse_authn_request(
        parts["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        relay_state=parts["RelayState"],
        sigalg=parts["SigAlg"],
        signature=parts["Signature"],
    )
    assert parsed.message.id == request_id
    world.reactivate(sso_slo={"authn_request_bindings": ["post"]})
    form = start(client)[0]
    action, fields = form_of(form)
    assert form.status_code == 200 and action == IDP_SSO and form["Cache-Control"] == "no-store"
    parsed = strict_idp.parse_authn_request(fields["SAMLRequest"], BINDING_HTTP_POST)
    assert SpRequestState.objects.filter(request_id=parsed.message.id).exists()


def test_requested_authn_context_from_the_template(client, world, idp):
    x509 = "urn:oasis:names:tc:SAML:2.0:ac:classes:X509"
    authn_context_services.create_template(
        "Corporate",
        entries=[{"uri": uri, "grouped": False, "max_level": None} for uri in (x509, C.AC_PASSWORD_PROTECTED_TRANSPORT)],
    )
    world.reactivate(
        authn_context={
            "enabled": True,
            "template": "Corporate",
            "comparison": "minimum",
            "use_template_classes": False,
            "requested_classes": x509,
        }
    )
    request, _ = authn_request_of(start(client)[0])
    (requested,) = children(request, C.NS_SAMLP, "RequestedAuthnContext")
    assert requested.get("Comparison") == "minimum"
    assert [ref.text for ref in requested] == [x509]
    # PasswordProtectedTransport is weaker than X509 in this template: refused as an unaccepted credential.
    refused = sso(client, idp)
    assert refused.status_code == 403
    assert trace_lines("SSOSAML2SP_ACS_REFUSED", "does not satisfy comparison minimum")
    assert sso(client, idp, authn_class=x509).status_code == 302


# --- Status redirects and HTTP errors ----------------------------------------------------------------------------------


def test_status_redirects_by_302_and_by_post(client, world, idp):
    world.reactivate(
        application={
            "status_redirects": [
                {"condition": "user_not_found", "url": "https://www.example.org/register", "method": "302"},
                {"condition": "invalid_sso_message", "url": "https://www.example.org/failed", "method": "post"},
            ]
        }
    )
    not_found = sso(client, idp, name_id="nobody")
    assert not_found.status_code == 302 and not_found["Location"] == "https://www.example.org/register"
    assert trace_lines("SSOSAML2SP_USER_NOT_FOUND", "'nobody'")
    invalid = post_response(client, idp_response(idp, None, destination="https://sp.example.org/elsewhere"))
    action, fields = form_of(invalid)
    assert invalid.status_code == 200 and action == "https://www.example.org/failed"
    assert fields == {"status": "400", "condition": "invalid_sso_message", "transaction_id": invalid["X-Transaction-ID"]}


def test_without_a_status_redirect_the_error_page_shows_the_transaction_id(client, world, idp):
    response = sso(client, idp, name_id="nobody")
    assert response.status_code == 403
    assert b"Your account was not found at this site." in response.content
    assert response["X-Transaction-ID"].encode() in response.content


def test_methods_and_missing_messages(client, world):
    assert client.put(ACS_PATH).status_code == 405
    assert client.delete(AUTHN_PATH).status_code == 405
    assert client.get(ACS_PATH, {"SAMLResponse": "abc"}).status_code == 405
    assert client.get(ACS_PATH).status_code == 400
    assert trace_lines("SSOSAML2SP_ACS_NO_MESSAGE")
    assert trace_lines("SSOSAML2SP_METHOD_NOT_ALLOWED")


def test_a_deactivated_partnership_is_not_served(client, world, idp):
    from partnerships import services

    _, request_id = start(client)
    services.deactivate(world.partnership)
    response = post_response(client, idp_response(idp, request_id))
    assert response.status_code == 400
    assert trace_lines("SSOSAML2SP_ACS_NO_PARTNERSHIP")


# --- IdP discovery -----------------------------------------------------------------------------------------------------


DISCO_HOST = "disco.example.org"


@pytest.fixture
def discovery_world(world, settings):
    """Discovery in the common domain .example.org, with the service at disco.example.org (this site)."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, DISCO_HOST, "sp.example.org"]
    return world.reactivate(
        sso_slo={
            "idp_discovery_enabled": True,
            "idp_discovery_service_url": f"https://{DISCO_HOST}/affwebservices/public/saml2ipd",
            "idp_discovery_common_domain": ".example.org",
        }
    )


def test_common_domain_cookie_format():
    value = sp_runtime.common_domain_cookie_value(["https://idp1.example/", "urn:idp:two"])
    assert value == quote(
        base64.b64encode(b"https://idp1.example/").decode() + " " + base64.b64encode(b"urn:idp:two").decode(), safe=""
    )
    assert sp_runtime.read_common_domain_cookie(value) == ["https://idp1.example/", "urn:idp:two"]
    assert sp_runtime.read_common_domain_cookie("%%%garbage aGk=") == ["hi"]  # unreadable entries are skipped


def test_discovery_service_writes_and_reads_the_common_domain_cookie(client, discovery_world):
    ipd = runtime_paths.SAML2_IDP_DISCOVERY
    page = "https://sp.example.org/affwebservices/public/saml2siteselection"
    for provider in ("https://idp-a.example/", IDP_ENTITY_ID, "https://idp-a.example/"):
        written = client.get(
            ipd, {"SAMLRequest": "setIPDCookie", "ProviderID": provider, "IPDTarget": page}, HTTP_HOST=DISCO_HOST
        )
        assert written.status_code == 302 and written["Location"] == page
    cookie = client.cookies[sp_runtime.COMMON_DOMAIN_COOKIE]
    assert cookie["domain"] == ".example.org" and cookie["path"] == "/"
    assert sp_runtime.read_common_domain_cookie(cookie.value) == [IDP_ENTITY_ID, "https://idp-a.example/"]  # most recent last
    read = client.get(ipd + "/", {"IPDTarget": page, "SAMLRequest": "getIPDCookie"}, HTTP_HOST=DISCO_HOST)
    returned = parse_qs(urlsplit(read["Location"]).query)[sp_runtime.COMMON_DOMAIN_COOKIE][0]
    assert read["Location"].startswith(page + "?")
    assert sp_runtime.read_common_domain_cookie(returned) == [IDP_ENTITY_ID, "https://idp-a.example/"]
    assert trace_lines("SSOSAML2SP_IPD_SET") and trace_lines("SSOSAML2SP_IPD_GET")


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example.net/steal",
        "javascript:alert(1)",
        "https://example.org.evil.net/",
        "https://sp.example.org@evil.net/",
        "//evil.example.net/",
        "",
    ],
)
def test_discovery_service_never_redirects_to_a_stranger(client, discovery_world, target):
    response = client.get(runtime_paths.SAML2_IDP_DISCOVERY, {"IPDTarget": target}, HTTP_HOST=DISCO_HOST)
    assert response.status_code == 403 and "Location" not in response
    assert trace_lines("SSOSAML2SP_IPD_TARGET_REFUSED")


def test_discovery_service_is_off_outside_the_common_domain(client, discovery_world, world):
    response = client.get(runtime_paths.SAML2_IDP_DISCOVERY, {"IPDTarget": "https://sp.example.org/"})  # host testserver
    assert response.status_code == 404 and trace_lines("SSOSAML2SP_IPD_DISABLED")


def test_discovery_service_is_off_without_a_partnership_enabling_it(client, world):
    response = client.get(runtime_paths.SAML2_IDP_DISCOVERY, {"IPDTarget": "https://sp.example.org/"})
    assert response.status_code == 404 and trace_lines("SSOSAML2SP_IPD_DISABLED")


def test_site_selection_lists_the_idps_the_browser_used_and_starts_sso(client, discovery_world):
    page = runtime_paths.SAML2_SP_SITE_SELECTION
    first = client.get(page, {"RelayState": "https://app.example.org/r"}, HTTP_HOST="sp.example.org")
    assert first.status_code == 302
    trip = urlsplit(first["Location"])
    assert f"{trip.scheme}://{trip.netloc}{trip.path}" == f"https://{DISCO_HOST}/affwebservices/public/saml2ipd"
    query = parse_qs(trip.query)
    assert query["SAMLRequest"] == ["getIPDCookie"] and query["IPDTarget"][0].startswith("http://sp.example.org" + page)
    client.get(
        runtime_paths.SAML2_IDP_DISCOVERY,
        {"SAMLRequest": "setIPDCookie", "ProviderID": IDP_ENTITY_ID, "IPDTarget": "https://sp.example.org/"},
        HTTP_HOST=DISCO_HOST,
    )
    back = client.get(runtime_paths.SAML2_IDP_DISCOVERY, {"IPDTarget": query["IPDTarget"][0]}, HTTP_HOST=DISCO_HOST)
    assert back.status_code == 302
    listing = client.get(back["Location"], HTTP_HOST="sp.example.org")
    assert listing.status_code == 200
    (used,) = listing.context["selection"].used
    assert used["entity_id"] == IDP_ENTITY_ID and used["name"] == "idp-partner"
    assert listing.context["selection"].others == []
    assert parse_qs(urlsplit(used["url"]).query) == {"ProviderID": [IDP_ENTITY_ID], "RelayState": ["https://app.example.org/r"]}
    assert b'id="used-idps"' in listing.content
    # The link starts SSO at that IdP.
    started = client.get(used["url"])
    assert started.status_code == 302 and started["Location"].startswith(IDP_SSO)


def test_site_selection_without_discovery_lists_every_idp(client, world):
    listing = client.get(runtime_paths.SAML2_SP_SITE_SELECTION)
    assert listing.status_code == 200 and listing.context["selection"].used == []
    assert [idp["entity_id"] for idp in listing.context["selection"].others] == [IDP_ENTITY_ID]


# --- Housekeeping ------------------------------------------------------------------------------------------------------


def test_sweep_deletes_what_has_expired(client, world, idp):
    sso(client, idp)
    start(client)
    assert (SpRequestState.objects.count(), SpSession.objects.count()) == (1, 1)
    assert sp_runtime.sweep_expired(utc_now()) == {"requests": 0, "sessions": 0}
    assert tasks.sweep_sp_state() == {"requests": 0, "sessions": 0}
    assert sp_runtime.sweep_expired(utc_now() + timedelta(minutes=61)) == {"requests": 1, "sessions": 1}  # idle 60 min
    assert (SpRequestState.objects.count(), SpSession.objects.count()) == (0, 0)


def test_an_expired_request_is_not_answered(client, world, idp):
    _, request_id = start(client)
    SpRequestState.objects.update(expires_at=utc_now() - timedelta(seconds=1))
    assert post_response(client, idp_response(idp, request_id)).status_code == 400
    assert trace_lines("SSOSAML2SP_ACS_REFUSED", "which this SP did not send (or no longer waits for)")


def test_an_idp_error_status_is_an_unaccepted_credential(client, world):
    world.reactivate(
        application={
            "status_redirects": [{"condition": "unaccepted_credential", "url": "https://www.example.org/denied", "method": "302"}]
        }
    )
    _, request_id = start(client)
    xml = (
        f'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="_error-1" Version="2.0" IssueInstant="{utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")}" Destination="{ACS_URL}" '
        f'InResponseTo="{request_id}"><saml:Issuer>{IDP_ENTITY_ID}</saml:Issuer>'
        '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder">'
        '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"/></samlp:StatusCode>'
        "<samlp:StatusMessage>wrong password</samlp:StatusMessage></samlp:Status></samlp:Response>"
    ).encode()
    response = post_response(client, xml)
    assert response.status_code == 302 and response["Location"] == "https://www.example.org/denied"
    assert trace_lines("SSOSAML2SP_ACS_REFUSED", "Responder/AuthnFailed: wrong password")


def test_required_consent_needs_a_signed_response_saying_so(client, world, idp_key):
    from federation.saml.xml import to_bytes

    world.reactivate(sso_slo={"require_consent": True})

    def consented(consent, sign_response=True):
        _, request_id = start(client)
        root = parse_xml(core_response(idp_key, request_id))
        if consent:
            root.set("Consent", consent)
        if sign_response:
            sign(root, idp_key.key, idp_key.certificate)
        return post_response(client, to_bytes(root))

    assert consented(None).status_code == 400
    assert trace_lines("SSOSAML2SP_ACS_REFUSED", "this response has no Consent")
    assert consented("urn:oasis:names:tc:SAML:2.0:consent:obtained", sign_response=False).status_code == 400
    assert consented("urn:oasis:names:tc:SAML:2.0:consent:obtained").status_code == 302


def test_local_entity_id_names_our_sp(client, world):
    assert start(client, LocalEntityID=SP_ENTITY_ID)[1] is not None
    response, _ = start(client, LocalEntityID="https://another-sp.example.org/")
    assert response.status_code == 400 and trace_lines("SSOSAML2SP_AUTHNREQUEST_NO_PARTNERSHIP")


def test_two_local_sps_partnering_one_idp(client, world, idp_key):
    """Two local SPs with partnerships to the same IdP: the start URL names ours with LocalEntityID; a response is
    matched by the stored request it answers, or (IdP-initiated) by its Audience."""
    from entities.models import EntityType, Location
    from partnerships import services
    from tests.partnership_fixtures import entity

    sp2_entity_id, sp2_acs = "https://sp2.example.org/sp", "https://sp2.example.org" + ACS_PATH
    local = entity("sp-two", Location.LOCAL, EntityType.SAML2_SP, entity_id=sp2_entity_id, base_url="https://sp2.example.org")
    settings = {step: dict(values) for step, values in world.partnership.settings.items()}
    second = services.save_partnership(
        kind="saml2_sp_idp",
        name="SecondSP",
        local_entity=local,
        remote_entity=world.partnership.remote_entity,
        directories=["Embedded directory"],
        settings=settings,
    )
    services.activate(second)
    ambiguous, _ = start(client)
    assert ambiguous.status_code == 400 and trace_lines("SSOSAML2SP_AUTHNREQUEST_NO_PARTNERSHIP", "must name the local entity")
    _, request_id = start(client, LocalEntityID=sp2_entity_id)
    answer = core_response(idp_key, request_id, audience=sp2_entity_id, recipient=sp2_acs, destination=sp2_acs)
    assert post_response(client, answer).status_code == 302
    assert SpSession.objects.get().partnership == "SecondSP"
    unsolicited = core_response(idp_key, None, audience=sp2_entity_id, recipient=sp2_acs, destination=sp2_acs)
    assert post_response(client, unsolicited).status_code == 302
    assert SpSession.objects.get().partnership == "SecondSP"
    assert post_response(client, core_response(idp_key, None)).status_code == 302  # audience of the first SP
    assert SpSession.objects.get().partnership == "DemoSP"


def test_a_response_without_issuer_is_matched_by_the_request_it_answers(client, world, idp_key, sp_key):
    from federation.saml.xml import to_bytes

    _, request_id = start(client)
    root = parse_xml(core_response(idp_key, request_id, encrypt_for=sp_key))
    root.remove(children(root, C.NS_SAML, "Issuer")[0])  # optional on a Response; the assertion inside is encrypted
    assert post_response(client, to_bytes(root)).status_code == 302
    unsolicited = parse_xml(core_response(idp_key, None, encrypt_for=sp_key))
    unsolicited.remove(children(unsolicited, C.NS_SAML, "Issuer")[0])
    assert post_response(client, to_bytes(unsolicited)).status_code == 400
    assert trace_lines("SSOSAML2SP_ACS_NO_PARTNERSHIP", "names no Issuer and answers no request of ours")
