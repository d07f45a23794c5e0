"""Test helpers for the SP protocol core: a pysaml2 IdP that knows our SP (and wants signed
AuthnRequests), responses from it and from our own signer, and consumer settings for the
partnership between them."""

import base64
import warnings

from cryptography.utils import CryptographyDeprecationWarning

from federation.saml import constants as C
from federation.saml.consumer import ConsumerSettings
from federation.saml.encryption import encrypt_assertion
from federation.saml.signing import sign
from federation.saml.xml import children, to_bytes

from . import messages

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
    from saml2.config import IdPConfig
    from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
    from saml2.server import Server

from .peers import XMLSEC1

IDP_ARTIFACT_URL = "https://idp.example.org/affwebservices/saml2artifactresolution"
IDENTITY = {"principalName": ["alice"], "groups": ["admins", "staff"]}


def pysaml2_idp(directory, idp, sp, want_signed_requests=True):
    """A pysaml2 IdP (xmlsec1 backend) with key pair `idp` that knows our SP from its metadata
    (certificate `sp` for signing and encryption, POST ACS), with SSO on Redirect and POST and
    artifact resolution over SOAP. It refuses unsigned AuthnRequests when `want_signed_requests`."""
    key_file, cert_file = idp.write(directory, "pysaml2-idp")
    config = IdPConfig()
    config.load(
        {
            "entityid": messages.IDP_ENTITY_ID,
            "xmlsec_binary": XMLSEC1,
            "crypto_backend": "xmlsec1",
            "key_file": key_file,
            "cert_file": cert_file,
            "metadata": {"inline": [messages.sp_metadata_xml(sp.cert_base64)]},
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [
                            (messages.IDP_SSO_URL, BINDING_HTTP_REDIRECT),
                            (messages.IDP_SSO_URL, BINDING_HTTP_POST),
                        ],
                        "artifact_resolution_service": [(IDP_ARTIFACT_URL, BINDING_SOAP)],
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


def pysaml2_response(
    server,
    *,
    in_response_to="_request-1",
    sign_response=True,
    sign_assertion=True,
    encrypt_for=None,
    destination=messages.SP_ACS_URL,
    sp_entity_id=messages.SP_ENTITY_ID,
    name_id="alice",
    authn_class=messages.PASSWORD_PROTECTED_TRANSPORT,
):
    """A Response from the pysaml2 IdP (RSA-SHA256), as the XML bytes it would POST. With
    `encrypt_for` (a Credential) the assertion is encrypted for it; pysaml2 always encrypts with
    3DES, which the consumer accepts only when the partnership allows legacy algorithms."""
    extra = {}
    if encrypt_for is not None:
        extra = {"encrypt_assertion": True, "encrypt_cert_assertion": encrypt_for.cert_pem.decode()}
    text = server.create_authn_response(
        identity=IDENTITY,
        in_response_to=in_response_to,
        destination=destination,
        sp_entity_id=sp_entity_id,
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=name_id),
        userid=name_id,
        authn={"class_ref": authn_class, "authn_auth": messages.IDP_ENTITY_ID},
        sign_response=sign_response,
        sign_assertion=sign_assertion,
        sign_alg=C.RSA_SHA256,
        digest_alg=C.SHA256,
        **extra,
    )
    return str(text).encode()


def our_response(
    idp,
    *,
    sign_response=False,
    sign_assertion=True,
    encrypt_for=None,
    algorithm=C.AES256_GCM,
    in_response_to="_request-1",
    **kwargs,
):
    """A Response in the shape real IdPs send (tests/saml/messages.py), signed and encrypted by
    the protocol core (assertion signed before it is encrypted, response signed last)."""
    root = messages.response(in_response_to=in_response_to, **kwargs)
    assertion = children(root, C.NS_SAML, "Assertion")[0]
    if sign_assertion:
        sign(assertion, idp.key, idp.certificate)
    if encrypt_for is not None:
        encrypt_assertion(assertion, encrypt_for.certificate, algorithm)
    if sign_response:
        sign(root, idp.key, idp.certificate)
    return to_bytes(root)


def post_value(xml):
    """The SAMLResponse form value for `xml`."""
    return base64.b64encode(xml if isinstance(xml, bytes) else xml.encode()).decode()


def consumer_settings(idp, sp=None, **overrides):
    """The SP-to-IdP partnership of the tests: our SP (messages.SP_*), the IdP (`idp`'s
    certificate), decrypting with `sp`'s key, expecting InResponseTo `_request-1`."""
    values = {
        "sp_entity_id": messages.SP_ENTITY_ID,
        "acs_urls": (messages.SP_ACS_URL,),
        "idp_entity_id": messages.IDP_ENTITY_ID,
        "idp_certificates": (idp.certificate,),
        "decryption_keys": (sp.key,) if sp is not None else (),
        "expected_in_response_to": "_request-1",
        "skew_seconds": 60,
    }
    values.update(overrides)
    return ConsumerSettings(**values)
