"""IdP runtime behaviour around the assertion: consent (5-minute window), negative responses, status redirects, the
federation-users rules, authentication context (predefined and auto-detected), login against the real slapd and a
directory that is down, the "Test SSO" link, and the database queries of an SSO with an existing session."""

import base64
import warnings

import pytest
from cryptography.utils import CryptographyDeprecationWarning
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from federation import runtime_paths
from federation.models import SsoSession, TraceLine
from federation.saml import constants as C
from federation.tracing import TRANSACTION_HEADER
from partnerships.models import AuthnContextTemplate
from tests import idp_runtime_support as support
from tests.test_directories import make_ldap_directory

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.response import StatusError


@pytest.fixture(autouse=True)
def fresh_caches():
    support.clear_runtime_caches()


def checkpoints():
    return list(TraceLine.objects.order_by("id").values_list("checkpoint", flat=True))


def start_sp_sso(client, sp, world, **kwargs):
    request_id, info = sp.prepare_for_authenticate(
        entityid=world.idp_entity_id, binding=BINDING_HTTP_REDIRECT, sigalg=C.RSA_SHA256, digest_alg=C.SHA256, **kwargs
    )
    return request_id, client.get(support.local_part(support.redirect_binding_url(info)), secure=True)


def status_of(fields):
    xml = base64.b64decode(fields["SAMLResponse"])
    assert b"<saml:Assertion" not in xml and b"EncryptedAssertion" not in xml
    return xml


# --- consent ---------------------------------------------------------------------------------------------------


@pytest.fixture
def consent_world(make_partnership, django_user_model):
    return support.build_world(make_partnership, django_user_model, settings={"sso_slo": {"user_consent": True}})


def test_consent_allow_records_consent_in_the_response(client, consent_world, tmp_path):
    world = consent_world
    sp = support.pysaml2_sp(world, tmp_path)
    request_id, start = start_sp_sso(client, sp, world)
    page = support.sign_in(client, start)
    assert page.status_code == 200 and b"Share your identity?" in page.content
    assert world.sp_entity_id.encode() in page.content
    action, fields = support.form_of(page)
    assert action == runtime_paths.IDP_CONSENT
    answer = client.post(action, dict(fields, decision="allow"), secure=True)
    _, posted = support.posted(answer)
    parsed = sp.parse_authn_request_response(posted["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert parsed.response.consent == "urn:oasis:names:tc:SAML:2.0:consent:obtained"
    # Consent covers one assertion: the next SSO asks again.
    _, again = start_sp_sso(client, sp, world)
    assert b"Share your identity?" in again.content
    assert "SSOSAML2_CONSENT_GIVEN" in checkpoints()


def test_consent_denied_and_forged(client, consent_world, tmp_path):
    from django.test import Client

    world = consent_world
    sp = support.pysaml2_sp(world, tmp_path)
    _, start = start_sp_sso(client, sp, world)
    page = support.sign_in(client, start)
    action, fields = support.form_of(page)
    other_browser = Client()  # no FEDSESSION of this user: a forged post from elsewhere
    forged = other_browser.post(action, dict(fields, decision="allow"), secure=True)
    assert forged.status_code == 400 and b"has expired or was not sent by this browser" in forged.content
    denied = client.post(action, dict(fields, decision="deny"), secure=True)
    assert denied.status_code == 403 and b"chose not to send your identity" in denied.content
    assert "SSOSAML2_CONSENT_DENIED" in checkpoints()


def test_consent_window_is_five_minutes(client, consent_world, tmp_path, monkeypatch):
    import time

    from django.core import signing

    world = consent_world
    sp = support.pysaml2_sp(world, tmp_path)
    _, start = start_sp_sso(client, sp, world)
    real = time.time
    # The consent question was asked 301 seconds ago (the clock of the signer is moved, not the test waiting).
    monkeypatch.setattr(signing.time, "time", lambda: real() - 301)
    page = support.sign_in(client, start)
    monkeypatch.setattr(signing.time, "time", real)
    action, fields = support.form_of(page)
    late = client.post(action, dict(fields, decision="allow"), secure=True)
    assert late.status_code == 403 and b"longer than 5 minutes" in late.content
    assert "SSOSAML2_CONSENT_EXPIRED" in checkpoints()


# --- federation users, negative responses, status redirects ----------------------------------------------------

EXCLUDE_ALICE = {
    "federation_users": {"rules": [{"directory": "Embedded directory", "kind": "user", "value": "alice", "exclude": True}]}
}


def test_refused_user_gets_an_error_page(client, make_partnership, django_user_model, tmp_path):
    world = support.build_world(make_partnership, django_user_model, settings=EXCLUDE_ALICE)
    start = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    page = support.sign_in(client, start)
    assert page.status_code == 403 and b"may not sign in to this partner" in page.content
    assert "SSOSAML2_USER_REFUSED" in checkpoints()
    assert not SsoSession.objects.exists()


def test_refused_user_with_negative_response(client, make_partnership, django_user_model, tmp_path):
    world = support.build_world(
        make_partnership, django_user_model, settings={**EXCLUDE_ALICE, "sso_slo": {"negative_response": True}}
    )
    sp = support.pysaml2_sp(world, tmp_path)
    request_id, start = start_sp_sso(client, sp, world)
    acs, fields = support.posted(support.sign_in(client, start))
    assert acs == support.SP_ACS_POST
    assert C.STATUS_AUTHN_FAILED.encode() in status_of(fields)
    with pytest.raises(StatusError):
        sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert "SSOSAML2_NEGATIVE_RESPONSE" in checkpoints()


def test_cancelled_login_with_negative_response(client, make_partnership, django_user_model, tmp_path):
    world = support.build_world(make_partnership, django_user_model, settings={"sso_slo": {"negative_response": True}})
    sp = support.pysaml2_sp(world, tmp_path)
    _, start = start_sp_sso(client, sp, world)
    _, fields = support.posted(support.sign_in(client, start, cancel="1"))
    assert C.STATUS_AUTHN_FAILED.encode() in status_of(fields)


@pytest.mark.parametrize("method", ["302", "post"])
def test_status_redirect_for_403(client, make_partnership, django_user_model, method):
    redirect = {"condition": "unauthorized", "url": "https://help.example.test/denied", "method": method}
    world = support.build_world(
        make_partnership, django_user_model, settings={**EXCLUDE_ALICE, "sso_slo": {"status_redirects": [redirect]}}
    )
    start = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    answer = support.sign_in(client, start)
    if method == "302":
        assert answer.status_code == 302 and answer["Location"] == redirect["url"]
    else:
        action, fields = support.form_of(answer)
        assert answer.status_code == 200 and action == redirect["url"]
        assert fields == {"status": "403", "condition": "unauthorized", "transaction_id": answer["X-Transaction-ID"]}
        assert b"<noscript>" in answer.content and b">Continue</button>" in answer.content
    assert "STATUS_REDIRECT" in checkpoints()


def test_status_redirect_for_400_needs_a_known_partner(client, make_partnership, django_user_model):
    redirect = {"condition": "bad_request", "url": "https://help.example.test/bad", "method": "302"}
    world = support.build_world(make_partnership, django_user_model, settings={"sso_slo": {"status_redirects": [redirect]}})
    too_long = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id, "RelayState": "x" * 2000}, secure=True)
    assert too_long.status_code == 302 and too_long["Location"] == redirect["url"]
    unknown = client.get(runtime_paths.SAML2_SSO, {"SPID": "https://stranger.example/"}, secure=True)
    assert unknown.status_code == 400  # partner unknown: the bare status, no redirect


# --- authentication context ------------------------------------------------------------------------------------


@pytest.fixture
def levels_template(db):
    return AuthnContextTemplate.objects.create(
        name="Levels",
        protection_levels=True,
        entries=[
            {"uri": C.AC_X509, "grouped": False, "max_level": None},
            {"uri": C.AC_PASSWORD_PROTECTED_TRANSPORT, "grouped": False, "max_level": 10},
            {"uri": C.AC_PASSWORD, "grouped": False, "max_level": 3},
        ],
    )


def test_auto_detected_context_against_requested_contexts(client, make_partnership, django_user_model, tmp_path, levels_template):
    world = support.build_world(
        make_partnership,
        django_user_model,
        settings={"sso_slo": {"authn_context_mode": "auto_detect", "authn_template": "Levels"}},
    )
    sp = support.pysaml2_sp(world, tmp_path)
    # The login page's level is 5: PasswordProtectedTransport's range (4–10) in this template.
    request_id, start = start_sp_sso(client, sp, world, requested_authn_context=_requested([C.AC_PASSWORD], "minimum"))
    _, fields = support.posted(support.sign_in(client, start))
    parsed = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert parsed.assertion.authn_statement[0].authn_context.authn_context_class_ref.text == C.AC_PASSWORD_PROTECTED_TRANSPORT

    # Asking for something stronger than the session has: NoAuthnContext.
    request_id, start = start_sp_sso(client, sp, world, requested_authn_context=_requested([C.AC_X509], "exact"))
    _, fields = support.posted(start)
    assert C.STATUS_NO_AUTHN_CONTEXT.encode() in status_of(fields)
    assert "SSOSAML2_NO_AUTHN_CONTEXT" in checkpoints()


def test_predefined_class_refuses_requested_context_unless_ignored(client, make_partnership, django_user_model, tmp_path):
    world = support.build_world(make_partnership, django_user_model)
    sp = support.pysaml2_sp(world, tmp_path)
    request_id, start = start_sp_sso(client, sp, world, requested_authn_context=_requested([C.AC_PASSWORD], "exact"))
    _, fields = support.posted(support.sign_in(client, start))
    assert C.STATUS_REQUEST_UNSUPPORTED.encode() in status_of(fields)


def _requested(classes, comparison):
    from saml2.saml import AuthnContextClassRef
    from saml2.samlp import RequestedAuthnContext

    return RequestedAuthnContext(authn_context_class_ref=[AuthnContextClassRef(text=c) for c in classes], comparison=comparison)


# --- LDAP ------------------------------------------------------------------------------------------------------


def ldap_world(make_partnership, django_user_model, directory_name, **extra):
    return support.build_world(
        make_partnership,
        django_user_model,
        directories=(directory_name,),
        settings={
            "assertion": {
                "name_id_value": "mail",
                "attributes": [
                    {"name": "mail", "retrieval": "sso", "name_format": C.ATTRNAME_BASIC, "value_type": "user", "value": "mail"},
                    {"name": "cn", "retrieval": "sso", "name_format": C.ATTRNAME_BASIC, "value_type": "user", "value": "cn"},
                    # A DN attribute: attribute ou of the entry the DN specification names.
                    {
                        "name": "unit",
                        "retrieval": "sso",
                        "name_format": C.ATTRNAME_BASIC,
                        "value_type": "dn",
                        "value": "ou",
                        "dn_spec": "ou=people,dc=example,dc=org",
                    },
                ],
            },
            **extra,
        },
        user=False,
    )


def test_login_against_the_real_slapd(client, make_partnership, django_user_model, tmp_path, slapd):
    make_ldap_directory(slapd)
    world = ldap_world(make_partnership, django_user_model, "corp")
    sp = support.pysaml2_sp(world, tmp_path)
    request_id, start = start_sp_sso(client, sp, world)
    wrong = support.sign_in(client, start, username="alice", password="wrong")
    assert wrong.status_code == 200 and b"not correct" in wrong.content
    _, fields = support.posted(support.sign_in(client, start, username="alice", password=slapd.user("alice").password))
    parsed = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert parsed.assertion.subject.name_id.text == "alice@example.org"
    values = {a.name: [v.text for v in a.attribute_value] for a in parsed.assertion.attribute_statement[0].attribute}
    assert values == {"mail": ["alice@example.org", "alice.anderson@example.org"], "cn": ["Alice Anderson"], "unit": ["people"]}
    session = SsoSession.objects.get()
    assert session.user_dn == slapd.user("alice").dn and session.directory == "corp"


def test_ldap_down_says_so_and_traces_it(client, make_partnership, django_user_model, tmp_path, slapd, ldap_down):
    host, port = ldap_down
    make_ldap_directory(slapd, name="down", hosts=host, port=port, connect_timeout=1, operation_timeout=1)
    world = ldap_world(make_partnership, django_user_model, "down")
    start = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    page = support.sign_in(client, start, username="alice", password="whatever")
    assert page.status_code == 503 and b"user directory is not answering" in page.content
    assert b"<form" in page.content  # the user can try again
    line = TraceLine.objects.get(checkpoint="SSOSAML2_DIRECTORY_UNAVAILABLE")
    assert "down" in line.message and line.level == "ERROR"


# --- console link and query count ------------------------------------------------------------------------------


def test_test_sso_link_on_an_active_partnership(admin_client, make_partnership, django_user_model):
    world = support.build_world(make_partnership, django_user_model)
    page = admin_client.get(reverse("partnerships:detail", args=[world.partnership.pk]))
    expected = runtime_paths.SAML2_SSO + "?SPID=https%3A%2F%2Fsp.example.test%2Fsp"
    assert f'href="{expected}"'.encode() in page.content and b"Test SSO" in page.content


def test_idp_initiated_sso_with_a_session_reads_two_rows(client, make_partnership, django_user_model, tmp_path):
    """With an existing session (and no directory attributes in the assertion) an SSO costs the current-snapshot
    lookup and the session read (its participant for this SP in the same query); nothing is written. Trace lines
    are inserts of their own, counted separately."""
    world = support.build_world(
        make_partnership,
        django_user_model,
        settings={
            "assertion": {
                "name_id_type": "static",
                "name_id_value": "GeorgeC",
                "attributes": [
                    {
                        "name": "role",
                        "retrieval": "sso",
                        "name_format": C.ATTRNAME_BASIC,
                        "value_type": "static",
                        "value": "staff",
                    }
                ],
            }
        },
    )
    start = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    support.posted(support.sign_in(client, start))
    support.posted(client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True))  # warm caches
    with CaptureQueriesContext(connection) as queries:
        response = client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True)
    support.posted(response)
    statements = [q["sql"] for q in queries.captured_queries]
    trace = [sql for sql in statements if "federation_traceline" in sql]
    other = [sql for sql in statements if "federation_traceline" not in sql]
    assert len(other) == 2, other
    assert "partnerships_partnershipsnapshot" in other[0] and "federation_ssosession" in other[1]
    # The request's trace lines (its checkpoints and the SAML-ID link line) are stored with one INSERT at its end.
    assert len(trace) == 1 and trace[0].startswith("INSERT"), trace
    request_lines = TraceLine.objects.filter(transaction_id=response[TRANSACTION_HEADER])
    assert request_lines.count() >= 5, list(request_lines.values_list("checkpoint", flat=True))
    saml_id = request_lines.get(checkpoint="SAML_TRANSACTION").message.split()[2]  # "SAML transaction <ID> …"
    assert TraceLine.objects.filter(transaction_id=saml_id, checkpoint="SAML_TRANSACTION").exists()


def test_session_attributes_reach_the_assertion(client, make_partnership, django_user_model, tmp_path):
    """Session attributes (session_attr[…]) come from the session store; a session made there by another component
    (here: directly) carries them into NameID, attribute rows and expressions."""
    from federation import sso_sessions

    world = support.build_world(
        make_partnership,
        django_user_model,
        settings={
            "assertion": {
                "name_id_type": "session",
                "name_id_value": "upn",
                "attributes": [
                    {
                        "name": "issuer",
                        "retrieval": "sso",
                        "name_format": C.ATTRNAME_BASIC,
                        "value_type": "session",
                        "value": "IssuerID",
                    },
                    {
                        "name": "label",
                        "retrieval": "sso",
                        "name_format": C.ATTRNAME_BASIC,
                        "value_type": "expression",
                        "value": '#{session_attr["IssuerID"]}/#{attr["first_name"]}',
                    },
                ],
            }
        },
    )
    session = sso_sessions.session_store().create(
        username="alice", directory="Embedded directory", attributes={"upn": "alice@corp.test", "IssuerID": ["CN=Corp CA"]}
    )
    client.cookies[sso_sessions.COOKIE_NAME] = session.cookie
    sp = support.pysaml2_sp(world, tmp_path, allow_unsolicited=True)
    _, fields = support.posted(client.get(runtime_paths.SAML2_SSO, {"SPID": world.sp_entity_id}, secure=True))
    parsed = sp.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {})
    assert parsed.assertion.subject.name_id.text == "alice@corp.test"
    values = {a.name: [v.text for v in a.attribute_value] for a in parsed.assertion.attribute_statement[0].attribute}
    assert values == {"issuer": ["CN=Corp CA"], "label": ["CN=Corp CA/Alice"]}
