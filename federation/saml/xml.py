"""Hardened XML parsing and the small element helpers every message module uses.

`parse_xml` is the only way inbound XML enters the protocol core. It refuses any document type
declaration (so no DTD, no entity declarations, no external references: XXE and "billion laughs"
are stopped before libxml2 looks at them), never touches the network, keeps libxml2's default
limits on depth and text size, and caps the input size. It also drops comments while parsing, so
that text split by a comment (`user@example.com<!---->.evil.org`) reads back as one string and
cannot be truncated by a consumer that takes only the first text node.
"""

import re
import threading

from lxml import etree

from .constants import MAX_MESSAGE_BYTES, NS_SAML1, NS_SAML1P, NS_XML
from .errors import MalformedXML, XMLSecurityError

# Attribute local names that act as XML IDs in the messages we handle: SAML 2.0 and metadata
# (`ID`), SAML 1.1 (`AssertionID`, `ResponseID`, `RequestID`), XML Signature/Encryption and WS-*
# (`Id`, `wsu:Id`), plus `id` and `xml:id`. ID uniqueness is checked across all of them.
ID_ATTRIBUTE_NAMES = frozenset({"ID", "Id", "id", "AssertionID", "ResponseID", "RequestID"})
XML_ID = f"{{{NS_XML}}}id"

_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")
_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_FORBIDDEN_MARKUP = tuple(
    marker.encode(codec) for marker in ("<!DOCTYPE", "<!ENTITY") for codec in ("ascii", "utf-16-le", "utf-16-be")
)
_LIMIT_MESSAGES = ("Excessive depth", "Resource limit", "XML_PARSE_HUGE", "Huge input lookup", "Maximum entity")

_parsers = threading.local()


def _parser():
    """One parser per thread (lxml parsers are not thread-safe), configured once."""
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            collect_ids=False,
        )
        _parsers.parser = parser
    return parser


def parse_xml(data, max_bytes=MAX_MESSAGE_BYTES):
    """Parse an inbound XML document and return its root element.

    `data` is bytes (any encoding the XML declaration names) or str (parsed as UTF-8 text).
    Raises `XMLSecurityError` for a DOCTYPE, entity declarations, input over `max_bytes`, or
    documents beyond libxml2's depth/size limits; `MalformedXML` for anything that is not a
    well-formed XML document.
    """
    if isinstance(data, str):
        match = _DECLARED_ENCODING.match(data[:200].encode("utf-8", "replace"))
        if match and match.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
            raise MalformedXML(f"text input declares encoding {match.group(1).decode()}; pass the original bytes instead")
        data = data.encode("utf-8")
    elif not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse_xml needs bytes or str")
    data = bytes(data)
    if len(data) > max_bytes:
        raise XMLSecurityError(f"XML input is larger than the limit of {max_bytes} bytes")
    if not data.strip():
        raise MalformedXML("empty input is not XML")
    for marker in _FORBIDDEN_MARKUP:
        if marker in data:
            raise XMLSecurityError("DTDs and entity declarations are not allowed")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as error:
        message = str(error)
        if any(text in message for text in _LIMIT_MESSAGES):
            raise XMLSecurityError(f"XML input exceeds the parser limits: {message}") from None
        raise MalformedXML(f"not well-formed XML: {message}") from None
    except ValueError as error:
        raise MalformedXML(f"not well-formed XML: {error}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XMLSecurityError("DTDs and entity declarations are not allowed")
    return root


def reparse(element):
    """A self-contained copy of `element` as the root of a new document.

    Serialising keeps every namespace declaration in scope (also ones used only inside attribute
    values, such as `xsi:type="xs:string"`), so exclusive canonicalisation of the copy is
    byte-identical to that of the original; a plain deepcopy would drop unused declarations.
    """
    return etree.fromstring(etree.tostring(element, with_tail=False), _parser_keeping_comments())


def _parser_keeping_comments():
    parser = getattr(_parsers, "verbatim", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=False, collect_ids=False
        )
        _parsers.verbatim = parser
    return parser


def to_bytes(element, xml_declaration=False):
    """Serialise an element (and its subtree) as UTF-8, exactly as it is: no pretty-printing,
    which would break signatures."""
    return etree.tostring(element, encoding="UTF-8", xml_declaration=xml_declaration)


# --- Qualified names -------------------------------------------------------------------------


def qname(namespace, local):
    """Clark notation, `{namespace}local`, as lxml uses for tags and attributes."""
    return f"{{{namespace}}}{local}" if namespace else local


def local_name(element):
    return etree.QName(element).localname


def namespace_of(element):
    return etree.QName(element).namespace


def is_element(node, namespace, local):
    """True when `node` is an element with this namespace and local name (comments, PIs and
    entities are never elements here)."""
    return isinstance(node.tag, str) and node.tag == qname(namespace, local)


def children(element, namespace, local):
    """Direct child elements with this qualified name, in document order."""
    return [child for child in element if is_element(child, namespace, local)]


def child_elements(element):
    """Direct child elements, skipping comments and processing instructions."""
    return [child for child in element if isinstance(child.tag, str)]


def only_child(element, namespace, local, required=True):
    """The single direct child with this name; `MalformedXML` if there are several (or none and
    `required`)."""
    found = children(element, namespace, local)
    if len(found) > 1:
        raise MalformedXML(f"{local_name(element)} has more than one {local}")
    if not found:
        if required:
            raise MalformedXML(f"{local_name(element)} has no {local}")
        return None
    return found[0]


# --- IDs -------------------------------------------------------------------------------------


def id_attribute_name(element):
    """The name of the attribute that carries the ID a signature refers to: `AssertionID`,
    `ResponseID` or `RequestID` for SAML 1.1, `ID` for SAML 2.0, metadata and anything else."""
    tag = etree.QName(element)
    if tag.namespace == NS_SAML1 and tag.localname == "Assertion":
        return "AssertionID"
    if tag.namespace == NS_SAML1P and tag.localname == "Response":
        return "ResponseID"
    if tag.namespace == NS_SAML1P and tag.localname == "Request":
        return "RequestID"
    return "ID"


def is_xml_id(value):
    """True for a syntactically valid XML ID (an NCName limited to ASCII, which is all SAML
    products emit), so it can be used in a same-document reference `#value`."""
    return bool(value) and bool(_NCNAME.match(value))


def _is_id_attribute(name):
    return name == XML_ID or etree.QName(name).localname in ID_ATTRIBUTE_NAMES


_ATTRIBUTES_EQUAL_TO = etree.XPath("//@*[. = $value]")


def elements_with_id(root, value):
    """Every element in `root`'s document that carries `value` in an ID-like attribute."""
    found = []
    for attribute in _ATTRIBUTES_EQUAL_TO(root.getroottree(), value=value):
        element = attribute.getparent()
        if _is_id_attribute(attribute.attrname) and element not in found:
            found.append(element)
    return found


def find_by_id(root, value):
    """The element whose ID is `value`, or None; `XMLSecurityError` when the ID is not unique in
    the document (a duplicated ID is how signature-wrapping attacks hide a second element)."""
    found = elements_with_id(root, value)
    if len(found) > 1:
        raise XMLSecurityError(f"ID {value!r} is used by more than one element")
    return found[0] if found else None
