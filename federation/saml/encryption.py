"""XML Encryption of SAML 2.0 assertions, NameIDs and attributes (SAML core §2.2.4, XML
Encryption 1.0/1.1).

Encrypting writes the same `xenc:EncryptedData` (Type Element) that xmlsec writes, whose
`ds:KeyInfo` holds one `xenc:EncryptedKey` for the partner's RSA certificate, so python3-saml,
pysaml2 and the xmlsec1 tool decrypt it. The cryptography is done with `cryptography` and the
XML with lxml, not by xmlsec: xmlsec's encryption context grew a worker by ~35 bytes per call,
for good.

Decrypting is done here with `cryptography`, not by xmlsec, for three reasons: the algorithm
allow-list is applied to exactly the elements we then use; RSA PKCS#1 v1.5 key transport, when a
partnership allows it at all, gets the implicit-rejection countermeasure against Bleichenbacher's
attack (a failed unwrap continues with a random key, so the caller sees one uniform failure); and
the plaintext goes through the hardened `parse_xml`, like every other inbound XML.
"""

import base64
import binascii
import os
from xml.sax.saxutils import quoteattr

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from .constants import (
    AES128_CBC,
    AES128_GCM,
    AES192_CBC,
    AES192_GCM,
    AES256_CBC,
    AES256_GCM,
    BLOCK_ALGORITHMS,
    DEFAULT_ENCRYPTION_ALGORITHMS,
    ENCRYPTED_TYPE_ELEMENT,
    KEY_TRANSPORT_ALGORITHMS,
    MAX_MESSAGE_BYTES,
    MGF1_SHA1,
    MGF1_SHA224,
    MGF1_SHA256,
    MGF1_SHA384,
    MGF1_SHA512,
    NS_DS,
    NS_SAML,
    NS_XENC,
    NS_XENC11,
    RSA_1_5,
    RSA_OAEP,
    RSA_OAEP_MGF1P,
    SHA1,
    SHA256,
    SHA384,
    SHA512,
    TRIPLEDES_CBC,
    algorithm_name,
)
from .errors import DecryptionError, EncryptionError, SAMLError
from .keys import load_certificate, load_private_key
from .xml import child_elements, children, is_element, local_name, parse_xml, qname, reparse

# block algorithm -> (session key bytes, mode)
_BLOCK = {
    AES128_CBC: (16, "cbc"),
    AES192_CBC: (24, "cbc"),
    AES256_CBC: (32, "cbc"),
    AES128_GCM: (16, "gcm"),
    AES192_GCM: (24, "gcm"),
    AES256_GCM: (32, "gcm"),
    TRIPLEDES_CBC: (24, "cbc"),
}
_GCM_IV_BYTES = 12
# key transport -> RSA padding; rsa-oaep-mgf1p fixes MGF1-SHA-1, and we write the SHA-1 digest out
_KEY_TRANSPORT = {
    RSA_OAEP_MGF1P: padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    RSA_1_5: padding.PKCS1v15(),
}
_BASE64_LINE = 64  # xmlsec's line length for CipherValue
_OAEP_DIGESTS = {SHA1: hashes.SHA1, SHA256: hashes.SHA256, SHA384: hashes.SHA384, SHA512: hashes.SHA512}
_MGF_DIGESTS = {
    MGF1_SHA1: hashes.SHA1,
    MGF1_SHA224: hashes.SHA224,
    MGF1_SHA256: hashes.SHA256,
    MGF1_SHA384: hashes.SHA384,
    MGF1_SHA512: hashes.SHA512,
}
MIN_RSA_KEY_BITS = 1024  # the reference product's rule for RSA-OAEP key transport
_UNDECRYPTABLE = "could not decrypt the element with our key"


class _Undecryptable(Exception):
    """Internal: one uniform failure for every cryptographic step of decryption."""


# --- Encrypt ---------------------------------------------------------------------------------


def encrypt(element, certificate, algorithm=AES256_GCM, key_transport=RSA_OAEP_MGF1P):
    """Encrypt `element` for the holder of `certificate` (an RSA certificate) and return a new,
    detached `xenc:EncryptedData` (Type Element) with the `xenc:EncryptedKey` in its KeyInfo.

    Default: AES-256-GCM for the data (authenticated, so no padding oracle at the partner) and
    RSA-OAEP with MGF1-SHA-1 and a SHA-1 digest (written out as an explicit ds:DigestMethod) for
    the key, the key transport every SAML stack decrypts. Pick AES-*-CBC for a partner that
    cannot do GCM, and RSA-1.5 or 3DES only for a partner that can do nothing else. The element
    is serialised as a self-contained copy, so it decrypts on its own wherever the receiver puts
    it.
    """
    if algorithm not in _BLOCK:
        raise EncryptionError(f"unsupported block algorithm {algorithm_name(algorithm)}")
    if key_transport not in _KEY_TRANSPORT:
        raise EncryptionError(f"unsupported key transport {algorithm_name(key_transport)}")
    public_key = load_certificate(certificate).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise EncryptionError("encryption needs the partner's RSA certificate")
    if public_key.key_size < MIN_RSA_KEY_BITS:
        raise EncryptionError(f"the partner's RSA key has {public_key.key_size} bits; at least {MIN_RSA_KEY_BITS} are required")

    size, _ = _BLOCK[algorithm]
    session_key = os.urandom(size)
    # The self-contained serialisation `reparse` makes: every declaration in scope is written on
    # the element, so the plaintext parses on its own wherever the receiver puts it, and an inner
    # EncryptedID keeps its own xmlns:xenc (no xenc ancestor here to absorb it).
    plaintext = etree.tostring(element, encoding="UTF-8", xml_declaration=False, with_tail=False)
    cipher_value = _encrypt_octets(algorithm, session_key, plaintext)
    wrapped_key = public_key.encrypt(session_key, _KEY_TRANSPORT[key_transport])
    return _encrypted_data(algorithm, key_transport, wrapped_key, cipher_value)


def _encrypt_octets(algorithm, key, plaintext):
    """IV || ciphertext (|| tag for GCM), as XML Encryption lays out CipherValue."""
    if _BLOCK[algorithm][1] == "gcm":
        iv = os.urandom(_GCM_IV_BYTES)
        return iv + AESGCM(key).encrypt(iv, plaintext, None)
    cipher_algorithm = TripleDES(key) if algorithm == TRIPLEDES_CBC else algorithms.AES(key)
    # XML Encryption only defines the last pad octet; PKCS#7 fills all of them with it, which
    # every decrypter accepts (also those that check PKCS#7).
    padder = block_padding.PKCS7(cipher_algorithm.block_size).padder()
    padded = padder.update(plaintext) + padder.finalize()
    iv = os.urandom(cipher_algorithm.block_size // 8)
    encryptor = Cipher(cipher_algorithm, modes.CBC(iv)).encryptor()
    return iv + encryptor.update(padded) + encryptor.finalize()


def _encrypted_data(algorithm, key_transport, wrapped_key, cipher_value):
    """The xenc:EncryptedData xmlsec's template writes, line breaks included."""
    encrypted_data = etree.Element(qname(NS_XENC, "EncryptedData"), nsmap={"xenc": NS_XENC}, Type=ENCRYPTED_TYPE_ELEMENT)
    encrypted_data.text = "\n"
    _line(encrypted_data, qname(NS_XENC, "EncryptionMethod"), Algorithm=algorithm)
    key_info = _line(encrypted_data, qname(NS_DS, "KeyInfo"), nsmap={"ds": NS_DS})
    key_info.text = "\n"
    encrypted_key = _line(key_info, qname(NS_XENC, "EncryptedKey"))
    encrypted_key.text = "\n"
    method = _line(encrypted_key, qname(NS_XENC, "EncryptionMethod"), Algorithm=key_transport)
    if key_transport == RSA_OAEP_MGF1P:
        etree.SubElement(method, qname(NS_DS, "DigestMethod"), Algorithm=SHA1)
    _cipher_data(encrypted_key, wrapped_key)
    _cipher_data(encrypted_data, cipher_value)
    return encrypted_data


def _line(parent, tag, **attributes):
    element = etree.SubElement(parent, tag, **attributes)
    element.tail = "\n"
    return element


def _cipher_data(parent, octets):
    cipher_data = _line(parent, qname(NS_XENC, "CipherData"))
    cipher_data.text = "\n"
    text = base64.b64encode(octets).decode("ascii")
    _line(cipher_data, qname(NS_XENC, "CipherValue")).text = "\n".join(
        text[start : start + _BASE64_LINE] for start in range(0, len(text), _BASE64_LINE)
    )


def _encrypt_wrapped(element, wrapper, certificate, algorithm, key_transport):
    encrypted_data = encrypt(element, certificate, algorithm, key_transport)
    wrapped = etree.Element(qname(NS_SAML, wrapper), nsmap={"saml": NS_SAML})
    wrapped.append(encrypted_data)
    parent = element.getparent()
    if parent is not None:
        wrapped.tail = element.tail
        parent.replace(element, wrapped)
    return wrapped


def encrypt_assertion(assertion, certificate, algorithm=AES256_GCM, key_transport=RSA_OAEP_MGF1P):
    """`saml:EncryptedAssertion` for `assertion` (sign the assertion first); replaces it in its
    parent when it has one."""
    return _encrypt_wrapped(assertion, "EncryptedAssertion", certificate, algorithm, key_transport)


def encrypt_name_id(name_id, certificate, algorithm=AES256_GCM, key_transport=RSA_OAEP_MGF1P):
    """`saml:EncryptedID` for a `saml:NameID`; replaces it in its parent when it has one."""
    return _encrypt_wrapped(name_id, "EncryptedID", certificate, algorithm, key_transport)


def encrypt_attribute(attribute, certificate, algorithm=AES256_GCM, key_transport=RSA_OAEP_MGF1P):
    """`saml:EncryptedAttribute` for a `saml:Attribute`; replaces it in its parent when it has
    one."""
    return _encrypt_wrapped(attribute, "EncryptedAttribute", certificate, algorithm, key_transport)


# --- Decrypt ---------------------------------------------------------------------------------


def decrypt(encrypted, private_key, allowed_algorithms=DEFAULT_ENCRYPTION_ALGORITHMS, max_bytes=MAX_MESSAGE_BYTES):
    """Decrypt `encrypted` with our RSA `private_key` and return the plaintext element as the
    root of its own document (the tree holding `encrypted` is not changed).

    `encrypted` is a SAML wrapper (`saml:EncryptedAssertion`, `EncryptedID`,
    `EncryptedAttribute`, `samlp:NewEncryptedID`) or an `xenc:EncryptedData`. The EncryptedKey
    may sit in the EncryptedData's KeyInfo or beside the EncryptedData in the wrapper; several
    (one per recipient) are tried in turn. Block and key-transport algorithms must be in
    `allowed_algorithms` (default: AES-CBC/GCM with RSA-OAEP; RSA-1.5 and 3DES are refused
    unless added). Shape and algorithm problems raise `DecryptionError` with a specific reason;
    every cryptographic or parsing failure of the plaintext raises the same "could not decrypt"
    message, so a sender learns nothing from the difference (padding or Bleichenbacher oracles).
    """
    private_key = load_private_key(private_key)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise DecryptionError("decryption needs our RSA private key")
    if is_element(encrypted, NS_XENC, "EncryptedData"):
        encrypted_data, sibling_keys = encrypted, []
    else:
        found = children(encrypted, NS_XENC, "EncryptedData")
        if len(found) != 1:
            raise DecryptionError(f"{local_name(encrypted)} must hold exactly one xenc:EncryptedData, not {len(found)}")
        encrypted_data, sibling_keys = found[0], children(encrypted, NS_XENC, "EncryptedKey")

    data_type = encrypted_data.get("Type")
    if data_type not in (None, ENCRYPTED_TYPE_ELEMENT):
        raise DecryptionError(f"EncryptedData of type {data_type} is not supported; SAML encrypts whole elements")
    block_algorithm = _method(encrypted_data, "EncryptedData")
    if block_algorithm not in BLOCK_ALGORITHMS or block_algorithm not in allowed_algorithms:
        raise DecryptionError(f"algorithm {algorithm_name(block_algorithm)} not allowed")
    ciphertext = _cipher_value(encrypted_data, "EncryptedData")

    encrypted_keys = [
        key for key_info in children(encrypted_data, NS_DS, "KeyInfo") for key in children(key_info, NS_XENC, "EncryptedKey")
    ]
    encrypted_keys += sibling_keys
    if not encrypted_keys:
        raise DecryptionError("no xenc:EncryptedKey for this EncryptedData (only key transport to our RSA key is supported)")
    unwrappers = [_key_unwrapper(key, allowed_algorithms) for key in encrypted_keys]

    for unwrap in unwrappers:
        try:
            plaintext = _decrypt_octets(block_algorithm, unwrap(private_key, _BLOCK[block_algorithm][0]), ciphertext)
            return _parse_plaintext(plaintext, encrypted_data, max_bytes)
        except (_Undecryptable, SAMLError) as error:
            failure = error
            continue
    raise DecryptionError(_UNDECRYPTABLE) from failure


def _method(element, where):
    methods = children(element, NS_XENC, "EncryptionMethod")
    if len(methods) != 1 or not methods[0].get("Algorithm"):
        raise DecryptionError(f"{where} must have exactly one EncryptionMethod with an Algorithm")
    return methods[0].get("Algorithm")


def _cipher_value(element, where):
    cipher_data = children(element, NS_XENC, "CipherData")
    if len(cipher_data) != 1:
        raise DecryptionError(f"{where} must have exactly one CipherData")
    if children(cipher_data[0], NS_XENC, "CipherReference"):
        raise DecryptionError("CipherReference is not supported (it would make us fetch data)")
    values = children(cipher_data[0], NS_XENC, "CipherValue")
    if len(values) != 1:
        raise DecryptionError(f"{where} must have exactly one CipherValue")
    try:
        return base64.b64decode("".join((values[0].text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError(f"the CipherValue of {where} is not valid base64") from None


def _key_unwrapper(encrypted_key, allowed):
    """Check one EncryptedKey's algorithm and parameters and return a function that recovers the
    session key. The checks happen before any private-key operation."""
    algorithm = _method(encrypted_key, "EncryptedKey")
    if algorithm not in KEY_TRANSPORT_ALGORITHMS or algorithm not in allowed:
        raise DecryptionError(f"algorithm {algorithm_name(algorithm)} not allowed")
    wrapped = _cipher_value(encrypted_key, "EncryptedKey")
    if algorithm == RSA_1_5:
        return lambda private_key, size: _unwrap_pkcs1v15(private_key, wrapped, size)

    method = children(encrypted_key, NS_XENC, "EncryptionMethod")[0]
    digest, mgf, label = hashes.SHA1, hashes.SHA1, None
    for parameter in child_elements(method):
        if is_element(parameter, NS_DS, "DigestMethod"):
            if parameter.get("Algorithm") not in _OAEP_DIGESTS:
                raise DecryptionError(f"RSA-OAEP digest {algorithm_name(parameter.get('Algorithm'))} not supported")
            digest = _OAEP_DIGESTS[parameter.get("Algorithm")]
        elif is_element(parameter, NS_XENC11, "MGF") and algorithm == RSA_OAEP:
            if parameter.get("Algorithm") not in _MGF_DIGESTS:
                raise DecryptionError(f"RSA-OAEP mask generation {parameter.get('Algorithm')} not supported")
            mgf = _MGF_DIGESTS[parameter.get("Algorithm")]
        elif is_element(parameter, NS_XENC, "OAEPparams"):
            try:
                label = base64.b64decode("".join((parameter.text or "").split()), validate=True) or None
            except (binascii.Error, ValueError):
                raise DecryptionError("OAEPparams is not valid base64") from None
        else:
            raise DecryptionError(f"unexpected element {local_name(parameter)} in the key transport EncryptionMethod")
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=mgf()), algorithm=digest(), label=label)
    return lambda private_key, size: _unwrap_oaep(private_key, wrapped, size, oaep)


def _unwrap_oaep(private_key, wrapped, size, oaep):
    try:
        session_key = private_key.decrypt(wrapped, oaep)
    except ValueError:
        raise _Undecryptable from None
    if len(session_key) != size:
        raise _Undecryptable
    return session_key


def _unwrap_pkcs1v15(private_key, wrapped, size):
    """PKCS#1 v1.5 with implicit rejection: a malformed block or a key of the wrong size yields a
    random key instead of an error, so the outcome only shows up as the same data-decryption
    failure any wrong key produces (the TLS countermeasure to Bleichenbacher's attack)."""
    substitute = os.urandom(size)
    try:
        session_key = private_key.decrypt(wrapped, padding.PKCS1v15())
    except ValueError:
        return substitute
    return session_key if len(session_key) == size else substitute


def _decrypt_octets(algorithm, key, data):
    _, mode = _BLOCK[algorithm]
    if mode == "gcm":
        if len(data) < 12 + 16:
            raise _Undecryptable
        try:
            return AESGCM(key).decrypt(data[:12], data[12:], None)
        except InvalidTag:
            raise _Undecryptable from None
    cipher_algorithm = TripleDES(key) if algorithm == TRIPLEDES_CBC else algorithms.AES(key)
    block = cipher_algorithm.block_size // 8
    if len(data) < 2 * block or len(data) % block:
        raise _Undecryptable
    decryptor = Cipher(cipher_algorithm, modes.CBC(data[:block])).decryptor()
    padded = decryptor.update(data[block:]) + decryptor.finalize()
    # XML Encryption padding: only the last octet (the pad length) is defined.
    pad = padded[-1]
    if not 1 <= pad <= block:
        raise _Undecryptable
    return padded[:-pad]


def _parse_plaintext(plaintext, encrypted_data, max_bytes):
    """The decrypted element, parsed by `parse_xml` in the namespace context where it replaces
    the EncryptedData, i.e. that of the EncryptedData's parent (xmlsec serialises an encrypted
    element without the declarations of its ancestors and decrypts it in place, so that is the
    context senders rely on)."""
    if plaintext.lstrip().startswith(b"<?xml"):
        return parse_xml(plaintext, max_bytes=max_bytes)
    parent = encrypted_data.getparent()
    context = parent.nsmap if parent is not None else {}
    declarations = " ".join(
        f"xmlns={quoteattr(uri)}" if prefix is None else f"xmlns:{prefix}={quoteattr(uri)}" for prefix, uri in context.items()
    )
    opening = f"<decrypted {declarations}>".encode()
    holder = parse_xml(opening + plaintext + b"</decrypted>", max_bytes=max_bytes + len(opening) + 12)
    elements = child_elements(holder)
    if len(elements) != 1 or (holder.text or "").strip() or (elements[0].tail or "").strip():
        raise _Undecryptable
    return reparse(elements[0])
