"""Test support for the IdP runtime: a real activated IdP→SP partnership (keystore keys, entities, the embedded
directory with a user), a pysaml2 SP configured from our IdP's metadata, and small helpers to walk the browser
flow (login form, auto-submitted POST form) with Django's test client. Test data only."""

import re
import warnings
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import parse_qs, urlsplit

from cryptography.utils import CryptographyDeprecationWarning

from entities import services as keystore
from entities.models import Binding, EndpointKind, EntityType, Location
from federation import runtime_paths
from federation.directories import EMBEDDED_NAME
from federation.models import UserAttribute
from federation.saml import constants as C
from partnerships import services as partnership_services
from tests.partnership_fixtures import endpoint, entity
from tests.saml.credentials import make_credential
from tests.saml.peers import XMLSEC1

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_ARTIFACT, BINDING_HTTP_POST
    from saml2.client import Saml2Client
    from saml2.config import SPConfig

IDP_BASE = "https://idp.example.test"
SP_ENTITY_ID = "https://sp.example.test/sp"
SP_ACS_POST = "https://sp.example.test/sp/acs/post"
SP_ACS_ARTIFACT = "https://sp.example.test/sp/acs/artifact"
PASSWORD = "alice-Password-1"
MAIL = "urn:oid:0.9.2342.19200300.100.1.3"

_SP_CREDENTIAL = None


def sp_credential():
    """One SP key pair per test process (RSA key generation is slow)."""
    global _SP_CREDENTIAL
    if _SP_CREDENTIAL is None:
        _SP_CREDENTIAL = make_credential("rsa", "sp.example.test")
    return _SP_CREDENTIAL


@dataclass
class World:
    """An activated IdP→SP partnership and everything around it."""

    partnership: object
    local: object
    remote: object
    idp_entity_id: str
    idp_base: str
    sp_entity_id: str
    sp: object  # tests.saml.credentials.Credential of the SP
    idp_certificate_pem: str
    user: object = None
    extra: dict = field(default_factory=dict)

    @property
    def sso_url(self):
        return self.idp_base + runtime_paths.SAML2_SSO

    @property
    def artifact_url(self):
        return self.idp_base + runtime_paths.SAML2_ARTIFACT_RESOLUTION

    @property
    def idp_cert_base64(self):
        return "".join(line for line in self.idp_certificate_pem.splitlines() if not line.startswith("-----"))


def default_settings():
    return {
        "assertion": {
            "name_id_format": C.NAMEID_EMAIL,
            "name_id_type": "user",
            "name_id_value": "email",
            "attributes": [
                {"name": MAIL, "retrieval": "sso", "name_format": C.ATTRNAME_URI, "value_type": "user", "value": "email"},
                {"name": "groups", "retrieval": "sso", "name_format": C.ATTRNAME_BASIC, "value_type": "user", "value": "groups"},
                {"name": "role", "retrieval": "sso", "name_format": C.ATTRNAME_BASIC, "value_type": "static", "value": "staff"},
                {
                    "name": "title",
                    "retrieval": "sso",
                    "name_format": C.ATTRNAME_BASIC,
                    "value_type": "expression",
                    "value": "#{attr[\"first_name\"] == 'Alice' ? 'administrator' : 'user'}",
                },
            ],
        },
        "sso_slo": {"sso_bindings": ["post", "artifact"]},
        "signature": {"verification_certificate": "sp-verify", "require_signed_authn_requests": True},
    }


def merge(base, overrides):
    merged = {step: dict(values) for step, values in base.items()}
    for step, values in (overrides or {}).items():
        merged.setdefault(step, {}).update(values)
    return merged


def make_alice(django_user_model, username="alice"):
    user = django_user_model.objects.create_user(
        username, email=f"{username}@example.test", password=PASSWORD, first_name="Alice", last_name="Anderson"
    )
    for group in ("staff", "admins"):
        UserAttribute.objects.create(user=user, name="groups", value=group)
    return user


def build_world(
    make_partnership,
    django_user_model,
    *,
    idp_base=IDP_BASE,
    settings=None,
    sp_entity_id=SP_ENTITY_ID,
    acs=None,
    directories=(EMBEDDED_NAME,),
    name="idp-to-sp",
    activate=True,
    user=True,
):
    """Keys, entities, the partnership (activated) and the user alice in the embedded directory."""
    signing = keystore.generate_key_pair("idp-runtime-signing", "rsa2048", "CN=idp.example.test", 365, [])
    sp = sp_credential()
    keystore.import_trusted_certificate("sp-verify", sp.cert_pem)
    local = entity(
        "idp-runtime",
        Location.LOCAL,
        EntityType.SAML2_IDP,
        signing_key="idp-runtime-signing",
        base_url=idp_base,
        entity_id=idp_base + "/idp",
    )
    acs = acs or [
        endpoint(EndpointKind.ACS, Binding.HTTP_POST, SP_ACS_POST, index=0, is_default=True),
        endpoint(EndpointKind.ACS, Binding.HTTP_ARTIFACT, SP_ACS_ARTIFACT, index=1),
    ]
    remote = entity(
        "sp-runtime",
        Location.REMOTE,
        EntityType.SAML2_SP,
        acs,
        entity_id=sp_entity_id,
        verification_certificate="sp-verify",
        encryption_certificate="sp-verify",
        name_id_formats=[C.NAMEID_EMAIL, C.NAMEID_PERSISTENT, C.NAMEID_TRANSIENT],
    )
    partnership = make_partnership(
        name,
        "saml2_idp_sp",
        local,
        remote,
        directories=directories,
        settings=merge(default_settings(), settings),
    )
    if activate:
        partnership_services.activate(partnership)
        partnership.refresh_from_db()
    alice = make_alice(django_user_model) if user else None
    return World(partnership, local, remote, local.entity_id, idp_base, sp_entity_id, sp, signing.certificate_pem, alice)


def idp_metadata(world, want_signed_requests=True):
    """Our IdP as an SP imports it (what the live metadata publishes)."""
    return (
        f'<md:EntityDescriptor xmlns:md="{C.NS_MD}" xmlns:ds="{C.NS_DS}" entityID="{world.idp_entity_id}">'
        f'<md:IDPSSODescriptor WantAuthnRequestsSigned="{"true" if want_signed_requests else "false"}" '
        f'protocolSupportEnumeration="{C.NS_SAMLP}">'
        f"<md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{world.idp_cert_base64}"
        "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        f'<md:ArtifactResolutionService Binding="{C.BINDING_SOAP}" Location="{world.artifact_url}" index="0" isDefault="true"/>'
        f"<md:NameIDFormat>{C.NAMEID_PERSISTENT}</md:NameIDFormat>"
        f'<md:SingleSignOnService Binding="{C.BINDING_HTTP_REDIRECT}" Location="{world.sso_url}"/>'
        f'<md:SingleSignOnService Binding="{C.BINDING_HTTP_POST}" Location="{world.sso_url}"/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )


def pysaml2_sp(
    world, directory, *, name_id_format=C.NAMEID_EMAIL, want_response_signed=False, allow_unsolicited=False, sign_requests=True
):
    """A pysaml2 SP (xmlsec1 backend) for `world`'s partnership: signs AuthnRequests with the SP key, decrypts with
    it, and trusts our IdP from `idp_metadata`."""
    key_file, cert_file = world.sp.write(directory, "pysaml2-sp")
    config = SPConfig()
    config.load(
        {
            "entityid": world.sp_entity_id,
            "xmlsec_binary": XMLSEC1,
            "crypto_backend": "xmlsec1",
            "key_file": key_file,
            "cert_file": cert_file,
            "encryption_keypairs": [{"key_file": key_file, "cert_file": cert_file}],
            "metadata": {"inline": [idp_metadata(world)]},
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [
                            (SP_ACS_POST, BINDING_HTTP_POST),
                            (SP_ACS_ARTIFACT, BINDING_HTTP_ARTIFACT),
                        ],
                    },
                    "want_assertions_signed": True,
                    "want_response_signed": want_response_signed,
                    "authn_requests_signed": sign_requests,
                    "allow_unsolicited": allow_unsolicited,
                    "name_id_format": [name_id_format],
                    "name_id_policy_format": name_id_format,
                }
            },
            "accepted_time_diff": 60,
            "allow_unknown_attributes": True,
        }
    )
    return Saml2Client(config=config)


def local_part(url):
    """The path and query of an absolute URL (what Django's test client takes)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


_INPUT = re.compile(r'<input[^>]*\bname="([^"]+)"[^>]*\bvalue="([^"]*)"', re.S)
_ACTION = re.compile(r'<form[^>]*\baction="([^"]*)"', re.S)


def form_of(response):
    """(action, {hidden field: value}) of the first form of an HTML response."""
    html = response.content.decode()
    action = _ACTION.search(html)
    return unescape(action.group(1)) if action else "", {name: unescape(value) for name, value in _INPUT.findall(html)}


def redirect_query(response):
    return {name: values[0] for name, values in parse_qs(urlsplit(response["Location"]).query).items()}


def sign_in(client, login_redirect, username="alice", password=PASSWORD, **extra):
    """Follow a redirect to the login page, submit the form; returns the POST response."""
    assert login_redirect.status_code == 302, login_redirect.content[:500]
    assert login_redirect["Location"].startswith(runtime_paths.IDP_LOGIN), login_redirect["Location"]
    page = client.get(login_redirect["Location"], secure=True)
    assert page.status_code == 200, page.content[:500]
    action, fields = form_of(page)
    fields.update({"username": username, "password": password})
    fields.update(extra)
    return client.post(action, fields, secure=True)


def posted(response):
    """(ACS URL, fields) of the auto-submitted POST form the runtime answered with."""
    assert response.status_code == 200, response.content[:800]
    action, fields = form_of(response)
    assert "SAMLResponse" in fields, response.content[:800]
    return action, fields


def redirect_binding_url(info):
    return dict(info["headers"])["Location"]


def clear_runtime_caches():
    """Per-process caches keyed by database primary keys, which the test database reuses after each rollback."""
    from federation import idp_runtime
    from partnerships import runtime

    runtime.load_snapshot.cache_clear()
    idp_runtime._config.cache_clear()
    idp_runtime._signing_key.cache_clear()
