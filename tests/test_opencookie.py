"""The open-format cookie (federation.opencookie): the documented plaintext layout, its encryption, malformed and
tampered cookies, and `manage.py opencookie` as a real process."""

import base64
import json

import pytest

from federation import opencookie
from federation.opencookie import OpenCookieError, decode, encode, parse, serialize
from tests.processes import manage, migrated_env

PASSWORD = "correct horse battery staple"


def test_the_layout_of_the_reference_example():
    text = serialize(
        {"NameID": "bob", "NameIDFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"}, {"mail": ["bob@acme.com"]}
    )
    assert (
        text
        == "1 2 6 NameID 3 bob 12 NameIDFormat 53 urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified 1 4 mail 1 12 bob@acme.com"
    )
    assert parse(text) == opencookie.OpenCookie(
        1, {"NameID": "bob", "NameIDFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"}, {"mail": ["bob@acme.com"]}
    )


def test_lengths_are_utf8_bytes_and_unsafe_values_are_quoted():
    text = serialize({"NameID": "zoë", "UserDN": "uid=zoë,ou=people"}, {"note": ["a;b", "plain", ""]})
    # ë is two bytes; the DN holds '=' and ',' so it is quoted, and the quotes count in the length.
    assert text == '1 2 6 NameID 4 zoë 6 UserDN 20 "uid=zoë,ou=people" 1 4 note 3 5 "a;b" 5 plain 0 '
    cookie = parse(text)
    assert cookie.properties == {"NameID": "zoë", "UserDN": "uid=zoë,ou=people"}
    assert cookie.attributes == {"note": ["a;b", "plain", ""]}


def test_a_value_with_quotes_or_edge_spaces_survives():
    values = ['"quoted"', " leading", "trailing ", 'mid"dle', "new\nline"]
    cookie = parse(serialize({"NameID": "x"}, {"odd": values}))
    assert cookie.attributes["odd"] == values


def test_round_trip_through_encryption_with_both_algorithms():
    properties = {"NameID": "alice", "AuthnContext": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"}
    attributes = {"groups": ["admins", "staff"], "名前": ["アリス"]}
    for algorithm in ("aes256-gcm", "aes128-gcm"):
        token = encode(properties, attributes, PASSWORD, algorithm)
        assert token.isascii() and "=" not in token and ";" not in token  # a cookie-safe value
        assert decode(token, PASSWORD) == opencookie.OpenCookie(1, properties, attributes)
    # The same content encrypts differently every time (a fresh nonce), and the header names the algorithm.
    assert encode(properties, attributes, PASSWORD) != encode(properties, attributes, PASSWORD)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert raw[0] == 1 and raw[1] == 2


def test_the_documented_decryption_works_without_this_module():
    """docs/application-integration.md shows how an application decrypts with `cryptography` alone."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    token = encode({"NameID": "alice"}, {"mail": ["alice@example.org"]}, PASSWORD)
    data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    key = PBKDF2HMAC(hashes.SHA256(), 32, data[2:18], 600_000).derive(PASSWORD.encode())
    plaintext = AESGCM(key).decrypt(data[18:30], data[30:], data[:18]).decode()
    assert plaintext == "1 1 6 NameID 5 alice 1 4 mail 1 17 alice@example.org"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2 1 6 NameID 5 alice 0", "the cookie has version 2; this reader knows version 1"),
        ("1 0 0", "the cookie has no properties"),
        ("1 1 6 NameID 9 alice 0", "the cookie is truncated: the value of property 'NameID' should be 9 bytes long"),
        ("1 1 6 NameID 3 alice 0", "expected a space before the number of attributes at byte 18"),
        ("1 1 6 NameID 5 alice 0 extra", "the cookie has 6 bytes of extra data after its end"),
        ("1 1 6 NameID 5 alice", "expected a space before the number of attributes"),
        ("1 2 6 NameID 1 a 6 NameID 1 b 0", "the cookie names property 'NameID' twice"),
        ("1 1 6 NameID 1 a 2 1 g 1 1 x 1 g 1 1 y", "the cookie names attribute 'g' twice"),
        ("1 1 x NameID 1 a 0", "expected the length of a property name"),
        ("", "expected the version"),
        ("1 1 2 \xc3( 1 a 0", "not UTF-8"),
    ],
)
def test_malformed_plaintexts_are_refused(text, message):
    data = text.encode("latin-1") if "\xc3" in text else text
    with pytest.raises(OpenCookieError, match=message):
        parse(data)


def test_a_wrong_password_or_an_altered_cookie_is_refused():
    token = encode({"NameID": "alice"}, {}, PASSWORD)
    with pytest.raises(OpenCookieError, match="wrong password, or the cookie was altered"):
        decode(token, "another password")
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(OpenCookieError, match="wrong password, or the cookie was altered"):
        decode(tampered, PASSWORD)
    raw[-1] ^= 1
    assert raw[1] == 1
    raw[1] = 2  # relabelled as AES-128: the header is authenticated too
    relabelled = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(OpenCookieError, match="wrong password, or the cookie was altered"):
        decode(relabelled, PASSWORD)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "the cookie is empty"),
        ("not base64!", "the cookie is not URL-safe base64 text"),
        ("AQE", "too short"),
        (base64.urlsafe_b64encode(b"\x02\x01" + b"\x00" * 60).decode(), "format byte is 2"),
        (base64.urlsafe_b64encode(b"\x01\x09" + b"\x00" * 60).decode(), "unknown encryption"),
        ("A" * 20000, "longer than 16384 characters"),
    ],
)
def test_tokens_that_are_not_ours_are_refused(token, message):
    with pytest.raises(OpenCookieError, match=message):
        decode(token, PASSWORD)


def test_encode_needs_a_property_and_a_password():
    with pytest.raises(OpenCookieError, match="at least one property"):
        encode({"NameID": None}, {}, PASSWORD)
    with pytest.raises(OpenCookieError, match="needs its password"):
        encode({"NameID": "a"}, {}, "")
    with pytest.raises(OpenCookieError, match="unknown cookie encryption"):
        encode({"NameID": "a"}, {}, PASSWORD, "des")


# --- manage.py opencookie, as a real process ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    return migrated_env(tmp_path_factory.mktemp("opencookie-cli"))


def test_cli_decodes_a_cookie_with_the_password_from_the_environment(cli_env):
    token = encode({"NameID": "alice", "LoginID": "alice"}, {"groups": ["admins", "staff"]}, PASSWORD)
    done = manage({**cli_env, "FEDERATION_OPENCOOKIE_PASSWORD": PASSWORD}, "opencookie", "decode", token)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Version: 1", "NameID: alice", "LoginID: alice", "groups: admins | staff"]
    as_json = manage(
        {**cli_env, "APP_COOKIE_KEY": PASSWORD}, "opencookie", "decode", token, "--json", "--password-env", "APP_COOKIE_KEY"
    )
    assert json.loads(as_json.stdout) == {
        "version": 1,
        "properties": {"NameID": "alice", "LoginID": "alice"},
        "attributes": {"groups": ["admins", "staff"]},
    }


def test_cli_encode_then_decode_with_a_password_file(cli_env, tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    made = manage(
        cli_env,
        "opencookie",
        "encode",
        "-p",
        "NameID=bob",
        "-a",
        "mail=bob@example.org",
        "-a",
        "mail=b@example.org",
        "--password-file",
        str(password_file),
    )
    assert made.returncode == 0, made.stderr
    assert decode(made.stdout.strip(), PASSWORD).attributes == {"mail": ["bob@example.org", "b@example.org"]}
    read = manage(cli_env, "opencookie", "decode", "-", "--password-file", str(password_file), input=made.stdout)
    assert read.returncode == 0 and "mail: bob@example.org | b@example.org" in read.stdout


def test_cli_reports_an_unreadable_cookie_in_one_line(cli_env):
    token = encode({"NameID": "alice"}, {}, PASSWORD)
    done = manage({**cli_env, "FEDERATION_OPENCOOKIE_PASSWORD": "wrong"}, "opencookie", "decode", token)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: the cookie cannot be decrypted: wrong password, or the cookie was altered"
    missing = manage(cli_env, "opencookie", "decode", token, input="")
    assert missing.returncode == 1 and "give the password with --password-env" in missing.stderr
    unknown = manage(cli_env, "opencookie", "decode", token, "--partnership", "NoSuch")
    assert unknown.returncode == 1 and "no active partnership is named 'NoSuch'" in unknown.stderr
