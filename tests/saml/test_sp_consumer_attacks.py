"""Attack fixtures for the assertion consumer: each hostile or broken response is refused with the
message an administrator would read. Responses are real: made by the pysaml2 IdP or signed by the
protocol core with the trusted IdP key, then altered the way an attacker would."""

import copy
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from federation import replay
from federation.saml import constants as C
from federation.saml.common import InvalidMessage, MessageExpired, SignatureRequired, UnsupportedVersion, parse_instant
from federation.saml.consumer import (
    AssertionReplayed,
    AudienceMismatch,
    DestinationMismatch,
    EncryptionRequired,
    IdPStatusError,
    InResponseToMismatch,
    IssuerMismatch,
    RecipientMismatch,
    SignatureRequirement,
    consume_post,
    consume_response,
)
from federation.saml.errors import BindingError, SignatureError, XMLSecurityError
from federation.saml.signing import allowed_signature_algorithms, sign
from federation.saml.xml import children, parse_xml, to_bytes
from tests.processes import ROOT, migrated_env

from . import messages, sp_peers
from .credentials import FIXTURES, committed_credential

ISSUED = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)  # our_response(now=ISSUED): NotBefore 11:59, NotOnOrAfter 12:05
SAML_ASSERTION = f"{{{C.NS_SAML}}}Assertion"
NAME_ID = f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID"


def accept(xml, idp, sp=None, now=None, replay_cache=None, **overrides):
    settings = sp_peers.consumer_settings(idp, sp, **overrides)
    return consume_post(sp_peers.post_value(xml), settings, now=now, replay_cache=replay_cache)


def assertion_of(root):
    return children(root, C.NS_SAML, "Assertion")[0]


def evil_copy(assertion, name_id="admin", new_id="_evil"):
    """The attacker's assertion: a copy of the signed one, signature removed, subject changed."""
    evil = copy.deepcopy(assertion)
    for signature in children(evil, C.NS_DS, "Signature"):
        evil.remove(signature)
    evil.find(NAME_ID).text = name_id
    if new_id:
        evil.set("ID", new_id)
    return evil


# --- Signature wrapping and extra assertions -------------------------------------------------------


def wrap_in_extensions(root):
    """The signed assertion moves into samlp:Extensions; an unsigned evil one takes its place."""
    original = assertion_of(root)
    extensions = root.makeelement(f"{{{C.NS_SAMLP}}}Extensions")
    root.replace(original, evil_copy(original))
    root.insert(1, extensions)
    extensions.append(original)


def original_inside_signature_object(root):
    """The evil assertion carries the original's signature, with the original hidden in ds:Object."""
    original = assertion_of(root)
    evil = evil_copy(original, new_id=None)
    signature = copy.deepcopy(children(original, C.NS_DS, "Signature")[0])
    signature.append(signature.makeelement(f"{{{C.NS_DS}}}Object"))
    signature[-1].append(original)
    evil.insert(1, signature)
    root.append(evil)


def evil_assertion_with_copied_signature(root):
    """The original is gone; the evil assertion (own ID) carries the original's signature."""
    original = assertion_of(root)
    evil = evil_copy(original)
    evil.insert(1, copy.deepcopy(children(original, C.NS_DS, "Signature")[0]))
    root.replace(original, evil)


def same_id_changed_content(root):
    """The evil assertion keeps the original's ID and signature; only the subject changed."""
    original = assertion_of(root)
    evil = evil_copy(original, new_id=None)
    evil.insert(1, copy.deepcopy(children(original, C.NS_DS, "Signature")[0]))
    root.replace(original, evil)


@pytest.mark.parametrize(
    ("attack", "error", "message"),
    [
        (wrap_in_extensions, InvalidMessage, "the response must carry exactly one assertion, not 2"),
        (original_inside_signature_object, InvalidMessage, "the response must carry exactly one assertion, not 2"),
        (evil_assertion_with_copied_signature, SignatureError, r"signature does not cover this element \(it references '#"),
        (same_id_changed_content, SignatureError, r"signed content was modified after signing \(digest mismatch\)"),
    ],
    ids=["moved-to-extensions", "original-in-signature-object", "copied-signature", "same-id-changed-content"],
)
def test_signed_assertion_moved_or_copied_is_refused(attack, error, message, tmp_path, idp_rsa, sp_rsa):
    server = sp_peers.pysaml2_idp(tmp_path, idp_rsa, sp_rsa)
    root = parse_xml(sp_peers.pysaml2_response(server, sign_response=False))
    attack(root)
    with pytest.raises(error, match=message):
        accept(to_bytes(root), idp_rsa)


def test_unsigned_assertion_added_beside_a_signed_one(idp_rsa):
    root = parse_xml(sp_peers.our_response(idp_rsa))
    root.append(evil_copy(assertion_of(root)))
    with pytest.raises(InvalidMessage, match="the response must carry exactly one assertion, not 2"):
        accept(to_bytes(root), idp_rsa)
    # Also when the response is signed over both: one response carries one assertion.
    with pytest.raises(InvalidMessage, match="the response must carry exactly one assertion, not 2"):
        accept(to_bytes(sign(root, idp_rsa.key, idp_rsa.certificate)), idp_rsa, require_signed=SignatureRequirement.EITHER)


def test_signed_response_around_an_unsigned_assertion_when_the_assertion_must_be_signed(idp_rsa):
    xml = sp_peers.our_response(idp_rsa, sign_assertion=False, sign_response=True)
    with pytest.raises(SignatureRequired, match="the assertion is not signed, and this partnership requires a signed assertion"):
        accept(xml, idp_rsa)
    assert accept(xml, idp_rsa, require_signed=SignatureRequirement.RESPONSE).name_id == "alice"


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("xsw-assertion-moved-to-extensions.xml", "digest mismatch"),
        ("xsw-evil-assertion-with-copied-signature.xml", "digest mismatch"),
        ("xsw-original-in-signature-object.xml", "digest mismatch"),
        ("signature-with-object.xml", "digest mismatch"),
        ("duplicate-id.xml", "digest mismatch"),
        ("two-signatures.xml", "digest mismatch"),
        ("modified-after-signing.xml", "digest mismatch"),
        ("reference-to-other-element.xml", "signature does not cover this element"),
        ("unsigned-response.xml", "the assertion is not signed, and this partnership requires a signed assertion"),
    ],
)
def test_committed_wrapping_vectors_are_refused(fixture, message):
    """The committed hostile variants of a pysaml2 response (tests/fixtures/saml/attacks), read at
    the instant they were issued so that only the attack can fail them."""
    data = (FIXTURES / "attacks" / fixture).read_bytes()
    now = parse_instant(parse_xml(data).get("IssueInstant"))
    with pytest.raises((SignatureError, SignatureRequired), match=message):
        accept(data, committed_credential("idp-rsa"), committed_credential("sp-rsa"), now=now)


# --- Signatures and encryption the partnership requires ------------------------------------------


def test_unsigned_response_and_assertion_refused_where_signing_is_required(idp_rsa):
    xml = sp_peers.our_response(idp_rsa, sign_assertion=False)
    with pytest.raises(SignatureRequired, match="the assertion is not signed, and this partnership requires a signed assertion"):
        accept(xml, idp_rsa)
    with pytest.raises(SignatureRequired, match="the response is not signed, and this partnership requires a signed response"):
        accept(xml, idp_rsa, require_signed=SignatureRequirement.RESPONSE)


def test_signed_assertion_only_where_both_are_required(idp_rsa):
    with pytest.raises(SignatureRequired, match="the response is not signed, and this partnership requires a signed response"):
        accept(sp_peers.our_response(idp_rsa), idp_rsa, require_signed=SignatureRequirement.BOTH)


def test_signature_by_an_untrusted_key(idp_rsa, attacker_rsa):
    with pytest.raises(SignatureError, match="signature invalid for every trusted certificate"):
        accept(sp_peers.our_response(attacker_rsa), idp_rsa)


def test_content_changed_after_signing(idp_rsa):
    tampered = sp_peers.our_response(idp_rsa).replace(b">alice</saml:NameID>", b">admin</saml:NameID>")
    with pytest.raises(SignatureError, match=r"signed content was modified after signing \(digest mismatch\)"):
        accept(tampered, idp_rsa)


def test_sha1_signature_refused_unless_the_partnership_allows_it(fixture_bytes, committed):
    data = fixture_bytes("peers/pysaml2-response-rsa-sha1.xml")
    now = parse_instant(parse_xml(data).get("IssueInstant"))
    with pytest.raises(SignatureError, match="algorithm rsa-sha1 not allowed"):
        accept(data, committed["idp-rsa"], now=now, require_signed=SignatureRequirement.EITHER)
    validated = accept(
        data,
        committed["idp-rsa"],
        now=now,
        require_signed=SignatureRequirement.EITHER,
        allowed_signature_algorithms=allowed_signature_algorithms(sha1=True),
    )
    assert validated.name_id == "alice"


def test_unencrypted_assertion_where_encryption_is_required(idp_rsa, sp_rsa):
    with pytest.raises(
        EncryptionRequired, match="the assertion is not encrypted, and this partnership requires an encrypted assertion"
    ):
        accept(sp_peers.our_response(idp_rsa), idp_rsa, sp_rsa, require_encrypted_assertion=True)


def test_clear_name_id_where_an_encrypted_one_is_required(idp_rsa, sp_rsa):
    with pytest.raises(
        EncryptionRequired, match="the NameID is not encrypted, and this partnership requires an encrypted NameID"
    ):
        accept(sp_peers.our_response(idp_rsa), idp_rsa, sp_rsa, require_encrypted_name_id=True)
    # Inside an encrypted assertion the NameID is encrypted too.
    assert accept(sp_peers.our_response(idp_rsa, encrypt_for=sp_rsa), idp_rsa, sp_rsa, require_encrypted_name_id=True)


# --- Replay -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_replayed_assertion_in_the_same_process(idp_rsa):
    xml = sp_peers.our_response(idp_rsa)
    first = accept(xml, idp_rsa, replay_cache=replay.remember_once)
    with pytest.raises(
        AssertionReplayed, match=f"assertion {first.assertion_id} from {messages.IDP_ENTITY_ID} was already used once"
    ):
        accept(xml, idp_rsa, replay_cache=replay.remember_once)
    # The same assertion in a new response (another response ID, response signed again) is the same replay.
    root = parse_xml(xml)
    root.set("ID", "_another-response")
    with pytest.raises(AssertionReplayed, match="was already used once"):
        accept(to_bytes(sign(root, idp_rsa.key, idp_rsa.certificate)), idp_rsa, replay_cache=replay.remember_once)


@pytest.mark.django_db
def test_a_refused_assertion_takes_no_place_in_the_replay_cache(idp_rsa):
    """The cache is written last: a response that fails a check does not burn its assertion ID."""
    xml = sp_peers.our_response(idp_rsa)
    with pytest.raises(InResponseToMismatch):
        accept(xml, idp_rsa, expected_in_response_to="_other", replay_cache=replay.remember_once)
    assert accept(xml, idp_rsa, replay_cache=replay.remember_once).name_id == "alice"


CONSUME_SCRIPT = """
import sys
import django
django.setup()
from pathlib import Path
from federation import replay
from federation.saml.consumer import ConsumerSettings, consume_post
settings = ConsumerSettings(
    sp_entity_id=sys.argv[3], acs_urls=(sys.argv[4],), idp_entity_id=sys.argv[5],
    idp_certificates=Path(sys.argv[2]).read_bytes(), expected_in_response_to="_request-1", skew_seconds=60,
)
try:
    validated = consume_post(Path(sys.argv[1]).read_text(), settings, replay_cache=replay.remember_once)
    print("ACCEPTED", validated.name_id)
except Exception as error:
    print("REFUSED", type(error).__name__, error)
"""


def test_replayed_assertion_across_two_processes(tmp_path, idp_rsa):
    """Two web processes sharing one database (here the embedded SQLite file): the second one to
    see the assertion refuses it."""
    env = {**migrated_env(tmp_path / "var"), "PYTHONPATH": str(ROOT)}
    script, response, certificate = tmp_path / "consume.py", tmp_path / "response.b64", tmp_path / "idp.crt"
    script.write_text(CONSUME_SCRIPT)
    response.write_text(sp_peers.post_value(sp_peers.our_response(idp_rsa)))
    certificate.write_bytes(idp_rsa.cert_pem)
    arguments = [sys.executable, str(script), str(response), str(certificate), messages.SP_ENTITY_ID, messages.SP_ACS_URL]
    arguments.append(messages.IDP_ENTITY_ID)
    outputs = [subprocess.run(arguments, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120) for _ in range(2)]
    assert outputs[0].stdout.strip() == "ACCEPTED alice", outputs[0].stderr
    assert outputs[1].stdout.startswith("REFUSED AssertionReplayed assertion _"), outputs[1].stderr
    assert "was already used once; a second use is a replay and is refused" in outputs[1].stdout


# --- Audience, recipient, destination, issuer ---------------------------------------------------------


def test_wrong_audience(idp_rsa):
    xml = sp_peers.our_response(idp_rsa, audience="https://other-sp.example.net/sp")
    with pytest.raises(
        AudienceMismatch,
        match=r"the assertion is meant for 'https://other-sp.example.net/sp', not for this SP \('https://sp.example.org/sp'\)",
    ):
        accept(xml, idp_rsa)


def test_no_audience_restriction(idp_rsa):
    root = messages.response(in_response_to="_request-1")
    conditions = assertion_of(root).find(f"{{{C.NS_SAML}}}Conditions")
    conditions.remove(conditions[0])
    sign(assertion_of(root), idp_rsa.key, idp_rsa.certificate)
    with pytest.raises(AudienceMismatch, match="the assertion has no AudienceRestriction naming this SP"):
        accept(to_bytes(root), idp_rsa)


def test_wrong_recipient(idp_rsa):
    xml = sp_peers.our_response(idp_rsa, recipient="https://evil.example.net/acs")
    with pytest.raises(
        RecipientMismatch,
        match=r"the assertion is confirmed for recipient 'https://evil.example.net/acs', not for this SP's assertion "
        r"consumer URL \('https://sp.example.org/sp/acs'\)",
    ):
        accept(xml, idp_rsa)


def test_wrong_destination(idp_rsa):
    xml = sp_peers.our_response(idp_rsa, destination="https://evil.example.net/acs")
    with pytest.raises(
        DestinationMismatch, match="the response is addressed to 'https://evil.example.net/acs', not to this SP's"
    ):
        accept(xml, idp_rsa)


def test_wrong_issuer(idp_rsa):
    xml = sp_peers.our_response(idp_rsa, issuer="https://evil-idp.example.net")
    with pytest.raises(
        IssuerMismatch,
        match="the response was issued by 'https://evil-idp.example.net', not by this partnership's IdP "
        "'https://idp.example.org/affwebservices'",
    ):
        accept(xml, idp_rsa)
    root = parse_xml(xml)
    root.remove(children(root, C.NS_SAML, "Issuer")[0])
    with pytest.raises(IssuerMismatch, match="the assertion was issued by 'https://evil-idp.example.net'"):
        accept(to_bytes(root), idp_rsa)


# --- Time ---------------------------------------------------------------------------------------------


def test_expired_assertion(idp_rsa):
    xml = sp_peers.our_response(idp_rsa, now=ISSUED)
    with pytest.raises(
        MessageExpired, match="the assertion has expired: NotOnOrAfter 2026-05-01T12:05:00Z, now 2026-05-01T12:06:00Z, skew 60 s"
    ):
        accept(xml, idp_rsa, now=ISSUED + timedelta(minutes=6))
    # Within our skew after NotOnOrAfter it is still accepted (the window widens by the skew).
    assert accept(xml, idp_rsa, now=ISSUED + timedelta(minutes=5, seconds=59)).name_id == "alice"


def test_expired_subject_confirmation(idp_rsa):
    root = messages.response(in_response_to="_request-1", now=ISSUED)
    data = assertion_of(root).find(f".//{{{C.NS_SAML}}}SubjectConfirmationData")
    data.set("NotOnOrAfter", "2026-05-01T12:01:00Z")
    sign(assertion_of(root), idp_rsa.key, idp_rsa.certificate)
    with pytest.raises(MessageExpired, match="the subject confirmation has expired: NotOnOrAfter 2026-05-01T12:01:00Z"):
        accept(to_bytes(root), idp_rsa, now=ISSUED + timedelta(minutes=3))


def test_not_yet_valid_beyond_skew_and_accepted_within_skew(idp_rsa):
    xml = sp_peers.our_response(idp_rsa, now=ISSUED)  # NotBefore 11:59:00
    with pytest.raises(
        MessageExpired,
        match="the assertion is not valid yet: NotBefore 2026-05-01T11:59:00Z, now 2026-05-01T11:57:59Z, skew 60 s; "
        "check the IdP's clock or raise the skew time",
    ):
        accept(xml, idp_rsa, now=datetime(2026, 5, 1, 11, 57, 59, tzinfo=UTC))
    assert accept(xml, idp_rsa, now=datetime(2026, 5, 1, 11, 58, 0, tzinfo=UTC)).name_id == "alice"
    with pytest.raises(MessageExpired, match="not valid yet"):
        accept(xml, idp_rsa, now=datetime(2026, 5, 1, 11, 58, 0, tzinfo=UTC), skew_seconds=0)


def test_idp_session_already_over(idp_rsa):
    root = messages.response(in_response_to="_request-1", now=ISSUED)
    assertion_of(root).find(f"{{{C.NS_SAML}}}AuthnStatement").set("SessionNotOnOrAfter", "2026-05-01T12:00:30Z")
    sign(assertion_of(root), idp_rsa.key, idp_rsa.certificate)
    with pytest.raises(MessageExpired, match="the IdP session has ended: SessionNotOnOrAfter 2026-05-01T12:00:30Z"):
        accept(to_bytes(root), idp_rsa, now=ISSUED + timedelta(minutes=2))


# --- InResponseTo ---------------------------------------------------------------------------------------


def test_in_response_to_unknown(idp_rsa):
    xml = sp_peers.our_response(idp_rsa, in_response_to="_request-we-never-sent")
    with pytest.raises(
        InResponseToMismatch, match="the response answers request '_request-we-never-sent', which this SP did not send"
    ):
        accept(xml, idp_rsa)


def test_in_response_to_differs_between_response_and_assertion(idp_rsa):
    root = parse_xml(sp_peers.our_response(idp_rsa, sign_assertion=False))
    root.set("InResponseTo", "_request-2")
    sign(assertion_of(root), idp_rsa.key, idp_rsa.certificate)
    with pytest.raises(
        InResponseToMismatch, match="the response answers request '_request-2' but its assertion answers '_request-1'"
    ):
        accept(to_bytes(root), idp_rsa, expected_in_response_to={"_request-1", "_request-2"})


# --- NameID comment injection ---------------------------------------------------------------------------


def test_comment_injected_name_id_is_read_in_full(idp_rsa):
    """The 2018 comment-truncation attack: the IdP signs the attacker's own account
    `alice@example.com.evil.com`; the attacker splits it with a comment, which canonicalisation
    ignores, so the signature still verifies. A consumer that reads only the first text node
    would log the attacker in as alice@example.com. Ours reads the whole text."""
    xml = sp_peers.our_response(idp_rsa, name_id="alice@example.com.evil.com")
    injected = xml.replace(b">alice@example.com.evil.com</saml:NameID>", b">alice@example.com<!---->.evil.com</saml:NameID>")
    assert injected != xml
    validated = accept(injected, idp_rsa)
    assert validated.name_id == "alice@example.com.evil.com"
    assert validated.attributes["principalName"] == ["alice@example.com.evil.com"]


def test_name_id_with_markup_inside_is_refused(idp_rsa):
    root = messages.response(in_response_to="_request-1")
    name_id = assertion_of(root).find(NAME_ID)
    name_id.append(name_id.makeelement(f"{{{C.NS_SAML}}}Extra"))
    sign(assertion_of(root), idp_rsa.key, idp_rsa.certificate)
    with pytest.raises(InvalidMessage, match="the NameID must contain only text"):
        accept(to_bytes(root), idp_rsa)


# --- Parser, binding and shape --------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["billion-laughs.xml", "xxe-file.xml", "xxe-parameter-entity.xml", "external-dtd.xml"])
def test_dtd_and_entity_expansion(fixture, idp_rsa):
    with pytest.raises(XMLSecurityError, match="DTDs and entity declarations are not allowed"):
        accept((FIXTURES / "xml" / fixture).read_bytes(), idp_rsa)


def test_entity_declared_in_front_of_a_signed_response(idp_rsa):
    xml = sp_peers.our_response(idp_rsa, sign_response=True)
    hostile = b'<!DOCTYPE samlp:Response [<!ENTITY name "admin">]>' + xml.replace(
        b">alice</saml:NameID>", b">&name;</saml:NameID>"
    )
    with pytest.raises(XMLSecurityError, match="DTDs and entity declarations are not allowed"):
        accept(hostile, idp_rsa)


def test_oversize_and_undecodable_post_values(idp_rsa):
    with pytest.raises(XMLSecurityError, match="the POSTed message is larger than the limit of 1048576 bytes"):
        consume_post("A" * 1_500_000, sp_peers.consumer_settings(idp_rsa))
    with pytest.raises(XMLSecurityError, match="XML input is larger than the limit of 4096 bytes"):
        accept(sp_peers.our_response(idp_rsa), idp_rsa, max_bytes=4096)
    with pytest.raises(BindingError, match="the POSTed message is not valid base64"):
        consume_post("not base64!", sp_peers.consumer_settings(idp_rsa))


def test_not_a_response_or_not_saml_2(idp_rsa):
    with pytest.raises(InvalidMessage, match="expected a Response message, got LogoutRequest"):
        accept(to_bytes(messages.logout_request()), idp_rsa)
    root = parse_xml(sp_peers.our_response(idp_rsa))
    root.set("Version", "1.1")
    with pytest.raises(UnsupportedVersion, match=r"Response is SAML version '1.1'; only 2.0 is accepted here"):
        accept(to_bytes(root), idp_rsa)


def test_status_not_success_from_pysaml2(tmp_path, idp_rsa, sp_rsa):
    server = sp_peers.pysaml2_idp(tmp_path, idp_rsa, sp_rsa)
    answer = server.create_error_response("_request-1", messages.SP_ACS_URL, (C.STATUS_AUTHN_FAILED, "wrong password"), sign=True)
    with pytest.raises(
        IdPStatusError,
        match="the IdP answered with an error status instead of an assertion in the response: Responder/AuthnFailed: wrong password",
    ) as raised:
        accept(str(answer).encode(), idp_rsa)
    assert raised.value.status_codes == (C.STATUS_RESPONDER, C.STATUS_AUTHN_FAILED)
    assert raised.value.status_message == "wrong password"


def test_forged_error_status_changes_nothing_but_the_message(idp_rsa):
    """An unsigned error status is reported as it is (it can only make the login fail), never
    read from the signed part of a good response."""
    root = parse_xml(sp_peers.our_response(idp_rsa))
    status_code = children(root, C.NS_SAMLP, "Status")[0][0]
    status_code.set("Value", C.STATUS_REQUESTER)
    with pytest.raises(IdPStatusError, match="error status instead of an assertion in the response: Requester"):
        accept(to_bytes(root), idp_rsa)


def test_unknown_condition_is_refused(idp_rsa):
    root = messages.response(in_response_to="_request-1")
    conditions = assertion_of(root).find(f"{{{C.NS_SAML}}}Conditions")
    condition = conditions.makeelement(f"{{{C.NS_SAML}}}Condition", {f"{{{C.NS_XSI}}}type": "ex:GeoFence"})
    conditions.append(condition)
    sign(assertion_of(root), idp_rsa.key, idp_rsa.certificate)
    with pytest.raises(InvalidMessage, match=r"the assertion has a condition this SP does not understand \(ex:GeoFence\)"):
        accept(to_bytes(root), idp_rsa)


def test_holder_of_key_only_is_refused(idp_rsa):
    root = messages.response(in_response_to="_request-1")
    assertion_of(root).find(f".//{{{C.NS_SAML}}}SubjectConfirmation").set("Method", C.CM_HOLDER_OF_KEY)
    sign(assertion_of(root), idp_rsa.key, idp_rsa.certificate)
    with pytest.raises(InvalidMessage, match="the assertion has no bearer SubjectConfirmation"):
        accept(to_bytes(root), idp_rsa)


def test_consume_response_accepts_bytes(idp_rsa):
    assert consume_response(sp_peers.our_response(idp_rsa), sp_peers.consumer_settings(idp_rsa)).name_id == "alice"


def test_name_id_qualified_for_another_sp(idp_rsa):
    root = messages.response(in_response_to="_request-1")
    assertion_of(root).find(NAME_ID).set("SPNameQualifier", "https://other-sp.example.net/sp")
    sign(assertion_of(root), idp_rsa.key, idp_rsa.certificate)
    with pytest.raises(
        AudienceMismatch,
        match=r"the NameID is qualified for 'https://other-sp.example.net/sp', not for this SP \('https://sp.example.org/sp'\)",
    ):
        accept(to_bytes(root), idp_rsa)
    # An affiliation this SP asked for in its NameIDPolicy is accepted.
    assert accept(to_bytes(root), idp_rsa, sp_name_qualifiers=("https://other-sp.example.net/sp",)).name_id == "alice"


def test_two_attributes_with_one_name_are_refused(idp_rsa):
    root = messages.response(in_response_to="_request-1")
    statement = assertion_of(root).find(f"{{{C.NS_SAML}}}AttributeStatement")
    statement.append(copy.deepcopy(statement[1]))
    sign(assertion_of(root), idp_rsa.key, idp_rsa.certificate)
    with pytest.raises(InvalidMessage, match="the assertion has more than one Attribute named 'groups'"):
        accept(to_bytes(root), idp_rsa)
