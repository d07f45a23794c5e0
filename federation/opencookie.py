"""The open-format cookie: identity and attributes handed to an application, readable in any language.

The plaintext is the reference's layout (reference ch20-22 §4): UTF-8, every name and value preceded by its length
in UTF-8 bytes, ASCII spaces between all tokens:

    Cookie     = Version Sp Properties Sp Attributes
    Properties = Cnt 1*(Sp PPair)              PPair = Sz Sp Name Sp Sz Sp Value
    Attributes = Cnt 0*(Sp APair)              APair = Sz Sp Name Sp ValCnt 1*(Sp Sz Sp Value)

    1 2 6 NameID 5 alice 12 NameIDFormat 53 urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified 1 4 mail 1 17 alice@example.org

Decisions where the reference is silent:
- Values (and names) holding a character that is unsafe in a cookie or to a naive reader (`= " ; , \\`, controls,
  leading or trailing spaces) are written in double quotes, always. Sz counts the token as written, quotes
  included, so a reader can skip by length; the value is what lies between the quotes (no escaping inside).
- Multi-valued attributes carry every value: ValCnt = n, then n `Sz Sp Value` groups (the reference's r12.1 rule
  of ValCnt = 1 is lifted, as its chapter 20 asks for all values). An empty value is `0 ` (Sz 0, nothing after).
- Version is 1. Names are unique among the properties and among the attributes.

The plaintext is then encrypted with an AEAD cipher under a key derived from a shared password, and sent as
URL-safe base64 without padding (a cookie-safe value):

    token = b64url( 0x01 | alg | salt (16) | nonce (12) | AES-GCM ciphertext and tag )
    key   = PBKDF2-HMAC-SHA256(password, salt, 600000 iterations, 32 bytes for alg 1 = aes256-gcm, 16 for 2 = aes128-gcm)
    AES-GCM(key).encrypt(nonce, plaintext, associated data = the first 18 bytes: 0x01 | alg | salt)

A process picks one random salt per password and keeps the derived key, and a reader keeps the keys of the salts it
has seen, so the slow derivation runs once per web process and per reader, not per cookie.

    token = encode({"NameID": "alice"}, {"mail": ["alice@example.org"]}, password)
    cookie = decode(token, password)       # OpenCookie(version=1, properties={...}, attributes={...})

Plain functions, no Django: applications may copy this file (it needs only `cryptography`).
"""

import base64
import binascii
import functools
import os
import re
import threading
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

VERSION = 1
TOKEN_VERSION = 0x01
ALGORITHMS = {"aes256-gcm": (1, 32), "aes128-gcm": (2, 16)}  # name -> (id byte, key bytes)
_ALGORITHM_BY_ID = {identifier: (name, size) for name, (identifier, size) in ALGORITHMS.items()}
PBKDF2_ITERATIONS = 600_000
SALT_BYTES = 16
NONCE_BYTES = 12
HEADER_BYTES = 2 + SALT_BYTES
MAX_COOKIE_BYTES = 4096  # what browsers keep for one cookie (name, value and attributes)
MAX_TOKEN_CHARS = 16384  # largest token `decode` reads (a cookie copied by hand may be longer than a browser's)

# The standard properties the SP runtime writes (reference ch20-22 §4), in this order.
PROPERTY_NAMES = ("NameID", "NameIDFormat", "SessionID", "AuthnContext", "UserDN", "LoginID", "ExpiresOn")

_UNSAFE = re.compile(r'[=";,\\\x00-\x1f\x7f]|^\s|\s$')


class OpenCookieError(ValueError):
    """The cookie cannot be read: not a token of ours, wrong password, tampered with, or a plaintext that does not
    follow the layout. The message says which, in plain words."""


@dataclass(frozen=True)
class OpenCookie:
    version: int
    properties: dict = field(default_factory=dict)  # name -> value
    attributes: dict = field(default_factory=dict)  # name -> [values]


# --- The plaintext layout --------------------------------------------------------------------------------------------


def _token(text):
    text = str(text)
    if _UNSAFE.search(text):
        text = f'"{text}"'
    data = text.encode("utf-8")
    return f"{len(data)} {text}"


def serialize(properties, attributes=None):
    """The plaintext of a cookie: `properties` {name: value} (at least one), `attributes` {name: [values] or value}.
    Properties with a None value are left out; so are attributes without values."""
    pairs = [(name, value) for name, value in properties.items() if value is not None]
    if not pairs:
        raise OpenCookieError("an open-format cookie needs at least one property (such as NameID)")
    parts = [str(VERSION), str(len(pairs))]
    for name, value in pairs:
        parts.append(_token(name))
        parts.append(_token(value))
    rows = []
    for name, values in (attributes or {}).items():
        values = [values] if isinstance(values, str) else [str(v) for v in values or ()]
        if values:
            rows.append((name, values))
    parts.append(str(len(rows)))
    for name, values in rows:
        parts.append(_token(name))
        parts.append(str(len(values)))
        parts.extend(_token(value) for value in values)
    return " ".join(parts)


class _Reader:
    """Reads the plaintext (as UTF-8 bytes) token by token, refusing anything off the layout."""

    def __init__(self, data):
        self.data = data
        self.position = 0

    def _space(self, what):
        if self.position >= len(self.data) or self.data[self.position] != 0x20:
            raise OpenCookieError(f"the cookie is malformed: expected a space before {what} at byte {self.position}")
        self.position += 1

    def number(self, what, leading_space=True):
        if leading_space:
            self._space(what)
        start = self.position
        while self.position < len(self.data) and 0x30 <= self.data[self.position] <= 0x39:
            self.position += 1
        digits = self.data[start : self.position]
        if not digits or len(digits) > 6:
            raise OpenCookieError(f"the cookie is malformed: expected {what} (a number) at byte {start}")
        return int(digits)

    def text(self, what):
        size = self.number(f"the length of {what}")
        self._space(what)
        end = self.position + size
        if end > len(self.data):
            raise OpenCookieError(f"the cookie is truncated: {what} should be {size} bytes long")
        raw = self.data[self.position : end]
        self.position = end
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise OpenCookieError(f"the cookie is malformed: {what} is not UTF-8 of the stated length") from None
        if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
            text = text[1:-1]
        return text

    def done(self):
        if self.position != len(self.data):
            raise OpenCookieError(f"the cookie has {len(self.data) - self.position} bytes of extra data after its end")


def parse(plaintext):
    """An `OpenCookie` from the plaintext layout (str or UTF-8 bytes); `OpenCookieError` for anything off it."""
    data = plaintext.encode("utf-8") if isinstance(plaintext, str) else bytes(plaintext)
    reader = _Reader(data)
    version = reader.number("the version", leading_space=False)
    if version != VERSION:
        raise OpenCookieError(f"the cookie has version {version}; this reader knows version {VERSION}")
    count = reader.number("the number of properties")
    if count < 1:
        raise OpenCookieError("the cookie has no properties; at least one (such as NameID) is required")
    properties = {}
    for _ in range(count):
        name = reader.text("a property name")
        value = reader.text(f"the value of property {name!r}")
        if name in properties:
            raise OpenCookieError(f"the cookie names property {name!r} twice")
        properties[name] = value
    attributes = {}
    for _ in range(reader.number("the number of attributes")):
        name = reader.text("an attribute name")
        values = [reader.text(f"a value of attribute {name!r}") for _ in range(reader.number(f"the value count of {name!r}"))]
        if name in attributes:
            raise OpenCookieError(f"the cookie names attribute {name!r} twice")
        attributes[name] = values
    reader.done()
    return OpenCookie(version, properties, attributes)


# --- Encryption ------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _derive(password, salt, size):
    return PBKDF2HMAC(hashes.SHA256(), size, salt, PBKDF2_ITERATIONS).derive(password.encode("utf-8"))


_process_salts = {}
_salt_lock = threading.Lock()


def _salt_for(password, algorithm):
    """This process's salt for (password, algorithm): random, made once, so the key is derived once."""
    key = (password, algorithm)
    salt = _process_salts.get(key)
    if salt is None:
        with _salt_lock:
            salt = _process_salts.setdefault(key, os.urandom(SALT_BYTES))
    return salt


def _check_password(password):
    if not isinstance(password, str) or not password:
        raise OpenCookieError("the open-format cookie needs its password (the partnership's cookie encryption password)")


def encrypt(plaintext, password, algorithm="aes256-gcm"):
    """The cookie-safe token for `plaintext` (str)."""
    _check_password(password)
    if algorithm not in ALGORITHMS:
        raise OpenCookieError(f"unknown cookie encryption {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    identifier, size = ALGORITHMS[algorithm]
    salt = _salt_for(password, algorithm)
    header = bytes([TOKEN_VERSION, identifier]) + salt
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_derive(password, salt, size)).encrypt(nonce, plaintext.encode("utf-8"), header)
    return base64.urlsafe_b64encode(header + nonce + sealed).rstrip(b"=").decode("ascii")


def decrypt(token, password):
    """The plaintext inside a token; `OpenCookieError` when it is not one, or the password or the data is wrong."""
    _check_password(password)
    token = (token or "").strip().strip('"')
    if not token:
        raise OpenCookieError("the cookie is empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise OpenCookieError(f"the cookie is longer than {MAX_TOKEN_CHARS} characters")
    try:
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise OpenCookieError("the cookie is not URL-safe base64 text") from None
    if len(data) < HEADER_BYTES + NONCE_BYTES + 16:
        raise OpenCookieError("the cookie is too short to be an encrypted open-format cookie")
    if data[0] != TOKEN_VERSION:
        raise OpenCookieError(f"the cookie's format byte is {data[0]}; this reader knows {TOKEN_VERSION}")
    if data[1] not in _ALGORITHM_BY_ID:
        raise OpenCookieError(f"the cookie names an unknown encryption (algorithm byte {data[1]})")
    _, size = _ALGORITHM_BY_ID[data[1]]
    header, nonce, sealed = (
        data[:HEADER_BYTES],
        data[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES],
        data[HEADER_BYTES + NONCE_BYTES :],
    )
    try:
        plaintext = AESGCM(_derive(password, header[2:], size)).decrypt(nonce, sealed, header)
    except InvalidTag:
        raise OpenCookieError("the cookie cannot be decrypted: wrong password, or the cookie was altered") from None
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise OpenCookieError("the decrypted cookie is not UTF-8 text") from None


def encode(properties, attributes, password, algorithm="aes256-gcm"):
    """`serialize` then `encrypt`: the value to set in the browser."""
    return encrypt(serialize(properties, attributes), password, algorithm)


def decode(token, password):
    """`decrypt` then `parse`: what an application reads from the cookie."""
    return parse(decrypt(token, password))
