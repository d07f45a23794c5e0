"""Metadata for the import tests, made by the real peers: pysaml2 (`saml2.metadata.entity_descriptor`
from a pysaml2 configuration built here, aggregates signed by its xmlsec1 backend), python3-saml
(`OneLogin_Saml2_Metadata.builder`, `sign_metadata`), and our own signing core; plus the committed
hand-written SAML 1.1 / WS-Federation samples and attack files under tests/fixtures/metadata/."""

import re
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning
from lxml import etree

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from onelogin.saml2.metadata import OneLogin_Saml2_Metadata
    from saml2 import BINDING_HTTP_ARTIFACT, BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
    from saml2 import md as saml2_md
    from saml2.config import IdPConfig, SPConfig
    from saml2.metadata import entities_descriptor, entity_descriptor
    from saml2.sigver import security_context

from federation.saml.constants import ECDSA_SHA256, RSA_SHA256, SHA256
from federation.saml.signing import sign
from tests.saml.credentials import make_credential

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metadata"
XMLSEC1 = "/usr/bin/xmlsec1"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def fixture(name):
    return (FIXTURES / name).read_bytes()


def _config(directory, credential, name, encryption=None):
    key_file, cert_file = credential.write(directory, name)
    config = {
        "xmlsec_binary": XMLSEC1,
        "crypto_backend": "xmlsec1",
        "key_file": key_file,
        "cert_file": cert_file,
        "organization": {"name": "Example", "display_name": [(f"{name} display", "en")], "url": "https://example.org/"},
        "contact_person": [{"contact_type": "technical", "email_address": "ops@example.org"}],
    }
    if encryption is not None:
        enc_key, enc_cert = encryption.write(directory, name + "-enc")
        config["encryption_keypairs"] = [{"key_file": enc_key, "cert_file": enc_cert}]
    return config


def pysaml2_sp(
    directory,
    credential,
    entity_id="https://sp.example.org/sp",
    *,
    encryption=None,
    host="sp.example.org",
    valid_hours=None,
    name_id_formats=(PERSISTENT, TRANSIENT),
):
    """SP metadata as pysaml2 publishes it: ACS (POST index 0, Artifact index 1), SLO (Redirect),
    a signing certificate and, with `encryption`, an encryption one."""
    config = _config(directory, credential, f"sp-{host}", encryption)
    config.update(
        {
            "entityid": entity_id,
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [
                            (f"https://{host}/acs/post", BINDING_HTTP_POST),
                            (f"https://{host}/acs/artifact", BINDING_HTTP_ARTIFACT),
                        ],
                        "single_logout_service": [(f"https://{host}/slo", BINDING_HTTP_REDIRECT)],
                    },
                    "name_id_format": list(name_id_formats),
                    "want_assertions_signed": True,
                }
            },
        }
    )
    if valid_hours:
        config["valid_for"] = valid_hours
    sp_config = SPConfig()
    sp_config.load(config)
    return _clean(str(entity_descriptor(sp_config)))


def pysaml2_idp(directory, credential, entity_id="https://idp.example.org/idp", *, host="idp.example.org"):
    """IdP metadata as pysaml2 publishes it: SSO (Redirect, POST), SLO, artifact resolution (SOAP)."""
    config = _config(directory, credential, f"idp-{host}")
    config.update(
        {
            "entityid": entity_id,
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [
                            (f"https://{host}/sso/redirect", BINDING_HTTP_REDIRECT),
                            (f"https://{host}/sso/post", BINDING_HTTP_POST),
                        ],
                        "single_logout_service": [(f"https://{host}/slo", BINDING_HTTP_REDIRECT)],
                        "artifact_resolution_service": [(f"https://{host}/ars", BINDING_SOAP)],
                    },
                    "name_id_format": [PERSISTENT, EMAIL],
                }
            },
        }
    )
    idp_config = IdPConfig()
    idp_config.load(config)
    return _clean(str(entity_descriptor(idp_config)))


def python3saml_sp(
    credential, entity_id="https://p3.example.org/metadata", *, host="p3.example.org", valid_until=None, cache_duration=None
):
    """SP metadata from python3-saml's builder, with its certificate for signing and encryption."""
    sp = {
        "entityId": entity_id,
        "assertionConsumerService": {"url": f"https://{host}/acs", "binding": BINDING_HTTP_POST},
        "singleLogoutService": {"url": f"https://{host}/sls", "binding": BINDING_HTTP_REDIRECT},
        "NameIDFormat": EMAIL,
    }
    metadata = OneLogin_Saml2_Metadata.builder(
        sp,
        authnsign=True,
        wsign=True,
        valid_until=valid_until,
        cache_duration=cache_duration,
        organization={"en-US": {"name": "p3", "displayname": "Python3 SAML SP", "url": f"https://{host}/"}},
    )
    metadata = OneLogin_Saml2_Metadata.add_x509_key_descriptors(metadata, credential.cert_base64, add_encryption=True)
    return metadata.encode() if isinstance(metadata, str) else metadata


def python3saml_sign(xml, credential):
    """Sign a metadata document (EntityDescriptor or EntitiesDescriptor) with python3-saml."""
    signed = OneLogin_Saml2_Metadata.sign_metadata(xml.decode(), credential.key_pem.decode(), credential.cert_pem.decode())
    return signed.encode() if isinstance(signed, str) else signed


def _clean(text):
    """Without the XML declaration, so the document can be placed inside an aggregate."""
    data = text.encode() if isinstance(text, str) else text
    return re.sub(rb"^\s*<\?xml[^>]*\?>\s*", b"", data)


def aggregate(*entities, name="urn:example:federation", ident="federation-1", valid_until=None, cache_duration=None, prefix="md"):
    """An EntitiesDescriptor holding the given EntityDescriptor documents (bytes), as text, so the
    entities keep their own namespace prefixes."""
    attributes = f' Name="{name}" ID="{ident}"'
    if valid_until is not None:
        attributes += f' validUntil="{valid_until:%Y-%m-%dT%H:%M:%SZ}"'
    if cache_duration:
        attributes += f' cacheDuration="{cache_duration}"'
    open_tag = f'<{prefix}:EntitiesDescriptor xmlns:{prefix}="{MD}"{attributes}>\n'.encode()
    body = b"\n".join(_clean(entity) for entity in entities)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + open_tag + body + f"\n</{prefix}:EntitiesDescriptor>\n".encode()


def core_sign(xml, credential):
    """Sign the document's root with federation.saml.signing.sign (enveloped, RSA/ECDSA-SHA256)."""
    root = etree.fromstring(xml)
    if not root.get("ID"):
        root.set("ID", "md-" + re.sub(r"[^A-Za-z0-9]", "", root.get("entityID", "x"))[:40])
    algorithm = ECDSA_SHA256 if isinstance(credential.key, ec.EllipticCurvePrivateKey) else RSA_SHA256
    sign(root, credential.key, credential.certificate, algorithm)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def pysaml2_signed_aggregate(directory, credential, *entities, name="urn:example:pysaml2-federation", ident="pysaml2-agg"):
    """An aggregate signed by pysaml2 (the xmlsec1 tool): an independent signer."""
    config = SPConfig()
    config.load(_config(directory, credential, "aggregate-signer") | {"entityid": "https://signer.example.org/"})
    descriptors = [saml2_md.entity_descriptor_from_string(_clean(entity).decode()) for entity in entities]
    _entities, xml = entities_descriptor(
        descriptors, 0, name, ident, True, security_context(config), sign_alg=RSA_SHA256, digest_alg=SHA256
    )
    return xml.encode() if isinstance(xml, str) else xml


def in_hours(hours):
    return datetime.now(UTC) + timedelta(hours=hours)


def entity_xml(entity_id, *, kind="sp", host=None, cert_base64="", valid_until=None, extra="", uses=("",)):
    """A small hand-built EntityDescriptor (bytes) for aggregates: an SP with one POST ACS or an IdP
    with one Redirect SSO; one KeyDescriptor per `uses` item ("" = no use attribute)."""
    host = host or re.sub(r"[^a-z0-9.-]", "", entity_id.split("//")[-1].split("/")[0]) or "example.org"
    until = f' validUntil="{valid_until:%Y-%m-%dT%H:%M:%SZ}"' if valid_until else ""
    keys = "".join(
        f"<md:KeyDescriptor{f' use={chr(34)}{use}{chr(34)}' if use else ''}><ds:KeyInfo><ds:X509Data>"
        f"<ds:X509Certificate>{cert_base64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        for use in uses
        if cert_base64
    )
    if kind == "sp":
        role = (
            f'<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{keys}{extra}'
            f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location="https://{host}/acs" index="0" isDefault="true"/>'
            "</md:SPSSODescriptor>"
        )
    else:
        role = (
            f'<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{keys}{extra}'
            f'<md:SingleSignOnService Binding="{BINDING_HTTP_REDIRECT}" Location="https://{host}/sso"/>'
            "</md:IDPSSODescriptor>"
        )
    return (
        f'<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
        f'entityID="{entity_id}"{until}>{role}</md:EntityDescriptor>'
    ).encode()


# ---------------------------------------------------------------- a real HTTP(S) server on loopback


class MetadataServer:
    """An HTTP server on 127.0.0.1 (a thread) serving metadata as partners and federations do, and
    misbehaving on purpose:

    * `serve(path, body, etag=...)` documents, with ETag / Last-Modified and 304 for a matching
      If-None-Match;
    * /stall: accepts the request and sends nothing for `stall_seconds` (a timeout);
    * /trickle: headers, then one byte per second (a total-time timeout);
    * /error: HTTP 500; /redirect-to-file: a redirect to file:///etc/passwd;
    * /huge: announces 60 MB in Content-Length; /huge-unannounced: streams 60 MB without a length.
    With `tls` (an ssl.SSLContext for a server certificate) it is an HTTPS server."""

    def __init__(self, tls=None):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.documents = {}
        self.requests = []
        self.stall_seconds = 5.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                server.requests.append((self.path, dict(self.headers)))
                try:
                    self._answer()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _answer(self):
                import time

                if self.path == "/stall":
                    time.sleep(server.stall_seconds)
                    self.close_connection = True
                    return
                if self.path == "/trickle":
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    for _ in range(int(server.stall_seconds) + 5):
                        self.wfile.write(b"<")
                        self.wfile.flush()
                        time.sleep(1)
                    return
                if self.path == "/error":
                    body = b"<html>Internal Server Error</html>"
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if self.path == "/redirect-to-file":
                    self.send_response(302)
                    self.send_header("Location", "file:///etc/passwd")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path in ("/huge", "/huge-unannounced"):
                    size = 60 * 1024 * 1024
                    self.send_response(200)
                    if self.path == "/huge":
                        self.send_header("Content-Length", str(size))
                    else:
                        self.close_connection = True
                    self.end_headers()
                    block = b"<!-- padding -->" * 4096
                    sent = 0
                    while sent < size:
                        self.wfile.write(block)
                        sent += len(block)
                    return
                document = server.documents.get(self.path)
                if document is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, etag = document
                if etag and self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.send_header("Content-Length", str(len(body)))
                if etag:
                    self.send_header("ETag", etag)
                    self.send_header("Last-Modified", "Mon, 01 Jan 2029 00:00:00 GMT")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, path, body, etag=""):
        self.documents[path] = (body, etag)
        return self.url(path)

    def url(self, path):
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def xmlsec1_signed_aggregate(directory, credential, body, prefix_list="xs"):
    """An aggregate signed by the xmlsec1 tool from a template whose exc-c14n transform carries an
    InclusiveNamespaces PrefixList (`body`: the EntityDescriptors as bytes)."""
    import subprocess

    template = (
        (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<md:EntitiesDescriptor xmlns:md="{MD}" '
            'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" '
            'xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'ID="prefix-list-federation" Name="urn:example:prefix-list">\n'
            "<ds:Signature><ds:SignedInfo>"
            '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
            '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>'
            '<ds:Reference URI="#prefix-list-federation"><ds:Transforms>'
            '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
            f'<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"><ec:InclusiveNamespaces PrefixList="{prefix_list}"/></ds:Transform>'
            '</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/>'
            "</ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature>\n"
        ).encode()
        + body
        + b"\n</md:EntitiesDescriptor>\n"
    )
    directory = Path(directory)
    key_file, cert_file = credential.write(directory, "xmlsec1-signer")
    source, target = directory / "template.xml", directory / "signed.xml"
    source.write_bytes(template)
    subprocess.run(
        [
            XMLSEC1,
            "--sign",
            "--privkey-pem",
            f"{key_file},{cert_file}",
            "--id-attr:ID",
            f"{MD}:EntitiesDescriptor",
            "--output",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return target.read_bytes()


# Credentials shared by the metadata tests (this module is registered as a pytest plugin in conftest).


@pytest.fixture(scope="module")
def fed():
    """The federation operator that signs aggregates."""
    return make_credential("rsa", "federation signer")


@pytest.fixture(scope="module")
def sp_cred():
    return make_credential("rsa", "sp.example.org")


@pytest.fixture(scope="module")
def enc_cred():
    return make_credential("rsa", "sp.example.org encryption")


@pytest.fixture(scope="module")
def idp_cred():
    return make_credential("ec", "idp.example.org")
