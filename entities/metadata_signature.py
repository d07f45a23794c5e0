"""Verifying the enveloped signature of a large metadata aggregate while streaming it.

`federation.saml.signing.verify` needs the whole document as one tree (and re-serialises it into
a second one), which for a 60 MB aggregate means several hundred MB of memory. An aggregate's
signature covers the whole document, but exclusive canonicalisation (the only form accepted,
docs/xml-security.md §3) lets the digest be computed in pieces, in document order:

    digest( c14n-open-tag(root) · text · c14n(child 1) · text · c14n(child 2) · … · "</root>" )

where the enveloped ds:Signature is left out (the enveloped-signature transform) but the text
around it is kept. Each child's canonical form depends only on the namespaces its output
ancestors rendered, so it is computed by libxml2 itself (the canonicaliser xmlsec uses) on a
small **shell** document: copies of the open tags of the enclosing EntitiesDescriptors, then the
child, then the end tags. The shell's canonical form is `prefix · c14n(child) · suffix`, and the
prefix (the ancestors' canonical open tags) is computed once per EntitiesDescriptor. Text between
children is escaped as exclusive c14n does (&amp; &lt; &gt; &#xD;).

The checks are those of `signing.verify`, in its order, reusing its helpers (shape, transforms,
canonicalisation and algorithm allow-lists, the key only from the trust anchor, KeyInfo only as a
hint): the ds:Signature must be a direct child of the root and reference the root's ID, that ID
must be unique in the whole document (checked piece by piece), SignedInfo is verified with the
trusted key as soon as the signature has been read (the schema puts it first), and the digest is
compared when the document ends. The caller reads entity data only from the shell copy of each
piece, which is exactly what was digested. `tests/test_metadata_import_parser.py` checks that the
pieces add up to libxml2's canonical form of the whole document and that `signing.verify` and this
module agree on every signed and tampered fixture.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading

from lxml import etree

from entities import keystore
from entities.metadata_parser import MetadataError, shallow_copy
from federation.saml.constants import DEFAULT_SIGNATURE_ALGORITHMS, NS_DS, SHA1, SHA256, SHA384, SHA512
from federation.saml.errors import SignatureError
from federation.saml.keys import load_certificate

# The structural checks of signing.verify, reused so both verifiers apply the same rules.
from federation.saml.signing import (
    check_algorithms,
    check_signature_shape,
    check_transforms,
    exc_c14n,
    inclusive_namespaces,
    order_by_key_info,
    single_ds_child,
    verify_signature_value,
)
from federation.saml.xml import ID_ATTRIBUTE_NAMES, XML_ID, children, is_xml_id, reparse

_HASHES = {SHA1: "sha1", SHA256: "sha256", SHA384: "sha384", SHA512: "sha512"}
_local = threading.local()
_ATTRIBUTE_EQUALS = etree.XPath("descendant-or-self::*[@*[. = $value]]")


def _parser():
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
        )
        _local.parser = parser
    return parser


def _invalid(reason):
    return MetadataError(f"The metadata signature is not valid: {reason}.")


def canonical_text(text):
    """A text node as exclusive c14n writes it."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;").encode("utf-8")


def _qname(element):
    local = etree.QName(element).localname
    return f"{element.prefix}:{local}" if element.prefix else local


class Shell:
    """The canonical context of one EntitiesDescriptor (and the ones around it)."""

    def __init__(self, frame_element, parent, prefixes):
        open_tag = etree.tostring(shallow_copy(frame_element), with_tail=False)
        if not open_tag.endswith(b"/>"):
            raise MetadataError("The EntitiesDescriptor could not be canonicalised.")
        self.prefixes = list(prefixes or [])
        self.depth = (parent.depth if parent else 0) + 1
        self.end_tag = f"</{_qname(frame_element)}>".encode()
        self.open_bytes = (parent.open_bytes if parent else b"") + open_tag[:-2] + b">"
        self.end_bytes = self.end_tag + (parent.end_bytes if parent else b"")
        canonical = exc_c14n(etree.fromstring(self.open_bytes + self.end_bytes, _parser()), self.prefixes)
        if not canonical.endswith(self.end_bytes):
            raise MetadataError("The EntitiesDescriptor could not be canonicalised.")
        self.prefix = canonical[: len(canonical) - len(self.end_bytes)]
        self.parent_prefix = len(parent.prefix) if parent else 0

    def open_part(self):
        """This EntitiesDescriptor's canonical open tag (in its context)."""
        return self.prefix[self.parent_prefix :]

    def close_part(self):
        return self.end_tag

    def canonical_unit(self, element):
        """(canonical bytes of `element` in this context, the copy of `element` they were made from)."""
        document = etree.fromstring(self.open_bytes + etree.tostring(element, with_tail=False) + self.end_bytes, _parser())
        canonical = exc_c14n(document, self.prefixes)
        if not (canonical.startswith(self.prefix) and canonical.endswith(self.end_bytes)):
            raise MetadataError("An element of the metadata could not be canonicalised.")
        unit = document
        for _ in range(self.depth):
            unit = unit[0]
        return canonical[len(self.prefix) : len(canonical) - len(self.end_bytes)], unit


class StreamingDigest:
    def __init__(self, digest_algorithm, expected, prefixes, root_id, signature_algorithm):
        self.hash = hashlib.new(_HASHES[digest_algorithm])
        self.expected = expected
        self.prefixes = prefixes
        self.root_id = root_id
        self.signature_algorithm = signature_algorithm

    def update(self, data):
        self.hash.update(data)

    def finish(self):
        if self.hash.digest() != self.expected:
            raise _invalid("signed content was modified after signing (digest mismatch)")


def check_own_ids(element, root_id):
    """The root's ID must not appear again (XML signature wrapping defence, as in signing.verify)."""
    for name, value in element.attrib.items():
        if value == root_id and _is_id_attribute(name):
            raise _invalid(f"ID {root_id!r} is used by more than one element in the document")


def check_subtree_ids(element, root_id):
    if not root_id:
        return
    for found in _ATTRIBUTE_EQUALS(element, value=root_id):
        check_own_ids(found, root_id)


def _is_id_attribute(name):
    return name == XML_ID or etree.QName(name).localname in ID_ATTRIBUTE_NAMES


def reference_prefixes(signature_element):
    """The InclusiveNamespaces PrefixList of the (already verified) signature's exc-c14n transform."""
    signature = reparse(signature_element)
    signed_info = children(signature, NS_DS, "SignedInfo")
    references = children(signed_info[0], NS_DS, "Reference") if signed_info else []
    if len(references) != 1:
        raise MetadataError("The document changed between its verification and the import.")
    try:
        return check_transforms(references[0])
    except SignatureError:
        raise MetadataError("The document changed between its verification and the import.") from None


def trusted_certificates(signature, trust, now):
    """The certificates the signature may be verified with: the trust anchor's pinned certificates,
    and the certificates in the signature's KeyInfo that chain to the anchor's CAs (a certificate in
    the document is never trusted by itself)."""
    certificates = list(trust.certificates)
    if trust.cas:
        found = []
        for node in signature.iterfind(f"{{{NS_DS}}}KeyInfo/{{{NS_DS}}}X509Data/{{{NS_DS}}}X509Certificate"):
            try:
                found.append(load_certificate("".join((node.text or "").split())))
            except ValueError:
                continue
        reason = "the signature carries no certificate (ds:KeyInfo/ds:X509Data) to check against the CA"
        for candidate in found:
            others = [cert for cert in found if cert is not candidate]
            try:
                keystore.verify_chain(candidate, trust.cas, others, now)
            except keystore.KeystoreError as exc:
                reason = exc.message
                continue
            certificates.append(candidate)
        if not certificates:
            raise MetadataError(f"The metadata's signing certificate is not trusted through the CA '{trust.name}': {reason}")
    if not certificates:
        raise MetadataError(f"The trust anchor '{trust.name}' holds no certificate to verify with.")
    return certificates


def verifying_subject(verified, certificates):
    return certificates[0].subject.rfc4514_string() if len(certificates) == 1 else ""


def start_verification(signature_element, root, trust, now):
    """Check the root signature's form and verify SignedInfo with the trust anchor; return
    (StreamingDigest for the rest of the document, the certificate that verified SignedInfo)."""
    root_id = root.get("ID") or ""
    signature = reparse(signature_element)
    try:
        signed_info = single_ds_child(signature, "SignedInfo", "signature")
        references = children(signed_info, NS_DS, "Reference")
        if len(references) != 1:
            raise SignatureError(f"signature must have exactly one reference, not {len(references)}")
        reference = references[0]
        uri = reference.get("URI")
        if not uri:
            raise SignatureError("signature does not cover this element (the reference URI is empty)")
        if not root_id:
            raise SignatureError("signature does not cover this element (the element has no ID)")
        if uri != f"#{root_id}":
            raise SignatureError(f"signature does not cover this element (it references {uri!r})")
        if not is_xml_id(root_id):
            raise SignatureError(f"element ID {root_id!r} is not a valid XML ID")
        check_signature_shape(signature, signed_info, reference)
        prefixes = check_transforms(reference)
        signature_algorithm, digest_algorithm = check_algorithms(signed_info, reference, DEFAULT_SIGNATURE_ALGORITHMS)
    except SignatureError as exc:
        raise _invalid(str(exc)) from None

    certificates = trusted_certificates(signature, trust, now)
    ordered, key_info_is_trusted = order_by_key_info(signature, certificates)
    canonicalization = children(signed_info, NS_DS, "CanonicalizationMethod")[0]
    octets = exc_c14n(signed_info, inclusive_namespaces(canonicalization, "CanonicalizationMethod"))
    try:
        value = base64.b64decode("".join((children(signature, NS_DS, "SignatureValue")[0].text or "").split()), validate=True)
        expected = base64.b64decode("".join((children(reference, NS_DS, "DigestValue")[0].text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("the SignatureValue or DigestValue is not valid base64") from None
    for certificate in ordered:
        if verify_signature_value(certificate.public_key(), signature_algorithm, value, octets):
            return StreamingDigest(digest_algorithm, expected, prefixes, root_id, signature_algorithm), certificate
    hint = " (the certificate in KeyInfo is not one of them)" if key_info_is_trusted is False else ""
    raise _invalid(f"signature invalid for every trusted certificate{hint}")
