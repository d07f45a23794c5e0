"""Single logout at our IdP with real pysaml2 SPs (docs/single-logout.md): an SP logs out by Redirect, POST and SOAP
and every other SP of the session is told (SOAP participants over the back channel first, then the front channel
one after another through the browser); an SP that is down does not stop the rest and the initiator hears
PartialLogout; IdP-initiated logout; and the refusals (expired, unsigned, unknown session, binding not enabled)."""

import base64
import re
import warnings
from html import unescape

import pytest
from cryptography.utils import CryptographyDeprecationWarning

from federation.models import SloTransaction, SsoParticipant, SsoSession
from federation.saml import constants as C
from federation.saml.bindings import inflate_decode
from federation.saml.xml import parse_xml
from federation.sso_sessions import COOKIE_NAME
from tests import idp_runtime_support as idp_support
from tests import slo_support as support

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
    from saml2.pack import make_soap_enveloped_saml_thingy
    from saml2.response import StatusPartialLogout

REASON = "urn:oasis:names:tc:SAML:2.0:logout:user"
# pysaml2 re-serialises a SOAP body with ElementTree before checking its signature, which renames the namespace
# prefixes and so breaks any signature it did not make itself. With pysaml2 SPs the IdP therefore signs only the SOAP
# messages pysaml2 does not verify: LogoutRequests to an SP it calls (PYSAML2_SOAP_PARTICIPANT) are unsigned, and so
# are LogoutResponses to an SP that called (PYSAML2_SOAP_INITIATOR); the back channel protects them.
PYSAML2_SOAP_PARTICIPANT = {"signature": {"sign_slo_soap": "response"}}
PYSAML2_SOAP_INITIATOR = {"signature": {"sign_slo_soap": "request"}}


@pytest.fixture(autouse=True)
def fresh_caches():
    support.clear_caches()


@pytest.fixture
def site(db, django_user_model):
    return support.build_idp(django_user_model)


def logout_request(peer, binding, *, sign=True, expire=None, relay_state="back-to-alpha", session_index=True):
    """pysaml2's LogoutRequest for alice from `peer` on `binding`: (request ID, what to send). Redirect: the URL;
    POST: the form fields; SOAP: the envelope."""
    info = peer.client.users.get_info_from(peer.name_id, support.IDP_ENTITY_ID, False)
    destination = support.IDP_SLO_SOAP if binding == BINDING_SOAP else support.IDP_SLO
    request_id, request = peer.client.create_logout_request(
        destination,
        support.IDP_ENTITY_ID,
        name_id=peer.name_id,
        session_indexes=[info["session_index"]] if session_index else None,
        reason=REASON,
        expire=expire,
        sign=sign and binding != BINDING_HTTP_REDIRECT,
        sign_alg=C.RSA_SHA256,
        digest_alg=C.SHA256,
    )
    if binding == BINDING_SOAP:
        return request_id, make_soap_enveloped_saml_thingy(str(request))
    http = peer.client.apply_binding(
        binding, str(request), destination, relay_state, sign=sign and binding == BINDING_HTTP_REDIRECT, sigalg=C.RSA_SHA256
    )
    if binding == BINDING_HTTP_REDIRECT:
        return request_id, dict(http["headers"])["Location"]
    return request_id, form_fields(http["data"])


def form_fields(html):
    return {name: unescape(value) for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', html)}


def answer_front_channel(peer, response):
    """`peer` (pysaml2) handles our front-channel LogoutRequest and answers; returns what to send back to us:
    (method, path, data)."""
    if response.status_code == 302:
        values = support.query(response["Location"])
        assert response["Location"].startswith(peer.slo)
        info = peer.client.handle_logout_request(
            values["SAMLRequest"],
            peer.name_id,
            BINDING_HTTP_REDIRECT,
            sign=True,
            sign_alg=C.RSA_SHA256,
            relay_state=values.get("RelayState"),
            sigalg=values["SigAlg"],
            signature=values["Signature"],
        )
        return "get", support.path_of(dict(info["headers"])["Location"]), None
    action, fields = idp_support.form_of(response)
    assert action == peer.slo and "SAMLRequest" in fields, response.content[:500]
    info = peer.client.handle_logout_request(
        fields["SAMLRequest"], peer.name_id, BINDING_HTTP_POST, sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256
    )
    answer = form_fields(info["data"])
    return "post", support.path_of(info["url"]), answer


def send(client, method, path, data=None):
    if method == "get":
        return client.get(path, secure=True)
    return client.post(path, data, secure=True)


def status_of(encoded, redirect=True):
    xml = inflate_decode(encoded) if redirect else base64.b64decode(encoded)
    root = parse_xml(xml)
    codes = root.findall(f".//{{{C.NS_SAMLP}}}StatusCode")
    return [code.get("Value").rsplit(":", 1)[-1] for code in codes], root


def two_sps_signed_on(
    client, site, make_partnership, tmp_path, alpha_bindings=("redirect", "post"), beta_bindings=("post",), **beta
):
    alpha = support.add_sp(site, make_partnership, "alpha", slo_bindings=alpha_bindings)
    beta_peer = support.add_sp(site, make_partnership, "beta", slo_bindings=beta_bindings, **beta)
    support.pysaml2_sp(site, alpha, tmp_path)
    support.pysaml2_sp(site, beta_peer, tmp_path)
    support.sign_on(client, alpha, first=True)
    support.sign_on(client, beta_peer)
    assert SsoParticipant.objects.count() == 2
    return alpha, beta_peer


# --- SP-initiated, front channel -------------------------------------------------------------------------------------


def test_redirect_logout_tells_the_other_sp_by_post_and_answers_the_initiator(client, site, make_partnership, tmp_path):
    alpha, beta = two_sps_signed_on(client, site, make_partnership, tmp_path)
    request_id, url = logout_request(alpha, BINDING_HTTP_REDIRECT)

    # Our IdP ends its session at once and sends beta (POST only) a signed LogoutRequest through the browser.
    to_beta = client.get(support.path_of(url), secure=True)
    assert SsoSession.objects.count() == 0
    assert client.cookies[COOKIE_NAME].value == ""  # FEDSESSION cleared
    assert SloTransaction.objects.count() == 1
    method, path, data = answer_front_channel(beta, to_beta)
    assert not beta.client.is_logged_in(beta.name_id)

    # beta's signed LogoutResponse continues the logout: alpha gets Success on its Redirect binding, RelayState kept.
    back = send(client, method, path, data)
    assert back.status_code == 302 and back["Location"].startswith(alpha.slo), back.content[:500]
    values = support.query(back["Location"])
    assert values["RelayState"] == "back-to-alpha" and "Signature" in values
    answer = alpha.client.parse_logout_request_response(values["SAMLResponse"], BINDING_HTTP_REDIRECT)
    assert answer.in_response_to == request_id and answer.status_ok()
    assert SloTransaction.objects.count() == 0

    lines = support.trace("SLOSAML2_PARTICIPANT_DONE")
    assert any(beta.entity_id in line and request_id in line for line in lines), lines
    assert support.trace("SLOSAML2_RESPONSE_SENT", "Success")


def test_post_logout_with_a_soap_participant_and_one_that_is_down(client, site, make_partnership, tmp_path):
    """SOAP participants are told first over the back channel; the one that is down does not stop the other, and
    the initiator hears PartialLogout on the POST binding it used."""
    with support.LoopbackSp() as loopback:
        alpha = support.add_sp(site, make_partnership, "alpha", slo_bindings=("post",))
        beta = support.add_sp(
            site, make_partnership, "beta", slo_bindings=("soap",), soap_url=loopback.url, settings=PYSAML2_SOAP_PARTICIPANT
        )
        gamma = support.add_sp(site, make_partnership, "gamma", slo_bindings=("soap",), soap_url=support.closed_port_url())
        for peer in (alpha, beta, gamma):
            support.pysaml2_sp(site, peer, tmp_path)
        loopback.peer = beta
        support.sign_on(client, alpha, first=True)
        support.sign_on(client, beta)
        support.sign_on(client, gamma)

        request_id, fields = logout_request(alpha, BINDING_HTTP_POST)
        answer = client.post(support.SLO_PATH, fields, secure=True)

    assert len(loopback.requests) == 1 and "LogoutRequest" in loopback.requests[0]["body"]
    assert not beta.client.is_logged_in(beta.name_id)  # told over SOAP, logged out
    assert gamma.client.is_logged_in(gamma.name_id)  # down: never told
    action, response = idp_support.form_of(answer)
    assert action == alpha.slo and response["RelayState"] == "back-to-alpha"
    codes, root = status_of(response["SAMLResponse"], redirect=False)
    assert codes == ["Responder", "PartialLogout"] and root.get("InResponseTo") == request_id
    with pytest.raises(StatusPartialLogout, match=re.escape(gamma.entity_id)):
        alpha.client.parse_logout_request_response(response["SAMLResponse"], BINDING_HTTP_POST)
    assert SsoSession.objects.count() == 0
    assert support.trace("SLOSAML2_PARTICIPANT_FAILED", gamma.entity_id)
    assert support.trace("SLOSAML2_PARTICIPANT_DONE", beta.entity_id)


def test_soap_logout_from_an_sp(client, site, make_partnership, tmp_path):
    """An SP logs out over SOAP: no browser, so the SOAP participant is told and the front-channel one cannot be."""
    with support.LoopbackSp() as loopback:
        alpha = support.add_sp(
            site, make_partnership, "alpha", slo_bindings=("redirect", "soap"), settings=PYSAML2_SOAP_INITIATOR
        )
        beta = support.add_sp(
            site, make_partnership, "beta", slo_bindings=("soap",), soap_url=loopback.url, settings=PYSAML2_SOAP_PARTICIPANT
        )
        gamma = support.add_sp(site, make_partnership, "gamma", slo_bindings=("redirect",))
        for peer in (alpha, beta, gamma):
            support.pysaml2_sp(site, peer, tmp_path)
        loopback.peer = beta
        support.sign_on(client, alpha, first=True)
        support.sign_on(client, beta)
        support.sign_on(client, gamma)
        request_id, envelope = logout_request(alpha, BINDING_SOAP)
        answer = client.post(support.SLO_SOAP_PATH, envelope, content_type="text/xml", secure=True)

    assert answer.status_code == 200, answer.content[:500]
    assert not beta.client.is_logged_in(beta.name_id)
    with pytest.raises(StatusPartialLogout, match=re.escape(gamma.entity_id)):
        alpha.client.parse_logout_request_response(answer.content.decode(), BINDING_SOAP)
    assert SsoSession.objects.count() == 0
    assert support.trace("SLOSAML2_PARTICIPANT_FAILED", "came over SOAP")


def test_soap_logout_of_the_only_sp_succeeds(client, site, make_partnership, tmp_path):
    alpha = support.add_sp(site, make_partnership, "alpha", slo_bindings=("soap",), settings=PYSAML2_SOAP_INITIATOR)
    support.pysaml2_sp(site, alpha, tmp_path)
    support.sign_on(client, alpha, first=True)
    request_id, envelope = logout_request(alpha, BINDING_SOAP)
    answer = client.post(support.SLO_SOAP_PATH, envelope, content_type="text/xml", secure=True)
    response = alpha.client.parse_logout_request_response(answer.content.decode(), BINDING_SOAP)
    assert response.in_response_to == request_id and response.status_ok()
    assert b"Signature" not in answer.content  # "request" only: pysaml2 cannot check a SOAP signature it did not make
    assert SsoSession.objects.count() == 0
    assert support.trace("SLOSAML2_REQUEST_READ", "by SOAP (signed)")


def test_soap_logout_response_is_signed_by_default(client, site, make_partnership, tmp_path):
    """The default SLO SOAP signature option signs both; our own core verifies what pysaml2 cannot."""
    from federation.saml.logout import LogoutPolicy, parse_logout_response_soap

    alpha = support.add_sp(site, make_partnership, "alpha", slo_bindings=("soap",))
    support.pysaml2_sp(site, alpha, tmp_path)
    support.sign_on(client, alpha, first=True)
    request_id, envelope = logout_request(alpha, BINDING_SOAP)
    answer = client.post(support.SLO_SOAP_PATH, envelope, content_type="text/xml", secure=True)
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(site.signing_certificate_pem.encode())
    parsed = parse_logout_response_soap(
        answer.content,
        LogoutPolicy(partner_entity_id=support.IDP_ENTITY_ID, verification_certificates=(certificate,), require_signed=True),
    )
    assert parsed.signed and parsed.in_response_to == request_id and parsed.status.success


# --- IdP-initiated ---------------------------------------------------------------------------------------------------


def test_idp_initiated_logout_of_every_sp_lands_on_the_confirm_url(client, site, make_partnership, tmp_path):
    alpha, beta = two_sps_signed_on(
        client, site, make_partnership, tmp_path, settings={"sso_slo": {"slo_confirm_url": support.IDP_CONFIRM}}
    )
    first = client.get(support.SLO_PATH, {"SPID": beta.entity_id}, secure=True)
    assert SsoSession.objects.count() == 0 and client.cookies[COOKIE_NAME].value == ""
    hops = 0
    answer = first
    while answer.status_code != 302 or not answer["Location"].startswith(support.IDP_CONFIRM):
        peer = alpha if (answer.get("Location") or idp_support.form_of(answer)[0]).startswith(alpha.slo) else beta
        method, path, data = answer_front_channel(peer, answer)
        answer = send(client, method, path, data)
        hops += 1
        assert hops <= 2, answer.content[:500]
    assert hops == 2
    assert not alpha.client.is_logged_in(alpha.name_id) and not beta.client.is_logged_in(beta.name_id)
    assert support.trace("SLOSAML2_CONFIRM", support.IDP_CONFIRM)


def test_idp_initiated_logout_without_a_confirm_url_shows_the_built_in_page(client, site, make_partnership, tmp_path):
    alpha = support.add_sp(site, make_partnership, "alpha", slo_bindings=("redirect",))
    support.pysaml2_sp(site, alpha, tmp_path)
    support.sign_on(client, alpha, first=True)
    to_alpha = client.get(support.SLO_PATH + "?Logout=all", secure=True)
    method, path, data = answer_front_channel(alpha, to_alpha)
    done = send(client, method, path, data)
    assert done.status_code == 200 and b"Signed out" in done.content and b"Transaction ID" in done.content
    assert not alpha.client.is_logged_in(alpha.name_id)
    # Again, with no session left: still the page, never an error.
    again = client.get(support.SLO_PATH + "?logout=ALL", secure=True)
    assert again.status_code == 200 and b"Signed out" in again.content


def test_idp_initiated_with_relay_state_override_stays_on_this_site(client, site, make_partnership, tmp_path):
    alpha = support.add_sp(
        site,
        make_partnership,
        "alpha",
        slo_bindings=("redirect",),
        settings={"sso_slo": {"slo_confirm_url": support.IDP_CONFIRM, "slo_relay_state_overrides_confirm": True}},
    )
    support.pysaml2_sp(site, alpha, tmp_path)
    support.sign_on(client, alpha, first=True)
    elsewhere = client.get(support.SLO_PATH, {"SPID": alpha.entity_id, "RelayState": "https://evil.example/x"}, secure=True)
    done = send(client, *answer_front_channel(alpha, elsewhere))
    assert done["Location"] == support.IDP_CONFIRM  # not an open redirect

    support.sign_on(client, alpha, first=True)
    own = client.get(support.SLO_PATH, {"SPID": alpha.entity_id, "RelayState": support.IDP_BASE + "/bye"}, secure=True)
    done = send(client, *answer_front_channel(alpha, own))
    assert done["Location"] == support.IDP_BASE + "/bye"


# --- refusals --------------------------------------------------------------------------------------------------------


def test_expired_logout_request_is_refused_with_a_status_and_a_trace_line(client, site, make_partnership, tmp_path):
    alpha = support.add_sp(site, make_partnership, "alpha")
    support.pysaml2_sp(site, alpha, tmp_path)
    support.sign_on(client, alpha, first=True)
    request_id, url = logout_request(alpha, BINDING_HTTP_REDIRECT, expire="2020-01-01T00:00:00Z")
    answer = client.get(support.path_of(url), secure=True)
    assert answer.status_code == 302 and answer["Location"].startswith(alpha.slo)
    codes, root = status_of(support.query(answer["Location"])["SAMLResponse"])
    assert codes == ["Requester", "RequestDenied"] and root.get("InResponseTo") == request_id
    assert "expired" in root.findtext(f".//{{{C.NS_SAMLP}}}StatusMessage")
    assert SsoSession.objects.count() == 1  # nothing ended
    assert support.trace("SLOSAML2_REQUEST_EXPIRED", "expired at 2020-01-01T00:00:00Z")


def test_unsigned_logout_request_is_refused_where_signing_is_required(client, site, make_partnership, tmp_path):
    alpha = support.add_sp(site, make_partnership, "alpha")
    support.pysaml2_sp(site, alpha, tmp_path)
    support.sign_on(client, alpha, first=True)
    _, url = logout_request(alpha, BINDING_HTTP_REDIRECT, sign=False)
    answer = client.get(support.path_of(url), secure=True)
    codes, _ = status_of(support.query(answer["Location"])["SAMLResponse"])
    assert codes == ["Requester", "RequestDenied"]
    assert SsoSession.objects.count() == 1
    assert support.trace("SLOSAML2_SIGNATURE_REQUIRED", "requires signed LogoutRequests")


def test_tampered_logout_request_gets_the_error_page(client, site, make_partnership, tmp_path):
    alpha = support.add_sp(site, make_partnership, "alpha", slo_bindings=("post",))
    support.pysaml2_sp(site, alpha, tmp_path)
    support.sign_on(client, alpha, first=True)
    _, fields = logout_request(alpha, BINDING_HTTP_POST)
    xml = base64.b64decode(fields["SAMLRequest"]).replace(b"urn:oasis:names:tc:SAML:2.0:logout:user", b"urn:x:admin")
    answer = client.post(support.SLO_PATH, {"SAMLRequest": base64.b64encode(xml).decode()}, secure=True)
    assert answer.status_code == 403 and b"Transaction ID" in answer.content and b"Traceback" not in answer.content
    assert SsoSession.objects.count() == 1
    assert support.trace("SLOSAML2_SIGNATURE_INVALID")


def test_logout_request_for_an_unknown_session_is_answered_without_an_error_page(client, site, make_partnership, tmp_path):
    alpha = support.add_sp(site, make_partnership, "alpha")
    support.pysaml2_sp(site, alpha, tmp_path)
    support.sign_on(client, alpha, first=True)
    SsoSession.objects.all().delete()  # the IdP session is gone (expired, or logged out elsewhere)
    request_id, url = logout_request(alpha, BINDING_HTTP_REDIRECT)
    answer = client.get(support.path_of(url), secure=True)
    assert answer.status_code == 302 and answer["Location"].startswith(alpha.slo)
    codes, root = status_of(support.query(answer["Location"])["SAMLResponse"])
    assert codes == ["Requester", "UnknownPrincipal"] and root.get("InResponseTo") == request_id
    assert support.trace("SLOSAML2_SESSION_UNKNOWN")


def test_binding_not_enabled_for_the_partner_is_refused(client, site, make_partnership, tmp_path):
    alpha = support.add_sp(site, make_partnership, "alpha", slo_bindings=("redirect",))
    support.pysaml2_sp(site, alpha, tmp_path)
    support.sign_on(client, alpha, first=True)
    _, fields = logout_request(alpha, BINDING_HTTP_POST)
    answer = client.post(support.SLO_PATH, fields, secure=True)
    assert answer.status_code == 400 and b"Transaction ID" in answer.content
    assert SsoSession.objects.count() == 1
    assert support.trace("SLOSAML2_BINDING_NOT_ENABLED", "HTTP-POST")


def test_soap_logout_with_basic_back_channel_authentication(client, site, make_partnership, tmp_path):
    alpha = support.add_sp(
        site,
        make_partnership,
        "alpha",
        slo_bindings=("soap",),
        settings={
            "sso_slo": {"backchannel_in_auth": "basic", "backchannel_in_password": "Slo-Back-Channel-7"},
            **PYSAML2_SOAP_INITIATOR,
        },
    )
    support.pysaml2_sp(site, alpha, tmp_path)
    support.sign_on(client, alpha, first=True)
    _, envelope = logout_request(alpha, BINDING_SOAP)
    refused = client.post(support.SLO_SOAP_PATH, envelope, content_type="text/xml", secure=True)
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Basic") and b"Fault" in refused.content
    assert SsoSession.objects.count() == 1
    credentials = base64.b64encode(b"idp-to-alpha:Slo-Back-Channel-7").decode()
    request_id, envelope = logout_request(alpha, BINDING_SOAP)
    answer = client.post(
        support.SLO_SOAP_PATH, envelope, content_type="text/xml", HTTP_AUTHORIZATION=f"Basic {credentials}", secure=True
    )
    response = alpha.client.parse_logout_request_response(answer.content.decode(), BINDING_SOAP)
    assert response.in_response_to == request_id and response.status_ok()
    assert SsoSession.objects.count() == 0
    assert support.trace("SLOSAML2_BACKCHANNEL_AUTH_FAILED")


def test_unknown_logout_response_and_bad_input_get_plain_pages(client, site):
    stray = client.post(support.SLO_PATH, {"SAMLResponse": base64.b64encode(b"<samlp:LogoutResponse/>").decode()}, secure=True)
    assert stray.status_code == 400 and b"Transaction ID" in stray.content
    garbage = client.get(support.SLO_PATH + "?SAMLRequest=not-deflated", secure=True)
    assert garbage.status_code == 400 and b"Traceback" not in garbage.content
    twice = client.get(support.SLO_PATH + "?SPID=a&spid=b", secure=True)
    assert twice.status_code == 400
    soap_get = client.get(support.SLO_SOAP_PATH, secure=True)
    assert soap_get.status_code == 405 and b"Fault" in soap_get.content


def test_soap_participants_are_told_before_the_front_channel(client, site, make_partnership, tmp_path):
    with support.LoopbackSp() as loopback:
        alpha = support.add_sp(site, make_partnership, "alpha", slo_bindings=("redirect",))
        beta = support.add_sp(site, make_partnership, "beta", slo_bindings=("redirect",))
        gamma = support.add_sp(
            site,
            make_partnership,
            "gamma",
            slo_bindings=("redirect", "soap"),
            soap_url=loopback.url,
            settings=PYSAML2_SOAP_PARTICIPANT,
        )
        for peer in (alpha, beta, gamma):
            support.pysaml2_sp(site, peer, tmp_path)
        loopback.peer = gamma
        support.sign_on(client, alpha, first=True)
        support.sign_on(client, beta)
        support.sign_on(client, gamma)
        _, url = logout_request(alpha, BINDING_HTTP_REDIRECT)
        to_beta = client.get(support.path_of(url), secure=True)
        # gamma, which has both, was told over SOAP before the browser went anywhere.
        assert len(loopback.requests) == 1 and not gamma.client.is_logged_in(gamma.name_id)
        assert to_beta["Location"].startswith(beta.slo)
        back = send(client, *answer_front_channel(beta, to_beta))
    assert back["Location"].startswith(alpha.slo)
    assert alpha.client.parse_logout_request_response(
        support.query(back["Location"])["SAMLResponse"], BINDING_HTTP_REDIRECT
    ).status_ok()
    sent = [line for line in support.trace("SLOSAML2_PARTICIPANT_SOAP") + support.trace("SLOSAML2_PARTICIPANT_SENT")]
    assert gamma.entity_id in sent[0] and beta.entity_id in sent[1]


def test_a_participant_answer_that_cannot_be_verified_counts_as_failed(client, site, make_partnership, tmp_path):
    alpha, beta = two_sps_signed_on(client, site, make_partnership, tmp_path)
    request_id, url = logout_request(alpha, BINDING_HTTP_REDIRECT)
    to_beta = client.get(support.path_of(url), secure=True)
    method, path, data = answer_front_channel(beta, to_beta)
    xml = base64.b64decode(data["SAMLResponse"]).replace(b"status:Success", b"status:Requester")
    back = send(client, method, path, dict(data, SAMLResponse=base64.b64encode(xml).decode()))
    # The logout goes on to the initiator, which hears that beta could not be confirmed.
    assert back.status_code == 302 and back["Location"].startswith(alpha.slo), back.content[:500]
    codes, root = status_of(support.query(back["Location"])["SAMLResponse"])
    assert codes == ["Responder", "PartialLogout"] and root.get("InResponseTo") == request_id
    assert support.trace("SLOSAML2_SIGNATURE_INVALID", beta.entity_id)
    # Replaying beta's answer continues nothing.
    replay = send(client, method, path, data)
    assert replay.status_code == 400 and not SloTransaction.objects.exists()


def test_queries_of_one_logout_without_other_participants(
    client, site, make_partnership, tmp_path, django_assert_max_num_queries
):
    """The database work of a plain SP-initiated logout, trace lines aside: the partner (one query for both roles),
    the session by SessionIndex, its participants, ending it (the session store's delete), and on a fresh process
    the signing key once (bench/slo.py measures what that costs)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from federation.models import TraceLine

    alpha = support.add_sp(site, make_partnership, "alpha", slo_bindings=("redirect",))
    support.pysaml2_sp(site, alpha, tmp_path)
    support.sign_on(client, alpha, first=True)
    _, url = logout_request(alpha, BINDING_HTTP_REDIRECT)
    client.cookies.pop(COOKIE_NAME)  # a partner's back-office logout link: no IdP cookie to look at
    with CaptureQueriesContext(connection) as queries:
        answer = client.get(support.path_of(url), secure=True)
    assert answer.status_code == 302 and SsoSession.objects.count() == 0
    table = TraceLine._meta.db_table
    ours = [q["sql"] for q in queries.captured_queries if table not in q["sql"] and "SAVEPOINT" not in q["sql"]]
    assert len(ours) <= 8, "\n".join(ours)


def test_soap_logout_with_client_certificate_authentication_needs_a_trusted_proxy(client, site, make_partnership, tmp_path):
    alpha = support.add_sp(
        site,
        make_partnership,
        "alpha",
        slo_bindings=("soap",),
        settings={"sso_slo": {"backchannel_in_auth": "client_cert"}, **PYSAML2_SOAP_INITIATOR},
    )
    support.pysaml2_sp(site, alpha, tmp_path)
    support.sign_on(client, alpha, first=True)
    _, envelope = logout_request(alpha, BINDING_SOAP)
    refused = client.post(support.SLO_SOAP_PATH, envelope, content_type="text/xml", secure=True)
    assert refused.status_code == 403 and b"A client certificate is required." in refused.content
    assert SsoSession.objects.count() == 1
    assert support.trace("SLOSAML2_BACKCHANNEL_AUTH_FAILED", "no trusted proxy")
