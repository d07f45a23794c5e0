"""Attack fixtures at the assertion consumer endpoint: each hostile response, POSTed through Django's test client to
/affwebservices/public/saml2assertionconsumer of an activated partnership, is refused with an error page (or the
status redirect), opens no SP session, and leaves a trace line saying why.

Responses are real: made by the pysaml2 IdP or signed by the protocol core with the trusted IdP key, then altered
the way an attacker would."""

import copy
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from federation.models import SpSession
from federation.saml import constants as C
from federation.saml.signing import sign
from federation.saml.xml import children, parse_xml, to_bytes
from tests import sp_runtime_support as support
from tests.processes import ROOT, migrated_env
from tests.sp_runtime_support import (
    SP_ENTITY_ID,
    TARGET,
    core_response,
    idp_response,
    post_response,
    start,
    trace_lines,
)

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


NAME_ID = f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID"


def refused(response, message, checkpoint="SSOSAML2SP_ACS_REFUSED", status=400):
    """The ACS answered with the error page, no session exists, and the trace says `message`."""
    assert response.status_code == status, response.content
    assert response["X-Transaction-ID"].encode() in response.content
    assert not SpSession.objects.exists()
    lines = trace_lines(checkpoint, message)
    assert lines, f"no {checkpoint} trace line containing {message!r}: {trace_lines()}"
    return lines


def solicited(client, idp):
    """A fresh AuthnRequest of ours and the pysaml2 IdP's signed answer, as a parsed tree to tamper with."""
    _, request_id = start(client)
    return parse_xml(idp_response(idp, request_id))


def assertion_of(root):
    return children(root, C.NS_SAML, "Assertion")[0]


def evil_copy(assertion, name_id="admin", new_id="_evil"):
    evil = copy.deepcopy(assertion)
    for signature in children(evil, C.NS_DS, "Signature"):
        evil.remove(signature)
    evil.find(NAME_ID).text = name_id
    if new_id:
        evil.set("ID", new_id)
    return evil


# --- XML signature wrapping ------------------------------------------------------------------------------------------


def test_signed_assertion_moved_into_extensions_with_an_evil_one_in_its_place(client, world, idp, django_user_model):
    django_user_model.objects.create_user("admin")
    root = solicited(client, idp)
    original = assertion_of(root)
    root.replace(original, evil_copy(original))
    extensions = root.makeelement(f"{{{C.NS_SAMLP}}}Extensions")
    root.insert(1, extensions)
    extensions.append(original)
    refused(post_response(client, to_bytes(root)), "the response must carry exactly one assertion, not 2")


def test_unsigned_assertion_added_beside_the_signed_one(client, world, idp, django_user_model):
    django_user_model.objects.create_user("admin")
    root = solicited(client, idp)
    root.append(evil_copy(assertion_of(root)))
    refused(post_response(client, to_bytes(root)), "the response must carry exactly one assertion, not 2")


def test_evil_assertion_carrying_the_original_signature(client, world, idp, django_user_model):
    django_user_model.objects.create_user("admin")
    root = solicited(client, idp)
    original = assertion_of(root)
    evil = evil_copy(original, new_id=None)
    evil.insert(1, copy.deepcopy(children(original, C.NS_DS, "Signature")[0]))
    root.replace(original, evil)
    refused(post_response(client, to_bytes(root)), "signed content was modified after signing (digest mismatch)")


def test_signed_response_wrapping_an_unsigned_assertion(client, world, idp_key, django_user_model):
    """The response signature covers the whole message, but this partnership requires the assertion itself signed."""
    django_user_model.objects.create_user("admin")
    _, request_id = start(client)
    xml = core_response(idp_key, request_id, sign_assertion=False, sign_response=True, name_id="admin")
    refused(post_response(client, xml), "the assertion is not signed, and this partnership requires a signed assertion")


# --- Replay ----------------------------------------------------------------------------------------------------------


def test_replayed_assertion_is_refused(client, world, idp):
    xml = idp_response(idp, None)  # IdP-initiated: no stored request to be used up, the replay cache decides
    assert post_response(client, xml).status_code == 302
    SpSession.objects.all().delete()
    lines = refused(post_response(client, xml), "was already used once; a second use is a replay and is refused")
    assert "AssertionReplayed" in lines[0]


def test_replayed_solicited_response_is_refused(client, world, idp):
    _, request_id = start(client)
    xml = idp_response(idp, request_id)
    assert post_response(client, xml).status_code == 302
    SpSession.objects.all().delete()
    refused(post_response(client, xml), "which this SP did not send (or no longer waits for)")


REPLAY_SCRIPT = textwrap.dedent(
    """
    import sys
    import django

    django.setup()
    from pathlib import Path
    from django.test import Client
    from tests import sp_runtime_support as support

    folder = Path(sys.argv[2])
    if sys.argv[1] == "setup":
        from django.contrib.auth import get_user_model
        from tests.saml.credentials import make_credential

        idp_key, sp_key = make_credential("rsa", "idp"), make_credential("rsa", "sp")
        support.make_world(idp_key, sp_key)
        get_user_model().objects.create_user("alice")
        (folder / "response.xml").write_bytes(support.core_response(idp_key, None))
    else:
        response = support.post_response(Client(), (folder / "response.xml").read_bytes())
        print(response.status_code, response.get("Location", ""))
    """
)


def test_replay_across_two_processes_sharing_the_database(tmp_path):
    """Two web processes on one database: the second to see the assertion refuses it."""
    env = migrated_env(tmp_path / "var")

    def run(*arguments):
        done = subprocess.run(
            [sys.executable, "-c", REPLAY_SCRIPT, *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done

    run("setup", str(tmp_path))
    first, second = run("post", str(tmp_path)), run("post", str(tmp_path))
    assert first.stdout.strip() == f"302 {TARGET}"
    assert second.stdout.strip() == "400"
    assert "was already used once; a second use is a replay and is refused" in second.stderr


# --- Audience, recipient, time, InResponseTo ---------------------------------------------------------------------------


def test_wrong_audience(client, world, idp_key):
    _, request_id = start(client)
    xml = core_response(idp_key, request_id, audience="https://other-sp.example.net/sp")
    refused(
        post_response(client, xml),
        f"the assertion is meant for 'https://other-sp.example.net/sp', not for this SP ('{SP_ENTITY_ID}')",
    )


def test_wrong_recipient(client, world, idp_key):
    _, request_id = start(client)
    xml = core_response(idp_key, request_id, recipient="https://evil.example.net/acs")
    refused(post_response(client, xml), "the assertion is confirmed for recipient 'https://evil.example.net/acs'")


def test_expired_assertion(client, world, idp_key):
    _, request_id = start(client)
    long_ago = datetime.now(UTC) - timedelta(hours=1)  # NotOnOrAfter = issue + 5 min, far beyond the 30 s skew
    refused(post_response(client, core_response(idp_key, request_id, now=long_ago)), "has expired: NotOnOrAfter")


def test_not_yet_valid_beyond_the_skew(client, world, idp_key):
    _, request_id = start(client)
    later = datetime.now(UTC) + timedelta(minutes=10)  # NotBefore = issue − 1 min, still 9 min ahead
    refused(post_response(client, core_response(idp_key, request_id, now=later)), "is not valid yet: NotBefore")


def test_in_response_to_a_request_never_sent(client, world, idp):
    start(client)
    refused(
        post_response(client, idp_response(idp, "_never-sent-by-us")),
        "the response answers request '_never-sent-by-us', which this SP did not send",
    )


# --- Signing and encryption requirements -----------------------------------------------------------------------------


def test_unsigned_where_signing_is_required(client, world, idp):
    _, request_id = start(client)
    xml = idp_response(idp, request_id, sign_assertion=False, sign_response=False)
    refused(post_response(client, xml), "the assertion is not signed, and this partnership requires a signed assertion")


def test_unencrypted_where_encryption_is_required(client, world, idp):
    world.reactivate(signature={"require_encrypted_assertion": True})
    _, request_id = start(client)
    refused(
        post_response(client, idp_response(idp, request_id)),
        "the assertion is not encrypted, and this partnership requires an encrypted assertion",
    )


def test_signed_by_a_key_the_partnership_does_not_trust(client, world):
    from tests.saml.credentials import make_credential

    _, request_id = start(client)
    xml = core_response(make_credential("rsa", "attacker"), request_id)
    refused(post_response(client, xml), "signature invalid for every trusted certificate")


# --- Comment injection, DTD --------------------------------------------------------------------------------------------


def test_comment_injected_name_id_is_read_in_full(client, world, idp_key, django_user_model):
    """The IdP vouched for alice@example.com.evil.com; a comment splitting the text must not make it alice@example.com
    (the signature still verifies: exclusive canonicalisation drops comments)."""
    django_user_model.objects.create_user("alice@example.com")
    _, request_id = start(client)
    root = parse_xml(core_response(idp_key, request_id, sign_assertion=False, name_id="alice@example.com.evil.com"))
    sign(assertion_of(root), idp_key.key, idp_key.certificate)
    xml = to_bytes(root).replace(b">alice@example.com.evil.com<", b">alice@example.com<!---->.evil.com<")
    assert b"alice@example.com<!---->.evil.com" in xml
    refused(post_response(client, xml), "'alice@example.com.evil.com'", checkpoint="SSOSAML2SP_USER_NOT_FOUND", status=403)


@pytest.mark.parametrize(
    "prolog",
    [
        b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',
        b'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    ],
    ids=["entity-expansion", "external-entity"],
)
def test_dtd_and_entities_are_refused(client, world, idp, prolog):
    _, request_id = start(client)
    xml = prolog + idp_response(idp, request_id).split(b"?>", 1)[-1]
    refused(post_response(client, xml), "DTDs and entity declarations are not allowed")


def test_a_response_that_is_not_base64_or_not_xml(client, world):
    response = client.post("/affwebservices/public/saml2assertionconsumer", {"SAMLResponse": "***not base64***"})
    refused(response, "the POSTed message is not valid base64")
    refused(post_response(client, b"<unclosed"), "not well-formed XML")


def test_a_response_with_two_issuers_is_refused_before_any_lookup(client, world, idp):
    root = solicited(client, idp)
    root.insert(0, copy.deepcopy(children(root, C.NS_SAML, "Issuer")[0]))
    refused(post_response(client, to_bytes(root)), "has more than one Issuer")
