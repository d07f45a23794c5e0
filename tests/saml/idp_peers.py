"""Peers and settings for the IdP protocol core tests: a pysaml2 SP (and its metadata of our IdP)
configured per test, python3-saml SP settings per signing option, and the settings our core is
given for the test partnership. Test data only; the product fills these dataclasses from an
activated partnership snapshot."""

import warnings
from urllib.parse import parse_qs

from cryptography.utils import CryptographyDeprecationWarning
from onelogin.saml2.settings import OneLogin_Saml2_Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_ARTIFACT, BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
    from saml2.client import Saml2Client
    from saml2.config import SPConfig
    from saml2.saml import NAMEID_FORMAT_PERSISTENT

from federation.saml import constants as C
from federation.saml.assertions import AssertionSettings, Attribute, NameID, ResponseSettings
from federation.saml.authn_requests import AuthnRequestPolicy, Endpoint
from federation.saml.common import SigningKey

from .messages import IDP_ENTITY_ID, IDP_SLO_URL, IDP_SSO_URL, SP_ACS_URL, SP_ENTITY_ID, SP_SLO_URL
from .peers import XMLSEC1

IDP_ARTIFACT_URL = "https://idp.example.org/affwebservices/saml2artifactresolution"
IDP_SLO_SOAP_URL = "https://idp.example.org/affwebservices/public/saml2slosoap"
SP_ACS_ARTIFACT_URL = "https://sp.example.org/sp/acs/artifact"
SP_SLO_SOAP_URL = "https://sp.example.org/sp/slo/soap"

# The SP's registered assertion consumer services, as the partnership lists them.
SP_ACS_ROWS = (
    Endpoint(SP_ACS_URL, C.BINDING_HTTP_POST, 0, True),
    Endpoint(SP_ACS_ARTIFACT_URL, C.BINDING_HTTP_ARTIFACT, 1, False),
)

MAIL = "urn:oid:0.9.2342.19200300.100.1.3"
GIVEN_NAME = "urn:oid:2.5.4.42"


def _key_info(cert_base64):
    return f"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_base64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"


def our_idp_metadata_xml(signing_cert_base64):
    """Metadata of our IdP as a partner imports it: signing certificate, SSO (Redirect, POST),
    SLO (Redirect, POST, SOAP), artifact resolution over SOAP."""
    return (
        f'<md:EntityDescriptor xmlns:md="{C.NS_MD}" xmlns:ds="{C.NS_DS}" entityID="{IDP_ENTITY_ID}">'
        f'<md:IDPSSODescriptor WantAuthnRequestsSigned="true" protocolSupportEnumeration="{C.NS_SAMLP}">'
        f'<md:KeyDescriptor use="signing">{_key_info(signing_cert_base64)}</md:KeyDescriptor>'
        f'<md:ArtifactResolutionService Binding="{C.BINDING_SOAP}" Location="{IDP_ARTIFACT_URL}" index="0" isDefault="true"/>'
        f'<md:SingleLogoutService Binding="{C.BINDING_HTTP_REDIRECT}" Location="{IDP_SLO_URL}"/>'
        f'<md:SingleLogoutService Binding="{C.BINDING_HTTP_POST}" Location="{IDP_SLO_URL}"/>'
        f'<md:SingleLogoutService Binding="{C.BINDING_SOAP}" Location="{IDP_SLO_SOAP_URL}"/>'
        f"<md:NameIDFormat>{C.NAMEID_PERSISTENT}</md:NameIDFormat>"
        f'<md:SingleSignOnService Binding="{C.BINDING_HTTP_REDIRECT}" Location="{IDP_SSO_URL}"/>'
        f'<md:SingleSignOnService Binding="{C.BINDING_HTTP_POST}" Location="{IDP_SSO_URL}"/>'
        "</md:IDPSSODescriptor>"
        "</md:EntityDescriptor>"
    )


def pysaml2_sp_client(
    directory, sp, idp, *, want_assertions_signed=True, want_response_signed=False, allow_unsolicited=False, name="sp"
):
    """A pysaml2 SP (xmlsec1 backend) with key pair `sp` for signing and decryption, trusting our
    IdP from `our_idp_metadata_xml` with `idp`'s certificate. ACS: POST (index 0) and Artifact
    (index 1); SLO: Redirect, POST and SOAP."""
    key_file, cert_file = sp.write(directory, f"pysaml2-{name}")
    config = SPConfig()
    config.load(
        {
            "entityid": SP_ENTITY_ID,
            "xmlsec_binary": XMLSEC1,
            "crypto_backend": "xmlsec1",
            "key_file": key_file,
            "cert_file": cert_file,
            "encryption_keypairs": [{"key_file": key_file, "cert_file": cert_file}],
            "metadata": {"inline": [our_idp_metadata_xml(idp.cert_base64)]},
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [
                            (SP_ACS_URL, BINDING_HTTP_POST),
                            (SP_ACS_ARTIFACT_URL, BINDING_HTTP_ARTIFACT),
                        ],
                        "single_logout_service": [
                            (SP_SLO_URL, BINDING_HTTP_REDIRECT),
                            (SP_SLO_URL, BINDING_HTTP_POST),
                            (SP_SLO_SOAP_URL, BINDING_SOAP),
                        ],
                    },
                    "want_assertions_signed": want_assertions_signed,
                    "want_response_signed": want_response_signed,
                    "authn_requests_signed": True,
                    "logout_requests_signed": True,
                    "allow_unsolicited": allow_unsolicited,
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "name_id_policy_format": NAMEID_FORMAT_PERSISTENT,
                }
            },
            "accepted_time_diff": 60,
            "allow_unknown_attributes": True,
        }
    )
    return Saml2Client(config=config)


def python3saml_sp_settings(sp, idp, *, want_messages_signed=False, want_assertions_signed=True, want_assertions_encrypted=False):
    """python3-saml SP settings (strict mode) trusting our IdP's certificate."""
    return OneLogin_Saml2_Settings(
        {
            "strict": True,
            "debug": False,
            "sp": {
                "entityId": SP_ENTITY_ID,
                "assertionConsumerService": {"url": SP_ACS_URL, "binding": C.BINDING_HTTP_POST},
                "singleLogoutService": {"url": SP_SLO_URL, "binding": C.BINDING_HTTP_REDIRECT},
                "NameIDFormat": C.NAMEID_PERSISTENT,
                "x509cert": sp.cert_base64,
                "privateKey": sp.key_pem.decode(),
            },
            "idp": {
                "entityId": IDP_ENTITY_ID,
                "singleSignOnService": {"url": IDP_SSO_URL, "binding": C.BINDING_HTTP_REDIRECT},
                "singleLogoutService": {"url": IDP_SLO_URL, "binding": C.BINDING_HTTP_REDIRECT},
                "x509cert": idp.cert_base64,
            },
            "security": {
                "authnRequestsSigned": True,
                "logoutRequestSigned": True,
                "logoutResponseSigned": True,
                "wantMessagesSigned": want_messages_signed,
                "wantAssertionsSigned": want_assertions_signed,
                "wantAssertionsEncrypted": want_assertions_encrypted,
                "signatureAlgorithm": C.RSA_SHA256,
                "digestAlgorithm": C.SHA256,
                "rejectDeprecatedAlgorithm": True,
            },
        }
    )


def assertion_settings(in_response_to=None, **overrides):
    """The assertion content of the test partnership: persistent NameID qualified by both
    entities, a single-valued mail, a multi-valued groups, a given name with a FriendlyName."""
    values = {
        "issuer": IDP_ENTITY_ID,
        "audiences": (SP_ENTITY_ID,),
        "recipient": SP_ACS_URL,
        "name_id": NameID("alice-7f3a", C.NAMEID_PERSISTENT, IDP_ENTITY_ID, SP_ENTITY_ID),
        "in_response_to": in_response_to,
        "attributes": (
            Attribute(MAIL, ("alice@example.org",), C.ATTRNAME_URI, "mail"),
            Attribute("groups", ("admins", "staff", "R&D <lab>"), C.ATTRNAME_BASIC),
            Attribute(GIVEN_NAME, ("Alice",), C.ATTRNAME_URI, "givenName"),
        ),
        "authn_context_class": C.AC_PASSWORD_PROTECTED_TRANSPORT,
        "validity_seconds": 120,
        "skew_seconds": 30,
    }
    values.update(overrides)
    return AssertionSettings(**values)


def response_settings(idp, in_response_to=None, *, sign="assertion", encryption=None, assertion=None, **overrides):
    return ResponseSettings(
        assertion=assertion or assertion_settings(in_response_to),
        destination=SP_ACS_URL,
        signing=SigningKey(idp.key, idp.certificate),
        sign=sign,
        encryption=encryption,
        **overrides,
    )


def authn_request_policy(sp, **overrides):
    values = {
        "sp_entity_id": SP_ENTITY_ID,
        "verification_certificates": (sp.certificate,),
        "require_signed": True,
        "sso_urls": (IDP_SSO_URL,),
    }
    values.update(overrides)
    return AuthnRequestPolicy(**values)


def query_values(url_or_query):
    """The decoded single values of a query string (or of a URL's query)."""
    query = url_or_query.split("?", 1)[1] if "?" in url_or_query else url_or_query
    return {name: values[0] for name, values in parse_qs(query, keep_blank_values=True).items()}
