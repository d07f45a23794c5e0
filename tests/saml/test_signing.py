"""Enveloped signatures: `sign` and `verify` on the happy paths, placement, algorithms, and the
contract of the returned element. Attacks are in test_signature_attacks.py."""

import copy
import subprocess

import pytest
import xmlsec
from lxml import etree

from federation.saml import constants as C
from federation.saml.errors import SignatureError
from federation.saml.signing import allowed_signature_algorithms, sign, signature_position, verify
from federation.saml.xml import child_elements, children, is_element, local_name, parse_xml, to_bytes

from . import messages

DS_SIGNATURE = f"{{{C.NS_DS}}}Signature"


def assertion_in(root):
    return children(root, C.NS_SAML, "Assertion")[0]


def test_signed_response_and_assertion_verify_after_a_round_trip(idp_rsa):
    root = messages.response()
    sign(assertion_in(root), idp_rsa.key, idp_rsa.certificate)
    sign(root, idp_rsa.key, idp_rsa.certificate)
    received = parse_xml(to_bytes(root))
    assert is_element(verify(received, received, [idp_rsa.certificate]), C.NS_SAMLP, "Response")
    assert is_element(verify(received, assertion_in(received), [idp_rsa.certificate]), C.NS_SAML, "Assertion")


def test_signature_goes_right_after_the_issuer_in_saml2(idp_rsa):
    root = messages.response()
    sign(assertion_in(root), idp_rsa.key, idp_rsa.certificate)
    sign(root, idp_rsa.key, idp_rsa.certificate)
    assert [local_name(child) for child in child_elements(root)] == ["Issuer", "Signature", "Status", "Assertion"]
    assert [local_name(child) for child in child_elements(assertion_in(root))][:3] == ["Issuer", "Signature", "Subject"]


def test_signature_uses_exc_c14n_enveloped_and_the_element_id(idp_rsa):
    assertion = messages.assertion(assertion_id="_abc")
    sign(assertion, idp_rsa.key, idp_rsa.certificate)
    signature = assertion.find(DS_SIGNATURE)
    ns = {"ds": C.NS_DS}
    assert signature.xpath("ds:SignedInfo/ds:CanonicalizationMethod/@Algorithm", namespaces=ns) == [C.TRANSFORM_EXC_C14N]
    assert signature.xpath("ds:SignedInfo/ds:SignatureMethod/@Algorithm", namespaces=ns) == [C.RSA_SHA256]
    assert signature.xpath("ds:SignedInfo/ds:Reference/@URI", namespaces=ns) == ["#_abc"]
    assert signature.xpath("ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform/@Algorithm", namespaces=ns) == [
        C.TRANSFORM_ENVELOPED,
        C.TRANSFORM_EXC_C14N,
    ]
    assert signature.xpath("ds:SignedInfo/ds:Reference/ds:DigestMethod/@Algorithm", namespaces=ns) == [C.SHA256]
    assert signature.xpath("ds:KeyInfo/ds:X509Data/ds:X509Certificate/text()", namespaces=ns)[0] == idp_rsa.cert_base64
    # Plain lxml lookups work on what sign() builds (nodes built by xmlsec.template would not match).
    assert assertion.find(f"{DS_SIGNATURE}/{{{C.NS_DS}}}KeyInfo/{{{C.NS_DS}}}X509Data") is not None


@pytest.mark.parametrize(
    ("kind", "algorithm", "digest"),
    [
        ("rsa", C.RSA_SHA256, C.SHA256),
        ("rsa", C.RSA_SHA384, C.SHA384),
        ("rsa", C.RSA_SHA512, C.SHA512),
        ("ec", C.ECDSA_SHA256, C.SHA256),
        ("ec", C.ECDSA_SHA384, C.SHA384),
        ("ec", C.ECDSA_SHA512, C.SHA512),
    ],
)
def test_default_allowed_algorithms_round_trip(kind, algorithm, digest, idp_rsa, idp_ec):
    credential = idp_rsa if kind == "rsa" else idp_ec
    assertion = messages.assertion()
    sign(assertion, credential.key, credential.certificate, algorithm=algorithm, digest=digest)
    received = parse_xml(to_bytes(assertion))
    verify(received, received, [credential.certificate])


def test_sha1_is_refused_by_default_and_accepted_when_the_partnership_allows_it(idp_rsa):
    assertion = messages.assertion()
    sign(assertion, idp_rsa.key, idp_rsa.certificate, algorithm=C.RSA_SHA1, digest=C.SHA1)
    with pytest.raises(SignatureError, match="algorithm rsa-sha1 not allowed"):
        verify(assertion, assertion, [idp_rsa.certificate])
    verify(assertion, assertion, [idp_rsa.certificate], allowed_signature_algorithms(sha1=True))


def test_allow_list_widening():
    assert allowed_signature_algorithms() == C.DEFAULT_SIGNATURE_ALGORITHMS
    assert C.RSA_SHA1 in allowed_signature_algorithms(sha1=True) and C.SHA1 in allowed_signature_algorithms(sha1=True)
    assert C.DSA_SHA1 in allowed_signature_algorithms(dsa=True)
    assert C.RSA_SHA1 not in allowed_signature_algorithms(dsa=True)


def test_without_certificate_there_is_no_key_info_and_it_still_verifies(idp_ec):
    assertion = messages.assertion()
    sign(assertion, idp_ec.key, idp_ec.certificate, algorithm=C.ECDSA_SHA256, include_certificate=False)
    assert children(assertion.find(DS_SIGNATURE), C.NS_DS, "KeyInfo") == []
    verify(assertion, assertion, [idp_ec.certificate])


def test_any_of_several_trusted_certificates_verifies(idp_rsa, idp_ec, attacker_rsa):
    """Key rollover: the partner's old and new certificates are both trusted."""
    assertion = messages.assertion()
    sign(assertion, idp_ec.key, idp_ec.certificate, algorithm=C.ECDSA_SHA256, include_certificate=False)
    verify(assertion, assertion, [attacker_rsa.certificate, idp_rsa.certificate, idp_ec.certificate])


def test_trusted_certificates_may_be_pem_der_or_base64(idp_rsa):
    assertion = messages.assertion()
    sign(assertion, idp_rsa.key, idp_rsa.certificate)
    for form in (idp_rsa.cert_pem, idp_rsa.cert_pem.decode(), idp_rsa.cert_base64, idp_rsa.certificate):
        verify(assertion, assertion, form)


def test_verify_returns_a_self_contained_copy(idp_rsa):
    """Callers read only the verified copy; it is the root of its own document and carries no
    KeyInfo from the message."""
    root = messages.response()
    sign(assertion_in(root), idp_rsa.key, idp_rsa.certificate)
    verified = verify(root, assertion_in(root), [idp_rsa.certificate])
    assert verified is not assertion_in(root)
    assert verified.getparent() is None
    assert verified.get("ID") == assertion_in(root).get("ID")
    assert children(verified.find(DS_SIGNATURE), C.NS_DS, "KeyInfo") == []
    assert verified.findtext(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID") == "alice"


def test_signature_of_an_assertion_survives_extraction_from_its_response(idp_rsa):
    root = messages.response()
    sign(assertion_in(root), idp_rsa.key, idp_rsa.certificate)
    standalone = parse_xml(to_bytes(assertion_in(root)))
    verify(standalone, standalone, [idp_rsa.certificate])


def test_saml11_response_and_assertion(idp_rsa):
    root = messages.saml11_response()
    inner = children(root, C.NS_SAML1, "Assertion")[0]
    sign(inner, idp_rsa.key, idp_rsa.certificate)
    sign(root, idp_rsa.key, idp_rsa.certificate)
    assert [local_name(child) for child in child_elements(root)] == ["Signature", "Status", "Assertion"]
    assert local_name(child_elements(inner)[-1]) == "Signature"
    assert inner.find(DS_SIGNATURE).xpath("ds:SignedInfo/ds:Reference/@URI", namespaces={"ds": C.NS_DS}) == [
        f"#{inner.get('AssertionID')}"
    ]
    received = parse_xml(to_bytes(root))
    verify(received, received, [idp_rsa.certificate])
    verify(received, children(received, C.NS_SAML1, "Assertion")[0], [idp_rsa.certificate])


def test_saml11_assertion_verifies_with_the_xmlsec1_tool(idp_rsa, tmp_path):
    """An independent check of the SAML 1.1 ID attribute and placement: the xmlsec1 command."""
    root = messages.saml11_response()
    inner = children(root, C.NS_SAML1, "Assertion")[0]
    sign(inner, idp_rsa.key, idp_rsa.certificate)
    document, cert = tmp_path / "response.xml", tmp_path / "idp.crt"
    document.write_bytes(to_bytes(root))
    cert.write_bytes(idp_rsa.cert_pem)
    command = [
        "/usr/bin/xmlsec1",
        "--verify",
        "--pubkey-cert-pem",
        str(cert),
        "--id-attr:AssertionID",
        f"{C.NS_SAML1}:Assertion",
        str(document),
    ]
    assert subprocess.run(command, capture_output=True, check=False).returncode == 0
    inner.find(f"{{{C.NS_SAML1}}}AuthenticationStatement").set("AuthenticationMethod", "changed")
    document.write_bytes(to_bytes(root))
    assert subprocess.run(command, capture_output=True, check=False).returncode != 0


def test_saml11_request_puts_the_signature_after_respond_with():
    root = parse_xml(
        f'<samlp:Request xmlns:samlp="{C.NS_SAML1P}" RequestID="_r" MajorVersion="1" MinorVersion="1" IssueInstant="2026-01-01T00:00:00Z">'
        "<samlp:RespondWith>saml:AuthenticationStatement</samlp:RespondWith><samlp:AssertionArtifact>AAEC</samlp:AssertionArtifact></samlp:Request>"
    )
    assert signature_position(root) == 1


def test_metadata_signature_is_the_first_child_and_verifies(idp_rsa):
    root = parse_xml(messages.idp_metadata_xml(idp_rsa.cert_base64, entity_xml_id="_metadata"))
    sign(root, idp_rsa.key, idp_rsa.certificate)
    assert local_name(child_elements(root)[0]) == "Signature"
    verify(root, root, [idp_rsa.certificate])


def test_explicit_position_and_id_attribute(idp_rsa):
    root = parse_xml(b'<token xmlns="urn:example" Id="_t"><a/><b/></token>')
    sign(root, idp_rsa.key, idp_rsa.certificate, position=2, id_attribute="Id")
    assert [local_name(child) for child in child_elements(root)] == ["a", "b", "Signature"]
    verify(root, root, [idp_rsa.certificate], id_attribute="Id")


def test_sign_refuses_missing_or_invalid_ids_double_signing_and_mismatched_keys(idp_rsa, idp_ec):
    without_id = parse_xml(f'<saml:Assertion xmlns:saml="{C.NS_SAML}"/>')
    with pytest.raises(ValueError, match="needs a valid ID"):
        sign(without_id, idp_rsa.key, idp_rsa.certificate)
    bad_id = parse_xml(f'<saml:Assertion xmlns:saml="{C.NS_SAML}" ID="1 2"/>')
    with pytest.raises(ValueError, match="needs a valid ID"):
        sign(bad_id, idp_rsa.key, idp_rsa.certificate)
    assertion = messages.assertion()
    sign(assertion, idp_rsa.key, idp_rsa.certificate)
    with pytest.raises(ValueError, match="already signed"):
        sign(assertion, idp_rsa.key, idp_rsa.certificate)
    with pytest.raises(ValueError, match="ecdsa-sha256 needs an EC key, not an RSA key"):
        sign(messages.assertion(), idp_rsa.key, idp_rsa.certificate, algorithm=C.ECDSA_SHA256)
    with pytest.raises(ValueError, match="rsa-sha256 needs an RSA key, not an EC key"):
        sign(messages.assertion(), idp_ec.key, idp_ec.certificate)
    with pytest.raises(ValueError, match="certificate does not belong to the private key"):
        sign(messages.assertion(), idp_rsa.key, idp_ec.certificate, include_certificate=True)
    duplicated = parse_xml(f'<r><saml:Assertion xmlns:saml="{C.NS_SAML}" ID="_d"/><x ID="_d"/></r>')
    with pytest.raises(ValueError, match="not unique"):
        sign(duplicated[0], idp_rsa.key, idp_rsa.certificate)


def test_verify_needs_the_element_inside_the_root_and_a_trusted_certificate(idp_rsa):
    assertion = messages.assertion()
    sign(assertion, idp_rsa.key, idp_rsa.certificate)
    with pytest.raises(ValueError, match="not inside"):
        verify(messages.response(), assertion, [idp_rsa.certificate])
    with pytest.raises(SignatureError, match="no trusted certificate"):
        verify(assertion, assertion, [])


def test_xmlsec_itself_accepts_what_we_sign(idp_rsa):
    """Cross-check: xmlsec used directly (as python3-saml does) accepts what we sign."""
    assertion = messages.assertion()
    sign(assertion, idp_rsa.key, idp_rsa.certificate)
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(idp_rsa.cert_pem, xmlsec.KeyFormat.CERT_PEM, None)
    context.register_id(assertion, "ID")
    context.verify(assertion.find(DS_SIGNATURE))


def _sign_with_xmlsec(element, private_key_pem, id_attribute="ID"):
    """The reference signer: xmlsec itself fills the same template (for comparison only)."""
    from federation.saml.signing import _signature_template

    signature = _signature_template(C.RSA_SHA256, C.SHA256, element.get(id_attribute))
    element.insert(signature_position(element), signature)
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(private_key_pem, xmlsec.KeyFormat.PEM, None)
    context.register_id(element, id_attribute)
    context.sign(signature)
    return signature


def test_signing_gives_the_same_digest_and_signature_value_as_xmlsec(idp_rsa):
    """RSA PKCS#1 v1.5 is deterministic, so our canonicalisation + signing must match xmlsec's bit for bit: on an
    assertion nested in a response that declares namespaces the assertion does not use, with comments and whitespace."""
    from cryptography.hazmat.primitives import serialization

    pem = idp_rsa.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    ns = {"ds": C.NS_DS}
    original = messages.response()
    original.set("{urn:example:unused}flag", "1")  # a namespace declared above the assertion that it does not use
    assertion_in(original).find(f"{{{C.NS_SAML}}}Issuer").tail = "\n   "
    assertion_in(original).append(etree.Comment(" left out by the exc-c14n transform "))
    values = []
    for signer in ("ours", "xmlsec"):
        assertion = assertion_in(copy.deepcopy(original))
        if signer == "ours":
            sign(assertion, idp_rsa.key, idp_rsa.certificate, include_certificate=False)
        else:
            _sign_with_xmlsec(assertion, pem)
        signature = assertion.find(DS_SIGNATURE)
        values.append(
            (
                signature.xpath("string(ds:SignedInfo/ds:Reference/ds:DigestValue)", namespaces=ns),
                signature.xpath("string(ds:SignatureValue)", namespaces=ns).replace("\n", ""),
            )
        )
    assert values[0] == values[1]


def test_dsa_signing_round_trips_when_the_partnership_allows_it():
    from cryptography.hazmat.primitives.asymmetric import dsa

    from tests.keystore_fixtures import self_signed

    key, certificate = self_signed("dsa.example.org", key=dsa.generate_private_key(key_size=2048))
    assertion = messages.assertion()
    sign(assertion, key, certificate, algorithm=C.DSA_SHA1, digest=C.SHA1)
    received = parse_xml(to_bytes(assertion))
    assert is_element(
        verify(received, received, [certificate], allowed_signature_algorithms(sha1=True, dsa=True)), C.NS_SAML, "Assertion"
    )
    with pytest.raises(SignatureError):
        verify(received, received, [certificate])


def test_signed_response_with_comments_and_foreign_namespaces_verifies_with_the_xmlsec1_tool(idp_rsa, tmp_path):
    """An independent verifier for both signatures of a response whose assertion has comments and whitespace."""
    root = messages.response()
    root.set("{urn:example:unused}flag", "1")
    assertion = assertion_in(root)
    assertion.append(etree.Comment(" a comment "))
    assertion.find(f"{{{C.NS_SAML}}}Issuer").tail = "\n  "
    sign(assertion, idp_rsa.key, idp_rsa.certificate)
    sign(root, idp_rsa.key, idp_rsa.certificate)
    document, cert = tmp_path / "response.xml", tmp_path / "idp.crt"
    document.write_bytes(to_bytes(root))
    cert.write_bytes(idp_rsa.cert_pem)
    for node in (f"{C.NS_SAMLP}:Response", f"{C.NS_SAML}:Assertion"):
        command = ["/usr/bin/xmlsec1", "--verify", "--pubkey-cert-pem", str(cert), "--id-attr:ID", node]
        if node.endswith("Assertion"):
            command += ["--node-xpath", "//*[local-name()='Assertion']/*[local-name()='Signature']"]
        result = subprocess.run([*command, str(document)], capture_output=True, check=False)
        assert result.returncode == 0, result.stderr
