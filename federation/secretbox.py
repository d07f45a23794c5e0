"""Sealing of secrets at rest: private keys, LDAP bind passwords, back-channel passwords.

AES-256-GCM with a key derived (HKDF-SHA256) from the deployment's key-encryption secret.
A sealed value reads `sb1:<key id>:<base64(nonce || ciphertext)>`; the key id names which secret
sealed it, so `manage.py rekey` can open values sealed under a retired secret
(FEDERATION_KEY_ENCRYPTION_OLD_SECRETS) and seal them again under the current one.

Columns holding sealed values are `SealedTextField`s, which is how `rekey` finds them all.
"""

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

PREFIX = "sb1"


class SecretBoxError(Exception):
    """A sealed value cannot be opened: wrong or missing key-encryption secret, or tampering."""


def _derive(secret):
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"federation-secretbox", info=b"sb1").derive(secret.encode())
    key_id = hashlib.sha256(key).hexdigest()[:12]
    return key_id, key


def _keys():
    current = _derive(settings.KEY_ENCRYPTION_SECRET)
    return current, dict([current] + [_derive(old) for old in settings.KEY_ENCRYPTION_OLD_SECRETS])


def seal(plaintext: bytes, secret: str | None = None) -> str:
    key_id, key = _derive(secret) if secret else _keys()[0]
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, key_id.encode())
    return f"{PREFIX}:{key_id}:{base64.b64encode(nonce + ciphertext).decode()}"


def unseal(sealed: str) -> bytes:
    try:
        prefix, key_id, payload = sealed.split(":", 2)
    except ValueError:
        raise SecretBoxError("not a sealed value") from None
    if prefix != PREFIX:
        raise SecretBoxError("not a sealed value")
    key = _keys()[1].get(key_id)
    if key is None:
        raise SecretBoxError(
            f"sealed under an unknown key-encryption secret (key id {key_id}); "
            "set FEDERATION_KEY_ENCRYPTION_OLD_SECRETS to the secret it was sealed with"
        )
    raw = base64.b64decode(payload)
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], key_id.encode())
    except InvalidTag:
        raise SecretBoxError("sealed value failed its integrity check") from None


def is_current(sealed: str) -> bool:
    return sealed.split(":", 2)[1:2] == [_keys()[0][0]]


def seal_text(text: str) -> str:
    return seal(text.encode()) if text else ""


def unseal_text(sealed: str) -> str:
    return unseal(sealed).decode() if sealed else ""


class SealedTextField(models.TextField):
    """A column that holds only sealed values (see module docstring). Never rendered, never audited."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)


def sealed_fields():
    """(model, field name) for every SealedTextField in the project."""
    from django.apps import apps

    for model in apps.get_models():
        for field in model._meta.get_fields():
            if isinstance(field, SealedTextField):
                yield model, field.name
