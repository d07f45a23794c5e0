"""Every namespace, URI and algorithm identifier the protocol core uses, in one place.

The allow-lists at the end are the security policy for signatures and encryption; see
docs/xml-security.md for why each entry is (or is not) there and how a partnership widens them.
"""

# --- Namespaces -------------------------------------------------------------------------------

# SAML 2.0
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_MDUI = "urn:oasis:names:tc:SAML:metadata:ui"
NS_MDATTR = "urn:oasis:names:tc:SAML:metadata:attribute"
NS_MDRPI = "urn:oasis:names:tc:SAML:metadata:rpi"
NS_ALG = "urn:oasis:names:tc:SAML:metadata:algsupport"
NS_IDPDISC = "urn:oasis:names:tc:SAML:profiles:SSO:idp-discovery-protocol"
NS_ECP = "urn:oasis:names:tc:SAML:2.0:profiles:SSO:ecp"

# SAML 1.1 (the 1.0 namespace URIs are also those of 1.1)
NS_SAML1 = "urn:oasis:names:tc:SAML:1.0:assertion"
NS_SAML1P = "urn:oasis:names:tc:SAML:1.0:protocol"

# XML Signature / Encryption / canonicalisation
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
NS_DS11 = "http://www.w3.org/2009/xmldsig11#"
NS_XENC = "http://www.w3.org/2001/04/xmlenc#"
NS_XENC11 = "http://www.w3.org/2009/xmlenc11#"
NS_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"

# XML Schema, XML itself
NS_XS = "http://www.w3.org/2001/XMLSchema"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS_XML = "http://www.w3.org/XML/1998/namespace"

# SOAP
NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"

# WS-Federation and the WS-* specifications its passive profile uses
NS_FED = "http://docs.oasis-open.org/wsfed/federation/200706"
NS_AUTH = "http://docs.oasis-open.org/wsfed/authorization/200706"
NS_WST = "http://schemas.xmlsoap.org/ws/2005/02/trust"
NS_WST13 = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
NS_WSP = "http://schemas.xmlsoap.org/ws/2004/09/policy"
NS_WSA = "http://www.w3.org/2005/08/addressing"
NS_WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"

# Prefixes for XPath queries and for building messages.
NSMAP = {
    "saml": NS_SAML,
    "samlp": NS_SAMLP,
    "md": NS_MD,
    "mdui": NS_MDUI,
    "mdattr": NS_MDATTR,
    "mdrpi": NS_MDRPI,
    "alg": NS_ALG,
    "idpdisc": NS_IDPDISC,
    "ecp": NS_ECP,
    "saml1": NS_SAML1,
    "saml1p": NS_SAML1P,
    "ds": NS_DS,
    "ds11": NS_DS11,
    "xenc": NS_XENC,
    "xenc11": NS_XENC11,
    "ec": NS_EXC_C14N,
    "xs": NS_XS,
    "xsi": NS_XSI,
    "soap": NS_SOAP11,
    "soap12": NS_SOAP12,
    "fed": NS_FED,
    "auth": NS_AUTH,
    "wst": NS_WST,
    "wst13": NS_WST13,
    "wsp": NS_WSP,
    "wsa": NS_WSA,
    "wsu": NS_WSU,
    "wsse": NS_WSSE,
}

# --- Bindings and protocols ------------------------------------------------------------------

BINDING_HTTP_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
BINDING_HTTP_POST_SIMPLE_SIGN = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST-SimpleSign"
BINDING_HTTP_ARTIFACT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"
BINDING_SOAP = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"
BINDING_PAOS = "urn:oasis:names:tc:SAML:2.0:bindings:PAOS"
BINDING_URI = "urn:oasis:names:tc:SAML:2.0:bindings:URI"

SAML1_BINDING_SOAP = "urn:oasis:names:tc:SAML:1.0:bindings:SOAP-binding"
SAML1_PROFILE_BROWSER_POST = "urn:oasis:names:tc:SAML:1.0:profiles:browser-post"
SAML1_PROFILE_ARTIFACT = "urn:oasis:names:tc:SAML:1.0:profiles:artifact-01"

PROTOCOL_SAML2 = NS_SAMLP
PROTOCOL_SAML11 = "urn:oasis:names:tc:SAML:1.1:protocol"
PROTOCOL_WSFED = NS_FED

# WS-Federation passive requestor actions (the `wa` parameter).
WSFED_SIGNIN = "wsignin1.0"
WSFED_SIGNOUT = "wsignout1.0"
WSFED_SIGNOUT_CLEANUP = "wsignoutcleanup1.0"

# Token types a WS-Fed RSTR may carry.
TOKEN_TYPE_SAML11 = "urn:oasis:names:tc:SAML:1.0:assertion"
TOKEN_TYPE_SAML20 = "urn:oasis:names:tc:SAML:2.0:assertion"

# --- NameID formats --------------------------------------------------------------------------

NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_X509_SUBJECT = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
NAMEID_WINDOWS_DOMAIN = "urn:oasis:names:tc:SAML:1.1:nameid-format:WindowsDomainQualifiedName"
NAMEID_KERBEROS = "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos"
NAMEID_ENTITY = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
NAMEID_ENCRYPTED = "urn:oasis:names:tc:SAML:2.0:nameid-format:encrypted"

# Attribute name formats
ATTRNAME_UNSPECIFIED = "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified"
ATTRNAME_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
ATTRNAME_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"

# Subject confirmation methods
CM_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
CM_HOLDER_OF_KEY = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"
CM_SENDER_VOUCHES = "urn:oasis:names:tc:SAML:2.0:cm:sender-vouches"
SAML1_CM_BEARER = "urn:oasis:names:tc:SAML:1.0:cm:bearer"
SAML1_CM_ARTIFACT = "urn:oasis:names:tc:SAML:1.0:cm:artifact"

# --- Status codes ----------------------------------------------------------------------------

STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
STATUS_REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
STATUS_RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
STATUS_VERSION_MISMATCH = "urn:oasis:names:tc:SAML:2.0:status:VersionMismatch"
STATUS_AUTHN_FAILED = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"
STATUS_INVALID_ATTR_NAME_OR_VALUE = "urn:oasis:names:tc:SAML:2.0:status:InvalidAttrNameOrValue"
STATUS_INVALID_NAMEID_POLICY = "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy"
STATUS_NO_AUTHN_CONTEXT = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext"
STATUS_NO_AVAILABLE_IDP = "urn:oasis:names:tc:SAML:2.0:status:NoAvailableIDP"
STATUS_NO_PASSIVE = "urn:oasis:names:tc:SAML:2.0:status:NoPassive"
STATUS_NO_SUPPORTED_IDP = "urn:oasis:names:tc:SAML:2.0:status:NoSupportedIDP"
STATUS_PARTIAL_LOGOUT = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout"
STATUS_PROXY_COUNT_EXCEEDED = "urn:oasis:names:tc:SAML:2.0:status:ProxyCountExceeded"
STATUS_REQUEST_DENIED = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied"
STATUS_REQUEST_UNSUPPORTED = "urn:oasis:names:tc:SAML:2.0:status:RequestUnsupported"
STATUS_REQUEST_VERSION_DEPRECATED = "urn:oasis:names:tc:SAML:2.0:status:RequestVersionDeprecated"
STATUS_REQUEST_VERSION_TOO_HIGH = "urn:oasis:names:tc:SAML:2.0:status:RequestVersionTooHigh"
STATUS_REQUEST_VERSION_TOO_LOW = "urn:oasis:names:tc:SAML:2.0:status:RequestVersionTooLow"
STATUS_RESOURCE_NOT_RECOGNIZED = "urn:oasis:names:tc:SAML:2.0:status:ResourceNotRecognized"
STATUS_TOO_MANY_RESPONSES = "urn:oasis:names:tc:SAML:2.0:status:TooManyResponses"
STATUS_UNKNOWN_ATTR_PROFILE = "urn:oasis:names:tc:SAML:2.0:status:UnknownAttrProfile"
STATUS_UNKNOWN_PRINCIPAL = "urn:oasis:names:tc:SAML:2.0:status:UnknownPrincipal"
STATUS_UNSUPPORTED_BINDING = "urn:oasis:names:tc:SAML:2.0:status:UnsupportedBinding"

# SAML 1.1 status codes are QNames in the samlp (1.0 protocol) namespace; these are the local parts.
SAML1_STATUS_SUCCESS = "Success"
SAML1_STATUS_REQUESTER = "Requester"
SAML1_STATUS_RESPONDER = "Responder"
SAML1_STATUS_VERSION_MISMATCH = "VersionMismatch"
SAML1_STATUS_REQUEST_DENIED = "RequestDenied"

# --- Authentication context classes (the ones the product names) -----------------------------

AC_UNSPECIFIED = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
AC_PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"
AC_PASSWORD_PROTECTED_TRANSPORT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
AC_X509 = "urn:oasis:names:tc:SAML:2.0:ac:classes:X509"
AC_TLS_CLIENT = "urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient"

# --- XML Signature algorithms ----------------------------------------------------------------

RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
ECDSA_SHA1 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
ECDSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
ECDSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"
DSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#dsa-sha1"

SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"

# Transforms and canonicalisation methods
TRANSFORM_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
TRANSFORM_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
TRANSFORM_EXC_C14N_WITH_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
TRANSFORM_C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
TRANSFORM_C14N_WITH_COMMENTS = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
TRANSFORM_C14N11 = "http://www.w3.org/2006/12/xml-c14n11"
TRANSFORM_C14N11_WITH_COMMENTS = "http://www.w3.org/2006/12/xml-c14n11#WithComments"
TRANSFORM_BASE64 = "http://www.w3.org/2000/09/xmldsig#base64"
TRANSFORM_XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
TRANSFORM_XPATH_FILTER2 = "http://www.w3.org/2002/06/xmldsig-filter2"
TRANSFORM_XSLT = "http://www.w3.org/TR/1999/REC-xslt-19991116"

# --- XML Encryption algorithms ---------------------------------------------------------------

AES128_CBC = "http://www.w3.org/2001/04/xmlenc#aes128-cbc"
AES192_CBC = "http://www.w3.org/2001/04/xmlenc#aes192-cbc"
AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
AES128_GCM = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
AES192_GCM = "http://www.w3.org/2009/xmlenc11#aes192-gcm"
AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
TRIPLEDES_CBC = "http://www.w3.org/2001/04/xmlenc#tripledes-cbc"

RSA_1_5 = "http://www.w3.org/2001/04/xmlenc#rsa-1_5"
RSA_OAEP_MGF1P = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
RSA_OAEP = "http://www.w3.org/2009/xmlenc11#rsa-oaep"

MGF1_SHA1 = "http://www.w3.org/2009/xmlenc11#mgf1sha1"
MGF1_SHA224 = "http://www.w3.org/2009/xmlenc11#mgf1sha224"
MGF1_SHA256 = "http://www.w3.org/2009/xmlenc11#mgf1sha256"
MGF1_SHA384 = "http://www.w3.org/2009/xmlenc11#mgf1sha384"
MGF1_SHA512 = "http://www.w3.org/2009/xmlenc11#mgf1sha512"

ENCRYPTED_TYPE_ELEMENT = "http://www.w3.org/2001/04/xmlenc#Element"
ENCRYPTED_TYPE_CONTENT = "http://www.w3.org/2001/04/xmlenc#Content"
ENCRYPTED_KEY_TYPE = "http://www.w3.org/2001/04/xmlenc#EncryptedKey"

# Short names for messages ("algorithm rsa-sha1 not allowed", "transform xslt not allowed").
ALGORITHM_NAMES = {
    RSA_SHA1: "rsa-sha1",
    RSA_SHA256: "rsa-sha256",
    RSA_SHA384: "rsa-sha384",
    RSA_SHA512: "rsa-sha512",
    ECDSA_SHA1: "ecdsa-sha1",
    ECDSA_SHA256: "ecdsa-sha256",
    ECDSA_SHA384: "ecdsa-sha384",
    ECDSA_SHA512: "ecdsa-sha512",
    DSA_SHA1: "dsa-sha1",
    SHA1: "sha1",
    SHA256: "sha256",
    SHA384: "sha384",
    SHA512: "sha512",
    TRANSFORM_ENVELOPED: "enveloped-signature",
    TRANSFORM_EXC_C14N: "exc-c14n",
    TRANSFORM_EXC_C14N_WITH_COMMENTS: "exc-c14n-with-comments",
    TRANSFORM_C14N: "c14n",
    TRANSFORM_C14N_WITH_COMMENTS: "c14n-with-comments",
    TRANSFORM_C14N11: "c14n11",
    TRANSFORM_C14N11_WITH_COMMENTS: "c14n11-with-comments",
    TRANSFORM_BASE64: "base64",
    TRANSFORM_XPATH: "xpath",
    TRANSFORM_XPATH_FILTER2: "xpath-filter2",
    TRANSFORM_XSLT: "xslt",
    AES128_CBC: "aes128-cbc",
    AES192_CBC: "aes192-cbc",
    AES256_CBC: "aes256-cbc",
    AES128_GCM: "aes128-gcm",
    AES192_GCM: "aes192-gcm",
    AES256_GCM: "aes256-gcm",
    TRIPLEDES_CBC: "tripledes-cbc",
    RSA_1_5: "rsa-1_5",
    RSA_OAEP_MGF1P: "rsa-oaep-mgf1p",
    RSA_OAEP: "rsa-oaep",
}


def algorithm_name(uri):
    """The short name used in error messages and logs; the URI itself when it has none."""
    return ALGORITHM_NAMES.get(uri, uri)


# --- Allow-lists -----------------------------------------------------------------------------

# Signature and digest methods accepted on inbound signatures unless a partnership widens the
# list. SHA-1 (RSA, ECDSA, digest) and DSA are accepted only when explicitly allowed.
DEFAULT_SIGNATURE_ALGORITHMS = frozenset(
    {RSA_SHA256, RSA_SHA384, RSA_SHA512, ECDSA_SHA256, ECDSA_SHA384, ECDSA_SHA512, SHA256, SHA384, SHA512}
)
SHA1_SIGNATURE_ALGORITHMS = frozenset({RSA_SHA1, ECDSA_SHA1, SHA1})
DSA_SIGNATURE_ALGORITHMS = frozenset({DSA_SHA1})

# Algorithms `sign` can produce, by key type.
RSA_SIGNATURE_METHODS = frozenset({RSA_SHA1, RSA_SHA256, RSA_SHA384, RSA_SHA512})
ECDSA_SIGNATURE_METHODS = frozenset({ECDSA_SHA1, ECDSA_SHA256, ECDSA_SHA384, ECDSA_SHA512})
DIGEST_METHODS = frozenset({SHA1, SHA256, SHA384, SHA512})

# Transforms: the only form accepted is [enveloped-signature] or [enveloped-signature, exc-c14n],
# in that order; the only canonicalisation method accepted for SignedInfo is exc-c14n without
# comments. Inclusive c14n (1.0 and 1.1) and every "WithComments" variant are refused, and there
# is deliberately no switch to allow them (docs/xml-security.md explains why).
ALLOWED_TRANSFORMS = (TRANSFORM_ENVELOPED, TRANSFORM_EXC_C14N)
ALLOWED_CANONICALIZATION = TRANSFORM_EXC_C14N

# Encryption: block (data) algorithms and key transport accepted on decryption unless widened.
# RSA PKCS#1 v1.5 key transport (Bleichenbacher) and 3DES are accepted only when allowed.
DEFAULT_ENCRYPTION_ALGORITHMS = frozenset(
    {AES128_CBC, AES192_CBC, AES256_CBC, AES128_GCM, AES192_GCM, AES256_GCM, RSA_OAEP_MGF1P, RSA_OAEP}
)
LEGACY_ENCRYPTION_ALGORITHMS = frozenset({RSA_1_5, TRIPLEDES_CBC})

BLOCK_ALGORITHMS = frozenset({AES128_CBC, AES192_CBC, AES256_CBC, AES128_GCM, AES192_GCM, AES256_GCM, TRIPLEDES_CBC})
KEY_TRANSPORT_ALGORITHMS = frozenset({RSA_1_5, RSA_OAEP_MGF1P, RSA_OAEP})

# --- Size limits (defaults; callers pass their own where a message is expected to be larger) --

MAX_MESSAGE_BYTES = 1024 * 1024  # an inbound SAML message or token (POST, SOAP, decrypted content)
MAX_REDIRECT_MESSAGE_BYTES = 256 * 1024  # a Redirect-binding message after inflating
