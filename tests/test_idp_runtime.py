"""The SAML 2.0 IdP runtime end to end with pysaml2 as the SP: SP-initiated (Redirect and POST AuthnRequests),
IdP-initiated, login against the embedded directory, the shared session, ForceAuthn / IsPassive, NameID kinds,
attributes, signing and encryption. Artifact resolution over HTTP is in test_idp_runtime_artifact.py, attacks in
test_idp_runtime_attacks.py."""

import warnings

import pytest
from cryptography.utils import CryptographyDeprecationWarning

from federation import runtime_paths, sso_sessions
from federation.models import SsoParticipant, SsoSession, TraceLine
from federation.saml import constants as C
from tests import idp_runtime_support as support

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.response import StatusError


@pytest.fixture(autouse=True)
def fresh_caches():
    support.clear_runtime_caches()


@pytest.fixture
def world(make_partnership, django_user_model):
    return support.build_world(make_partnership, django_user_model)


def sp_initiated_redirect(client, sp, world, **kwargs):
    request_id, info = sp.prepare_for_authenticate(
        entityid=world.idp_entity_id,
        relay_state="/reports?a=1&b=2",
        binding=BINDING_HTTP_REDIRECT,
        sigalg=C.RSA_SHA256,
        digest_alg=C.SHA256,
        **kwargs,
    )
    response = client.get(support.local_part(support.redirect_binding_url(info)), secure=True)
    return request_id, response


def checkpoints(transaction_id=None):
    lines = TraceLine.objects.all() if transaction_id is None else TraceLine.objects.filter(transaction_id=transaction_id)
    return [line.checkpoint for line in lines.order_by("id")]


def test_sp_initiated_redirect_then_post_with_login(client, world, tmp_path):
    sp = support.pysaml2_sp(world, tmp_path)
    request_id, response = sp_initiated_redirect(client, sp, world)
    assert response.status_code == 302 and response["Location"].startswith(runtime_paths.IDP_LOGIN)
    answer = support.sign_in(client, response)
    acs, fields = support.posted(answer)
    assert acs == support.SP_ACS_POST
    assert fields["RelayState"] == "/reports?a=1&b=2"  # passed through untouched
    cookie = answer.cookies[sso_sessions.COOKIE_NAME]
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "None" and cookie["path"] == "/affwebservices/"

    parsed = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assertion = parsed.assertion
    assert parsed.in_response_to == request_id
    assert assertion.subject.name_id.text == "alice@example.test"
    assert assertion.subject.name_id.format == C.NAMEID_EMAIL
    values = {a.name: [v.text for v in a.attribute_value] for a in assertion.attribute_statement[0].attribute}
    assert values == {
        support.MAIL: ["alice@example.test"],
        "groups": ["staff", "admins"],
        "role": ["staff"],
        "title": ["administrator"],
    }
    statement = assertion.authn_statement[0]
    assert statement.authn_context.authn_context_class_ref.text == C.AC_PASSWORD_PROTECTED_TRANSPORT
    session = SsoSession.objects.get()
    assert session.username == "alice" and session.key != cookie.value  # only a hash is stored
    participant = SsoParticipant.objects.get()
    assert (participant.remote_entity_id, participant.session_index) == (world.sp_entity_id, statement.session_index)
    assert participant.name_id == "alice@example.test"

    # The SAML transaction ID finds every request of the transaction in the trace.
    found = checkpoints(request_id)
    assert found.count("SAML_TRANSACTION") == 3  # AuthnRequest, login page, login
    steps = checkpoints(answer["X-Transaction-ID"])
    for step in ("SSOSAML2_USER_AUTHENTICATED", "SSOSAML2_ASSERTION_BUILT", "SSOSAML2_SIGNED", "SSOSAML2_DELIVERED"):
        assert step in steps


def test_sp_initiated_post_binding_and_session_reuse(client, world, tmp_path):
    sp = support.pysaml2_sp(world, tmp_path)
    first_id, response = sp_initiated_redirect(client, sp, world)
    support.posted(support.sign_in(client, response))

    request_id, info = sp.prepare_for_authenticate(
        entityid=world.idp_entity_id, relay_state="rs", binding=BINDING_HTTP_POST, sigalg=C.RSA_SHA256, digest_alg=C.SHA256
    )
    action, fields = support.form_of(type("R", (), {"content": info["data"].encode()})())
    assert action == world.sso_url
    answer = client.post(support.local_part(action), fields, secure=True)
    acs, posted = support.posted(answer)  # no login: the session is used
    parsed = sp.parse_authn_request_response(posted["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert parsed.assertion.subject.name_id.text == "alice@example.test"
    assert SsoSession.objects.count() == 1 and SsoParticipant.objects.count() == 1
    # Same session, same SP: the SessionIndex is reused, so single logout names one index.
    index = parsed.assertion.authn_statement[0].session_index
    assert SsoParticipant.objects.get().session_index == index


def test_idp_initiated_post_with_relay_state(client, world, tmp_path):
    sp = support.pysaml2_sp(world, tmp_path, allow_unsolicited=True)
    start = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id, "RelayState": "https://app/x"}, secure=True)
    answer = support.sign_in(client, start)
    acs, fields = support.posted(answer)
    assert acs == support.SP_ACS_POST and fields["RelayState"] == "https://app/x"
    parsed = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {})
    assert parsed.in_response_to is None
    assert parsed.assertion.subject.name_id.text == "alice@example.test"
    # The second IdP-initiated SSO uses the session: no login page.
    again = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    support.posted(again)


def test_second_web_node_continues_the_session(client, world, tmp_path, django_user_model):
    """Another Django client stands for another web node: it shares only the database and the cookie."""
    from django.test import Client

    sp = support.pysaml2_sp(world, tmp_path, allow_unsolicited=True)
    start = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    support.posted(support.sign_in(client, start))
    other_node = Client()
    other_node.cookies[sso_sessions.COOKIE_NAME] = client.cookies[sso_sessions.COOKIE_NAME].value
    answer = other_node.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    _, fields = support.posted(answer)
    parsed = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {})
    assert parsed.assertion.subject.name_id.text == "alice@example.test"


def test_wrong_password_shows_the_page_again_without_saying_which(client, world, tmp_path, django_user_model):
    start = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    wrong = support.sign_in(client, start, password="not-it")
    unknown = support.sign_in(
        client, client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True), username="nobody"
    )
    for page in (wrong, unknown):
        assert page.status_code == 200
        assert b"The user name or password is not correct." in page.content
        assert sso_sessions.COOKIE_NAME not in page.cookies
    assert "SSOSAML2_LOGIN_FAILED" in checkpoints()


def test_login_form_needs_its_anti_forgery_value(client, world):
    start = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    page = client.get(start["Location"], secure=True)
    action, fields = support.form_of(page)
    fields.update({"username": "alice", "password": support.PASSWORD, "form_token": "0" * 64})
    forged = client.post(action, fields, secure=True)
    assert forged.status_code == 400 and b"has expired or was not sent by this browser" in forged.content
    from django.test import Client

    stranger = Client()  # a page on another site posting the form: no FEDLOGIN cookie of this browser
    _, good_fields = support.form_of(page)
    good_fields.update({"username": "alice", "password": support.PASSWORD})
    assert stranger.post(action, good_fields, secure=True).status_code == 400


def test_force_authn_challenges_again_and_is_passive_uses_the_session(client, world, tmp_path):
    sp = support.pysaml2_sp(world, tmp_path)
    _, response = sp_initiated_redirect(client, sp, world)
    support.posted(support.sign_in(client, response))
    before = SsoSession.objects.get().authn_instant

    request_id, response = sp_initiated_redirect(client, sp, world, force_authn="true")
    assert response.status_code == 302 and response["Location"].startswith(runtime_paths.IDP_LOGIN)
    _, fields = support.posted(support.sign_in(client, response))
    parsed = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert SsoSession.objects.count() == 1 and SsoSession.objects.get().authn_instant >= before

    request_id, response = sp_initiated_redirect(client, sp, world, is_passive="true")
    _, fields = support.posted(response)  # no interaction
    parsed = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert parsed.assertion.subject.name_id.text == "alice@example.test"


def test_is_passive_without_a_session_answers_no_passive(client, world, tmp_path):
    sp = support.pysaml2_sp(world, tmp_path)
    request_id, response = sp_initiated_redirect(client, sp, world, is_passive="true")
    _, fields = support.posted(response)
    with pytest.raises(StatusError, match="NoPassive|not signed in"):
        sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert "SSOSAML2_NO_PASSIVE" in checkpoints()


def test_session_expires(client, world, tmp_path):
    start = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    support.posted(support.sign_in(client, start))
    from datetime import timedelta

    from django.utils import timezone

    SsoSession.objects.update(idle_expires_at=timezone.now() - timedelta(seconds=1))
    again = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    assert again.status_code == 302 and again["Location"].startswith(runtime_paths.IDP_LOGIN)
    assert SsoSession.objects.count() == 0  # the expired row went with the lookup
