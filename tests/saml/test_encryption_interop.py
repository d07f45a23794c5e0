"""What we encrypt, decrypted by xmlsec itself: python-xmlsec's EncryptionContext (the call
python3-saml makes) for every block algorithm and key transport, and the xmlsec1 command (what
pysaml2 runs). Our encryption no longer uses xmlsec, so these are independent decrypters."""

import copy
import re
import subprocess

import pytest
import xmlsec
from lxml import etree

from federation.saml import constants as C
from federation.saml.encryption import encrypt, encrypt_assertion, encrypt_name_id
from federation.saml.signing import sign, verify
from federation.saml.xml import children, is_element, parse_xml, to_bytes

from . import messages

BLOCK = [C.AES128_CBC, C.AES192_CBC, C.AES256_CBC, C.AES128_GCM, C.AES192_GCM, C.AES256_GCM, C.TRIPLEDES_CBC]
KEY_TRANSPORT = [C.RSA_OAEP_MGF1P, C.RSA_1_5]
XMLSEC1 = "/usr/bin/xmlsec1"


def xmlsec_decrypt(encrypted_data, credential):
    """python3-saml's OneLogin_Saml2_Utils.decrypt_element: a key manager with our private key."""
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(credential.key_pem, xmlsec.KeyFormat.PEM, None))
    return xmlsec.EncryptionContext(manager).decrypt(encrypted_data)


def encrypted_response(idp_rsa, sp_rsa, algorithm, key_transport):
    """A Response whose signed assertion we encrypted, as the SP receives it (bytes)."""
    root = messages.response()
    assertion = children(root, C.NS_SAML, "Assertion")[0]
    sign(assertion, idp_rsa.key, idp_rsa.certificate)
    encrypt_assertion(assertion, sp_rsa.certificate, algorithm, key_transport)
    return to_bytes(root)


@pytest.mark.parametrize("key_transport", KEY_TRANSPORT)
@pytest.mark.parametrize("algorithm", BLOCK)
def test_python_xmlsec_decrypts_what_we_encrypt(algorithm, key_transport, idp_rsa, sp_rsa):
    received = parse_xml(encrypted_response(idp_rsa, sp_rsa, algorithm, key_transport))
    encrypted_data = received.find(f"{{{C.NS_SAML}}}EncryptedAssertion/{{{C.NS_XENC}}}EncryptedData")
    decrypted = xmlsec_decrypt(encrypted_data, sp_rsa)
    assert is_element(decrypted, C.NS_SAML, "Assertion")
    # The signature still verifies: the plaintext is the signed assertion, byte for byte in c14n.
    assertion = parse_xml(to_bytes(decrypted))
    verified = verify(assertion, assertion, [idp_rsa.certificate])
    assert verified.findtext(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID") == "alice"


def test_python_xmlsec_fails_with_another_key(sp_rsa, idp_rsa, attacker_rsa):
    """Control: the decrypter above really depends on the key we encrypted for."""
    received = parse_xml(encrypted_response(idp_rsa, sp_rsa, C.AES256_GCM, C.RSA_OAEP_MGF1P))
    encrypted_data = received.find(f"{{{C.NS_SAML}}}EncryptedAssertion/{{{C.NS_XENC}}}EncryptedData")
    with pytest.raises(xmlsec.Error):
        xmlsec_decrypt(encrypted_data, attacker_rsa)


def test_python_xmlsec_decrypts_an_encrypted_id_inside_an_encrypted_assertion(sp_rsa):
    """The inner EncryptedID carries its own xmlns:xenc, so it decrypts once the assertion is out."""
    assertion = messages.assertion()
    encrypt_name_id(assertion.find(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID"), sp_rsa.certificate, C.AES128_CBC)
    wrapper = encrypt_assertion(assertion, sp_rsa.certificate)
    outer = xmlsec_decrypt(parse_xml(to_bytes(wrapper))[0], sp_rsa)
    inner_data = parse_xml(to_bytes(outer)).find(
        f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}EncryptedID/{{{C.NS_XENC}}}EncryptedData"
    )
    assert inner_data.nsmap.get("xenc") == C.NS_XENC
    assert xmlsec_decrypt(parse_xml(to_bytes(inner_data)), sp_rsa).text == "alice"


@pytest.mark.parametrize(("algorithm", "key_transport"), [(C.AES256_GCM, C.RSA_OAEP_MGF1P), (C.AES128_CBC, C.RSA_1_5)])
def test_xmlsec1_tool_decrypts_what_we_encrypt(algorithm, key_transport, idp_rsa, sp_rsa, attacker_rsa, tmp_path):
    document = tmp_path / "response.xml"
    document.write_bytes(encrypted_response(idp_rsa, sp_rsa, algorithm, key_transport))
    sp_key_path, _ = sp_rsa.write(tmp_path, "sp")
    attacker_key_path, _ = attacker_rsa.write(tmp_path, "attacker")
    result = subprocess.run([XMLSEC1, "--decrypt", "--privkey-pem", sp_key_path, str(document)], capture_output=True, check=False)
    assert result.returncode == 0, result.stderr
    # xmlsec1 puts the plaintext where the EncryptedData was, inside the EncryptedAssertion.
    wrapper = children(parse_xml(result.stdout), C.NS_SAML, "EncryptedAssertion")[0]
    assert children(wrapper, C.NS_XENC, "EncryptedData") == []
    assertion = children(wrapper, C.NS_SAML, "Assertion")[0]
    assert assertion.findtext(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID") == "alice"
    wrong = subprocess.run(
        [XMLSEC1, "--decrypt", "--privkey-pem", attacker_key_path, str(document)], capture_output=True, check=False
    )
    assert wrong.returncode != 0


@pytest.mark.parametrize(("algorithm", "key_transport"), [(C.AES256_GCM, C.RSA_OAEP_MGF1P), (C.AES128_CBC, C.RSA_1_5)])
def test_same_xml_as_the_xmlsec_template(algorithm, key_transport, sp_rsa):
    """Element for element, prefix for prefix and line break for line break what xmlsec's
    template API wrote when it did our encryption (CipherValue contents aside)."""
    transforms = {C.AES256_GCM: xmlsec.Transform.AES256_GCM, C.AES128_CBC: xmlsec.Transform.AES128}
    assertion = messages.assertion()
    holder = etree.Element("holder")
    holder.append(copy.deepcopy(assertion))
    template = xmlsec.template.encrypted_data_create(holder, transforms[algorithm], type=xmlsec.EncryptionType.ELEMENT, ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(template)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(template, ns="ds")
    transport = xmlsec.Transform.RSA_OAEP if key_transport == C.RSA_OAEP_MGF1P else xmlsec.Transform.RSA_PKCS1
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, transport)
    if key_transport == C.RSA_OAEP_MGF1P:
        etree.SubElement(encrypted_key[0], f"{{{C.NS_DS}}}DigestMethod", Algorithm=C.SHA1)
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(sp_rsa.cert_pem, xmlsec.KeyFormat.CERT_PEM, None))
    context = xmlsec.EncryptionContext(manager)
    context.key = xmlsec.Key.generate(xmlsec.KeyData.AES, int(algorithm.split("aes")[1][:3]), xmlsec.KeyDataType.SESSION)
    theirs = context.encrypt_xml(template, holder[0])

    def blanked(element):
        return re.sub(rb"<xenc:CipherValue>[^<]*</xenc:CipherValue>", b"<xenc:CipherValue/>", to_bytes(element))

    ours = encrypt(assertion, sp_rsa.certificate, algorithm, key_transport)
    assert blanked(ours) == blanked(theirs)
    assert to_bytes(ours).count(b"\n") == to_bytes(theirs).count(b"\n")  # base64 lines of 64 as xmlsec wraps them
