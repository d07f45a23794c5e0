"""The real peers the tests talk to: a pysaml2 IdP and SP (xmlsec1 binary backend) and a
python3-saml SP, each configured from a minimal in-test configuration."""

import base64
import warnings
from urllib.parse import parse_qs, urlsplit

from cryptography.utils import CryptographyDeprecationWarning
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.settings import OneLogin_Saml2_Settings

with warnings.catch_warnings():
    # pysaml2 7.5.5 still imports CFB from its old place in cryptography.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.client import Saml2Client
    from saml2.config import IdPConfig, SPConfig
    from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
    from saml2.server import Server

from .messages import (
    IDP_ENTITY_ID,
    IDP_SLO_URL,
    IDP_SSO_URL,
    PASSWORD_PROTECTED_TRANSPORT,
    SP_ACS_URL,
    SP_ENTITY_ID,
    SP_SLO_URL,
    idp_metadata_xml,
    sp_metadata_xml,
)

XMLSEC1 = "/usr/bin/xmlsec1"


def pysaml2_idp(directory, idp, sp):
    """A pysaml2 IdP signing with `idp` (a Credential) that knows the SP `sp` from metadata."""
    key_file, cert_file = idp.write(directory, "pysaml2-idp")
    config = IdPConfig()
    config.load(
        {
            "entityid": IDP_ENTITY_ID,
            "xmlsec_binary": XMLSEC1,
            "crypto_backend": "xmlsec1",
            "key_file": key_file,
            "cert_file": cert_file,
            "metadata": {"inline": [sp_metadata_xml(sp.cert_base64)]},
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(IDP_SSO_URL, BINDING_HTTP_REDIRECT)],
                        "single_logout_service": [(IDP_SLO_URL, BINDING_HTTP_REDIRECT)],
                    },
                    "policy": {
                        "default": {"lifetime": {"minutes": 5}, "name_form": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"}
                    },
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                }
            },
            "allow_unknown_attributes": True,
        }
    )
    return Server(config=config)


def pysaml2_authn_response(server, in_response_to="_request-1", sign_response=True, sign_assertion=True, **kwargs):
    """An AuthnResponse from the pysaml2 IdP, as the XML text it would POST."""
    return str(
        server.create_authn_response(
            identity={"principalName": ["alice"], "groups": ["admins", "staff"]},
            in_response_to=in_response_to,
            destination=SP_ACS_URL,
            sp_entity_id=SP_ENTITY_ID,
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text="alice"),
            userid="alice",
            authn={"class_ref": PASSWORD_PROTECTED_TRANSPORT, "authn_auth": IDP_ENTITY_ID},
            sign_response=sign_response,
            sign_assertion=sign_assertion,
            **kwargs,
        )
    )


def pysaml2_sp(directory, sp, idp):
    """A pysaml2 SP with key pair `sp` (signing and decryption) that trusts the IdP `idp`."""
    key_file, cert_file = sp.write(directory, "pysaml2-sp")
    config = SPConfig()
    config.load(
        {
            "entityid": SP_ENTITY_ID,
            "xmlsec_binary": XMLSEC1,
            "crypto_backend": "xmlsec1",
            "key_file": key_file,
            "cert_file": cert_file,
            "encryption_keypairs": [{"key_file": key_file, "cert_file": cert_file}],
            "metadata": {"inline": [idp_metadata_xml(idp.cert_base64)]},
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [(SP_ACS_URL, BINDING_HTTP_POST)],
                        "single_logout_service": [(SP_SLO_URL, BINDING_HTTP_REDIRECT)],
                    },
                    "want_assertions_signed": True,
                    "want_response_signed": False,
                    "authn_requests_signed": True,
                    "allow_unsolicited": False,
                }
            },
            "accepted_time_diff": 60,
            "allow_unknown_attributes": True,
        }
    )
    return Saml2Client(config=config)


def python3saml_settings(sp, idp_cert_base64, want_messages_signed=True, authn_requests_signed=True):
    """python3-saml SP settings in strict mode with SP key pair `sp`, trusting one IdP
    certificate."""
    return OneLogin_Saml2_Settings(
        {
            "strict": True,
            "debug": False,
            "sp": {
                "entityId": SP_ENTITY_ID,
                "assertionConsumerService": {"url": SP_ACS_URL, "binding": BINDING_HTTP_POST},
                "singleLogoutService": {"url": SP_SLO_URL, "binding": BINDING_HTTP_REDIRECT},
                "NameIDFormat": NAMEID_FORMAT_PERSISTENT,
                "x509cert": sp.cert_base64,
                "privateKey": sp.key_pem.decode(),
            },
            "idp": {
                "entityId": IDP_ENTITY_ID,
                "singleSignOnService": {"url": IDP_SSO_URL, "binding": BINDING_HTTP_REDIRECT},
                "singleLogoutService": {"url": IDP_SLO_URL, "binding": BINDING_HTTP_REDIRECT},
                "x509cert": idp_cert_base64,
            },
            "security": {
                "authnRequestsSigned": authn_requests_signed,
                "logoutRequestSigned": True,
                "logoutResponseSigned": True,
                "wantMessagesSigned": want_messages_signed,
                "wantAssertionsSigned": True,
                "signatureAlgorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "digestAlgorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
                "rejectDeprecatedAlgorithm": True,
            },
        }
    )


def python3saml_request(path, query_string="", post_data=None):
    """The request dict python3-saml reads, for a request to the SP at `path`."""
    return {
        "https": "on",
        "http_host": "sp.example.org",
        "script_name": path,
        "get_data": {name: values[0] for name, values in parse_qs(query_string, keep_blank_values=True).items()},
        "post_data": post_data or {},
        "query_string": query_string,
        "validate_signature_from_qs": True,
    }


def python3saml_auth(settings, path="/sp/slo", query_string="", post_data=None):
    return OneLogin_Saml2_Auth(python3saml_request(path, query_string, post_data), old_settings=settings)


def query_of(url):
    return urlsplit(url).query


def b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()
