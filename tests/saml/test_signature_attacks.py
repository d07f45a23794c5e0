"""Attack fixtures (tests/fixtures/saml/attacks/) that `verify` must reject, each with its reason.

Most are built from the pysaml2-signed response in peers/; the ones signed by xmlsec directly
are checked to verify with xmlsec alone, which shows the rejection comes from our checks that
run before the cryptography, not from a broken signature.
"""

import pytest
import xmlsec

from federation.saml import constants as C
from federation.saml.errors import SignatureError, XMLSecurityError
from federation.saml.signing import verify
from federation.saml.xml import children, parse_xml


@pytest.fixture
def trusted(committed):
    return [committed["idp-rsa"].certificate]


@pytest.fixture
def load(fixture_bytes):
    return lambda name: parse_xml(fixture_bytes(f"attacks/{name}"))


def first_assertion(root):
    """What a naive consumer uses: the first saml:Assertion child of the Response."""
    return children(root, C.NS_SAML, "Assertion")[0]


def verifies_with_xmlsec_alone(element, certificate):
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(certificate.cert_pem, xmlsec.KeyFormat.CERT_PEM, None)
    context.register_id(element, "ID")
    try:
        context.verify(children(element, C.NS_DS, "Signature")[0])
    except xmlsec.Error:
        return False
    return True


def test_the_genuine_pysaml2_response_verifies(fixture_bytes, trusted):
    """Positive control for the vectors below, which are all derived from this message."""
    root = parse_xml(fixture_bytes("peers/pysaml2-response-signed.xml"))
    verify(root, root, trusted)
    assert verify(root, first_assertion(root), trusted).findtext(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID") == "alice"


def test_unsigned_response_and_assertion(load, trusted):
    root = load("unsigned-response.xml")
    with pytest.raises(SignatureError, match="^no signature$"):
        verify(root, root, trusted)
    with pytest.raises(SignatureError, match="^no signature$"):
        verify(root, first_assertion(root), trusted)


def test_wrapping_signed_assertion_moved_into_extensions(load, trusted):
    root = load("xsw-assertion-moved-to-extensions.xml")
    evil = first_assertion(root)
    assert evil.findtext(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID") == "admin"
    with pytest.raises(SignatureError, match="^no signature$"):
        verify(root, evil, trusted)


def test_wrapping_evil_assertion_carrying_the_original_signature(load, trusted):
    root = load("xsw-evil-assertion-with-copied-signature.xml")
    with pytest.raises(SignatureError, match="signature does not cover this element"):
        verify(root, first_assertion(root), trusted)


def test_wrapping_original_hidden_in_a_signature_object(load, trusted):
    root = load("xsw-original-in-signature-object.xml")
    with pytest.raises(SignatureError, match="is used by more than one element"):
        verify(root, first_assertion(root), trusted)


def test_signature_with_an_object_is_refused_before_verifying(load, committed, trusted):
    root = load("signature-with-object.xml")
    assert verifies_with_xmlsec_alone(first_assertion(root), committed["idp-rsa"])
    with pytest.raises(SignatureError, match="unexpected element Object in the signature"):
        verify(root, first_assertion(root), trusted)


def test_duplicated_id(load, trusted):
    root = load("duplicate-id.xml")
    evil, signed = children(root, C.NS_SAML, "Assertion")
    assert evil.get("ID") == signed.get("ID")
    with pytest.raises(SignatureError, match="^no signature$"):
        verify(root, evil, trusted)
    # Verifying the genuinely signed one is refused too: a consumer that looks elements up by
    # ID could otherwise verify one and read the other.
    with pytest.raises(SignatureError, match="is used by more than one element in the document"):
        verify(root, signed, trusted)


def test_reference_to_another_element(load, trusted):
    root = load("reference-to-other-element.xml")
    with pytest.raises(SignatureError, match=rf"signature does not cover this element \(it references '#{root.get('ID')}'\)"):
        verify(root, first_assertion(root), trusted)


def test_two_signatures(load, trusted):
    root = load("two-signatures.xml")
    with pytest.raises(SignatureError, match="more than one signature on this element"):
        verify(root, first_assertion(root), trusted)


def test_empty_uri_reference(load, committed, trusted):
    assertion = load("empty-uri-reference.xml")
    assert verifies_with_xmlsec_alone(assertion, committed["idp-rsa"])
    with pytest.raises(SignatureError, match=r"signature does not cover this element \(the reference URI is empty\)"):
        verify(assertion, assertion, trusted)


def test_modified_after_signing(load, trusted):
    """Both signatures break: the assertion's content changed, and so did the response's."""
    root = load("modified-after-signing.xml")
    with pytest.raises(SignatureError, match=r"signed content was modified after signing \(digest mismatch\)"):
        verify(root, first_assertion(root), trusted)
    with pytest.raises(SignatureError, match="digest mismatch"):
        verify(root, root, trusted)


def test_modified_content_with_a_recomputed_digest_value(fixture_bytes, trusted):
    """The attacker changes the NameID and writes the matching DigestValue into SignedInfo: the digest now matches, but
    SignedInfo changed, so its SignatureValue no longer verifies with the trusted key."""
    import base64
    import hashlib

    from lxml import etree

    root = parse_xml(fixture_bytes("peers/pysaml2-response-signed.xml"))
    assertion = first_assertion(root)
    assertion.find(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID").text = "admin"
    work = parse_xml(etree.tostring(assertion))
    signature = children(work, C.NS_DS, "Signature")[0]
    work.remove(signature)
    digest = hashlib.new(
        "sha1" if "sha1" in signature.find(f".//{{{C.NS_DS}}}DigestMethod").get("Algorithm") else "sha256",
        etree.tostring(work, method="c14n", exclusive=True, with_comments=False),
    ).digest()
    children(assertion, C.NS_DS, "Signature")[0].find(f".//{{{C.NS_DS}}}DigestValue").text = base64.b64encode(digest).decode()
    allowed = C.DEFAULT_SIGNATURE_ALGORITHMS | C.SHA1_SIGNATURE_ALGORITHMS
    with pytest.raises(SignatureError, match="^signature invalid for every trusted certificate$"):
        verify(root, assertion, trusted, allowed)


def test_signature_value_that_is_not_base64(fixture_bytes, trusted):
    root = parse_xml(fixture_bytes("peers/pysaml2-response-signed.xml"))
    assertion = first_assertion(root)
    children(assertion, C.NS_DS, "Signature")[0].find(f"{{{C.NS_DS}}}SignatureValue").text = "not base64!"
    allowed = C.DEFAULT_SIGNATURE_ALGORITHMS | C.SHA1_SIGNATURE_ALGORITHMS
    with pytest.raises(SignatureError, match="the SignatureValue is not valid base64"):
        verify(root, assertion, trusted, allowed)


def test_valid_signature_by_an_untrusted_key(load, trusted):
    assertion = load("untrusted-signer.xml")
    with pytest.raises(SignatureError, match=r"^signature invalid for every trusted certificate$"):
        verify(assertion, assertion, trusted)


def test_key_info_carrying_the_attackers_certificate(load, committed, trusted):
    assertion = load("untrusted-signer-keyinfo-attacker-cert.xml")
    with pytest.raises(
        SignatureError, match=r"signature invalid for every trusted certificate \(the certificate in KeyInfo is not one of them\)"
    ):
        verify(assertion, assertion, trusted)
    # The same message is valid for whoever trusts the attacker: the key really comes from the
    # trusted list and nowhere else.
    verify(assertion, assertion, [committed["attacker-rsa"].certificate])


def test_key_info_naming_the_trusted_certificate_over_an_attackers_signature(load, trusted):
    assertion = load("untrusted-signer-keyinfo-trusted-cert.xml")
    with pytest.raises(SignatureError, match=r"^signature invalid for every trusted certificate$"):
        verify(assertion, assertion, trusted)


def test_rsa_sha1_from_pysaml2_defaults(fixture_bytes, trusted):
    root = parse_xml(fixture_bytes("peers/pysaml2-response-rsa-sha1.xml"))
    with pytest.raises(SignatureError, match="algorithm rsa-sha1 not allowed"):
        verify(root, root, trusted)
    verify(root, root, trusted, C.DEFAULT_SIGNATURE_ALGORITHMS | C.SHA1_SIGNATURE_ALGORITHMS)


def test_sha1_digest_under_a_sha256_signature(load, trusted):
    assertion = load("sha1-digest.xml")
    with pytest.raises(SignatureError, match="algorithm sha1 not allowed"):
        verify(assertion, assertion, trusted)


def test_xpath_transform(load, committed, trusted):
    assertion = load("xpath-transform.xml")
    assert verifies_with_xmlsec_alone(assertion, committed["idp-rsa"])
    with pytest.raises(SignatureError, match="transform xpath not allowed"):
        verify(assertion, assertion, trusted)


def test_xslt_transform(load, committed, trusted):
    assertion = load("xslt-transform.xml")
    assert verifies_with_xmlsec_alone(assertion, committed["idp-rsa"])
    with pytest.raises(SignatureError, match="transform xslt not allowed"):
        verify(assertion, assertion, trusted)


def test_exc_c14n_with_comments_transform(load, committed, trusted):
    assertion = load("exc-c14n-with-comments-transform.xml")
    assert verifies_with_xmlsec_alone(assertion, committed["idp-rsa"])
    with pytest.raises(SignatureError, match="transform exc-c14n-with-comments not allowed"):
        verify(assertion, assertion, trusted)


def test_enveloped_transform_alone_means_inclusive_c14n(load, committed, trusted):
    assertion = load("enveloped-transform-only.xml")
    assert verifies_with_xmlsec_alone(assertion, committed["idp-rsa"])
    with pytest.raises(SignatureError, match="transforms must be exactly enveloped-signature then exc-c14n"):
        verify(assertion, assertion, trusted)


def test_inclusive_c14n_for_signed_info(load, committed, trusted):
    assertion = load("inclusive-c14n-signedinfo.xml")
    assert verifies_with_xmlsec_alone(assertion, committed["idp-rsa"])
    with pytest.raises(SignatureError, match="canonicalization c14n not allowed"):
        verify(assertion, assertion, trusted)


def test_comment_injection_cannot_truncate_the_signed_name_id(load, trusted):
    """The signature stays valid (exc-c14n drops comments); what matters is that the verified
    NameID reads in full, not as the text before the comment."""
    assertion = load("comment-injection.xml")
    verified = verify(assertion, assertion, trusted)
    assert verified.findtext(f"{{{C.NS_SAML}}}Subject/{{{C.NS_SAML}}}NameID") == "alice@example.org.evil.org"


def test_dtd_in_a_signed_message_never_reaches_verification(fixture_bytes):
    with pytest.raises(XMLSecurityError):
        parse_xml(fixture_bytes("xml/xxe-file.xml"))
