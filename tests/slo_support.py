"""Test support for single logout (tests/test_slo_runtime*.py): real activated partnerships made through the
services, real pysaml2 peers (SPs logging in at our IdP and out again, an IdP logging users out of our SP), a pysaml2
SP that answers SOAP logout on a loopback port, and the browser's part through Django's test client.

Builds on the IdP and SP runtime test support (tests/idp_runtime_support.py, tests/sp_runtime_support.py) for the
user, the login form and the pysaml2 IdP's responses; adds what single logout needs: several SPs in one session and
SLO service URLs on every peer. Test data only."""

import threading
import warnings
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit
from wsgiref.simple_server import WSGIServer, make_server

from cryptography.utils import CryptographyDeprecationWarning

from entities import services as keystore
from entities.models import Binding, EndpointKind, EntityType, Location
from federation import runtime_paths
from federation.models import TraceLine
from federation.saml import constants as C
from partnerships import services as partnership_services
from tests import idp_runtime_support as idp_support
from tests import sp_runtime_support as sp_support
from tests.partnership_fixtures import endpoint, entity
from tests.saml.credentials import make_credential
from tests.saml.peers import XMLSEC1

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
    from saml2.client import Saml2Client
    from saml2.config import IdPConfig, SPConfig
    from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
    from saml2.server import Server

SLO_PATH = runtime_paths.SAML2_SLO
SLO_SOAP_PATH = runtime_paths.SAML2_SLO_SOAP

# --- our IdP with several SPs ----------------------------------------------------------------------------------------

IDP_BASE = "https://idp.slo.test"
IDP_ENTITY_ID = IDP_BASE + "/idp"
IDP_SSO = IDP_BASE + runtime_paths.SAML2_SSO
IDP_SLO = IDP_BASE + runtime_paths.SAML2_SLO
IDP_SLO_SOAP = IDP_BASE + runtime_paths.SAML2_SLO_SOAP
IDP_CONFIRM = IDP_BASE + "/signed-out.html"

_CREDENTIALS = {}


def credential(name):
    """One key pair per name and test process (RSA key generation is slow)."""
    if name not in _CREDENTIALS:
        _CREDENTIALS[name] = make_credential("rsa", name)
    return _CREDENTIALS[name]


@dataclass
class SpPeer:
    """A remote SP of our IdP: its partnership and the pysaml2 client playing it (None for an SP that is only an
    address, such as one that is down)."""

    name: str
    entity_id: str
    acs: str
    slo: str
    soap: str
    partnership: object
    key: object
    client: object = None
    name_id: object = None  # the pysaml2 NameID of alice at this SP, once she signed on


@dataclass
class IdpSite:
    local: object
    signing_certificate_pem: str
    user: object
    sps: dict = field(default_factory=dict)

    @property
    def cert_base64(self):
        return "".join(line for line in self.signing_certificate_pem.splitlines() if not line.startswith("-----"))


def build_idp(django_user_model):
    """Our IdP: a signing key pair, the local entity and user alice in the embedded directory."""
    signing = keystore.generate_key_pair("slo-idp-signing", "rsa2048", "CN=idp.slo.test", 365, [])
    local = entity(
        "slo-idp", Location.LOCAL, EntityType.SAML2_IDP, signing_key="slo-idp-signing", base_url=IDP_BASE, entity_id=IDP_ENTITY_ID
    )
    return IdpSite(local, signing.certificate_pem, idp_support.make_alice(django_user_model))


def add_sp(site, make_partnership, name, *, slo_bindings=("redirect", "post"), soap_url=None, settings=None, activate=True):
    """A remote SP `name` (entity https://<name>.slo.test/sp) with a POST ACS and SLO service URLs for
    `slo_bindings`, and the activated IdP→SP partnership idp-to-<name> with single logout on."""
    base = f"https://{name}.slo.test"
    key = credential(name)
    keystore.import_trusted_certificate(f"{name}-cert", key.cert_pem)
    peer = SpPeer(name, base + "/sp", base + "/acs", base + "/slo", soap_url or base + "/slo/soap", None, key)
    rows = [endpoint(EndpointKind.ACS, Binding.HTTP_POST, peer.acs, index=0, is_default=True)]
    if "redirect" in slo_bindings:
        rows.append(endpoint(EndpointKind.SLO, Binding.HTTP_REDIRECT, peer.slo))
    if "post" in slo_bindings:
        rows.append(endpoint(EndpointKind.SLO, Binding.HTTP_POST, peer.slo))
    if "soap" in slo_bindings:
        rows.append(endpoint(EndpointKind.SLO, Binding.SOAP, peer.soap))
    remote = entity(
        f"{name}-remote",
        Location.REMOTE,
        EntityType.SAML2_SP,
        rows,
        entity_id=peer.entity_id,
        verification_certificate=f"{name}-cert",
        encryption_certificate=f"{name}-cert",
        name_id_formats=[C.NAMEID_EMAIL],
    )
    overrides = {
        "sso_slo": {
            "sso_bindings": ["post"],
            "slo_enabled": True,
            "slo_bindings": list(slo_bindings),
            "slo_validity_seconds": 60,
        },
        "signature": {"verification_certificate": f"{name}-cert", "require_signed_authn_requests": True},
    }
    for step, values in (settings or {}).items():
        overrides.setdefault(step, {}).update(values)
    partnership = make_partnership(
        f"idp-to-{name}",
        "saml2_idp_sp",
        site.local,
        remote,
        settings=idp_support.merge(idp_support.default_settings(), overrides),
    )
    assert partnership.state != "incomplete", partnership.problems
    if activate:
        partnership_services.activate(partnership)
        partnership.refresh_from_db()
    peer.partnership = partnership
    site.sps[name] = peer
    return peer


def our_idp_metadata(site):
    """Our IdP as the pysaml2 SPs import it: signing certificate, SSO, SLO on Redirect, POST and SOAP."""
    return (
        f'<md:EntityDescriptor xmlns:md="{C.NS_MD}" xmlns:ds="{C.NS_DS}" entityID="{IDP_ENTITY_ID}">'
        f'<md:IDPSSODescriptor WantAuthnRequestsSigned="true" protocolSupportEnumeration="{C.NS_SAMLP}">'
        f"<md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{site.cert_base64}"
        "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        f'<md:SingleLogoutService Binding="{C.BINDING_HTTP_REDIRECT}" Location="{IDP_SLO}"/>'
        f'<md:SingleLogoutService Binding="{C.BINDING_HTTP_POST}" Location="{IDP_SLO}"/>'
        f'<md:SingleLogoutService Binding="{C.BINDING_SOAP}" Location="{IDP_SLO_SOAP}"/>'
        f"<md:NameIDFormat>{C.NAMEID_EMAIL}</md:NameIDFormat>"
        f'<md:SingleSignOnService Binding="{C.BINDING_HTTP_REDIRECT}" Location="{IDP_SSO}"/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )


def pysaml2_sp(site, peer, directory):
    """The pysaml2 SP (xmlsec1 backend) playing `peer`: signs its AuthnRequests and logout messages with its key,
    trusts our IdP from `our_idp_metadata`."""
    key_file, cert_file = peer.key.write(directory, f"pysaml2-{peer.name}")
    config = SPConfig()
    config.load(
        {
            "entityid": peer.entity_id,
            "xmlsec_binary": XMLSEC1,
            "crypto_backend": "xmlsec1",
            "key_file": key_file,
            "cert_file": cert_file,
            "metadata": {"inline": [our_idp_metadata(site)]},
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [(peer.acs, BINDING_HTTP_POST)],
                        "single_logout_service": [
                            (peer.slo, BINDING_HTTP_REDIRECT),
                            (peer.slo, BINDING_HTTP_POST),
                            (peer.soap, BINDING_SOAP),
                        ],
                    },
                    "want_assertions_signed": True,
                    "want_response_signed": False,
                    "authn_requests_signed": True,
                    "logout_requests_signed": True,
                    "name_id_format": [C.NAMEID_EMAIL],
                }
            },
            "accepted_time_diff": 60,
            "allow_unknown_attributes": True,
        }
    )
    peer.client = Saml2Client(config=config)
    return peer.client


def sign_on(client, peer, *, first=False):
    """SP-initiated SSO of alice at `peer` through our IdP (the login form when `first`); pysaml2 reads the Response,
    so it holds her session. Returns pysaml2's parsed Response."""
    request_id, info = peer.client.prepare_for_authenticate(
        entityid=IDP_ENTITY_ID, binding=BINDING_HTTP_REDIRECT, sigalg=C.RSA_SHA256, digest_alg=C.SHA256
    )
    answer = client.get(idp_support.local_part(idp_support.redirect_binding_url(info)), secure=True)
    if first:
        answer = idp_support.sign_in(client, answer)
    action, fields = idp_support.posted(answer)
    assert action == peer.acs
    parsed = peer.client.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {request_id: "/"})
    assert peer.client.is_logged_in(parsed.name_id)
    peer.name_id = parsed.name_id
    return parsed


# --- a pysaml2 SP answering SOAP logout on a loopback port -----------------------------------------------------------


class _QuietHandler(sp_support._QuietHandler):
    pass


class LoopbackSp:
    """The SOAP single logout service of a pysaml2 SP on 127.0.0.1 (a thread). Each LogoutRequest is handled by
    pysaml2's own `handle_logout_request` (which ends its session and signs its answer)."""

    def __init__(self):
        self.peer = None
        self.requests = []
        self.server = make_server("127.0.0.1", 0, self.app, server_class=WSGIServer, handler_class=_QuietHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/slo/soap"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def app(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
        self.requests.append({"authorization": environ.get("HTTP_AUTHORIZATION"), "body": body})
        info = self.peer.client.handle_logout_request(
            body, self.peer.name_id, BINDING_SOAP, sign=True, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256
        )
        data = info["data"]
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
        return [data.encode() if isinstance(data, str) else data]


def closed_port_url():
    """An http URL on a loopback port nothing listens on: an SP that is down (connection refused at once)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/slo/soap"


# --- our SP with a pysaml2 IdP ---------------------------------------------------------------------------------------

SP_ENTITY_ID = sp_support.SP_ENTITY_ID
SP_BASE = sp_support.SP_BASE
SP_SLO = SP_BASE + runtime_paths.SAML2_SLO
SP_SLO_SOAP = SP_BASE + runtime_paths.SAML2_SLO_SOAP
SP_CONFIRM = "https://app.example.org/signed-out"
PEER_IDP_ENTITY_ID = sp_support.IDP_ENTITY_ID
PEER_IDP_SLO = "https://idp.example.org/slo"
PEER_IDP_SLO_SOAP = "https://idp.example.org/slo/soap"


def make_sp_world(idp_key, sp_key, *, slo_bindings=("redirect", "post", "soap"), settings=None, idp_soap_url=PEER_IDP_SLO_SOAP):
    """Our SP (entity https://sp.example.org/sp) with an activated SP→IdP partnership to the pysaml2 IdP
    (https://idp.example.org/idp), single logout on with `slo_bindings`; the IdP lists SLO services for all three."""
    from federation.directories import EMBEDDED_NAME

    sp_support.clear_runtime_caches()
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
            endpoint(EndpointKind.SSO, Binding.HTTP_REDIRECT, sp_support.IDP_SSO),
            endpoint(EndpointKind.SSO, Binding.HTTP_POST, sp_support.IDP_SSO),
            endpoint(EndpointKind.SLO, Binding.HTTP_REDIRECT, PEER_IDP_SLO),
            endpoint(EndpointKind.SLO, Binding.HTTP_POST, PEER_IDP_SLO),
            endpoint(EndpointKind.SLO, Binding.SOAP, idp_soap_url),
        ],
        entity_id=PEER_IDP_ENTITY_ID,
        verification_certificate="idp-cert",
        name_id_formats=[C.NAMEID_PERSISTENT],
    )
    base = {
        "user_identification": {"search_specs": [{"directory": EMBEDDED_NAME, "search_spec": "username=%s"}]},
        "sso_slo": {
            "sso_bindings": ["post"],
            "authn_request_bindings": ["redirect"],
            "slo_enabled": True,
            "slo_bindings": list(slo_bindings),
            "slo_confirm_url": SP_CONFIRM,
        },
        "signature": {"verification_certificate": "idp-cert", "signing_key": "sp-key", "decryption_key": "sp-key"},
        "application": {"target": sp_support.TARGET, "allowed_targets": [{"url": "https://app.example.org/"}]},
    }
    for step, values in (settings or {}).items():
        base.setdefault(step, {}).update(values)
    partnership = partnership_services.save_partnership(
        kind="saml2_sp_idp",
        name="DemoSP",
        local_entity=local,
        remote_entity=remote,
        directories=[EMBEDDED_NAME],
        settings=base,
    )
    assert partnership.state != "incomplete", partnership.problems
    partnership_services.activate(partnership)
    return sp_support.World(partnership, idp_key, sp_key)


def our_sp_metadata(sp_key):
    """Our SP as the pysaml2 IdP imports it, with its SLO services."""
    key_info = (
        f"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{sp_key.cert_base64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
    )
    return (
        f'<md:EntityDescriptor xmlns:md="{C.NS_MD}" xmlns:ds="{C.NS_DS}" entityID="{SP_ENTITY_ID}">'
        f'<md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true" protocolSupportEnumeration="{C.NS_SAMLP}">'
        f'<md:KeyDescriptor use="signing">{key_info}</md:KeyDescriptor>'
        f'<md:KeyDescriptor use="encryption">{key_info}</md:KeyDescriptor>'
        f'<md:SingleLogoutService Binding="{C.BINDING_HTTP_REDIRECT}" Location="{SP_SLO}"/>'
        f'<md:SingleLogoutService Binding="{C.BINDING_HTTP_POST}" Location="{SP_SLO}"/>'
        f'<md:SingleLogoutService Binding="{C.BINDING_SOAP}" Location="{SP_SLO_SOAP}"/>'
        f"<md:NameIDFormat>{C.NAMEID_PERSISTENT}</md:NameIDFormat>"
        f'<md:AssertionConsumerService Binding="{C.BINDING_HTTP_POST}" Location="{sp_support.ACS_URL}" index="0" isDefault="true"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>"
    )


def pysaml2_idp(directory, idp_key, sp_key, slo_soap_url=PEER_IDP_SLO_SOAP):
    """The pysaml2 IdP (xmlsec1 backend) with SSO and SLO services, trusting our SP from `our_sp_metadata`."""
    key_file, cert_file = idp_key.write(directory, "pysaml2-slo-idp")
    config = IdPConfig()
    config.load(
        {
            "entityid": PEER_IDP_ENTITY_ID,
            "xmlsec_binary": XMLSEC1,
            "crypto_backend": "xmlsec1",
            "key_file": key_file,
            "cert_file": cert_file,
            "metadata": {"inline": [our_sp_metadata(sp_key)]},
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(sp_support.IDP_SSO, BINDING_HTTP_REDIRECT)],
                        "single_logout_service": [
                            (PEER_IDP_SLO, BINDING_HTTP_REDIRECT),
                            (PEER_IDP_SLO, BINDING_HTTP_POST),
                            (slo_soap_url, BINDING_SOAP),
                        ],
                    },
                    "policy": {"default": {"lifetime": {"minutes": 5}, "name_form": C.ATTRNAME_BASIC}},
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                }
            },
            "accepted_time_diff": 60,
            "allow_unknown_attributes": True,
        }
    )
    return Server(config=config)


def alice_name_id():
    return NameID(format=NAMEID_FORMAT_PERSISTENT, text="alice")


def sp_sign_on(client, server):
    """SSO of alice at our SP with the pysaml2 IdP (our AuthnRequest, its signed assertion); returns the ACS answer."""
    return sp_support.sso(client, server)


# --- small helpers ---------------------------------------------------------------------------------------------------


def query(url):
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def path_of(url):
    return idp_support.local_part(url)


def trace(checkpoint, containing=""):
    lines = TraceLine.objects.filter(checkpoint=checkpoint)
    if containing:
        lines = lines.filter(message__contains=containing)
    return list(lines.values_list("message", flat=True))


def clear_caches():
    from federation import slo_runtime

    idp_support.clear_runtime_caches()
    sp_support.clear_runtime_caches()
    slo_runtime.clear_caches()
