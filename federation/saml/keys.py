"""Conversions between the key and certificate objects the rest of the product holds
(`cryptography` objects, PEM, DER, the base64 body found in metadata) and what xmlsec needs.

The protocol core never reads keys from files or from the keystore: callers pass key objects.
"""

import base64
import binascii
import functools
import hashlib
import threading
from collections import OrderedDict

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


def load_certificate(value):
    """An `x509.Certificate` from a Certificate, PEM (bytes or str), DER bytes, or the bare
    base64 body of a certificate as it appears in `ds:X509Certificate`."""
    if isinstance(value, x509.Certificate):
        return value
    if isinstance(value, str):
        value = value.encode("ascii")
    if not isinstance(value, bytes | bytearray):
        raise TypeError("a certificate must be an x509.Certificate, PEM, DER or base64 text")
    value = bytes(value)
    try:
        if b"-----BEGIN" in value:
            return x509.load_pem_x509_certificate(value)
        try:
            return x509.load_der_x509_certificate(value)
        except ValueError:
            return x509.load_der_x509_certificate(base64.b64decode(b"".join(value.split()), validate=True))
    except (ValueError, binascii.Error) as error:
        raise ValueError(f"not a certificate: {error}") from None


def load_certificates(values):
    """A list of certificates from one certificate or an iterable of them."""
    if isinstance(values, x509.Certificate | bytes | bytearray | str):
        values = [values]
    return [load_certificate(value) for value in values]


def certificate_pem(certificate):
    return load_certificate(certificate).public_bytes(PEM)


def certificate_der(certificate):
    return _der(load_certificate(certificate))


@functools.lru_cache(maxsize=256)
def _der(certificate):
    return certificate.public_bytes(DER)


def certificate_base64(certificate):
    """The bare base64 body, as written into `ds:X509Certificate`."""
    return base64.b64encode(certificate_der(certificate)).decode("ascii")


def key_type(key):
    """ "rsa", "ec" or "dsa" for a private or public key object."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        return "dsa"
    raise TypeError(f"unsupported key type {type(key).__name__}")


def load_private_key(key):
    """A private key object from a key object or unencrypted PEM."""
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey):
        return key
    if isinstance(key, str):
        key = key.encode("ascii")
    if isinstance(key, bytes):
        return serialization.load_pem_private_key(key, password=None)
    raise TypeError("a private key must be a cryptography private key object or unencrypted PEM")


def private_key_pem(key):
    return load_private_key(key).private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def xmlsec_private_key(key):
    """An xmlsec key for signing, cached: OpenSSL prepares an RSA key on its first use (about
    1 ms for RSA-2048, more than the signature itself), so a fresh xmlsec key per signature
    would triple the cost. The cache is keyed by a SHA-256 of the key, holds at most
    `_CACHE_SIZE` keys, and lives only in this process's memory, like the key objects the
    caller already holds."""
    pem = private_key_pem(key)
    return _cached(_private_keys, hashlib.sha256(pem).digest(), lambda: xmlsec.Key.from_memory(pem, xmlsec.KeyFormat.PEM, None))


def xmlsec_public_key(certificate):
    """An xmlsec key holding only the certificate's public key (no trust decision is made by
    xmlsec: the caller chose this certificate). Cached like `xmlsec_private_key`."""
    der = certificate_der(certificate)
    return _cached(
        _public_keys, hashlib.sha256(der).digest(), lambda: xmlsec.Key.from_memory(der, xmlsec.KeyFormat.CERT_DER, None)
    )


_CACHE_SIZE = 64
_private_keys = OrderedDict()
_public_keys = OrderedDict()
_lock = threading.Lock()


def _cached(cache, digest, load):
    with _lock:
        found = cache.get(digest)
        if found is not None:
            cache.move_to_end(digest)
            return found
    loaded = load()
    with _lock:
        cache[digest] = loaded
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    return loaded
