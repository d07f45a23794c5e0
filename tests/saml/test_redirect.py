"""HTTP-Redirect binding: DEFLATE encoding with a size cap, and detached query signatures
(bindings §3.4.4.1), including the attack fixtures for queries."""

import base64
import re
import zlib
from urllib.parse import quote_plus, unquote_plus

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from federation.saml import constants as C
from federation.saml.bindings import deflate_encode, inflate_decode
from federation.saml.errors import BindingError, SignatureError
from federation.saml.signing import allowed_signature_algorithms, sign_query, verify_query
from federation.saml.xml import parse_xml, to_bytes

from . import messages

RELAY_STATE = "https://sp.example.org/app/start?tab=1&lang=en"


def signed_query(credential, algorithm=C.RSA_SHA256, relay_state=RELAY_STATE, parameter="SAMLRequest"):
    message = deflate_encode(to_bytes(messages.logout_request()))
    params = [(parameter, message)] + ([("RelayState", relay_state)] if relay_state is not None else [])
    return sign_query(params, credential.key, algorithm)


# --- DEFLATE ---------------------------------------------------------------------------------


def test_deflate_round_trip():
    xml = to_bytes(messages.authn_request())
    assert inflate_decode(deflate_encode(xml)) == xml
    assert inflate_decode(deflate_encode(xml.decode())) == xml


def test_inflate_refuses_a_deflate_bomb_without_inflating_it():
    bomb = base64.b64encode(zlib.compress(b"\0" * 50_000_000)[2:-4])
    assert len(bomb) < 100_000
    with pytest.raises(BindingError, match="larger than 262144 bytes after decompression"):
        inflate_decode(bomb)
    with pytest.raises(BindingError, match="larger than 1000 bytes"):
        inflate_decode(deflate_encode(b"x" * 1001), max_bytes=1000)
    assert inflate_decode(deflate_encode(b"x" * 1000), max_bytes=1000) == b"x" * 1000


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"plain text, not deflated").decode(), "not valid DEFLATE data"),
        (base64.b64encode(zlib.compress(b"<r/>" * 100)[2:-4][:-5]).decode(), "truncated DEFLATE stream"),
        (base64.b64encode(zlib.compress(b"<r/>")[2:-4] + b"extra").decode(), "data after the end"),
        (base64.b64encode(zlib.compress(b"<r/>")).decode(), "not valid DEFLATE data"),  # zlib header: not raw DEFLATE
    ],
)
def test_inflate_refuses_broken_input(value, reason):
    with pytest.raises(BindingError, match=reason):
        inflate_decode(value)


# --- Query signatures ------------------------------------------------------------------------


def test_query_layout_is_the_spec_order_with_form_encoding(sp_rsa):
    query = signed_query(sp_rsa)
    names = [part.split("=", 1)[0] for part in query.split("&")]
    assert names == ["SAMLRequest", "RelayState", "SigAlg", "Signature"]
    assert f"RelayState={quote_plus(RELAY_STATE)}&SigAlg={quote_plus(C.RSA_SHA256)}&" in query


@pytest.mark.parametrize(
    ("kind", "algorithm"), [("rsa", C.RSA_SHA256), ("rsa", C.RSA_SHA512), ("ec", C.ECDSA_SHA256), ("ec", C.ECDSA_SHA384)]
)
def test_round_trip_returns_the_verified_values(kind, algorithm, idp_rsa, idp_ec):
    credential = idp_rsa if kind == "rsa" else idp_ec
    query = signed_query(credential, algorithm)
    verified = verify_query(query, [credential.certificate])
    assert verified.parameter == "SAMLRequest"
    assert verified.relay_state == RELAY_STATE
    assert verified.algorithm == algorithm
    assert verified.certificate == credential.certificate
    assert parse_xml(inflate_decode(verified.message)).tag == f"{{{C.NS_SAMLP}}}LogoutRequest"


def test_ecdsa_signature_is_xml_signature_encoded_r_and_s(idp_ec):
    query = signed_query(idp_ec, C.ECDSA_SHA256)
    signature = base64.b64decode(unquote_plus(query.rsplit("Signature=", 1)[1]))
    assert len(signature) == 64


def test_without_relay_state_and_for_a_response(idp_rsa):
    query = signed_query(idp_rsa, relay_state=None, parameter="SAMLResponse")
    verified = verify_query("?" + query, [idp_rsa.certificate])
    assert (verified.parameter, verified.relay_state) == ("SAMLResponse", None)


def test_parameter_order_in_the_url_does_not_matter(idp_rsa):
    """python3-saml, for one, sends Signature before SigAlg; the signed string is rebuilt in
    the spec order from the raw values whatever order they arrive in."""
    parts = signed_query(idp_rsa).split("&")
    verify_query("&".join(reversed(parts)), [idp_rsa.certificate])
    verify_query("&".join([parts[3], "foo=bar", parts[1], parts[0], parts[2]]), [idp_rsa.certificate])


def test_raw_values_are_used_as_received_lowercase_hex(idp_rsa):
    """ADFS encodes with lower-case hex; re-encoding decoded values would not reproduce it."""
    message = deflate_encode(to_bytes(messages.logout_request()))
    lower = "&".join(
        f"{name}={_lower_hex(quote_plus(value))}"
        for name, value in (("SAMLRequest", message), ("RelayState", RELAY_STATE), ("SigAlg", C.RSA_SHA256))
    )
    signature = idp_rsa.key.sign(lower.encode(), padding.PKCS1v15(), hashes.SHA256())
    query = f"{lower}&Signature={quote_plus(base64.b64encode(signature).decode())}"
    assert "%2f" in query
    verified = verify_query(query, [idp_rsa.certificate])
    assert verified.relay_state == RELAY_STATE


def _lower_hex(encoded):
    return re.sub(r"%[0-9A-F]{2}", lambda match: match.group(0).lower(), encoded)


def test_tampered_relay_state(fixture_bytes, committed):
    query = fixture_bytes("attacks/redirect-tampered-relaystate.txt").decode().strip()
    with pytest.raises(SignatureError, match="^signature invalid for every trusted certificate$"):
        verify_query(query, [committed["sp-rsa"].certificate])


def test_parameters_signed_in_a_different_order(fixture_bytes, committed):
    query = fixture_bytes("attacks/redirect-signed-in-wrong-order.txt").decode().strip()
    assert query.startswith("SigAlg=")
    with pytest.raises(SignatureError, match="^signature invalid for every trusted certificate$"):
        verify_query(query, [committed["sp-rsa"].certificate])


def test_duplicated_parameter(fixture_bytes, committed):
    query = fixture_bytes("attacks/redirect-duplicate-samlrequest.txt").decode().strip()
    with pytest.raises(SignatureError, match="parameter SAMLRequest appears more than once"):
        verify_query(query, [committed["sp-rsa"].certificate])


def test_duplicated_parameter_hidden_by_percent_encoding_the_name(sp_rsa):
    query = signed_query(sp_rsa) + "&SAML%52equest=AAAA"
    with pytest.raises(SignatureError, match="parameter SAMLRequest appears more than once"):
        verify_query(query, [sp_rsa.certificate])


def test_untrusted_signer(sp_rsa, attacker_rsa):
    with pytest.raises(SignatureError, match="^signature invalid for every trusted certificate$"):
        verify_query(signed_query(attacker_rsa), [sp_rsa.certificate])


def test_sha1_is_refused_unless_allowed(sp_rsa):
    query = signed_query(sp_rsa, C.RSA_SHA1)
    with pytest.raises(SignatureError, match="algorithm rsa-sha1 not allowed"):
        verify_query(query, [sp_rsa.certificate])
    assert verify_query(query, [sp_rsa.certificate], allowed_signature_algorithms(sha1=True)).algorithm == C.RSA_SHA1


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda q: q.split("&Signature=")[0], "^no signature$"),
        (lambda q: "&".join(p for p in q.split("&") if not p.startswith("SigAlg=")), "Signature but no SigAlg"),
        (lambda q: q + "&SAMLResponse=AAAA", "exactly one of SAMLRequest or SAMLResponse"),
        (
            lambda q: "&".join(p for p in q.split("&") if not p.startswith("SAMLRequest=")),
            "exactly one of SAMLRequest or SAMLResponse",
        ),
        (lambda q: q.split("&Signature=")[0] + "&Signature=%%%", "not valid base64"),
        (lambda q: q.replace("SigAlg=http", "SigAlg=urn%3Ahmac"), "algorithm urn:hmac"),
        (lambda q: q + "&RelayState=é", "not URL-encoded ASCII"),
    ],
)
def test_malformed_queries(sp_rsa, mutate, reason):
    with pytest.raises(SignatureError, match=reason):
        verify_query(mutate(signed_query(sp_rsa)), [sp_rsa.certificate])


def test_sign_query_refuses_what_cannot_be_signed(sp_rsa, idp_ec):
    with pytest.raises(ValueError, match="cannot be part of a signed Redirect query"):
        sign_query([("SAMLRequest", "x"), ("Other", "y")], sp_rsa.key)
    with pytest.raises(ValueError, match="exactly one of SAMLRequest or SAMLResponse"):
        sign_query([("SAMLRequest", "x"), ("SAMLResponse", "y")], sp_rsa.key)
    with pytest.raises(ValueError, match="given twice"):
        sign_query([("SAMLRequest", "x"), ("RelayState", "a"), ("RelayState", "b")], sp_rsa.key)
    with pytest.raises(ValueError, match="needs an EC key"):
        sign_query([("SAMLRequest", "x")], sp_rsa.key, C.ECDSA_SHA256)
    with pytest.raises(SignatureError, match="no trusted certificate"):
        verify_query(sign_query([("SAMLRequest", "x")], idp_ec.key, C.ECDSA_SHA256), [])
