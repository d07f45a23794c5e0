"""The one signing helper and the one verification helper of the product.

Enveloped XML signatures (SAML 2.0 and 1.1 messages, assertions, metadata, WS-Fed tokens):
`sign` and `verify`. Detached query-string signatures of the SAML 2.0 HTTP-Redirect binding
(bindings §3.4.4.1): `sign_query` and `verify_query`.

`verify` is built against XML signature wrapping: it decides which element the signature must
cover before it looks at the signature, checks the signature's shape, references, transforms and
algorithms before any cryptography, takes the key only from the caller's trusted certificates,
runs xmlsec on a self-contained copy of the element and returns that copy. Callers read SAML
data only from the returned element. docs/xml-security.md describes each step.
"""

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote_plus

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from lxml import etree

from .constants import (
    ALLOWED_CANONICALIZATION,
    ALLOWED_TRANSFORMS,
    DEFAULT_SIGNATURE_ALGORITHMS,
    DSA_SHA1,
    DSA_SIGNATURE_ALGORITHMS,
    ECDSA_SHA1,
    ECDSA_SHA256,
    ECDSA_SHA384,
    ECDSA_SHA512,
    NS_DS,
    NS_EXC_C14N,
    NS_SAML,
    NS_SAML1,
    NS_SAML1P,
    NS_SAMLP,
    RSA_SHA1,
    RSA_SHA256,
    RSA_SHA384,
    RSA_SHA512,
    SHA1,
    SHA1_SIGNATURE_ALGORITHMS,
    SHA256,
    SHA384,
    SHA512,
    TRANSFORM_ENVELOPED,
    TRANSFORM_EXC_C14N,
    algorithm_name,
)
from .errors import SignatureError
from .keys import (
    certificate_base64,
    certificate_der,
    key_type,
    load_certificate,
    load_certificates,
    load_private_key,
)
from .xml import child_elements, children, elements_with_id, id_attribute_name, is_element, is_xml_id, local_name, reparse

_SIGNATURE_METHODS = {
    RSA_SHA1: ("rsa", hashes.SHA1),
    RSA_SHA256: ("rsa", hashes.SHA256),
    RSA_SHA384: ("rsa", hashes.SHA384),
    RSA_SHA512: ("rsa", hashes.SHA512),
    ECDSA_SHA1: ("ec", hashes.SHA1),
    ECDSA_SHA256: ("ec", hashes.SHA256),
    ECDSA_SHA384: ("ec", hashes.SHA384),
    ECDSA_SHA512: ("ec", hashes.SHA512),
    DSA_SHA1: ("dsa", hashes.SHA1),
}
_DIGEST_METHODS = {
    SHA1: "sha1",
    SHA256: "sha256",
    SHA384: "sha384",
    SHA512: "sha512",
}
_DS = NS_DS
_KEY_NAMES = {"rsa": "an RSA", "ec": "an EC", "dsa": "a DSA"}


def allowed_signature_algorithms(*, sha1=False, dsa=False):
    """The inbound allow-list (signature and digest methods) for a partnership: the default
    SHA-2 RSA/ECDSA list, widened with SHA-1 and/or DSA only when the partnership says so."""
    allowed = set(DEFAULT_SIGNATURE_ALGORITHMS)
    if sha1:
        allowed |= SHA1_SIGNATURE_ALGORITHMS
    if dsa:
        allowed |= DSA_SIGNATURE_ALGORITHMS
    return frozenset(allowed)


def _check_key_matches(private_key, algorithm):
    if algorithm not in _SIGNATURE_METHODS:
        raise ValueError(f"unsupported signature algorithm {algorithm}")
    wanted = _SIGNATURE_METHODS[algorithm][0]
    if key_type(private_key) != wanted:
        raise ValueError(
            f"algorithm {algorithm_name(algorithm)} needs {_KEY_NAMES[wanted]} key, not {_KEY_NAMES[key_type(private_key)]} key"
        )


# --- Enveloped signatures: sign --------------------------------------------------------------


def signature_position(element):
    """Where the schema puts ds:Signature among `element`'s children (an index for insert):
    right after saml:Issuer in SAML 2.0 assertions, requests and responses; last in a SAML 1.1
    Assertion; after the RespondWith elements in a SAML 1.1 Request; first everywhere else
    (SAML 1.1 Response, metadata, WS-Fed)."""
    namespace, local = _split(element.tag)
    if namespace == NS_SAML1 and local == "Assertion":
        return len(element)
    if namespace == NS_SAML1P and local == "Request":
        respond_with = [index for index, child in enumerate(element) if is_element(child, NS_SAML1P, "RespondWith")]
        return respond_with[-1] + 1 if respond_with else 0
    if namespace in (NS_SAML, NS_SAMLP):
        for index, child in enumerate(element):
            if is_element(child, NS_SAML, "Issuer"):
                return index + 1
    return 0


def _split(tag):
    namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    return namespace, local


def sign(
    element,
    private_key,
    certificate,
    algorithm=RSA_SHA256,
    digest=SHA256,
    include_certificate=True,
    *,
    position=None,
    id_attribute=None,
):
    """Sign `element` in place with an enveloped signature and return it.

    The Reference is `#<ID>` (`AssertionID`/`ResponseID`/`RequestID` for SAML 1.1, `ID`
    otherwise, or `id_attribute`), with the enveloped-signature and exc-c14n transforms; the
    SignedInfo is canonicalised with exc-c14n. The Signature goes where the schema wants it
    (`signature_position`) unless `position` (a child index) says otherwise. `private_key` is an
    RSA or EC key object matching `algorithm`; with `include_certificate` the certificate is
    written into KeyInfo/X509Data so the receiver can pick the right trusted certificate.
    Sign inner elements (the assertion) before outer ones (the response).
    """
    private_key = load_private_key(private_key)
    _check_key_matches(private_key, algorithm)
    if digest not in _DIGEST_METHODS:
        raise ValueError(f"unsupported digest algorithm {digest}")
    id_attribute = id_attribute or id_attribute_name(element)
    element_id = element.get(id_attribute)
    if not is_xml_id(element_id):
        raise ValueError(f"the element needs a valid {id_attribute} attribute to be signed (got {element_id!r})")
    if include_certificate and not _same_public_key(private_key, certificate):
        raise ValueError("the certificate does not belong to the private key")
    if children(element, _DS, "Signature"):
        raise ValueError("the element is already signed")
    if len(elements_with_id(element, element_id)) > 1:
        raise ValueError(f"ID {element_id!r} is not unique in the document")

    # The enveloped-signature transform leaves out the Signature, so the digest is taken before it is inserted.
    # Signing is done here (exc-c14n with lxml, the signature with cryptography) rather than by xmlsec, whose
    # register_id interns every ID in libxml2's per-thread dictionary, which never shrinks: a worker grew ~60 bytes
    # per signature. `verify` (xmlsec) and the peers' libraries check the result in the tests.
    reference_digest = hashlib.new(_DIGEST_METHODS[digest], exc_c14n(element)).digest()
    signature = _signature_template(algorithm, digest, element_id)
    signature.find(_DIGEST_VALUE_PATH).text = base64.b64encode(reference_digest).decode("ascii")
    element.insert(signature_position(element) if position is None else position, signature)
    signed_info = signature[0]
    signature[1].text = base64.b64encode(_sign_octets(private_key, algorithm, exc_c14n(signed_info))).decode("ascii")
    if include_certificate:
        # KeyInfo is outside SignedInfo and removed by the enveloped transform: adding it after
        # signing changes nothing that is signed.
        key_info = etree.SubElement(signature, f"{{{_DS}}}KeyInfo")
        x509_data = etree.SubElement(key_info, f"{{{_DS}}}X509Data")
        etree.SubElement(x509_data, f"{{{_DS}}}X509Certificate").text = certificate_base64(certificate)
    return element


def _same_public_key(private_key, certificate):
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return private_key.public_key().public_bytes(*spki) == load_certificate(certificate).public_key().public_bytes(*spki)


_DIGEST_VALUE_PATH = f"{{{_DS}}}SignedInfo/{{{_DS}}}Reference/{{{_DS}}}DigestValue"


def exc_c14n(element, inclusive_prefixes=()):
    """Exclusive XML canonicalisation without comments of `element`'s subtree (what the exc-c14n
    transform gives for a same-document `#ID` reference), honouring an InclusiveNamespaces
    PrefixList; lxml carries the in-scope namespaces."""
    return etree.tostring(
        element, method="c14n", exclusive=True, with_comments=False, inclusive_ns_prefixes=list(inclusive_prefixes or ()) or None
    )


def _signature_template(algorithm, digest, element_id):
    """The ds:Signature skeleton (SignedInfo with one Reference, an empty SignatureValue)."""
    signature = etree.Element(f"{{{_DS}}}Signature", nsmap={"ds": _DS})
    signed_info = etree.SubElement(signature, f"{{{_DS}}}SignedInfo")
    etree.SubElement(signed_info, f"{{{_DS}}}CanonicalizationMethod", Algorithm=TRANSFORM_EXC_C14N)
    etree.SubElement(signed_info, f"{{{_DS}}}SignatureMethod", Algorithm=algorithm)
    reference = etree.SubElement(signed_info, f"{{{_DS}}}Reference", URI=f"#{element_id}")
    transforms = etree.SubElement(reference, f"{{{_DS}}}Transforms")
    etree.SubElement(transforms, f"{{{_DS}}}Transform", Algorithm=TRANSFORM_ENVELOPED)
    etree.SubElement(transforms, f"{{{_DS}}}Transform", Algorithm=TRANSFORM_EXC_C14N)
    etree.SubElement(reference, f"{{{_DS}}}DigestMethod", Algorithm=digest)
    etree.SubElement(reference, f"{{{_DS}}}DigestValue")
    etree.SubElement(signature, f"{{{_DS}}}SignatureValue")
    return signature


# --- Enveloped signatures: verify ------------------------------------------------------------


def verify(root, element, trusted_certificates, allowed_algorithms=DEFAULT_SIGNATURE_ALGORITHMS, *, id_attribute=None):
    """Verify the enveloped signature of `element` (inside the document of `root`) and return the
    verified element: a self-contained copy of it, the only thing the caller may read from.

    Checks, in order (the first failure raises `SignatureError` with its reason):
    exactly one ds:Signature as a direct child; exactly one Reference, whose URI is `#<ID of
    element>`; that ID is unique in the whole document; the Signature holds only SignedInfo,
    SignatureValue and KeyInfo; transforms are exactly enveloped-signature then exc-c14n;
    SignedInfo is canonicalised with exc-c14n; SignatureMethod and DigestMethod are in
    `allowed_algorithms`; then the cryptographic check with xmlsec against each trusted
    certificate (a certificate in KeyInfo only decides which trusted one is tried first).
    """
    if element is not root and root not in element.iterancestors():
        raise ValueError("the element to verify is not inside the given document root")
    id_attribute = id_attribute or id_attribute_name(element)
    element_id = element.get(id_attribute)

    signatures = children(element, _DS, "Signature")
    if not signatures:
        raise SignatureError("no signature")
    if len(signatures) > 1:
        raise SignatureError("more than one signature on this element")
    signature = signatures[0]
    signed_info = single_ds_child(signature, "SignedInfo", "signature")
    references = children(signed_info, _DS, "Reference")
    if len(references) != 1:
        raise SignatureError(f"signature must have exactly one reference, not {len(references)}")
    reference = references[0]
    uri = reference.get("URI")
    if uri is None or uri == "":
        raise SignatureError("signature does not cover this element (the reference URI is empty)")
    if not element_id:
        raise SignatureError(f"signature does not cover this element (the element has no {id_attribute})")
    if uri != f"#{element_id}":
        raise SignatureError(f"signature does not cover this element (it references {uri!r})")
    if not is_xml_id(element_id):
        raise SignatureError(f"element ID {element_id!r} is not a valid XML ID")
    if len(elements_with_id(root, element_id)) > 1:
        raise SignatureError(f"ID {element_id!r} is used by more than one element in the document")

    check_signature_shape(signature, signed_info, reference)
    inclusive_prefixes = check_transforms(reference)
    signature_algorithm, digest_algorithm = check_algorithms(signed_info, reference, allowed_algorithms)

    certificates = load_certificates(trusted_certificates)
    if not certificates:
        raise SignatureError("no trusted certificate to verify with")
    ordered, key_info_is_trusted = order_by_key_info(signature, certificates)

    verified = reparse(element)
    verified_signature = children(verified, _DS, "Signature")[0]
    for key_info in children(verified_signature, _DS, "KeyInfo"):
        verified_signature.remove(key_info)  # a key from the message is never used
    # The cryptographic check runs on the self-contained copy, with exactly the transforms checked above (nothing in
    # the message can choose others): exc-c14n of the element without its Signature against DigestValue, exc-c14n of
    # SignedInfo against SignatureValue with each trusted key. Done here rather than by xmlsec, whose register_id
    # interned every ID in libxml2's per-thread dictionary, which never shrinks (~90 bytes per verification).
    verified_reference = children(single_ds_child(verified_signature, "SignedInfo", "signature"), _DS, "Reference")[0]
    digest_matches = _digest_matches(verified, verified_reference, inclusive_prefixes, digest_algorithm)
    verified_signed_info = verified_signature[0]
    canonicalization = children(verified_signed_info, _DS, "CanonicalizationMethod")[0]
    signed_octets = exc_c14n(verified_signed_info, inclusive_namespaces(canonicalization, "CanonicalizationMethod"))
    signature_value = _base64_value(verified_signature, "SignatureValue")
    for certificate in ordered:
        if verify_signature_value(certificate.public_key(), signature_algorithm, signature_value, signed_octets):
            if not digest_matches:
                break
            return verified

    if not digest_matches:
        raise SignatureError("signed content was modified after signing (digest mismatch)")
    hint = " (the certificate in KeyInfo is not one of them)" if key_info_is_trusted is False else ""
    raise SignatureError(f"signature invalid for every trusted certificate{hint}")


def _base64_value(parent, local):
    try:
        return base64.b64decode("".join((children(parent, _DS, local)[0].text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"the {local} is not valid base64") from None


# The checks below are public because entities.metadata_signature (the streaming verifier of large
# signed aggregates) applies the same rules; `verify` is the entry point for everything else.


def single_ds_child(parent, local, where):
    found = children(parent, _DS, local)
    if len(found) != 1:
        raise SignatureError(f"{where} must have exactly one {local}, not {len(found)}")
    return found[0]


def check_signature_shape(signature, signed_info, reference):
    """Nothing in the signature but what an enveloped SAML signature needs: no ds:Object (where
    wrapping attacks hide the original element), no Manifest, no extra references."""
    allowed = {"SignedInfo": 1, "SignatureValue": 1, "KeyInfo": 1}
    _check_children(signature, allowed, "the signature")
    single_ds_child(signature, "SignatureValue", "signature")
    _check_children(signed_info, {"CanonicalizationMethod": 1, "SignatureMethod": 1, "Reference": 1}, "SignedInfo")
    single_ds_child(signed_info, "CanonicalizationMethod", "SignedInfo")
    single_ds_child(signed_info, "SignatureMethod", "SignedInfo")
    _check_children(reference, {"Transforms": 1, "DigestMethod": 1, "DigestValue": 1}, "the reference")
    single_ds_child(reference, "DigestMethod", "reference")
    single_ds_child(reference, "DigestValue", "reference")


def _check_children(parent, allowed, where):
    seen = {}
    for child in child_elements(parent):
        local = local_name(child)
        if not is_element(child, _DS, local) or local not in allowed:
            raise SignatureError(f"unexpected element {local} in {where}")
        seen[local] = seen.get(local, 0) + 1
        if seen[local] > allowed[local]:
            raise SignatureError(f"more than one {local} in {where}")


def check_transforms(reference):
    """Accept exactly [enveloped-signature, exc-c14n] (an InclusiveNamespaces PrefixList is
    allowed on exc-c14n); return the PrefixList prefixes."""
    transforms_element = children(reference, _DS, "Transforms")
    transforms = children(transforms_element[0], _DS, "Transform") if transforms_element else []
    if transforms_element and len(transforms) != len(child_elements(transforms_element[0])):
        raise SignatureError("unexpected element in Transforms")
    algorithms = [transform.get("Algorithm") for transform in transforms]
    for algorithm in algorithms:
        if algorithm not in ALLOWED_TRANSFORMS:
            raise SignatureError(f"transform {algorithm_name(algorithm)} not allowed")
    if tuple(algorithms) != ALLOWED_TRANSFORMS:
        raise SignatureError("transforms must be exactly enveloped-signature then exc-c14n")
    if child_elements(transforms[0]):
        raise SignatureError("unexpected content in the enveloped-signature transform")
    return inclusive_namespaces(transforms[1], "the exc-c14n transform")


def inclusive_namespaces(method, where):
    content = child_elements(method)
    if not content:
        return []
    if len(content) > 1 or not is_element(content[0], NS_EXC_C14N, "InclusiveNamespaces"):
        raise SignatureError(f"unexpected content in {where}")
    return (content[0].get("PrefixList") or "").split()


def check_algorithms(signed_info, reference, allowed):
    canonicalization = children(signed_info, _DS, "CanonicalizationMethod")[0]
    if canonicalization.get("Algorithm") != ALLOWED_CANONICALIZATION:
        raise SignatureError(f"canonicalization {algorithm_name(canonicalization.get('Algorithm'))} not allowed")
    inclusive_namespaces(canonicalization, "CanonicalizationMethod")
    method = children(signed_info, _DS, "SignatureMethod")[0]
    signature_algorithm = method.get("Algorithm")
    if signature_algorithm not in allowed or signature_algorithm not in _SIGNATURE_METHODS:
        raise SignatureError(f"algorithm {algorithm_name(signature_algorithm)} not allowed")
    if child_elements(method):
        raise SignatureError("unexpected content in SignatureMethod")
    digest_algorithm = children(reference, _DS, "DigestMethod")[0].get("Algorithm")
    if digest_algorithm not in allowed or digest_algorithm not in _DIGEST_METHODS:
        raise SignatureError(f"algorithm {algorithm_name(digest_algorithm)} not allowed")
    return signature_algorithm, digest_algorithm


def order_by_key_info(signature, certificates):
    """Trusted certificates, those named in KeyInfo's X509Certificate first. Returns the order
    and whether KeyInfo's certificate is trusted (None when KeyInfo names none). The KeyInfo
    content is compared as bytes and never used as a key."""
    named = set()
    for key_info in children(signature, _DS, "KeyInfo"):
        for x509_data in children(key_info, _DS, "X509Data"):
            for node in children(x509_data, _DS, "X509Certificate"):
                try:
                    named.add(base64.b64decode("".join((node.text or "").split()), validate=True))
                except (binascii.Error, ValueError):
                    continue
    if not named:
        return certificates, None
    first = [certificate for certificate in certificates if certificate_der(certificate) in named]
    rest = [certificate for certificate in certificates if certificate not in first]
    return first + rest, bool(first)


def _digest_matches(verified, reference, inclusive_prefixes, digest_algorithm):
    """Does the element (the enveloped signature left out, as the transform says) still digest to DigestValue?"""
    expected = _base64_value(reference, "DigestValue")
    work = reparse(verified)
    _remove_keeping_tail(children(work, _DS, "Signature")[0])
    octets = exc_c14n(work, inclusive_prefixes)
    return hmac.compare_digest(hashlib.new(_DIGEST_METHODS[digest_algorithm], octets).digest(), expected)


def _remove_keeping_tail(node):
    parent = node.getparent()
    if node.tail:
        previous = node.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + node.tail
        else:
            parent.text = (parent.text or "") + node.tail
    parent.remove(node)


# --- HTTP-Redirect binding: detached query signatures ----------------------------------------

_MESSAGE_PARAMETERS = ("SAMLRequest", "SAMLResponse")
_SIGNED_PARAMETERS = (*_MESSAGE_PARAMETERS, "RelayState", "SigAlg", "Signature")


@dataclass(frozen=True)
class VerifiedQuery:
    """What `verify_query` vouches for, decoded from the raw values it verified. Read the
    message, relay state and algorithm from here, never from a separately parsed query."""

    parameter: str  # "SAMLRequest" or "SAMLResponse"
    message: str  # the base64 DEFLATE value; decode it with bindings.inflate_decode
    relay_state: str | None
    algorithm: str
    certificate: x509.Certificate  # the trusted certificate that verified the signature


def sign_query(params, private_key, algorithm=RSA_SHA256):
    """Sign a Redirect-binding query and return the full query string (without "?").

    `params` holds ("SAMLRequest" or "SAMLResponse", base64 DEFLATE value) and optionally
    ("RelayState", value), unencoded. The result is
    `SAMLRequest=…&RelayState=…&SigAlg=…&Signature=…`: each value form-URL-encoded (upper-case
    hex, as python3-saml and Shibboleth do), the signature computed over the first three in
    exactly that order (bindings §3.4.4.1). ECDSA signatures use the XML Signature encoding
    (r‖s), as xmlsec-based peers do.
    """
    private_key = load_private_key(private_key)
    _check_key_matches(private_key, algorithm)
    values = {}
    for name, value in params:
        if name not in (*_MESSAGE_PARAMETERS, "RelayState"):
            raise ValueError(f"parameter {name} cannot be part of a signed Redirect query")
        if name in values:
            raise ValueError(f"parameter {name} given twice")
        values[name] = value
    if ("SAMLRequest" in values) == ("SAMLResponse" in values):
        raise ValueError("a Redirect query carries exactly one of SAMLRequest or SAMLResponse")
    parts = [f"{name}={quote_plus(values[name])}" for name in (*_MESSAGE_PARAMETERS, "RelayState") if name in values]
    parts.append(f"SigAlg={quote_plus(algorithm)}")
    signed = "&".join(parts)
    signature = _sign_octets(private_key, algorithm, signed.encode("ascii"))
    return f"{signed}&Signature={quote_plus(base64.b64encode(signature).decode('ascii'))}"


def verify_query(raw_query_string, trusted_certificates, allowed_algorithms=DEFAULT_SIGNATURE_ALGORITHMS):
    """Verify a Redirect-binding query signature and return a `VerifiedQuery`.

    `raw_query_string` is the query exactly as received (e.g. the request's QUERY_STRING): the
    signed octets are rebuilt from the raw, still URL-encoded values, because re-encoding
    decoded values would not reproduce the sender's encoding (bindings §3.4.4.1). The order of
    parameters in the URL does not matter; the signed string is always
    `SAMLRequest|SAMLResponse=…[&RelayState=…]&SigAlg=…`. A parameter that appears twice is
    refused, so no other parser can be made to see a different value than the one verified.
    """
    if isinstance(raw_query_string, bytes):
        raw_query_string = raw_query_string.decode("ascii", "replace")
    if not raw_query_string.isascii():
        raise SignatureError("the query string is not URL-encoded ASCII")
    query = raw_query_string[1:] if raw_query_string.startswith("?") else raw_query_string
    raw = {}
    for part in query.split("&"):
        raw_name, _, raw_value = part.partition("=")
        name = unquote_plus(raw_name)
        if name in _SIGNED_PARAMETERS:
            if name in raw:
                raise SignatureError(f"parameter {name} appears more than once")
            raw[name] = raw_value
    present = [name for name in _MESSAGE_PARAMETERS if name in raw]
    if len(present) != 1:
        raise SignatureError("the query must carry exactly one of SAMLRequest or SAMLResponse")
    parameter = present[0]
    if "Signature" not in raw:
        raise SignatureError("no signature")
    if "SigAlg" not in raw:
        raise SignatureError("the query has a Signature but no SigAlg")
    algorithm = unquote_plus(raw["SigAlg"])
    if algorithm not in allowed_algorithms or algorithm not in _SIGNATURE_METHODS:
        raise SignatureError(f"algorithm {algorithm_name(algorithm)} not allowed")
    try:
        signature = base64.b64decode(unquote_plus(raw["Signature"]), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the Signature parameter is not valid base64") from None
    signed = "&".join(f"{name}={raw[name]}" for name in (parameter, "RelayState", "SigAlg") if name in raw).encode("ascii")

    certificates = load_certificates(trusted_certificates)
    if not certificates:
        raise SignatureError("no trusted certificate to verify with")
    for certificate in certificates:
        if verify_signature_value(certificate.public_key(), algorithm, signature, signed):
            relay_state = unquote_plus(raw["RelayState"]) if "RelayState" in raw else None
            return VerifiedQuery(parameter, unquote_plus(raw[parameter]), relay_state, algorithm, certificate)
    raise SignatureError("signature invalid for every trusted certificate")


def _sign_octets(private_key, algorithm, octets):
    kind, hash_class = _SIGNATURE_METHODS[algorithm]
    if kind == "rsa":
        return private_key.sign(octets, padding.PKCS1v15(), hash_class())
    if kind == "ec":
        r, s = decode_dss_signature(private_key.sign(octets, ec.ECDSA(hash_class())))
        size = (private_key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if kind == "dsa":
        r, s = decode_dss_signature(private_key.sign(octets, hash_class()))
        size = (private_key.parameters().parameter_numbers().q.bit_length() + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise ValueError(f"cannot sign with algorithm {algorithm_name(algorithm)}")


def verify_signature_value(public_key, algorithm, signature, octets):
    kind, hash_class = _SIGNATURE_METHODS[algorithm]
    try:
        if kind == "rsa" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, octets, padding.PKCS1v15(), hash_class())
            return True
        if kind == "ec" and isinstance(public_key, ec.EllipticCurvePublicKey):
            size = (public_key.curve.key_size + 7) // 8
            public_key.verify(_raw_to_der(signature, size), octets, ec.ECDSA(hash_class()))
            return True
        if kind == "dsa" and isinstance(public_key, dsa.DSAPublicKey):
            size = (public_key.parameters().parameter_numbers().q.bit_length() + 7) // 8
            public_key.verify(_raw_to_der(signature, size), octets, hash_class())
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def _raw_to_der(signature, size):
    """XML Signature encodes (EC)DSA signatures as r‖s; accept DER too, which some Java peers
    send on the Redirect binding (both encode the same (r, s), so this widens nothing)."""
    if len(signature) == 2 * size:
        return encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
    return signature
