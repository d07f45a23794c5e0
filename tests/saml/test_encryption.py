"""XML Encryption: our encrypt/decrypt, the algorithm allow-list, the uniform failure for
cryptographic errors, and hostile encrypted input. Peers are in the interop test modules."""

import base64
import os

import pytest
import xmlsec
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from federation.saml import constants as C
from federation.saml.encryption import decrypt, encrypt, encrypt_assertion, encrypt_attribute, encrypt_name_id
from federation.saml.errors import DecryptionError, EncryptionError, XMLSecurityError
from federation.saml.signing import sign, verify
from federation.saml.xml import children, is_element, local_name, parse_xml, qname, to_bytes

from . import messages
from .credentials import committed_credential

ALL = C.DEFAULT_ENCRYPTION_ALGORITHMS | C.LEGACY_ENCRYPTION_ALGORITHMS
BLOCK = [C.AES128_CBC, C.AES256_CBC, C.AES128_GCM, C.AES256_GCM]


def name_id_of(assertion):
    return assertion.findtext(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID")


@pytest.mark.parametrize("algorithm", BLOCK)
def test_signed_assertion_round_trip_inside_a_response(algorithm, idp_rsa, sp_rsa):
    root = messages.response()
    assertion = children(root, C.NS_SAML, "Assertion")[0]
    sign(assertion, idp_rsa.key, idp_rsa.certificate)
    wrapper = encrypt_assertion(assertion, sp_rsa.certificate, algorithm)
    assert is_element(wrapper, C.NS_SAML, "EncryptedAssertion") and wrapper.getparent() is root
    assert children(root, C.NS_SAML, "Assertion") == []
    received = parse_xml(to_bytes(root))
    decrypted = decrypt(children(received, C.NS_SAML, "EncryptedAssertion")[0], sp_rsa.key)
    assert name_id_of(verify(decrypted, decrypted, [idp_rsa.certificate])) == "alice"


def test_encrypted_data_shape(sp_rsa):
    encrypted = encrypt(messages.assertion(), sp_rsa.certificate)
    ns = {"xenc": C.NS_XENC, "ds": C.NS_DS}
    assert encrypted.get("Type") == C.ENCRYPTED_TYPE_ELEMENT
    assert encrypted.xpath("xenc:EncryptionMethod/@Algorithm", namespaces=ns) == [C.AES256_GCM]
    assert encrypted.xpath("ds:KeyInfo/xenc:EncryptedKey/xenc:EncryptionMethod/@Algorithm", namespaces=ns) == [C.RSA_OAEP_MGF1P]
    assert encrypted.xpath("ds:KeyInfo/xenc:EncryptedKey/xenc:EncryptionMethod/ds:DigestMethod/@Algorithm", namespaces=ns) == [
        C.SHA1
    ]
    assert b"alice" not in to_bytes(encrypted)
    assert encrypted.find(f"{{{C.NS_DS}}}KeyInfo/{{{C.NS_XENC}}}EncryptedKey") is not None  # plain lxml lookups work


def test_name_id_and_attribute(sp_rsa):
    assertion = messages.assertion()
    name_id = assertion.find(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID")
    encrypted_id = encrypt_name_id(name_id, sp_rsa.certificate, C.AES128_GCM)
    assert local_name(encrypted_id) == "EncryptedID" and local_name(encrypted_id.getparent()) == "Subject"
    attribute = assertion.find(f"{{{C.NS_SAML}}}AttributeStatement/{{{C.NS_SAML}}}Attribute")
    encrypted_attribute = encrypt_attribute(attribute, sp_rsa.certificate, C.AES256_CBC)
    assert local_name(encrypted_attribute) == "EncryptedAttribute"
    received = parse_xml(to_bytes(assertion))
    subject = received.find(f"{{{C.NS_SAML}}}Subject")
    assert decrypt(children(subject, C.NS_SAML, "EncryptedID")[0], sp_rsa.key).text == "alice"
    statement = received.find(f"{{{C.NS_SAML}}}AttributeStatement")
    assert decrypt(children(statement, C.NS_SAML, "EncryptedAttribute")[0], sp_rsa.key).get("Name") == "principalName"


def test_detached_element_is_wrapped_without_a_parent(sp_rsa):
    wrapper = encrypt_assertion(messages.assertion(), sp_rsa.certificate)
    assert wrapper.getparent() is None
    assert is_element(decrypt(wrapper, sp_rsa.key), C.NS_SAML, "Assertion")


def test_rsa_1_5_is_refused_unless_allowed(sp_rsa):
    wrapper = encrypt_assertion(messages.assertion(), sp_rsa.certificate, C.AES128_CBC, C.RSA_1_5)
    with pytest.raises(DecryptionError, match="algorithm rsa-1_5 not allowed"):
        decrypt(wrapper, sp_rsa.key)
    assert name_id_of(decrypt(wrapper, sp_rsa.key, C.DEFAULT_ENCRYPTION_ALGORITHMS | {C.RSA_1_5})) == "alice"


def test_tripledes_is_refused_unless_allowed(sp_rsa):
    wrapper = encrypt_assertion(messages.assertion(), sp_rsa.certificate, C.TRIPLEDES_CBC)
    with pytest.raises(DecryptionError, match="algorithm tripledes-cbc not allowed"):
        decrypt(wrapper, sp_rsa.key)
    assert name_id_of(decrypt(wrapper, sp_rsa.key, ALL)) == "alice"


def test_xmlenc11_rsa_oaep_with_sha256_and_mgf1_sha256_from_xmlsec(sp_rsa):
    """XML Encryption 1.1 RSA-OAEP (what Shibboleth IdP 4+ sends), encrypted by libxmlsec1."""
    assertion = messages.assertion()
    etree.Element("holder").append(assertion)
    template = parse_xml(
        f'<xenc:EncryptedData xmlns:xenc="{C.NS_XENC}" xmlns:ds="{C.NS_DS}" xmlns:xenc11="{C.NS_XENC11}" Type="{C.ENCRYPTED_TYPE_ELEMENT}">'
        f'<xenc:EncryptionMethod Algorithm="{C.AES128_GCM}"/><ds:KeyInfo><xenc:EncryptedKey>'
        f'<xenc:EncryptionMethod Algorithm="{C.RSA_OAEP}"><ds:DigestMethod Algorithm="{C.SHA256}"/><xenc11:MGF Algorithm="{C.MGF1_SHA256}"/>'
        "</xenc:EncryptionMethod><xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>"
        "<xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedData>"
    )
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(sp_rsa.cert_pem, xmlsec.KeyFormat.CERT_PEM, None))
    context = xmlsec.EncryptionContext(manager)
    context.key = xmlsec.Key.generate(xmlsec.KeyData.AES, 128, xmlsec.KeyDataType.SESSION)
    encrypted = context.encrypt_xml(template, assertion)
    assert name_id_of(decrypt(parse_xml(to_bytes(encrypted)), sp_rsa.key)) == "alice"


def test_encrypted_key_beside_the_encrypted_data_and_several_recipients(sp_rsa, attacker_rsa):
    """SAML allows the EncryptedKey as a sibling of EncryptedData; with several recipients each
    key is tried."""
    wrapper = encrypt_assertion(messages.assertion(), sp_rsa.certificate)
    encrypted_data = wrapper[0]
    key_info = children(encrypted_data, C.NS_DS, "KeyInfo")[0]
    ours = children(key_info, C.NS_XENC, "EncryptedKey")[0]
    key_info.remove(ours)
    theirs = children(encrypt_assertion(messages.assertion(), attacker_rsa.certificate)[0][1], C.NS_XENC, "EncryptedKey")[0]
    wrapper.append(theirs)
    wrapper.append(ours)
    assert name_id_of(decrypt(parse_xml(to_bytes(wrapper)), sp_rsa.key)) == "alice"


def test_wrong_private_key(sp_rsa, attacker_rsa):
    wrapper = encrypt_assertion(messages.assertion(), sp_rsa.certificate)
    with pytest.raises(DecryptionError, match="^could not decrypt the element with our key$"):
        decrypt(wrapper, attacker_rsa.key)


def test_tampered_gcm_ciphertext(sp_rsa):
    wrapper = encrypt_assertion(messages.assertion(), sp_rsa.certificate, C.AES256_GCM)
    value = wrapper.find(f".//{{{C.NS_XENC}}}EncryptedData/{{{C.NS_XENC}}}CipherData/{{{C.NS_XENC}}}CipherValue")
    data = bytearray(base64.b64decode(value.text))
    data[40] ^= 1
    value.text = base64.b64encode(bytes(data)).decode()
    with pytest.raises(DecryptionError, match="^could not decrypt the element with our key$"):
        decrypt(wrapper, sp_rsa.key)


def hand_encrypted(sp_rsa, plaintext, pad_ok=True, key_transport=C.RSA_OAEP_MGF1P, wrapped_key=None):
    """An EncryptedData made with `cryptography` around arbitrary plaintext (AES-128-CBC), as a
    hostile sender holding only our public certificate can make it."""
    session_key = os.urandom(16)
    if wrapped_key is None:
        scheme = (
            padding.PKCS1v15() if key_transport == C.RSA_1_5 else padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
        )
        wrapped_key = sp_rsa.certificate.public_key().encrypt(session_key, scheme)
    pad = 16 - len(plaintext) % 16
    padded = plaintext + os.urandom(pad - 1) + bytes([pad if pad_ok else 0])
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(session_key), modes.CBC(iv)).encryptor()
    data = iv + encryptor.update(padded) + encryptor.finalize()
    return parse_xml(
        f'<saml:EncryptedAssertion xmlns:saml="{C.NS_SAML}"><xenc:EncryptedData xmlns:xenc="{C.NS_XENC}" Type="{C.ENCRYPTED_TYPE_ELEMENT}">'
        f'<xenc:EncryptionMethod Algorithm="{C.AES128_CBC}"/><ds:KeyInfo xmlns:ds="{C.NS_DS}"><xenc:EncryptedKey>'
        f'<xenc:EncryptionMethod Algorithm="{key_transport}"/><xenc:CipherData><xenc:CipherValue>{base64.b64encode(wrapped_key).decode()}'
        "</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>"
        f"<xenc:CipherData><xenc:CipherValue>{base64.b64encode(data).decode()}</xenc:CipherValue></xenc:CipherData>"
        "</xenc:EncryptedData></saml:EncryptedAssertion>"
    )


def test_hand_made_ciphertext_decrypts_as_a_control(sp_rsa):
    assert decrypt(hand_encrypted(sp_rsa, b"<saml:NameID>bob</saml:NameID>"), sp_rsa.key).text == "bob"


def test_padding_errors_and_parse_errors_look_the_same(sp_rsa):
    """No padding oracle: a bad pad and a good pad around garbage fail with one message."""
    failures = []
    for wrapper in (
        hand_encrypted(sp_rsa, b"<saml:NameID>bob</saml:NameID>", pad_ok=False),
        hand_encrypted(sp_rsa, b"\x01garbage<"),
    ):
        with pytest.raises(DecryptionError) as caught:
            decrypt(wrapper, sp_rsa.key)
        failures.append(str(caught.value))
    assert failures == ["could not decrypt the element with our key"] * 2


def test_bleichenbacher_countermeasure_for_rsa_1_5(sp_rsa):
    """With RSA-1.5 allowed, a malformed PKCS#1 block is not reported as such: decryption goes on
    with a random key and fails like any wrong key."""
    allowed = C.DEFAULT_ENCRYPTION_ALGORITHMS | {C.RSA_1_5}
    assert (
        decrypt(hand_encrypted(sp_rsa, b"<saml:NameID>bob</saml:NameID>", key_transport=C.RSA_1_5), sp_rsa.key, allowed).text
        == "bob"
    )
    for wrapped in (os.urandom(256), b"\0" * 256, sp_rsa.certificate.public_key().encrypt(os.urandom(24), padding.PKCS1v15())):
        wrapper = hand_encrypted(sp_rsa, b"<saml:NameID>bob</saml:NameID>", key_transport=C.RSA_1_5, wrapped_key=wrapped)
        with pytest.raises(DecryptionError, match="^could not decrypt the element with our key$"):
            decrypt(wrapper, sp_rsa.key, allowed)


def test_decrypted_dtd_is_refused_by_the_hardened_parser(sp_rsa):
    wrapper = hand_encrypted(sp_rsa, b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r>&e;</r>')
    with pytest.raises(DecryptionError, match="could not decrypt") as caught:
        decrypt(wrapper, sp_rsa.key)
    assert isinstance(caught.value.__cause__, XMLSecurityError)


def test_decrypted_content_must_be_a_single_element(sp_rsa):
    with pytest.raises(DecryptionError, match="could not decrypt"):
        decrypt(hand_encrypted(sp_rsa, b"<saml:NameID>a</saml:NameID><saml:NameID>b</saml:NameID>"), sp_rsa.key)


def test_decrypted_size_limit(sp_rsa):
    big = b"<saml:NameID>" + b"x" * 5000 + b"</saml:NameID>"
    assert len(decrypt(hand_encrypted(sp_rsa, big), sp_rsa.key).text) == 5000
    with pytest.raises(DecryptionError, match="could not decrypt") as caught:
        decrypt(hand_encrypted(sp_rsa, big), sp_rsa.key, max_bytes=1000)
    assert isinstance(caught.value.__cause__, XMLSecurityError)


def test_cipher_reference_is_refused(sp_rsa):
    wrapper = encrypt_assertion(messages.assertion(), sp_rsa.certificate)
    cipher_data = wrapper[0].find(f"{{{C.NS_XENC}}}CipherData")
    cipher_data.append(etree.Element(qname(C.NS_XENC, "CipherReference"), URI="http://attacker.example.net/data"))
    with pytest.raises(DecryptionError, match="CipherReference is not supported"):
        decrypt(wrapper, sp_rsa.key)


def test_content_type_and_unknown_algorithms_are_refused(sp_rsa):
    wrapper = encrypt_assertion(messages.assertion(), sp_rsa.certificate)
    wrapper[0].set("Type", C.ENCRYPTED_TYPE_CONTENT)
    with pytest.raises(DecryptionError, match="type .*#Content is not supported"):
        decrypt(wrapper, sp_rsa.key)
    wrapper = encrypt_assertion(messages.assertion(), sp_rsa.certificate)
    wrapper[0].find(f"{{{C.NS_XENC}}}EncryptionMethod").set("Algorithm", "http://www.w3.org/2001/04/xmlenc#kw-aes128")
    with pytest.raises(DecryptionError, match="algorithm http://www.w3.org/2001/04/xmlenc#kw-aes128 not allowed"):
        decrypt(wrapper, sp_rsa.key)


def test_missing_encrypted_key_and_bad_wrappers(sp_rsa):
    wrapper = encrypt_assertion(messages.assertion(), sp_rsa.certificate)
    key_info = wrapper[0].find(f"{{{C.NS_DS}}}KeyInfo")
    key_info.remove(key_info[0])
    with pytest.raises(DecryptionError, match="no xenc:EncryptedKey"):
        decrypt(wrapper, sp_rsa.key)
    with pytest.raises(DecryptionError, match="exactly one xenc:EncryptedData"):
        decrypt(parse_xml(f'<saml:EncryptedAssertion xmlns:saml="{C.NS_SAML}"/>'), sp_rsa.key)


def test_encryption_needs_an_rsa_certificate_and_a_known_algorithm(sp_rsa, idp_ec):
    with pytest.raises(EncryptionError, match="needs the partner's RSA certificate"):
        encrypt(messages.assertion(), idp_ec.certificate)
    with pytest.raises(EncryptionError, match="unsupported block algorithm"):
        encrypt(messages.assertion(), sp_rsa.certificate, algorithm="urn:none")
    with pytest.raises(EncryptionError, match="unsupported key transport rsa-oaep"):
        encrypt(messages.assertion(), sp_rsa.certificate, key_transport=C.RSA_OAEP)
    with pytest.raises(DecryptionError, match="needs our RSA private key"):
        decrypt(encrypt_assertion(messages.assertion(), sp_rsa.certificate), idp_ec.key)


def test_encryption_refuses_a_partner_rsa_key_below_1024_bits(sp_rsa):
    # A committed 768-bit key (tests/fixtures/saml/keys/rsa768-weak.*): cryptography no longer generates keys that
    # small, but a partner's metadata can still carry one.
    weak = committed_credential("rsa768-weak")
    assert weak.certificate.public_key().key_size == 768
    for element in (
        messages.assertion(),
        messages.assertion().find(qname(C.NS_SAML, "Subject")).find(qname(C.NS_SAML, "NameID")),
    ):
        with pytest.raises(EncryptionError, match="the partner's RSA key has 768 bits; at least 1024 are required"):
            encrypt(element, weak.certificate)
    assert decrypt(encrypt_assertion(messages.assertion(), sp_rsa.certificate), sp_rsa.key) is not None  # the control


@pytest.mark.parametrize("algorithm", [C.AES128_CBC, C.TRIPLEDES_CBC, C.AES256_GCM])
def test_cipher_value_layout_and_plaintext_read_with_plain_primitives(algorithm, sp_rsa):
    """IV first (16 octets AES-CBC, 8 3DES, 12 GCM with the 16-octet tag last), CBC padding that
    a strict PKCS#7 unpadder accepts, and the element's own serialisation in UTF-8 as the
    plaintext, with the declarations of the envelope (xmlns:samlp) so that it parses on its own."""
    assertion = children(messages.response(), C.NS_SAML, "Assertion")[0]
    assertion.find(f"{{{C.NS_SAML}}}Issuer").text = "https://idp.example.org/é"
    expected = etree.tostring(assertion, encoding="UTF-8")
    encrypted = encrypt(assertion, sp_rsa.certificate, algorithm)
    ns = {"xenc": C.NS_XENC, "ds": C.NS_DS}
    wrapped = base64.b64decode(
        encrypted.xpath("ds:KeyInfo/xenc:EncryptedKey/xenc:CipherData/xenc:CipherValue/text()", namespaces=ns)[0]
    )
    data = base64.b64decode(encrypted.xpath("xenc:CipherData/xenc:CipherValue/text()", namespaces=ns)[0])
    session_key = sp_rsa.key.decrypt(wrapped, padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None))
    if algorithm == C.AES256_GCM:
        plaintext = AESGCM(session_key).decrypt(data[:12], data[12:], None)
    else:
        cipher = TripleDES(session_key) if algorithm == C.TRIPLEDES_CBC else algorithms.AES(session_key)
        block = cipher.block_size // 8
        decryptor = Cipher(cipher, modes.CBC(data[:block])).decryptor()
        unpadder = block_padding.PKCS7(cipher.block_size).unpadder()
        plaintext = unpadder.update(decryptor.update(data[block:]) + decryptor.finalize()) + unpadder.finalize()
    assert plaintext == expected and "é".encode() in plaintext
    assert etree.fromstring(plaintext).nsmap["samlp"] == C.NS_SAMLP
