"""Fixtures for the SP runtime tests: a real activated SAML2 SP→IdP partnership (keystore, entities, the
partnership made and activated through the services), a pysaml2 IdP that knows our SP, and helpers that run the
browser's part through Django's test client.

pysaml2 (xmlsec1 backend) is the independent IdP. When it must answer our ArtifactResolve over HTTP, it runs behind
a small WSGI server on a loopback port in a thread (`LoopbackIdP`)."""

import base64
import functools
import ssl
import threading
import warnings
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cryptography.utils import CryptographyDeprecationWarning

from entities import services as keystore
from entities.models import Binding, EndpointKind, EntityType, Location
from federation import runtime_paths
from federation.models import TraceLine
from federation.saml import constants as C
from federation.saml.encryption import encrypt_assertion
from federation.saml.signing import sign
from federation.saml.xml import children, to_bytes
from partnerships import services as partnership_services
from tests.partnership_fixtures import endpoint, entity
from tests.saml import messages
from tests.saml.credentials import make_credential

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_ARTIFACT, BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
    from saml2.config import IdPConfig
    from saml2.pack import make_soap_enveloped_saml_thingy
    from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
    from saml2.server import Server

XMLSEC1 = "/usr/bin/xmlsec1"

SP_ENTITY_ID = "https://sp.example.org/sp"
SP_BASE = "https://sp.example.org"
ACS_URL = SP_BASE + runtime_paths.SAML2_ASSERTION_CONSUMER
ACS_PATH = runtime_paths.SAML2_ASSERTION_CONSUMER
AUTHN_PATH = runtime_paths.SAML2_AUTHN_REQUEST
CHECK_PATH = runtime_paths.SAML2_SP_SESSION_CHECK
IDP_ENTITY_ID = "https://idp.example.org/idp"
IDP_SSO = "https://idp.example.org/affwebservices/public/saml2sso"
IDP_ARTIFACT = "https://idp.example.org/affwebservices/saml2artifactresolution"
TARGET = "https://app.example.org/welcome"
# Attribute names pysaml2 passes through unchanged (it renames the ones its attribute maps know, such as mail and sn).
IDENTITY = {"principalName": ["alice"], "groups": ["admins", "staff"], "userEmail": ["alice@example.org"]}
PASSWORD_PROTECTED = messages.PASSWORD_PROTECTED_TRANSPORT


@functools.cache
def keys():
    """(IdP key, SP key): fresh RSA-2048 credentials, made once per test process."""
    return make_credential("rsa", "idp.example.org"), make_credential("rsa", "sp.example.org")


@dataclass
class World:
    """An activated partnership and what the tests need around it."""

    partnership: object
    idp_key: object
    sp_key: object

    def reactivate(self, **settings):
        """Deactivate, change settings (per step), activate again."""
        partnership_services.deactivate(self.partnership)
        merged = {step: dict(values) for step, values in self.partnership.settings.items()}
        for step, values in settings.items():
            merged.setdefault(step, {}).update(values)
        partnership = partnership_services.save_partnership(
            kind=self.partnership.kind,
            name=self.partnership.name,
            local_entity=self.partnership.local_entity,
            remote_entity=self.partnership.remote_entity,
            directories=partnership_services.directory_names(self.partnership),
            settings=merged,
            partnership=self.partnership,
        )
        assert partnership.state != "incomplete", partnership.problems
        partnership_services.activate(partnership)
        self.partnership = partnership
        return self


def clear_runtime_caches():
    """Per-process caches keyed by database IDs: a rolled-back test database hands the same IDs out again."""
    from federation import sp_runtime
    from partnerships import runtime

    runtime.load_snapshot.cache_clear()
    sp_runtime._key_cache.clear()
    sp_runtime._tls_contexts.clear()


def make_world(idp_key, sp_key, *, settings=None, artifact_url=IDP_ARTIFACT, directories=None, name="DemoSP"):
    """Keystore entries, the two entities and partnership `name` (the catalogue's defaults, what is given here, and
    `settings` per step), saved and activated through the services. Plain function: a subprocess can call it too."""
    from federation.directories import EMBEDDED_NAME

    clear_runtime_caches()

    keystore.import_key_pair("sp-key", sp_key.key_pem + sp_key.cert_pem)
    keystore.import_trusted_certificate("idp-cert", idp_key.cert_pem)
    local = entity(
        "sp-local",
        Location.LOCAL,
        EntityType.SAML2_SP,
        entity_id=SP_ENTITY_ID,
        base_url=SP_BASE,
        signing_key="sp-key",
        decryption_key="sp-key",
    )
    remote = entity(
        "idp-partner",
        Location.REMOTE,
        EntityType.SAML2_IDP,
        [
            endpoint(EndpointKind.SSO, Binding.HTTP_REDIRECT, IDP_SSO),
            endpoint(EndpointKind.SSO, Binding.HTTP_POST, IDP_SSO),
            endpoint(EndpointKind.ARTIFACT_RESOLUTION, Binding.SOAP, artifact_url, index=0, is_default=True),
        ],
        entity_id=IDP_ENTITY_ID,
        verification_certificate="idp-cert",
        name_id_formats=[C.NAMEID_PERSISTENT],
    )
    directories = directories or (EMBEDDED_NAME,)
    base = {
        "user_identification": {"search_specs": [{"directory": d, "search_spec": "username=%s"} for d in directories]},
        "sso_slo": {"sso_bindings": ["post", "artifact"], "authn_request_bindings": ["redirect", "post"]},
        "signature": {"verification_certificate": "idp-cert", "signing_key": "sp-key", "decryption_key": "sp-key"},
        "application": {"target": TARGET, "allowed_targets": [{"url": "https://app.example.org/"}]},
    }
    for step, values in (settings or {}).items():
        base.setdefault(step, {}).update(values)
    partnership = partnership_services.save_partnership(
        kind="saml2_sp_idp", name=name, local_entity=local, remote_entity=remote, directories=list(directories), settings=base
    )
    assert partnership.state != "incomplete", partnership.problems
    partnership_services.activate(partnership)
    return World(partnership, idp_key, sp_key)


def default_world(django_user_model):
    """Partnership DemoSP (SAML2 SP → IdP) over the embedded directory, where user alice exists."""
    django_user_model.objects.create_user("alice", email="alice@example.org", password="not-used-here-1")
    return make_world(*keys())


# --- The pysaml2 IdP -------------------------------------------------------------------------------------------------


def sp_metadata(sp_key):
    key_info = (
        f"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{sp_key.cert_base64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
    )
    return (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
        f'entityID="{SP_ENTITY_ID}">'
        '<md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true" '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'<md:KeyDescriptor use="signing">{key_info}</md:KeyDescriptor>'
        f'<md:KeyDescriptor use="encryption">{key_info}</md:KeyDescriptor>'
        "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>"
        f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location="{ACS_URL}" index="0" isDefault="true"/>'
        f'<md:AssertionConsumerService Binding="{BINDING_HTTP_ARTIFACT}" Location="{ACS_URL}" index="1"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>"
    )


def pysaml2_idp(directory, idp_key, sp_key, artifact_url=IDP_ARTIFACT, want_signed_requests=False):
    key_file, cert_file = idp_key.write(directory, "pysaml2-idp")
    config = IdPConfig()
    config.load(
        {
            "entityid": IDP_ENTITY_ID,
            "xmlsec_binary": XMLSEC1,
            "crypto_backend": "xmlsec1",
            "key_file": key_file,
            "cert_file": cert_file,
            "metadata": {"inline": [sp_metadata(sp_key)]},
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(IDP_SSO, BINDING_HTTP_REDIRECT), (IDP_SSO, BINDING_HTTP_POST)],
                        "artifact_resolution_service": [(artifact_url, BINDING_SOAP)],
                    },
                    "policy": {"default": {"lifetime": {"minutes": 5}, "name_form": C.ATTRNAME_BASIC}},
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "want_authn_requests_signed": want_signed_requests,
                }
            },
            "accepted_time_diff": 60,
            "allow_unknown_attributes": True,
        }
    )
    return Server(config=config)


def idp_response(
    server,
    in_response_to=None,
    *,
    sign_response=False,
    sign_assertion=True,
    name_id="alice",
    identity=None,
    encrypt_for=None,
    authn_class=PASSWORD_PROTECTED,
    destination=ACS_URL,
):
    """A Response from the pysaml2 IdP (RSA-SHA256), as XML bytes. `in_response_to` None: IdP-initiated."""
    extra = {}
    if encrypt_for is not None:
        extra = {"encrypt_assertion": True, "encrypt_cert_assertion": encrypt_for.cert_pem.decode()}
    text = server.create_authn_response(
        identity=identity or IDENTITY,
        in_response_to=in_response_to,
        destination=destination,
        sp_entity_id=SP_ENTITY_ID,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=name_id),
        userid=name_id,
        authn={"class_ref": authn_class, "authn_auth": IDP_ENTITY_ID},
        sign_response=sign_response,
        sign_assertion=sign_assertion,
        sign_alg=C.RSA_SHA256,
        digest_alg=C.SHA256,
        **extra,
    )
    return str(text).encode()


def core_response(idp_key, in_response_to=None, *, sign_assertion=True, sign_response=False, encrypt_for=None, **kwargs):
    """A Response shaped like real IdPs send (tests/saml/messages.py) with our entity IDs, signed (and encrypted
    with AES-256-GCM / RSA-OAEP) by the protocol core."""
    kwargs.setdefault("audience", SP_ENTITY_ID)
    kwargs.setdefault("recipient", ACS_URL)
    kwargs.setdefault("destination", ACS_URL)
    kwargs.setdefault("issuer", IDP_ENTITY_ID)
    root = messages.response(in_response_to=in_response_to, **kwargs)
    assertion = children(root, C.NS_SAML, "Assertion")[0]
    if sign_assertion:
        sign(assertion, idp_key.key, idp_key.certificate)
    if encrypt_for is not None:
        encrypt_assertion(assertion, encrypt_for.certificate)
    if sign_response:
        sign(root, idp_key.key, idp_key.certificate)
    return to_bytes(root)


def b64(xml):
    return base64.b64encode(xml).decode()


# --- The browser's part ----------------------------------------------------------------------------------------------


def start(client, **params):
    """GET saml2authnrequest; returns (response, AuthnRequest ID or None)."""
    response = client.get(AUTHN_PATH, {"ProviderID": IDP_ENTITY_ID, **params})
    return response, request_id_of(response)


def request_id_of(response):
    """The ID of the AuthnRequest in a Redirect-binding answer (302 to the IdP)."""
    if response.status_code != 302:
        return None
    from federation.saml.bindings import inflate_decode
    from federation.saml.xml import parse_xml

    query = parse_qs(urlsplit(response["Location"]).query)
    if "SAMLRequest" not in query:
        return None
    return parse_xml(inflate_decode(query["SAMLRequest"][0])).get("ID")


def post_response(client, xml, relay_state=None):
    data = {"SAMLResponse": b64(xml)}
    if relay_state is not None:
        data["RelayState"] = relay_state
    return client.post(ACS_PATH, data)


def sso(client, server, **response_options):
    """SP-initiated SSO end to end: our AuthnRequest, pysaml2's answer, our ACS. Returns the ACS response."""
    _, request_id = start(client)
    return post_response(client, idp_response(server, request_id, **response_options))


def trace_lines(checkpoint=None, containing=""):
    lines = TraceLine.objects.all()
    if checkpoint:
        lines = lines.filter(checkpoint=checkpoint)
    if containing:
        lines = lines.filter(message__contains=containing)
    return list(lines.values_list("message", flat=True))


# --- A pysaml2 artifact resolution service on a loopback port --------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass

    def get_environ(self):
        environ = super().get_environ()
        if hasattr(self.connection, "getpeercert"):
            environ["tls.client_certificate"] = self.connection.getpeercert()
        return environ


def tls_server_context(directory, client_certificate_pem):
    """A TLS server context for 127.0.0.1 (a throw-away CA's certificate, tests.slapd makes it) that requires a
    client certificate: the one given. Returns (context, CA PEM for the client to trust)."""
    from tests.slapd import _write_certificates

    _write_certificates(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem", directory / "server-key.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=client_certificate_pem.decode())
    return context, (directory / "ca.pem").read_bytes()


class LoopbackIdP:
    """The pysaml2 IdP's artifact resolution service over HTTP on 127.0.0.1 (a thread), checking Basic
    authentication when `basic` = (user, password) is given. It signs its ArtifactResponse (over plain http our SP
    requires that), as pysaml2 does when asked, after the message is in (pysaml2 would sign it before)."""

    def __init__(self, directory, idp_key, sp_key, basic=None, sign_answer=True, tls=None):
        self.basic = basic
        self.sign_answer = sign_answer
        self.requests = []
        self.server = make_server("127.0.0.1", 0, self.app, server_class=WSGIServer, handler_class=_QuietHandler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.server_port}/ars"
        self.idp = pysaml2_idp(directory, idp_key, sp_key, artifact_url=self.url)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def artifact_for(self, response_xml):
        from saml2.samlp import response_from_string

        return self.idp.use_artifact(response_from_string(response_xml.decode()), 0)

    def app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        self.requests.append(
            {
                "authorization": environ.get("HTTP_AUTHORIZATION"),
                "body": body,
                "client_certificate": environ.get("tls.client_certificate"),
            }
        )
        if self.basic is not None:
            expected = "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            if environ.get("HTTP_AUTHORIZATION") != expected:
                start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="ars"')])
                return [b"authentication required"]
        resolve = self.idp.parse_artifact_resolve(body.decode())
        answer = self.idp.create_artifact_response(
            resolve, resolve.artifact.text, bindings=[BINDING_SOAP], sign=False, issuer=self.idp._issuer()
        )
        if self.sign_answer:
            answer = self.idp.sign(answer, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256)
        else:
            answer = str(answer)
        envelope = make_soap_enveloped_saml_thingy(answer)
        envelope = envelope if isinstance(envelope, bytes) else envelope.encode()
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
        return [envelope]
