"""HTTP-Artifact SSO with pysaml2 as the SP: our IdP stores the Response and redirects with SAMLart; pysaml2 calls our
saml2artifactresolution over real HTTP (the live server on loopback) with its own SOAP client, and gets the Response
once. Back-channel authentication (Basic, client certificate from a trusted proxy, none with a warning)."""

import base64
import warnings

import pytest
import requests
from cryptography.utils import CryptographyDeprecationWarning
from lxml import etree

from federation import runtime_paths
from federation.directories import get_embedded_directory
from federation.models import ArtifactMessage, TraceLine
from federation.saml import constants as C
from federation.saml.artifacts import build_artifact
from tests import idp_runtime_support as support

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_ARTIFACT, BINDING_HTTP_REDIRECT


@pytest.fixture(autouse=True)
def fresh_caches():
    support.clear_runtime_caches()


def live_world(make_partnership, django_user_model, live_server, **settings):
    get_embedded_directory()  # a transactional test flushes the row the migration made
    return support.build_world(make_partnership, django_user_model, idp_base=live_server.url, settings=settings or None)


def artifact_redirect(client, sp, world):
    request_id, info = sp.prepare_for_authenticate(
        entityid=world.idp_entity_id,
        relay_state="after-artifact",
        binding=BINDING_HTTP_REDIRECT,
        response_binding=BINDING_HTTP_ARTIFACT,
        sigalg=C.RSA_SHA256,
        digest_alg=C.SHA256,
    )
    start = client.get(support.local_part(support.redirect_binding_url(info)), secure=True)
    answer = support.sign_in(client, start)
    assert answer.status_code == 302, answer.content[:500]
    assert answer["Location"].startswith(support.SP_ACS_ARTIFACT + "?")
    return request_id, support.redirect_query(answer)


def inner_response(soap_text):
    """The Response inside an ArtifactResponse, as the bytes we sent (pysaml2's own parse re-serialises it)."""
    root = etree.fromstring(soap_text.encode())
    return root.find(f".//{{{C.NS_SAMLP}}}ArtifactResponse/{{{C.NS_SAMLP}}}Response")


def test_pysaml2_resolves_our_artifact_over_http_once(client, make_partnership, django_user_model, live_server, tmp_path):
    world = live_world(make_partnership, django_user_model, live_server)
    sp = support.pysaml2_sp(world, tmp_path)
    request_id, query = artifact_redirect(client, sp, world)
    assert query["RelayState"] == "after-artifact"
    assert sp.artifact2destination(query["SAMLart"], "idpsso") == world.artifact_url

    http = sp.artifact2message(query["SAMLart"], "idpsso", sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256)
    assert http.status_code == 200, http.text[:500]
    resolved = sp.parse_artifact_resolve_response(http.text)
    assert resolved.in_response_to == request_id
    assert resolved.assertion[0].subject.name_id.text == "alice@example.test"
    values = {a.name: [v.text for v in a.attribute_value] for a in resolved.assertion[0].attribute_statement[0].attribute}
    assert values["groups"] == ["staff", "admins"]
    # The Response as we stored it verifies with pysaml2's full SSO checks (signature, audience, times, InResponseTo).
    inner = etree.tostring(inner_response(http.text))
    parsed = sp.parse_authn_request_response(base64.b64encode(inner).decode(), BINDING_HTTP_ARTIFACT, {request_id: "/"})
    assert parsed.assertion.subject.name_id.text == "alice@example.test"
    assert not ArtifactMessage.objects.exists()

    # Replayed artifact: an ArtifactResponse with no message, and a trace line saying why.
    again = sp.artifact2message(query["SAMLart"], "idpsso", sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256)
    assert again.status_code == 200 and inner_response(again.text) is None
    assert TraceLine.objects.filter(checkpoint="SSOSAML2_ARTIFACT_NOT_FOUND", message__contains="already resolved").exists()
    assert TraceLine.objects.filter(checkpoint="SSOSAML2_BACKCHANNEL_UNAUTHENTICATED").exists()


def test_expired_artifact_is_not_handed_out(client, make_partnership, django_user_model, live_server, tmp_path):
    from datetime import timedelta

    from django.utils import timezone

    world = live_world(make_partnership, django_user_model, live_server)
    sp = support.pysaml2_sp(world, tmp_path)
    _, query = artifact_redirect(client, sp, world)
    ArtifactMessage.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    http = sp.artifact2message(query["SAMLart"], "idpsso", sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256)
    assert http.status_code == 200 and inner_response(http.text) is None
    assert TraceLine.objects.filter(checkpoint="SSOSAML2_ARTIFACT_NOT_FOUND", message__contains="expired").exists()


def resolve_with(world, sp, artifact_text, **http):
    """An ArtifactResolve made by pysaml2, sent with `requests` so the test controls the HTTP headers."""
    from saml2.pack import make_soap_enveloped_saml_thingy
    from saml2.s_utils import sid

    _, message = sp.create_artifact_resolve(
        artifact_text, world.artifact_url, sid(), sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256
    )
    return requests.post(
        world.artifact_url,
        data=make_soap_enveloped_saml_thingy(str(message)).encode(),
        headers={"Content-Type": "text/xml"},
        timeout=30,
        **http,
    )


def test_basic_back_channel_authentication(client, make_partnership, django_user_model, live_server, tmp_path):
    world = live_world(
        make_partnership,
        django_user_model,
        live_server,
        sso_slo={
            "sso_bindings": ["post", "artifact"],
            "backchannel_in_auth": "basic",
            "backchannel_in_password": "Back-Channel-9",
        },
    )
    sp = support.pysaml2_sp(world, tmp_path)
    _, query = artifact_redirect(client, sp, world)
    refused = resolve_with(world, sp, query["SAMLart"])
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    wrong = resolve_with(world, sp, query["SAMLart"], auth=(world.partnership.name, "guess"))
    assert wrong.status_code == 401 and b"Fault" in wrong.content
    assert ArtifactMessage.objects.count() == 1  # refused callers consume nothing
    good = resolve_with(world, sp, query["SAMLart"], auth=(world.partnership.name, "Back-Channel-9"))
    assert good.status_code == 200 and inner_response(good.text) is not None
    assert TraceLine.objects.filter(checkpoint="SSOSAML2_BACKCHANNEL_AUTH_FAILED").count() == 2


def test_client_certificate_only_from_a_trusted_proxy(client, make_partnership, django_user_model, tmp_path, settings):
    """Client certificates need https endpoints, so this one runs through Django's test client (REMOTE_ADDR is the
    TLS-terminating proxy's address, the header carries the certificate as nginx's $ssl_client_escaped_cert)."""
    from urllib.parse import quote

    from saml2.pack import make_soap_enveloped_saml_thingy
    from saml2.s_utils import sid

    from tests.saml.credentials import make_credential

    world = support.build_world(
        make_partnership,
        django_user_model,
        settings={"sso_slo": {"sso_bindings": ["post", "artifact"], "backchannel_in_auth": "client_cert"}},
    )
    sp = support.pysaml2_sp(world, tmp_path)
    good_cert = quote(make_credential("rsa", world.partnership.name).cert_pem.decode())
    other_cert = quote(make_credential("rsa", "someone-else").cert_pem.decode())
    _, query = artifact_redirect(client, sp, world)

    def resolve(certificate, proxy="10.0.0.5"):
        _, message = sp.create_artifact_resolve(
            query["SAMLart"], world.artifact_url, sid(), sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256
        )
        body = make_soap_enveloped_saml_thingy(str(message))
        return client.post(
            runtime_paths.SAML2_ARTIFACT_RESOLUTION,
            body,
            content_type="text/xml",
            secure=True,
            REMOTE_ADDR=proxy,
            HTTP_X_SSL_CLIENT_CERT=certificate,
        )

    assert resolve(good_cert).status_code == 403  # no trusted proxy configured: the header is ignored
    settings.FEDERATION_CLIENT_CERT_TRUSTED_PROXIES = "10.0.0.5"
    assert resolve(good_cert, proxy="10.0.0.99").status_code == 403  # not from the proxy
    assert resolve(other_cert).status_code == 403  # CN is not the partnership name
    assert ArtifactMessage.objects.count() == 1
    good = resolve(good_cert)
    assert good.status_code == 200 and inner_response(good.content.decode()) is not None
    messages = list(TraceLine.objects.filter(checkpoint="SSOSAML2_BACKCHANNEL_AUTH_FAILED").values_list("message", flat=True))
    assert any("no trusted proxy" in m for m in messages)
    assert any("not from a trusted proxy" in m for m in messages)
    assert any("is not the partnership name" in m for m in messages)


def test_artifact_for_another_sp_is_not_handed_out(client, make_partnership, django_user_model, live_server, tmp_path):
    world = live_world(make_partnership, django_user_model, live_server)
    sp = support.pysaml2_sp(world, tmp_path)
    # A message stored for another partner under an artifact of ours: this SP may not take it.
    artifact = build_artifact(world.idp_entity_id)
    from federation import artifact_store

    artifact_store.store(
        artifact, issuer=world.idp_entity_id, recipient="https://other.example/sp", partnership="x", message=b"<x/>"
    )
    answer = resolve_with(world, sp, artifact.value)
    assert answer.status_code == 200 and inner_response(answer.text) is None
    assert ArtifactMessage.objects.count() == 1
    assert TraceLine.objects.filter(checkpoint="SSOSAML2_ARTIFACT_NOT_FOUND", message__contains="made for").exists()


def test_artifact_resolution_refuses_get_and_unknown_partners(live_server, db):
    assert requests.get(live_server.url + runtime_paths.SAML2_ARTIFACT_RESOLUTION, timeout=30).status_code == 405
    body = (
        b'<?xml version="1.0"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body>'
        b'<samlp:ArtifactResolve xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        b'ID="_a1" Version="2.0" IssueInstant="2030-01-01T00:00:00Z"><saml:Issuer>https://stranger.example/</saml:Issuer>'
        b"<samlp:Artifact>AAQAAA==</samlp:Artifact></samlp:ArtifactResolve></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
    answer = requests.post(live_server.url + runtime_paths.SAML2_ARTIFACT_RESOLUTION, data=body, timeout=30)
    assert answer.status_code == 403 and b"not a partner" in answer.content
