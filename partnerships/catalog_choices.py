"""The choice lists of the partnership settings catalogue, and how their short values map to protocol URIs.

Bindings and algorithms are stored by short, readable names (``post``, ``rsa-sha256``) so an exported configuration
reads well; `BINDING_URIS` and `ALGORITHM_URIS` turn them into the URIs the runtime puts on the wire. NameID and
attribute name formats are stored as their URIs, like the entities do.
"""

from __future__ import annotations

from federation.saml import constants as c
from partnerships.authn_context import DEFAULT_CLASS_URIS, short_name

# --- NameID ---------------------------------------------------------------------------------------------------------

NAME_ID_FORMATS_SAML11 = (
    (c.NAMEID_UNSPECIFIED, "Unspecified"),
    (c.NAMEID_EMAIL, "Email address"),
    (c.NAMEID_X509_SUBJECT, "X.509 subject name"),
    (c.NAMEID_WINDOWS_DOMAIN, "Windows domain qualified name"),
)
NAME_ID_FORMATS_SAML2 = (
    *NAME_ID_FORMATS_SAML11,
    (c.NAMEID_KERBEROS, "Kerberos principal name"),
    (c.NAMEID_ENTITY, "Entity identifier"),
    (c.NAMEID_PERSISTENT, "Persistent"),
    (c.NAMEID_TRANSIENT, "Transient"),
)

NAME_ID_TYPES = (
    ("static", "Static value"),
    ("user", "User attribute"),
    ("session", "Session attribute"),
    ("dn", "DN attribute (LDAP)"),
)

# --- assertion attributes ------------------------------------------------------------------------------------------

ATTRIBUTE_VALUE_TYPES = (
    ("user", "User attribute"),
    ("static", "Static value"),
    ("dn", "DN attribute (LDAP)"),
    ("session", "Session attribute"),
    ("expression", "Expression"),
)
ATTRIBUTE_NAME_FORMATS = (
    (c.ATTRNAME_UNSPECIFIED, "Unspecified"),
    (c.ATTRNAME_BASIC, "Basic"),
    (c.ATTRNAME_URI, "URI"),
)
ATTRIBUTE_RETRIEVAL = (
    ("sso", "SSO"),
    ("attribute_service", "Attribute service"),
    ("both", "SSO and attribute service"),
)

# --- federation users (partnerships.federation_users.RuleKind; a test checks they match) ---------------------------

USER_CLASSES = (
    ("user", "User"),
    ("group", "Group"),
    ("ou", "Organizational Unit"),
    ("user_filter", "Filter on User Properties"),
    ("group_filter", "Filter on Group Properties"),
    ("ou_filter", "Filter on OU Properties"),
    ("any_filter", "Filter on Any item"),
)

# --- user identification -------------------------------------------------------------------------------------------

IDENTITY_SOURCES = (
    ("name_id", "Use the Name ID"),
    ("attribute", "Use an assertion attribute"),
    ("xpath", "Use an XPath query"),
)

# --- authentication ------------------------------------------------------------------------------------------------

AUTHN_MODES = (
    ("local", "Local (this site's login page or the authentication URL)"),
    ("delegated", "Delegated (a third-party access-management system)"),
)
DELEGATED_TYPES = (
    ("open_format_cookie", "Open-format cookie"),
    ("query_string", "Query string (testing only)"),
)
AUTHN_CONTEXT_MODES = (
    ("predefined", "Use a predefined class"),
    ("auto_detect", "Detect automatically from a template"),
)
AUTHN_CLASSES_SAML2 = tuple((uri, short_name(uri)) for uri in DEFAULT_CLASS_URIS)

SAML11_AM_PASSWORD = "urn:oasis:names:tc:SAML:1.0:am:password"
AUTHN_METHODS_SAML11 = (
    (SAML11_AM_PASSWORD, "Password"),
    ("urn:ietf:rfc:1510", "Kerberos"),
    ("urn:ietf:rfc:2945", "Secure Remote Password"),
    ("urn:oasis:names:tc:SAML:1.0:am:HardwareToken", "Hardware token"),
    ("urn:ietf:rfc:2246", "TLS client certificate"),
    ("urn:oasis:names:tc:SAML:1.0:am:X509-PKI", "X.509 public key"),
    ("urn:oasis:names:tc:SAML:1.0:am:PGP", "PGP public key"),
    ("urn:oasis:names:tc:SAML:1.0:am:SPKI", "SPKI public key"),
    ("urn:oasis:names:tc:SAML:1.0:am:XKMS", "XKMS public key"),
    ("urn:ietf:rfc:3075", "XML digital signature"),
    ("urn:oasis:names:tc:SAML:1.0:am:unspecified", "Unspecified"),
)
COMPARISONS = (
    ("exact", "exact: one of the requested classes exactly"),
    ("minimum", "minimum: at least as strong as a requested class"),
    ("maximum", "maximum: no stronger than a requested class"),
    ("better", "better: stronger than a requested class"),
)

# --- bindings ------------------------------------------------------------------------------------------------------

AUTHN_REQUEST_BINDINGS = (("redirect", "HTTP-Redirect"), ("post", "HTTP-POST"))
SSO_BINDINGS = (("post", "HTTP-POST"), ("artifact", "HTTP-Artifact"))
SLO_BINDINGS = (("redirect", "HTTP-Redirect"), ("post", "HTTP-POST"), ("soap", "SOAP"))

BINDING_URIS = {
    "saml2": {
        "redirect": c.BINDING_HTTP_REDIRECT,
        "post": c.BINDING_HTTP_POST,
        "artifact": c.BINDING_HTTP_ARTIFACT,
        "soap": c.BINDING_SOAP,
        "paos": c.BINDING_PAOS,
    },
    "saml11": {
        "post": c.SAML1_PROFILE_BROWSER_POST,
        "artifact": c.SAML1_PROFILE_ARTIFACT,
        "soap": c.SAML1_BINDING_SOAP,
    },
}
"""Short binding name → binding URI, per protocol (WS-Federation has no SAML bindings)."""

ALLOWED_TRANSACTIONS = (
    ("both", "IdP-initiated and SP-initiated"),
    ("idp_initiated", "IdP-initiated only"),
    ("sp_initiated", "SP-initiated only"),
)
SESSION_NOT_ON_OR_AFTER = (
    ("assertion_validity", "Use the assertion validity"),
    ("idp_session", "Use the IdP session's remaining lifetime"),
    ("custom", "Custom duration"),
    ("omit", "Omit (no SessionNotOnOrAfter)"),
)

BACKCHANNEL_AUTH = (
    ("none", "No authentication"),
    ("basic", "Basic (user name and password)"),
    ("client_cert", "Client certificate (TLS)"),
)
REDIRECT_METHODS = (("302", "302 redirect, no data"), ("post", "HTTP POST"))

STATUS_CONDITIONS_IDP = (
    ("server_error", "Server error (500)"),
    ("bad_request", "Invalid request (400)"),
    ("method_not_allowed", "Method not allowed (405)"),
    ("unauthorized", "Unauthorized access (403)"),
)
STATUS_CONDITIONS_RP = (
    ("user_not_found", "User not found"),
    ("invalid_sso_message", "Invalid SSO message"),
    ("unaccepted_credential", "Unaccepted user credential"),
)
STATUS_CONDITIONS_SAML2_SP = STATUS_CONDITIONS_RP + STATUS_CONDITIONS_IDP

NOTIFICATION_AUTH = (("none", "No authentication"), ("basic", "Basic (user name and password)"))

# --- signatures and encryption -------------------------------------------------------------------------------------

SIGNATURE_ALGORITHMS = (
    ("rsa-sha256", "RSA-SHA256"),
    ("rsa-sha384", "RSA-SHA384"),
    ("rsa-sha512", "RSA-SHA512"),
    ("rsa-sha1", "RSA-SHA1 (legacy partners only)"),
    ("ecdsa-sha256", "ECDSA-SHA256"),
    ("ecdsa-sha384", "ECDSA-SHA384"),
    ("ecdsa-sha512", "ECDSA-SHA512"),
)
DIGEST_ALGORITHMS = (
    ("sha256", "SHA-256"),
    ("sha384", "SHA-384"),
    ("sha512", "SHA-512"),
    ("sha1", "SHA-1 (legacy partners only)"),
)
SIGN_WHAT = (("assertion", "Assertion"), ("response", "Response"), ("both", "Assertion and response"))
SIGN_SLO = (("both", "LogoutRequest and LogoutResponse"), ("request", "LogoutRequest"), ("response", "LogoutResponse"))
BLOCK_ALGORITHMS = (
    ("aes256-gcm", "AES-256-GCM"),
    ("aes128-gcm", "AES-128-GCM"),
    ("aes256-cbc", "AES-256-CBC"),
    ("aes128-cbc", "AES-128-CBC"),
    ("tripledes-cbc", "3DES-CBC (legacy partners only)"),
)
KEY_TRANSPORT_ALGORITHMS = (
    ("rsa-oaep-mgf1p", "RSA-OAEP"),
    ("rsa-oaep", "RSA-OAEP (XML Encryption 1.1)"),
    ("rsa-1_5", "RSA v1.5 (legacy partners only)"),
)
RSA_OAEP_TRANSPORTS = frozenset({"rsa-oaep-mgf1p", "rsa-oaep"})

ALGORITHM_URIS = {name: uri for uri, name in c.ALGORITHM_NAMES.items()}
"""Short algorithm name (``rsa-sha256``, ``aes256-gcm``, ``rsa-oaep-mgf1p``) → its URI."""

# --- application integration ---------------------------------------------------------------------------------------

REDIRECT_MODES_SAML = (
    ("no_data", "No data (302 redirect to the target)"),
    ("http_headers", "HTTP headers (for a reverse proxy)"),
    ("open_format_cookie", "Open-format cookie"),
    ("persist_attributes", "Persist attributes (in the SP session)"),
)
REDIRECT_MODES_WSFED = tuple(mode for mode in REDIRECT_MODES_SAML if mode[0] != "http_headers")
COOKIE_ALGORITHMS = (("aes256-gcm", "AES-256-GCM"), ("aes128-gcm", "AES-128-GCM"))
PROVISIONING_TYPES = (("none", "None"), ("remote", "Remote (a provisioning application)"))
PROVISIONING_DELIVERY = (("open_format_cookie", "Open-format cookie"), ("http_headers", "HTTP headers"))
