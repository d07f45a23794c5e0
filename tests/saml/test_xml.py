"""The hardened parser and the element helpers (federation.saml.xml)."""

import pytest
from lxml import etree

from federation.saml.constants import NS_SAML, NS_SAML1, NS_SAML1P, NS_SAMLP
from federation.saml.errors import MalformedXML, XMLSecurityError
from federation.saml.xml import (
    children,
    elements_with_id,
    find_by_id,
    id_attribute_name,
    is_element,
    local_name,
    namespace_of,
    only_child,
    parse_xml,
    qname,
    reparse,
    to_bytes,
)

from . import messages


def test_parses_a_saml_message_and_round_trips_it_byte_for_byte():
    text = messages.assertion_xml().encode()
    root = parse_xml(text)
    assert is_element(root, NS_SAML, "Assertion")
    assert to_bytes(root) == text


def test_accepts_text_input_and_declared_utf8():
    root = parse_xml('<?xml version="1.0" encoding="UTF-8"?><r>é</r>')
    assert root.text == "é"


def test_text_input_declaring_another_encoding_is_refused():
    with pytest.raises(MalformedXML, match="declares encoding ISO-8859-1"):
        parse_xml('<?xml version="1.0" encoding="ISO-8859-1"?><r>é</r>')


def test_bytes_in_a_declared_encoding_are_decoded():
    assert parse_xml('<?xml version="1.0" encoding="ISO-8859-1"?><r>é</r>'.encode("latin-1")).text == "é"


@pytest.mark.parametrize("data", [b"", b"   ", b"hello", b"<a>", b"<a></b>", b"\x00\x01\x02", b"<a>&undefined;</a>"])
def test_non_xml_is_malformed(data):
    with pytest.raises(MalformedXML):
        parse_xml(data)


def test_xxe_reading_a_local_file_is_refused(fixture_bytes):
    with pytest.raises(XMLSecurityError, match="DTDs and entity declarations are not allowed"):
        parse_xml(fixture_bytes("xml/xxe-file.xml"))


def test_xxe_would_work_with_a_permissive_parser(tmp_path):
    """The attack is real: libxml2 with entity resolution on reads the file; ours refuses."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    document = f'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file://{secret}">]><r>&xxe;</r>'.encode()
    permissive = etree.XMLParser(resolve_entities=True, load_dtd=True, no_network=True)
    assert etree.fromstring(document, permissive).text == "TOP-SECRET"
    with pytest.raises(XMLSecurityError):
        parse_xml(document)


def test_parameter_entity_with_a_remote_dtd_is_refused(fixture_bytes):
    with pytest.raises(XMLSecurityError, match="DTDs"):
        parse_xml(fixture_bytes("xml/xxe-parameter-entity.xml"))


def test_external_dtd_is_refused(fixture_bytes):
    with pytest.raises(XMLSecurityError, match="DTDs"):
        parse_xml(fixture_bytes("xml/external-dtd.xml"))


def test_billion_laughs_is_refused(fixture_bytes):
    with pytest.raises(XMLSecurityError, match="DTDs"):
        parse_xml(fixture_bytes("xml/billion-laughs.xml"))


def test_doctype_in_utf16_is_refused(fixture_bytes):
    data = fixture_bytes("xml/doctype-utf16.xml")
    assert b"<!DOCTYPE" not in data  # not visible to a naive byte search
    with pytest.raises(XMLSecurityError, match="DTDs"):
        parse_xml(data)


def test_an_internal_subset_that_only_declares_an_id_attribute_is_refused(fixture_bytes):
    """A DTD can declare any attribute to be an ID, which changes what `#ref` resolves to."""
    with pytest.raises(XMLSecurityError, match="DTDs"):
        parse_xml(fixture_bytes("xml/internal-subset-no-entities.xml"))


def test_doctype_hidden_from_the_byte_scan_is_still_refused():
    """Defence in depth: in UTF-7 the DOCTYPE is invisible to a byte search, libxml2 still
    decodes it, and the check of the parsed document catches it."""
    data = (
        b'<?xml version="1.0" encoding="UTF-7"?>+ADw-+ACE-DOCTYPE r +AFs-+ADw-+ACE-ENTITY e +ACI-x+ACI-+AD4-+AF0-+AD4-<r>&e;</r>'
    )
    assert b"<!DOCTYPE" not in data and "<!DOCTYPE" in data.decode("utf-7")
    with pytest.raises(XMLSecurityError, match="DTDs"):
        parse_xml(data)


def test_oversize_input_is_refused_before_parsing():
    data = b"<r>" + b"x" * 2000 + b"</r>"
    assert parse_xml(data, max_bytes=3000).tag == "r"
    with pytest.raises(XMLSecurityError, match="larger than the limit of 1000 bytes"):
        parse_xml(data, max_bytes=1000)


def test_excessive_nesting_is_refused():
    with pytest.raises(XMLSecurityError, match="parser limits"):
        parse_xml(b"<a>" * 300 + b"</a>" * 300)


def test_a_huge_text_node_is_refused():
    with pytest.raises(XMLSecurityError, match="parser limits"):
        parse_xml(b"<a>" + b"x" * 10_000_001 + b"</a>", max_bytes=20_000_000)


def test_comments_are_dropped_so_split_text_reads_as_one_string():
    root = parse_xml(b"<NameID>alice@example.org<!---->.evil.org</NameID>")
    assert root.text == "alice@example.org.evil.org"
    assert len(root) == 0


def test_xml_id_attributes_are_not_registered_by_the_parser():
    root = parse_xml(b'<r><a xml:id="x"/></r>')
    assert root.getroottree().xpath("id('x')") == []


def test_reparse_keeps_namespace_declarations_used_only_in_attribute_values():
    root = parse_xml(b'<r xmlns:xs="urn:xs" xmlns:s="urn:s"><s:v t="xs:string">1</s:v></r>')
    copy = reparse(root[0])
    assert copy.nsmap == {"xs": "urn:xs", "s": "urn:s"}
    assert copy.getparent() is None
    assert etree.tostring(copy, method="c14n", exclusive=True, inclusive_ns_prefixes=["xs"]) == etree.tostring(
        root[0], method="c14n", exclusive=True, inclusive_ns_prefixes=["xs"]
    )


def test_id_attribute_names_by_protocol():
    assert id_attribute_name(etree.Element(qname(NS_SAML, "Assertion"))) == "ID"
    assert id_attribute_name(etree.Element(qname(NS_SAMLP, "Response"))) == "ID"
    assert id_attribute_name(etree.Element(qname(NS_SAML1, "Assertion"))) == "AssertionID"
    assert id_attribute_name(etree.Element(qname(NS_SAML1P, "Response"))) == "ResponseID"
    assert id_attribute_name(etree.Element(qname(NS_SAML1P, "Request"))) == "RequestID"


def test_find_by_id_looks_at_every_id_like_attribute_and_refuses_duplicates():
    root = parse_xml(b'<r><a ID="_1"/><b AssertionID="_2"/><c xml:id="_3"/><d Id="_4"/></r>')
    assert local_name(find_by_id(root, "_2")) == "b"
    assert local_name(find_by_id(root, "_3")) == "c"
    assert find_by_id(root, "_missing") is None
    duplicated = parse_xml(b'<r><a ID="_1"/><b><c xml:id="_1"/></b></r>')
    assert len(elements_with_id(duplicated[0], "_1")) == 2
    with pytest.raises(XMLSecurityError, match="more than one element"):
        find_by_id(duplicated, "_1")


def test_qualified_name_helpers():
    root = parse_xml(messages.assertion_xml())
    subject = only_child(root, NS_SAML, "Subject")
    assert namespace_of(subject) == NS_SAML
    assert [local_name(child) for child in children(subject, NS_SAML, "NameID")] == ["NameID"]
    assert only_child(root, NS_SAML, "Advice", required=False) is None
    with pytest.raises(MalformedXML, match="has no Advice"):
        only_child(root, NS_SAML, "Advice")
    statement = only_child(root, NS_SAML, "AttributeStatement")
    with pytest.raises(MalformedXML, match="more than one Attribute"):
        only_child(statement, NS_SAML, "Attribute")


def test_reparse_ignores_the_tail_text_of_the_element():
    root = parse_xml(b"<r><a>inner</a>tail text<b/></r>")
    assert to_bytes(reparse(root[0])) == b"<a>inner</a>"
