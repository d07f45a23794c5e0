"""The runtime's URL paths (PRODUCT.md §5), in one place.

The console derives a local entity's service URLs from its base URL and these paths
(`local_service_urls`), and the runtime URL conf serves the same constants, so what an
administrator sends a partner is exactly what the runtime answers. The paths keep the reference
product's layout so existing partner configurations keep working.

Pure constants and functions: no Django imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

PREFIX = "/affwebservices"
PUBLIC = f"{PREFIX}/public"

# SAML 2.0
SAML2_SSO = f"{PUBLIC}/saml2sso"
SAML2_AUTHN_REQUEST = f"{PUBLIC}/saml2authnrequest"
SAML2_ASSERTION_CONSUMER = f"{PUBLIC}/saml2assertionconsumer"
SAML2_SLO = f"{PUBLIC}/saml2slo"
SAML2_SLO_SOAP = f"{PUBLIC}/saml2slosoap"
SAML2_ARTIFACT_RESOLUTION = f"{PREFIX}/saml2artifactresolution"
SAML2_ATTRIBUTE_SERVICE = f"{PREFIX}/saml2attributeservice"
SAML2_MANAGE_NAME_ID_SOAP = f"{PUBLIC}/saml2nidsoap"
SAML2_NAME_ID_JOBS = f"{PREFIX}/saml2nidws/"
SAML2_IDP_DISCOVERY = f"{PUBLIC}/saml2ipd"
SAML2_METADATA = f"{PUBLIC}/saml2metadata/"  # + <local entity name>

# SAML 1.1
SAML11_INTERSITE_TRANSFER = f"{PUBLIC}/intersitetransfer"
SAML11_CONSUMER = f"{PUBLIC}/samlcc"

# WS-Federation
WSFED_DISPATCHER = f"{PUBLIC}/wsfeddispatcher"  # + optional /<specific id>
WSFED_METADATA = f"{PUBLIC}/FederationMetadata/"  # + <partnership name>

# Protocol and role names as the entities app stores them (Entity.Protocol / Entity.Role values).
SAML2, SAML11, WSFED = "saml2", "saml11", "wsfed"
ASSERTING, RELYING = "asserting", "relying"


@dataclass(frozen=True)
class ServiceUrl:
    """One URL a local entity serves: what it is for, the URL, and how it is used."""

    label: str
    url: str
    note: str = ""


def join(base_url: str, path: str) -> str:
    """`path` under the entity's base URL (a trailing slash on the base is ignored)."""
    return base_url.rstrip("/") + path


def saml2_metadata_path(entity_name: str) -> str:
    return SAML2_METADATA + quote(entity_name, safe="")


def wsfed_dispatcher_path(specific_id: str = "") -> str:
    return f"{WSFED_DISPATCHER}/{quote(specific_id, safe='')}" if specific_id else WSFED_DISPATCHER


def local_service_urls(base_url: str, protocol: str, role: str, entity_name: str = "", specific_id: str = "") -> list[ServiceUrl]:
    """The runtime URLs of a local entity of this protocol ("saml2", "saml11", "wsfed") and role
    ("asserting", "relying") at `base_url`, in the order the console shows them. Empty without a base URL."""
    if not base_url:
        return []

    def url(label, path, note=""):
        return ServiceUrl(label, join(base_url, path), note)

    if protocol == SAML2 and role == ASSERTING:
        return [
            url("Single sign-on service", SAML2_SSO, "HTTP-Redirect and HTTP-POST; IdP-initiated with ?SPID=<SP entity ID>"),
            url("Single logout service", SAML2_SLO, "HTTP-Redirect and HTTP-POST"),
            url("Single logout service (SOAP)", SAML2_SLO_SOAP, "SOAP back channel"),
            url("Artifact resolution service", SAML2_ARTIFACT_RESOLUTION, "SOAP back channel"),
            url("Attribute service", SAML2_ATTRIBUTE_SERVICE, "AttributeQuery over SOAP"),
            url("Manage NameID service", SAML2_MANAGE_NAME_ID_SOAP, "SOAP"),
            url("Metadata", saml2_metadata_path(entity_name), "live signed metadata for partners"),
        ]
    if protocol == SAML2 and role == RELYING:
        return [
            url("Assertion consumer service", SAML2_ASSERTION_CONSUMER, "HTTP-POST and HTTP-Artifact"),
            url("AuthnRequest service", SAML2_AUTHN_REQUEST, "starts SP-initiated SSO: ?ProviderID=<IdP entity ID>"),
            url("Single logout service", SAML2_SLO, "HTTP-Redirect and HTTP-POST"),
            url("Single logout service (SOAP)", SAML2_SLO_SOAP, "SOAP back channel"),
            url("Manage NameID service", SAML2_MANAGE_NAME_ID_SOAP, "SOAP"),
            url("IdP discovery service", SAML2_IDP_DISCOVERY, "common-domain cookie _saml_idp"),
            url("Metadata", saml2_metadata_path(entity_name), "live signed metadata for partners"),
        ]
    if protocol == SAML11 and role == ASSERTING:
        return [
            url("Intersite transfer service", SAML11_INTERSITE_TRANSFER, "starts SSO: ?CONSUMERID=<consumer ID>&TARGET=<URL>"),
        ]
    if protocol == SAML11 and role == RELYING:
        return [url("Assertion consumer service", SAML11_CONSUMER, "browser/POST and browser/artifact")]
    if protocol == WSFED and role == ASSERTING:
        dispatcher = wsfed_dispatcher_path(specific_id)
        return [
            url("Passive requestor service", dispatcher, "wa=wsignin1.0 with wtrealm=<RP entity ID>"),
            url("Sign-out", dispatcher + "?wa=wsignout1.0", "starts sign-out at every RP of the session"),
        ]
    if protocol == WSFED and role == RELYING:
        dispatcher = wsfed_dispatcher_path(specific_id)
        return [
            url("Security token consumer service", dispatcher, "receives the IP's token (wa=wsignin1.0)"),
            url("Sign-out cleanup", dispatcher + "?wa=wsignoutcleanup1.0", "the IP calls it to end the RP session"),
        ]
    return []


# --- IdP runtime: this site's own pages around SAML 2.0 SSO as an identity provider ------------------------------
# Not partner endpoints (they never appear in metadata): the login page users without a session are sent to, and the
# consent page. Both live under the runtime prefix so the FEDSESSION cookie (path /affwebservices/) reaches them.
IDP_LOGIN = f"{PUBLIC}/login"
IDP_CONSENT = f"{PUBLIC}/consent"


# --- SP runtime ------------------------------------------------------------------------------------------------------
# Our additions beside the SAML 2.0 SP's AuthnRequest service and ACS (docs/sp-runtime.md): the endpoint a reverse
# proxy asks whether a request has an SP session (nginx auth_request; it answers with the identity headers), the
# site-selection page that lists the IdPs a browser has used (IdP discovery), and where a provisioning application
# sends the user back (the ACS takes that return too, as in the reference).
SAML2_SP_SESSION_CHECK = f"{PUBLIC}/saml2spsessioncheck"
SAML2_SP_SITE_SELECTION = f"{PUBLIC}/saml2siteselection"
SAML2_SP_PROVISIONING_RETURN = f"{PUBLIC}/saml2provisioningreturn"
