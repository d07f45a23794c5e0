"""The SAML 2.0 service provider at run time: what happens between "sign in with my IdP" and the application.

Service functions over the activated snapshot of SAML2 SP→IdP partnerships (partnerships.runtime), shared by the
views (federation/views/sp.py), the management commands and the tests; they take plain values and return plain
results (`Outcome`: where to send the browser and which cookies to set), never an HttpResponse.

- `start_sso`: the AuthnRequest service (`saml2authnrequest`): ProviderID, ProtocolBinding, ForceAuthn,
  AssertionConsumerServiceIndex, RelayState, AllowCreate; Redirect or POST to the IdP; the request kept in
  `SpRequestState` for InResponseTo, bound to the browser that started it.
- `consume_post` / `consume_artifact`: the assertion consumer (`saml2assertionconsumer`). Every check is
  `federation.saml.consumer`'s; this module picks the partnership, builds its `ConsumerSettings`, resolves
  artifacts over SOAP with the partnership's outgoing back-channel authentication, claims the stored request once,
  and feeds the replay cache.
- User identification (Name ID, an attribute or an XPath query → each directory's search spec), remote
  provisioning (`finish_provisioning` on the way back), the SP session (`SpSession`), and delivery to the
  application: a plain redirect, HTTP headers through `session_check` (nginx auth_request), an open-format cookie
  (federation.opencookie), or attributes kept in the session.
- IdP discovery: the common-domain cookie `_saml_idp` (`discovery`) and the site-selection page (`site_selection`).

Every refusal is an `SpError` carrying the HTTP status, the status-redirect condition, the words for the user, the
detail for the administrator (logged, never shown) and the partnership (for its status redirects); the view hands
it to federation.runtime_errors. docs/sp-runtime.md describes the endpoints and the errors.
"""

import base64
import binascii
import functools
import hashlib
import logging
import os
import re
import secrets
import ssl
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from datetime import UTC, timedelta
from urllib.parse import quote, unquote, urlencode, urlsplit

from cryptography.hazmat.primitives import serialization
from django.db import transaction
from lxml import etree

from entities.models import Entity, KeystoreEntry
from federation import directories, opencookie, replay, runtime_paths
from federation.models import SpRequestState, SpSession, UserDirectory
from federation.saml import constants as C
from federation.saml.artifacts import ArtifactError, entity_for_source_id, parse_artifact, source_id_index
from federation.saml.common import SigningKey, issuer_of, read_post, utc_now
from federation.saml.consumer import (
    AuthnContextRejected,
    ConsumerSettings,
    IdPStatusError,
    InResponseToMismatch,
    ResponseRejected,
    SignatureRequirement,
    consume_response,
)
from federation.saml.errors import SAMLError
from federation.saml.keys import certificate_pem, load_certificate
from federation.saml.signing import allowed_signature_algorithms
from federation.saml.sp_requests import (
    AuthnRequestOptions,
    artifact_resolve,
    authn_request_post,
    authn_request_redirect,
    read_artifact_response,
)
from federation.saml.xml import children
from federation.tracing import bind_saml_transaction
from partnerships import catalog
from partnerships.authn_context import TemplateError, build_requested_context
from partnerships.catalog_choices import ALGORITHM_URIS, BINDING_URIS
from partnerships.expressions import ExpressionSyntaxError, compile_expression
from partnerships.models import AuthnContextTemplate, PartnershipSnapshot
from partnerships.runtime import NoActivePartnership, find_active, load_snapshot, snapshot_secrets

log = logging.getLogger("federation.runtime.sp")

KIND = "saml2_sp_idp"
IDP_KIND = "saml2_idp_sp"

SESSION_COOKIE = "FEDSPSESSION"  # the SP session (SpSession.key is its SHA-256)
BROWSER_COOKIE = "FEDSPBROWSER"  # binds a stored AuthnRequest to the browser that started SSO
PROVISIONING_COOKIE = "FEDSPPROVISION"  # the state cookie of a remote provisioning round trip
COMMON_DOMAIN_COOKIE = "_saml_idp"  # SAML profiles §4.3

REQUEST_LIFETIME = timedelta(minutes=10)  # how long an AuthnRequest waits for its response
PROVISIONING_LIFETIME = timedelta(minutes=15)  # how long a user may take at the provisioning application
SESSION_TOUCH_INTERVAL = timedelta(seconds=60)  # the idle timer is written at most this often
BACKCHANNEL_TIMEOUT_SECONDS = 15
MAX_RELAY_STATE_BYTES = 1024
MAX_PARAMETER_CHARS = 8192
COMMON_DOMAIN_MAX_ENTRIES = 20

CONSENT_OBTAINED = "urn:oasis:names:tc:SAML:2.0:consent:obtained"
SOAP_ACTION = "http://www.oasis-open.org/committees/security"
XPATH_NAMESPACES = {"saml": C.NS_SAML, "samlp": C.NS_SAMLP, "saml1": C.NS_SAML1, "ds": C.NS_DS, "xs": C.NS_XS, "xsi": C.NS_XSI}

# Status-redirect conditions of an SP partnership (docs/partnership-settings.md, application.status_redirects).
USER_NOT_FOUND = "user_not_found"
INVALID_SSO_MESSAGE = "invalid_sso_message"
UNACCEPTED_CREDENTIAL = "unaccepted_credential"
SERVER_ERROR = "server_error"
BAD_REQUEST = "bad_request"
UNAUTHORIZED = "unauthorized"
METHOD_NOT_ALLOWED = "method_not_allowed"

_BINDING_NAMES = {uri: name for name, uri in BINDING_URIS["saml2"].items()}
_ACS_INDEX_BINDINGS = {0: "post", 1: "artifact"}  # the indices our SP metadata publishes (entities.metadata_export)
_HEADER_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off", ""}


# --- Results and errors ----------------------------------------------------------------------------------------------


class SpError(Exception):
    """A refusal. `message` is for the user (plain words), `detail` for the administrator (logged under
    `checkpoint`), `condition` picks the partnership's status redirect, `partnership` (when known) has them."""

    def __init__(self, message, *, status, checkpoint, detail="", condition=None, partnership=None):
        super().__init__(detail or message)
        self.message = message
        self.status = status
        self.checkpoint = checkpoint
        self.detail = detail
        self.condition = condition
        self.partnership = partnership

    @property
    def redirects(self):
        return _step(self.partnership, "application").get("status_redirects") if self.partnership else None


@dataclass(frozen=True)
class Cookie:
    """A cookie for the view to set (or delete). `cross_site`: it must come back on a cross-site POST from the IdP
    (SameSite=None, which browsers accept only with Secure; over plain http it falls back to Lax)."""

    name: str
    value: str = ""
    max_age: int | None = None
    domain: str | None = None
    cross_site: bool = False
    http_only: bool = True
    delete: bool = False


@dataclass(frozen=True)
class Outcome:
    """Where the browser goes next: a 302 to `redirect_url`, or a form POSTing `post_fields` to `post_url`."""

    redirect_url: str | None = None
    post_url: str | None = None
    post_fields: dict | None = None
    cookies: tuple = ()
    partnership: object = None
    session: object = None


@dataclass(frozen=True)
class CheckResult:
    """The session check's answer: 200 with `headers`, 401 (no session) or 403 (forged headers)."""

    status: int
    headers: dict = field(default_factory=dict)
    data: dict | None = None


@dataclass(frozen=True)
class AssertionFacts:
    """What the SP keeps of a validated assertion (also across a provisioning round trip)."""

    issuer: str
    name_id: str
    name_id_format: str
    session_index: str
    authn_context: str
    attributes: dict
    identity_value: str | None
    assertion_id: str = ""

    def as_data(self):
        return dict(self.__dict__)

    @classmethod
    def from_data(cls, data):
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})


# --- Partnership helpers ---------------------------------------------------------------------------------------------


@functools.cache
def _defaults():
    return catalog.defaults(KIND)


def _step(partnership, step):
    """A step's settings over the catalogue defaults (a snapshot from before a setting existed lacks it)."""
    return {**_defaults().get(step, {}), **((partnership.settings or {}).get(step) or {})}


def base_url(partnership):
    return (_step(partnership, "configure").get("base_url") or "").strip() or (partnership.local.get("base_url") or "")


def acs_urls(partnership):
    """Our ACS URL(s): Destination and Recipient must name one. The partnership's base URL, and the local
    entity's when the partnership overrides it (partners may hold either in their metadata)."""
    bases = [base_url(partnership), partnership.local.get("base_url") or ""]
    return tuple(dict.fromkeys(runtime_paths.join(b, runtime_paths.SAML2_ASSERTION_CONSUMER) for b in bases if b))


def _remote_endpoints(partnership, kind, binding=None):
    return [
        e for e in partnership.remote.get("endpoints") or () if e["kind"] == kind and (binding is None or e["binding"] == binding)
    ]


def _active_by_name(name):
    found = PartnershipSnapshot.objects.filter(kind=KIND, current=True, partnership__name=name).values_list("pk", flat=True)
    found = list(found[:1])
    return load_snapshot(found[0]) if found else None


def _find_partnership(provider_id, local_entity_id=None, *, status=400, checkpoint="SSOSAML2SP_NO_PARTNERSHIP"):
    try:
        return find_active(KIND, provider_id, local_entity_id or None)
    except NoActivePartnership as error:
        raise SpError(
            "This site has no active partnership with that identity provider.",
            status=status,
            checkpoint=checkpoint,
            detail=str(error),
            condition=BAD_REQUEST if status == 400 else INVALID_SSO_MESSAGE,
        ) from None


# --- Keys ------------------------------------------------------------------------------------------------------------

_key_cache = {}
_key_lock = threading.Lock()


def _key_pair(partnership, alias, what):
    """(private key, certificate) of a key pair by alias, cached per process by (alias, fingerprint): the snapshot
    names the fingerprint it was activated with, so a key replaced since then is refused, not silently used."""
    frozen = (partnership.certificates or {}).get(alias)
    if not alias or frozen is None:
        raise _config_error(partnership, f"{what} of partnership '{partnership.name}' is not set or not in its snapshot")
    cache_key = (alias, frozen["fingerprint_sha256"])
    found = _key_cache.get(cache_key)
    if found is not None:
        return found
    entry = KeystoreEntry.objects.filter(alias=alias).first()
    if entry is None or not entry.has_private_key:
        raise _config_error(
            partnership, f"{what} '{alias}' of partnership '{partnership.name}' is not a key pair in the keystore"
        )
    if entry.fingerprint_sha256 != frozen["fingerprint_sha256"]:
        raise _config_error(
            partnership,
            f"{what} '{alias}' changed in the keystore after partnership '{partnership.name}' was activated; "
            "deactivate and activate the partnership again",
        )
    found = (entry.private_key_object(), entry.certificate())
    with _key_lock:
        if len(_key_cache) > 256:
            _key_cache.clear()
        _key_cache[cache_key] = found
    return found


@functools.lru_cache(maxsize=512)
def _certificate_from_pem(pem):
    return load_certificate(pem)


def _verification_certificates(partnership):
    alias = _step(partnership, "signature").get("verification_certificate")
    frozen = (partnership.certificates or {}).get(alias or "")
    if frozen is None and _step(partnership, "signature").get("disable_signature_processing"):
        return ()  # nothing to verify with: a signed message is then refused, an unsigned one accepted
    if frozen is None:
        raise _config_error(partnership, f"partnership '{partnership.name}' has no verification certificate for the IdP")
    return (_certificate_from_pem(frozen["certificate_pem"]),)


def _signing_key(partnership):
    """Our SigningKey for AuthnRequests and ArtifactResolves, or None when the partnership has no signing key."""
    signature = _step(partnership, "signature")
    alias = signature.get("signing_key")
    if signature.get("disable_signature_processing") or not alias:
        return None
    key, certificate = _key_pair(partnership, alias, "The signing key pair")
    return SigningKey(
        key,
        certificate,
        ALGORITHM_URIS.get(signature.get("signature_algorithm") or "rsa-sha256", C.RSA_SHA256),
        ALGORITHM_URIS.get(signature.get("digest_algorithm") or "sha256"),
    )


def _config_error(partnership, detail):
    return SpError(
        "This site's sign-in is not set up correctly. The administrator has been told what to fix.",
        status=500,
        checkpoint="SSOSAML2SP_CONFIGURATION",
        detail=detail,
        condition=SERVER_ERROR,
        partnership=partnership,
    )


# --- Authentication context ------------------------------------------------------------------------------------------


def _authn_context(partnership, purpose):
    """(RequestedAuthnContext, Template) when the partnership requests ("include_in_request") or validates
    ("validate_response") a context; (None, None) otherwise. The template is read live (it is a shared object that
    partnerships reference and cannot be deleted from under them)."""
    settings = _step(partnership, "authn_context")
    if not settings.get("enabled") or not settings.get(purpose):
        return None, None
    row = AuthnContextTemplate.objects.filter(name=settings.get("template")).first()
    if row is None:
        raise _config_error(partnership, f"authentication context template {settings.get('template')!r} does not exist")
    selected = None
    if not settings.get("use_template_classes", True):
        selected = [line.strip() for line in (settings.get("requested_classes") or "").splitlines() if line.strip()]
    try:
        template = row.compiled()
        return build_requested_context(template, selected, settings.get("comparison") or "exact"), template
    except TemplateError as error:
        raise _config_error(partnership, f"authentication context of partnership '{partnership.name}': {error}") from None


# --- Parameters ------------------------------------------------------------------------------------------------------


def _parameters(items):
    """Query or form parameters by lower-case name (the reference's names are matched ignoring case). A name given
    twice is refused: which copy a component reads would otherwise decide the outcome."""
    found = {}
    for name, value in items:
        key = name.lower()
        if key in found:
            raise SpError(
                "The request is not valid.",
                status=400,
                checkpoint="SSOSAML2SP_BAD_PARAMETER",
                detail=f"parameter {name} appears more than once",
                condition=BAD_REQUEST,
            )
        if len(value) > MAX_PARAMETER_CHARS and key not in ("samlresponse",):
            raise SpError(
                "The request is not valid.",
                status=400,
                checkpoint="SSOSAML2SP_BAD_PARAMETER",
                detail=f"parameter {name} is longer than {MAX_PARAMETER_CHARS} characters",
                condition=BAD_REQUEST,
            )
        found[key] = value
    return found


def parameters(querydict):
    """`_parameters` over a Django QueryDict (every value of every name)."""
    return _parameters((name, value) for name, values in querydict.lists() for value in values)


def _flag(value, name, partnership):
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad_request(partnership, f"{name}={value!r} is not yes/no or true/false", "SSOSAML2SP_AUTHNREQUEST_BAD_PARAMETER")


def _bad_request(partnership, detail, checkpoint, message="The sign-in request is not valid."):
    return SpError(message, status=400, checkpoint=checkpoint, detail=detail, condition=BAD_REQUEST, partnership=partnership)


# --- Targets (no open redirects) -------------------------------------------------------------------------------------


def _url_parts(url):
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname.lower(), port or default, parts.path or "/"


def target_allowed(partnership, url):
    """Whether `url` is the partnership's target or under one of its allowed target URLs (a row ending in / allows
    everything below it; any other row only itself). Compared by parts: scheme, host, port, then the path."""
    if not url or any(ord(ch) < 0x21 or ch == "\\" for ch in url):
        return False
    wanted = _url_parts(url)
    if wanted is None:
        return False
    application = _step(partnership, "application")
    rows = [application.get("target") or ""] + [row.get("url") or "" for row in application.get("allowed_targets") or ()]
    for row in filter(None, rows):
        allowed = _url_parts(row)
        if allowed is None or allowed[:3] != wanted[:3]:
            continue
        if row.endswith("/") and wanted[3].startswith(allowed[3]):
            return True
        if url == row:
            return True
    return False


def choose_target(partnership, relay_state):
    """The URL to send the user to after SSO: the RelayState when the partnership lets it override the target and
    it is allowed, else the configured target. `SpError` 403 for a RelayState that is not allowed (never an open
    redirect), 400 when there is no target at all."""
    application = _step(partnership, "application")
    if relay_state and application.get("relay_state_overrides_target"):
        if not target_allowed(partnership, relay_state):
            raise SpError(
                "The page you were to be sent to after signing in is not one this site sends users to.",
                status=403,
                checkpoint="SSOSAML2SP_TARGET_REFUSED",
                detail=f"RelayState {relay_state[:200]!r} is neither the target nor under an allowed target URL",
                condition=UNAUTHORIZED,
                partnership=partnership,
            )
        return relay_state
    if relay_state:
        log.info(
            "RelayState ignored: the partnership does not let it override the target",
            extra={"checkpoint": "SSOSAML2SP_RELAYSTATE_IGNORED"},
        )
    target = (application.get("target") or "").strip()
    if not target:
        raise _bad_request(
            partnership,
            "no target: the partnership has none and no allowed RelayState was given",
            "SSOSAML2SP_NO_TARGET",
            "This site does not know where to send you after signing in.",
        )
    return target


# --- The AuthnRequest service ----------------------------------------------------------------------------------------


def _digest(value):
    return hashlib.sha256(value.encode("utf-8")).hexdigest() if value else ""


def start_sso(params, *, browser_id=None, now=None):
    """SP-initiated SSO (reference ch10-14 §8.4). `params`: the request's parameters by lower-case name
    (`parameters`). Returns the Outcome that sends the AuthnRequest to the IdP."""
    now = now or utc_now()
    provider_id = (params.get("providerid") or "").strip()
    if not provider_id:
        raise SpError(
            "The sign-in link does not name an identity provider.",
            status=400,
            checkpoint="SSOSAML2SP_AUTHNREQUEST_NO_PROVIDER",
            detail="saml2authnrequest needs ProviderID=<the IdP's entity ID>",
            condition=BAD_REQUEST,
        )
    partnership = _find_partnership(provider_id, params.get("localentityid"), checkpoint="SSOSAML2SP_AUTHNREQUEST_NO_PARTNERSHIP")
    sso = _step(partnership, "sso_slo")
    if sso.get("allowed_transactions") == "idp_initiated":
        raise SpError(
            "Signing in from this site is not allowed with this identity provider; start at the identity provider.",
            status=403,
            checkpoint="SSOSAML2SP_AUTHNREQUEST_NOT_ALLOWED",
            detail=f"partnership '{partnership.name}' allows IdP-initiated SSO only",
            condition=UNAUTHORIZED,
            partnership=partnership,
        )
    response_binding, acs_index = _response_binding(partnership, params)
    request_binding, destination = _request_binding(partnership)
    relay_state = params.get("relaystate")
    if relay_state is not None:
        if len(relay_state.encode("utf-8")) > MAX_RELAY_STATE_BYTES:
            raise _bad_request(
                partnership, f"RelayState is longer than {MAX_RELAY_STATE_BYTES} bytes", "SSOSAML2SP_AUTHNREQUEST_BAD_PARAMETER"
            )
        if relay_state and _step(partnership, "application").get("relay_state_overrides_target"):
            choose_target(partnership, relay_state)  # refuse a target we would not send users to, before they sign in
    requested_context, _ = _authn_context(partnership, "include_in_request")
    allow_create = _allow_create(partnership, params)
    options = AuthnRequestOptions(
        sp_entity_id=partnership.local["entity_id"],
        destination=destination,
        acs_url=None if acs_index is not None else acs_urls(partnership)[0],
        protocol_binding=None if acs_index is not None else BINDING_URIS["saml2"][response_binding],
        acs_index=acs_index,
        force_authn=_flag(params.get("forceauthn"), "ForceAuthn", partnership),
        name_id_format=C.NAMEID_PERSISTENT if allow_create else None,
        allow_create=allow_create,
        requested_authn_context=requested_context,
    )
    signing = _signing_key(partnership) if _step(partnership, "signature").get("sign_authn_requests") else None
    if _step(partnership, "signature").get("sign_authn_requests") and signing is None:
        raise _config_error(partnership, f"partnership '{partnership.name}' signs AuthnRequests but has no signing key pair")
    if request_binding == "redirect":
        message = authn_request_redirect(options, relay_state or None, signing=signing, now=now)
        outcome = Outcome(redirect_url=message.url, partnership=partnership)
    else:
        message = authn_request_post(options, relay_state or None, signing=signing, now=now)
        outcome = Outcome(post_url=message.url, post_fields=message.fields, partnership=partnership)
    cookies = ()
    if not browser_id:
        browser_id = secrets.token_urlsafe(32)
        cookies = (Cookie(BROWSER_COOKIE, browser_id, cross_site=True),)
    with transaction.atomic():  # the stored request and its trace lines in one commit (it writes first: safe on SQLite)
        SpRequestState.objects.create(
            request_id=message.request_id,
            partnership=partnership.name,
            snapshot_id=partnership.snapshot_id,
            relay_state=relay_state or "",
            data={"purpose": "authn_request", "binding": response_binding, "browser": _digest(browser_id)},
            expires_at=now + REQUEST_LIFETIME,
        )
        bind_saml_transaction(message.request_id, note=f"AuthnRequest of partnership {partnership.name}")
        log.info(
            "AuthnRequest %s sent to %s by HTTP-%s (response by %s%s%s%s)",
            message.request_id,
            partnership.remote["entity_id"],
            request_binding.capitalize(),
            f"ACS index {acs_index}" if acs_index is not None else f"HTTP-{response_binding.capitalize()}",
            ", signed" if signing else "",
            ", ForceAuthn" if options.force_authn else "",
            f", AllowCreate={str(allow_create).lower()}" if allow_create is not None else "",
            extra={"checkpoint": "SSOSAML2SP_AUTHNREQUEST_SENT"},
        )
    return replace(outcome, cookies=cookies)


def _response_binding(partnership, params):
    """(binding short name, ACS index or None) for the response: ProtocolBinding or AssertionConsumerServiceIndex
    (never both), else POST when it is enabled (the reference's default), else the one binding enabled."""
    enabled = list(_step(partnership, "sso_slo").get("sso_bindings") or ["post"])
    protocol_binding = params.get("protocolbinding")
    index_text = params.get("assertionconsumerserviceindex")
    checkpoint = "SSOSAML2SP_AUTHNREQUEST_BAD_PARAMETER"
    if protocol_binding and index_text:
        raise _bad_request(
            partnership,
            "ProtocolBinding and AssertionConsumerServiceIndex cannot be used together: the indexed ACS has its own binding",
            checkpoint,
        )
    if index_text:
        if not index_text.isdigit() or int(index_text) not in _ACS_INDEX_BINDINGS:
            raise _bad_request(
                partnership,
                f"AssertionConsumerServiceIndex {index_text!r} is not one of this SP's ACS indexes (0 POST, 1 Artifact)",
                checkpoint,
            )
        binding = _ACS_INDEX_BINDINGS[int(index_text)]
        if binding not in enabled:
            raise _bad_request(
                partnership,
                f"ACS index {index_text} is HTTP-{binding.capitalize()}, which this partnership does not enable",
                checkpoint,
            )
        return binding, int(index_text)
    if protocol_binding:
        binding = _BINDING_NAMES.get(protocol_binding.strip())
        if binding not in ("post", "artifact"):
            raise _bad_request(partnership, f"ProtocolBinding {protocol_binding!r} is not HTTP-POST or HTTP-Artifact", checkpoint)
        if binding not in enabled:
            raise _bad_request(
                partnership, f"ProtocolBinding HTTP-{binding.capitalize()} is not enabled for this partnership", checkpoint
            )
        return binding, None
    return ("post" if "post" in enabled else enabled[0]), None


def _request_binding(partnership):
    """(binding, IdP SSO URL): the first of the partnership's AuthnRequest bindings the IdP has an SSO service for."""
    for name in _step(partnership, "sso_slo").get("authn_request_bindings") or ["redirect"]:
        endpoints = _remote_endpoints(partnership, "sso", BINDING_URIS["saml2"].get(name))
        if endpoints:
            return name, endpoints[0]["location"]
    raise _config_error(
        partnership, f"the IdP of partnership '{partnership.name}' has no SSO service for the AuthnRequest bindings"
    )


def _allow_create(partnership, params):
    """AllowCreate for this request: the partnership's setting, changed by an AllowCreate query parameter only when
    "query parameter overrides" is on (which needs AllowCreate itself, reference ch01-08 F7.3). None leaves it out."""
    identification = _step(partnership, "user_identification")
    allowed = bool(identification.get("allow_create"))
    raw = params.get("allowcreate")
    if raw is not None:
        if allowed and identification.get("allow_create_query_override"):
            return _flag(raw, "AllowCreate", partnership)
        log.info(
            "AllowCreate parameter ignored: the partnership does not let it override",
            extra={"checkpoint": "SSOSAML2SP_ALLOWCREATE_IGNORED"},
        )
    return True if allowed else None


# --- The assertion consumer ------------------------------------------------------------------------------------------


def consumer_settings(partnership, *, expected_in_response_to=None):
    """The `ConsumerSettings` of a partnership (docs/sp-protocol-core.md §3)."""
    signature = _step(partnership, "signature")
    requirement = {
        (True, True): SignatureRequirement.BOTH,
        (True, False): SignatureRequirement.ASSERTION,
        (False, True): SignatureRequirement.RESPONSE,
        (False, False): SignatureRequirement.EITHER,
    }[(bool(signature.get("require_signed_assertions")), bool(signature.get("require_signed_responses")))]
    if signature.get("disable_signature_processing"):
        # The reference's test-only switch (the wizard warns): nothing is required, but a signature that is
        # present is still verified, so a tampered signed message is refused all the same.
        log.warning(
            "partnership '%s' accepts unsigned assertions (signature processing disabled)",
            partnership.name,
            extra={"checkpoint": "SSOSAML2SP_SIGNATURES_DISABLED"},
        )
        requirement = SignatureRequirement.NONE
    keys = ()
    if signature.get("decryption_key"):
        keys = (_key_pair(partnership, signature["decryption_key"], "The decryption key pair")[0],)
    requested, template = _authn_context(partnership, "validate_response")
    encryption = C.DEFAULT_ENCRYPTION_ALGORITHMS
    if signature.get("accept_legacy_encryption"):
        encryption = encryption | C.LEGACY_ENCRYPTION_ALGORITHMS
    sso = _step(partnership, "sso_slo")
    return ConsumerSettings(
        sp_entity_id=partnership.local["entity_id"],
        acs_urls=acs_urls(partnership),
        idp_entity_id=partnership.remote["entity_id"],
        idp_certificates=_verification_certificates(partnership),
        require_signed=requirement,
        require_encrypted_assertion=bool(signature.get("require_encrypted_assertion")),
        require_encrypted_name_id=bool(signature.get("require_encrypted_name_id")),
        decryption_keys=keys,
        skew_seconds=int(_step(partnership, "configure").get("skew_seconds") or 0),
        allow_unsolicited=sso.get("allowed_transactions") in ("both", "idp_initiated"),
        expected_in_response_to=expected_in_response_to,
        requested_authn_context=requested,
        authn_context_template=template,
        allowed_signature_algorithms=allowed_signature_algorithms(sha1=bool(signature.get("accept_sha1"))),
        allowed_encryption_algorithms=encryption,
    )


def _refusal(error, partnership, checkpoint="SSOSAML2SP_ACS_REFUSED"):
    """The SpError for a message the consumer refused: the IdP's own refusal or an authentication context that is
    too weak is an unaccepted credential (403); anything else is an invalid SSO message (400)."""
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, IdPStatusError | AuthnContextRejected):
        return SpError(
            "Your identity provider did not sign you in in a way this site accepts.",
            status=403,
            checkpoint=checkpoint,
            detail=detail,
            condition=UNACCEPTED_CREDENTIAL,
            partnership=partnership,
        )
    return SpError(
        "The sign-in message from your identity provider could not be accepted.",
        status=400,
        checkpoint=checkpoint,
        detail=detail,
        condition=INVALID_SSO_MESSAGE,
        partnership=partnership,
    )


def _state_for(request_id):
    if not request_id or len(request_id) > 128:
        return None
    return SpRequestState.objects.filter(request_id=request_id).first()


def _plain_assertion_issuer(response):
    for assertion in children(response, C.NS_SAML, "Assertion"):
        return issuer_of(assertion)
    return None


def _audience_of(response):
    for assertion in children(response, C.NS_SAML, "Assertion"):
        for audience in assertion.iter(f"{{{C.NS_SAML}}}Audience"):
            return (audience.text or "").strip() or None
    return None


def _partnership_for_response(response):
    """The partnership a still-unverified Response is for, from lookup keys only (everything is checked again by
    the consumer): the Issuer (of the response, else of a plain assertion), else the stored request it answers;
    with several local SPs partnering the same IdP, the stored request or the Audience decides."""
    issuer = issuer_of(response) or _plain_assertion_issuer(response)
    if issuer is None:
        state = _state_for(response.get("InResponseTo"))
        partnership = _active_by_name(state.partnership) if state is not None else None
        if partnership is None:
            raise SpError(
                "The sign-in message could not be matched to an identity provider this site knows.",
                status=400,
                checkpoint="SSOSAML2SP_ACS_NO_PARTNERSHIP",
                detail="the response names no Issuer and answers no request of ours",
                condition=INVALID_SSO_MESSAGE,
            )
        return partnership
    try:
        return find_active(KIND, issuer)
    except NoActivePartnership as error:
        state = _state_for(response.get("InResponseTo"))  # only when the Issuer alone does not decide
        if state is not None:
            partnership = _active_by_name(state.partnership)
            if partnership is not None and partnership.remote["entity_id"] == issuer:
                return partnership
        audience = _audience_of(response)
        if audience:
            try:
                return find_active(KIND, issuer, audience)
            except NoActivePartnership:
                pass
        raise SpError(
            "The sign-in message comes from an identity provider this site has no active partnership with.",
            status=400,
            checkpoint="SSOSAML2SP_ACS_NO_PARTNERSHIP",
            detail=str(error),
            condition=INVALID_SSO_MESSAGE,
        ) from None


class _Claim:
    """The consumer's InResponseTo lookup: the stored request of this partnership, taken once (an atomic DELETE, so
    two web nodes racing with one response cannot both use it), and only by the browser that started it."""

    def __init__(self, partnership, browser_id, now):
        self.partnership = partnership
        self.browser_digest = _digest(browser_id)
        self.now = now
        self.state = None

    def __call__(self, request_id):
        row = (
            SpRequestState.objects.filter(request_id=request_id, partnership=self.partnership.name, expires_at__gt=self.now)
            .only("pk", "relay_state", "data")
            .first()
        )
        if row is None or (row.data or {}).get("purpose") != "authn_request":
            return False
        expected = (row.data or {}).get("browser")
        if expected and expected != self.browser_digest:
            raise InResponseToMismatch(
                f"the response answers request {request_id!r}, which was started in another browser (or this browser did "
                "not send back the cookie set when SSO started; over plain http, browsers hold it back on a cross-site POST)"
            )
        if SpRequestState.objects.filter(pk=row.pk).delete()[0] != 1:
            return False  # another node took it first
        self.state = row
        return True


def _validate(partnership, response, *, browser_id, now, signed_envelope=False):
    """Run the consumer over a parsed Response for `partnership`: (ValidatedAssertion, claimed request or None)."""
    claim = _Claim(partnership, browser_id, now)
    settings = consumer_settings(partnership, expected_in_response_to=claim)
    try:
        validated = consume_response(
            response, settings, now=now, signed_envelope=signed_envelope, replay_cache=replay.remember_once
        )
    except replay.ReplayCacheError as error:
        raise SpError(
            "Sign-in is not possible at the moment. Please try again later.",
            status=500,
            checkpoint="SSOSAML2SP_REPLAY_CACHE_DOWN",
            detail=str(error),
            condition=SERVER_ERROR,
            partnership=partnership,
        ) from None
    except SAMLError as error:
        raise _refusal(error, partnership) from None
    if _step(partnership, "sso_slo").get("require_consent"):
        consent = response.get("Consent")
        if not validated.response_signed or consent != CONSENT_OBTAINED:
            raise _refusal(
                ResponseRejected(
                    f"the partnership requires user consent (a signed response with Consent={CONSENT_OBTAINED!r}); "
                    f"this response {'has Consent ' + repr(consent) if consent else 'has no Consent'}"
                    f"{'' if validated.response_signed else ' and is not signed'}"
                ),
                partnership,
            )
    return validated, claim.state


def identity_value(partnership, validated):
    """The value that identifies the user (reference ch01-08 F7.3): the Name ID, the first value of an attribute, or
    the first result of an XPath query on the verified (decrypted) assertion."""
    identification = _step(partnership, "user_identification")
    source = identification.get("identity_source") or "name_id"
    if source == "attribute":
        values = validated.attributes.get(identification.get("identity_attribute") or "") or []
        if len(values) > 1:
            log.info(
                "attribute %s has %d values; the first identifies the user",
                identification.get("identity_attribute"),
                len(values),
                extra={"checkpoint": "SSOSAML2SP_IDENTITY_MULTIVALUED"},
            )
        return values[0] if values else None
    if source == "xpath":
        return _xpath_value(partnership, identification.get("identity_xpath") or "", validated.assertion)
    return validated.name_id


@functools.lru_cache(maxsize=256)
def _compiled_xpath(expression):
    return etree.XPath(expression, namespaces=XPATH_NAMESPACES)


def _xpath_value(partnership, expression, assertion):
    try:
        result = _compiled_xpath(expression)(assertion)
    except (etree.XPathError, TypeError) as error:
        raise _config_error(
            partnership, f"the XPath query {expression!r} of partnership '{partnership.name}' fails: {error}"
        ) from None
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, etree._Element):
            text = "".join(item.itertext()).strip()
        elif isinstance(item, bool):
            text = "true" if item else "false"
        elif isinstance(item, float):
            text = str(int(item)) if item.is_integer() else str(item)
        else:
            text = str(item).strip()
        if text:
            return text
    return None


def find_user(partnership, value):
    """The first of the partnership's directories (in its order) whose search spec finds the user; None when none
    does. A directory that cannot answer stops the search (SpError 500): going on could pick another person."""
    if not value:
        return None
    specs = {
        row.get("directory"): row.get("search_spec")
        for row in _step(partnership, "user_identification").get("search_specs") or ()
    }
    rows = {d.name: d for d in UserDirectory.objects.filter(name__in=partnership.directories)}
    for name in partnership.directories:
        directory, spec = rows.get(name), specs.get(name)
        if directory is None or not spec:
            raise _config_error(
                partnership, f"directory {name!r} of partnership '{partnership.name}' is missing or has no search spec"
            )
        try:
            user = directories.find_user(directory, spec, value)
        except directories.DirectoryUnavailable as error:
            raise SpError(
                "Sign-in is not possible at the moment: the user directory does not answer. Please try again later.",
                status=500,
                checkpoint="SSOSAML2SP_DIRECTORY_DOWN",
                detail=f"directory {name!r}: {error.message}",
                condition=SERVER_ERROR,
                partnership=partnership,
            ) from None
        except directories.DirectoryError as error:
            raise _config_error(partnership, f"directory {name!r}, search spec {spec!r}: {error.message}") from None
        if user is not None:
            log.info("user %s found in %s by %s", user.identifier, name, spec, extra={"checkpoint": "SSOSAML2SP_USER_FOUND"})
            return user
    return None


def application_attributes(partnership, assertion_attributes):
    """What the application receives: the assertion's attributes unchanged, or, with attribute mapping on, each
    application attribute's expression over them (names case-sensitive; a DELETE result leaves it out)."""
    application = _step(partnership, "application")
    if not application.get("attribute_mapping_enabled"):
        return {name: list(values) for name, values in assertion_attributes.items()}
    result = {}
    for row in application.get("attribute_mappings") or ():
        try:
            evaluated = compile_expression(row.get("expression") or "").evaluate(assertion_attributes, case_sensitive_names=True)
        except ExpressionSyntaxError as error:
            raise _config_error(partnership, f"application attribute {row.get('name')!r}: {error}") from None
        if not evaluated.deleted:
            result[row["name"]] = list(evaluated.values)
    return result


def _facts(partnership, validated):
    return AssertionFacts(
        issuer=validated.issuer,
        name_id=validated.name_id,
        name_id_format=validated.name_id_format or "",
        session_index=validated.session_index or "",
        authn_context=validated.authn_context_class or "",
        attributes={name: list(values) for name, values in validated.attributes.items()},
        identity_value=identity_value(partnership, validated),
        assertion_id=validated.assertion_id,
    )


def consume_post(saml_response, relay_state=None, *, browser_id=None, session_cookie=None, now=None):
    """The HTTP-POST binding: the `SAMLResponse` and `RelayState` form fields."""
    now = now or utc_now()
    try:
        response = read_post(saml_response or "", relay_state).element
        partnership = _partnership_for_response(response)
    except SAMLError as error:
        raise _refusal(error, None) from None
    _check_binding_enabled(partnership, "post")
    _bind(response)
    validated, state = _validate(partnership, response, browser_id=browser_id, now=now)
    return _after_validation(partnership, validated, state, relay_state, session_cookie=session_cookie, now=now)


def _check_binding_enabled(partnership, binding):
    if binding not in (_step(partnership, "sso_slo").get("sso_bindings") or ["post"]):
        raise _refusal(
            SAMLError(f"the IdP used HTTP-{binding.capitalize()}, which partnership '{partnership.name}' does not enable"),
            partnership,
        )


def _bind(response):
    """Trace under the SAML transaction: the request our response answers (the SP's SAML transaction ID is the
    AuthnRequest ID, reference ch20-22 §3.4), else the response's own ID (IdP-initiated)."""
    bind_saml_transaction(response.get("InResponseTo") or response.get("ID") or "", note="Response at the SP's ACS")


def consume_artifact(saml_artifact, relay_state=None, *, browser_id=None, session_cookie=None, now=None):
    """The HTTP-Artifact binding: find the IdP by the artifact's SourceID, resolve it over SOAP, validate."""
    now = now or utc_now()
    try:
        artifact = parse_artifact(saml_artifact or "")
    except ArtifactError as error:
        raise _refusal(error, None, "SSOSAML2SP_ARTIFACT_REFUSED") from None
    remote_ids = PartnershipSnapshot.objects.filter(kind=KIND, current=True).values_list("remote_entity_id", flat=True)
    issuer = entity_for_source_id(artifact, source_id_index(set(remote_ids)))
    if issuer is None:
        raise SpError(
            "The sign-in message comes from an identity provider this site has no active partnership with.",
            status=400,
            checkpoint="SSOSAML2SP_ARTIFACT_UNKNOWN_SOURCE",
            detail=f"no active partnership's IdP has the artifact's SourceID {artifact.source_id.hex()}",
            condition=INVALID_SSO_MESSAGE,
        )
    partnership = _find_partnership(issuer, status=400, checkpoint="SSOSAML2SP_ARTIFACT_NO_PARTNERSHIP")
    _check_binding_enabled(partnership, "artifact")
    endpoint = _artifact_endpoint(partnership, artifact.endpoint_index)
    message = artifact_resolve(
        artifact, sp_entity_id=partnership.local["entity_id"], destination=endpoint, signing=_signing_key(partnership)
    )
    log.info(
        "resolving artifact at %s (ArtifactResolve %s)",
        endpoint,
        message.request_id,
        extra={"checkpoint": "SSOSAML2SP_ARTIFACT_RESOLVE"},
    )
    body = soap_call(partnership, endpoint, message.envelope)
    try:
        resolved = read_artifact_response(
            body,
            request_id=message.request_id,
            idp_entity_id=partnership.remote["entity_id"],
            idp_certificates=_verification_certificates(partnership),
            # An https back channel authenticates the IdP by TLS; over plain http the answer itself must be signed.
            require_signed=not endpoint.lower().startswith("https://"),
            allowed_algorithms=allowed_signature_algorithms(sha1=bool(_step(partnership, "signature").get("accept_sha1"))),
        )
    except SAMLError as error:
        raise _refusal(error, partnership, "SSOSAML2SP_ARTIFACT_REFUSED") from None
    log.info(
        "artifact resolved (ArtifactResponse %s)",
        resolved.artifact_response_id,
        extra={"checkpoint": "SSOSAML2SP_ARTIFACT_RESOLVED"},
    )
    _bind(resolved.response)
    validated, state = _validate(partnership, resolved.response, browser_id=browser_id, now=now, signed_envelope=resolved.signed)
    return _after_validation(partnership, validated, state, relay_state, session_cookie=session_cookie, now=now)


def _artifact_endpoint(partnership, index):
    endpoints = _remote_endpoints(partnership, "artifact_resolution", C.BINDING_SOAP)
    for endpoint in endpoints:
        if endpoint.get("index") == index:
            return endpoint["location"]
    if len(endpoints) == 1:
        return endpoints[0]["location"]
    raise _config_error(
        partnership, f"the IdP of partnership '{partnership.name}' has no SOAP artifact resolution service with index {index}"
    )


# --- The SOAP back channel -------------------------------------------------------------------------------------------


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"the back channel answered with a redirect to {newurl}", headers, fp)


_tls_contexts = {}


def _tls_context(partnership, client_alias):
    """An SSLContext verifying the server (the system's CAs plus the keystore's trusted CAs) and presenting our
    client certificate when `client_alias` names one. Cached per (client key fingerprint, trusted CA fingerprints)."""
    cas = list(
        KeystoreEntry.objects.filter(kind=KeystoreEntry.Kind.TRUSTED_CA)
        .order_by("pk")
        .values_list("fingerprint_sha256", "certificate_pem")
    )
    frozen = (partnership.certificates or {}).get(client_alias or "") or {}
    cache_key = (client_alias, frozen.get("fingerprint_sha256"), tuple(f for f, _ in cas))
    context = _tls_contexts.get(cache_key)
    if context is not None:
        return context
    context = ssl.create_default_context()
    if cas:
        context.load_verify_locations(cadata="\n".join(pem for _, pem in cas))
    if client_alias:
        key, certificate = _key_pair(partnership, client_alias, "The back-channel client certificate")
        # ssl loads a client certificate only from files: write them to a private temporary folder, load, delete.
        with tempfile.TemporaryDirectory(prefix="federation-tls-") as folder:
            os.chmod(folder, 0o700)
            key_path, cert_path = os.path.join(folder, "key.pem"), os.path.join(folder, "cert.pem")
            with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
                handle.write(
                    key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
                )
            with open(cert_path, "wb") as handle:
                handle.write(certificate_pem(certificate))
            context.load_cert_chain(cert_path, key_path)
    if len(_tls_contexts) > 64:
        _tls_contexts.clear()
    _tls_contexts[cache_key] = context
    return context


def soap_call(partnership, url, envelope):
    """POST a SOAP message on the partnership's outgoing back channel (Basic, client certificate or none) and return
    the answer's bytes: TLS verified, redirects refused, a timeout, and at most the protocol core's message size.
    A SOAP fault comes back as the body (HTTP 500), for the caller's reader to report."""
    sso = _step(partnership, "sso_slo")
    method = sso.get("backchannel_out_auth") or "none"
    https = url.lower().startswith("https://")
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION, "Accept": "text/xml"}
    if method == "basic":
        user = (sso.get("backchannel_out_user") or "").strip() or partnership.name
        password = snapshot_secrets(partnership.snapshot_id).get("sso_slo.backchannel_out_password") or ""
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    if method == "client_cert" and not https:
        raise _config_error(partnership, f"the back channel uses a client certificate, so {url} must be https://")
    handlers = [_RefuseRedirects()]
    if https:
        handlers.append(
            urllib.request.HTTPSHandler(
                context=_tls_context(partnership, sso.get("backchannel_out_client_key") if method == "client_cert" else None)
            )
        )
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, data=envelope, headers=headers, method="POST")
    limit = C.MAX_MESSAGE_BYTES
    try:
        with opener.open(request, timeout=BACKCHANNEL_TIMEOUT_SECONDS) as answer:
            body = answer.read(limit + 1)
    except urllib.error.HTTPError as error:
        body = error.read(limit + 1) if error.code == 500 and error.fp is not None else b""
        if not body:
            raise _backchannel_error(partnership, url, f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise _backchannel_error(partnership, url, str(getattr(error, "reason", error))) from None
    if len(body) > limit:
        raise _backchannel_error(partnership, url, f"the answer is larger than {limit} bytes")
    return body


def _backchannel_error(partnership, url, reason):
    return SpError(
        "Your identity provider could not be reached to complete the sign-in. Please try again later.",
        status=502,
        checkpoint="SSOSAML2SP_BACKCHANNEL_FAILED",
        detail=f"the SOAP back channel to {url} failed: {reason}",
        condition=SERVER_ERROR,
        partnership=partnership,
    )


# --- After validation: user, provisioning, session, delivery ---------------------------------------------------------


def _after_validation(partnership, validated, state, relay_state, *, session_cookie, now):
    """A validated assertion: pick the target, find the user (or provision), open the session, deliver."""
    if state is not None:
        if relay_state not in (None, state.relay_state):
            log.info(
                "the RelayState that came back differs from the one sent; the one sent is used",
                extra={"checkpoint": "SSOSAML2SP_RELAYSTATE_CHANGED"},
            )
        relay_state = state.relay_state
    log.info(
        "assertion %s from %s accepted (%s, %s%s)",
        validated.assertion_id,
        validated.issuer,
        f"answers {validated.in_response_to}" if validated.in_response_to else "IdP-initiated",
        "signed response" if validated.response_signed else "unsigned response",
        ", encrypted assertion" if validated.assertion_encrypted else "",
        extra={"checkpoint": "SSOSAML2SP_ACS_ACCEPTED"},
    )
    target = choose_target(partnership, relay_state or None)
    facts = _facts(partnership, validated)
    # No transaction around the lookup and the session: on SQLite a transaction that reads before it writes fails at
    # once ("database is locked") when another web process wrote in between, instead of waiting its turn.
    user = find_user(partnership, facts.identity_value)
    if user is None:
        return _user_not_found(partnership, facts, target, now=now)
    return complete_sso(partnership, facts, user, target, session_cookie=session_cookie, now=now)


def _user_not_found(partnership, facts, target, *, now):
    application = _step(partnership, "application")
    if application.get("provisioning_type") != "remote":
        raise SpError(
            "Your account was not found at this site.",
            status=403,
            checkpoint="SSOSAML2SP_USER_NOT_FOUND",
            detail=f"no directory of partnership '{partnership.name}' has a user for {facts.identity_value!r}",
            condition=USER_NOT_FOUND,
            partnership=partnership,
        )
    key = secrets.token_urlsafe(32)
    SpRequestState.objects.create(
        request_id=_provisioning_id(key),
        partnership=partnership.name,
        snapshot_id=partnership.snapshot_id,
        relay_state=target,
        data={"purpose": "provisioning", "facts": facts.as_data()},
        expires_at=now + PROVISIONING_LIFETIME,
    )
    seconds = int(PROVISIONING_LIFETIME.total_seconds())
    cookies = [Cookie(PROVISIONING_COOKIE, key, max_age=seconds)]
    if application.get("provisioning_delivery") == "open_format_cookie":
        attributes = application_attributes(partnership, facts.attributes)
        properties = _cookie_properties(facts, login_id=facts.identity_value, expires_at=now + PROVISIONING_LIFETIME)
        cookies.append(_open_cookie(partnership, properties, attributes, max_age=seconds))
    log.info(
        "user %r not found; sent to the provisioning application %s (%s)",
        facts.identity_value,
        application.get("provisioning_url"),
        application.get("provisioning_delivery"),
        extra={"checkpoint": "SSOSAML2SP_PROVISIONING_REDIRECT"},
    )
    return Outcome(redirect_url=application.get("provisioning_url"), cookies=tuple(cookies), partnership=partnership)


def _provisioning_id(key):
    return "provisioning:" + _digest(key)


def _provisioning_state(key, now):
    if not key or len(key) > 200:
        return None
    row = SpRequestState.objects.filter(request_id=_provisioning_id(key), expires_at__gt=now).first()
    return row if row is not None and (row.data or {}).get("purpose") == "provisioning" else None


def finish_provisioning(state_key, *, session_cookie=None, now=None):
    """The browser is back from the provisioning application (reference ch20-22 §1.6 step 5): take the state once,
    look the user up a second time, and finish SSO; still not found ends with the user-not-found status redirect."""
    now = now or utc_now()
    row = _provisioning_state(state_key, now)
    if row is None or SpRequestState.objects.filter(pk=row.pk).delete()[0] != 1:
        raise SpError(
            "There is no sign-in waiting to be finished in this browser, or it took too long. Please sign in again.",
            status=400,
            checkpoint="SSOSAML2SP_PROVISIONING_NO_STATE",
            detail="the provisioning state cookie is missing, unknown, expired or already used",
            condition=BAD_REQUEST,
        )
    partnership = _active_by_name(row.partnership)
    if partnership is None:
        raise SpError(
            "Sign-in with this identity provider is not available any more.",
            status=403,
            checkpoint="SSOSAML2SP_PROVISIONING_NO_PARTNERSHIP",
            detail=f"partnership {row.partnership!r} is no longer active",
            condition=UNAUTHORIZED,
        )
    facts = AssertionFacts.from_data(row.data["facts"])
    log.info(
        "back from provisioning: second lookup of %r",
        facts.identity_value,
        extra={"checkpoint": "SSOSAML2SP_PROVISIONING_RETURN"},
    )
    user = find_user(partnership, facts.identity_value)
    if user is None:
        raise SpError(
            "Your account was not found at this site.",
            status=403,
            checkpoint="SSOSAML2SP_USER_NOT_FOUND",
            detail=f"after provisioning, still no user for {facts.identity_value!r} in the directories of '{partnership.name}'",
            condition=USER_NOT_FOUND,
            partnership=partnership,
        )
    outcome = complete_sso(partnership, facts, user, row.relay_state, session_cookie=session_cookie, now=now)
    cookies = [*outcome.cookies, Cookie(PROVISIONING_COOKIE, delete=True)]
    application = _step(partnership, "application")
    if (
        application.get("provisioning_delivery") == "open_format_cookie"
        and application.get("redirect_mode") != "open_format_cookie"
    ):
        cookies.append(
            Cookie(application.get("cookie_name") or "FEDATTR", domain=application.get("cookie_domain") or None, delete=True)
        )
    return replace(outcome, cookies=tuple(cookies))


def session_lifetimes(partnership):
    application = _step(partnership, "application")
    return timedelta(minutes=int(application.get("session_idle_minutes") or 60)), timedelta(
        minutes=int(application.get("session_max_minutes") or 120)
    )


def complete_sso(partnership, facts, user, target, *, session_cookie=None, now=None):
    """Open the SP session for an identified user and deliver to the application by the partnership's redirect mode.
    A session this browser already had is ended first (one SP session per browser)."""
    now = now or utc_now()
    application = _step(partnership, "application")
    mode = application.get("redirect_mode") or "no_data"
    attributes = application_attributes(partnership, facts.attributes)
    idle, maximum = session_lifetimes(partnership)
    cookie_value = secrets.token_urlsafe(32)
    key, expires_at, seconds = _digest(cookie_value), now + maximum, int(maximum.total_seconds())
    cookies = [Cookie(SESSION_COOKIE, cookie_value, max_age=seconds)]
    if mode == "open_format_cookie":  # made first: a cookie that cannot be delivered must not leave a session behind
        properties = _cookie_properties(
            facts, login_id=user.login, user_dn=user.identifier, session_id=key, expires_at=expires_at
        )
        cookies.append(_open_cookie(partnership, properties, attributes, max_age=seconds))
    with transaction.atomic():
        if session_cookie:
            SpSession.objects.filter(key=_digest(session_cookie)).delete()
        session = SpSession.objects.create(
            key=key,
            partnership=partnership.name,
            snapshot_id=partnership.snapshot_id,
            remote_entity_id=partnership.remote["entity_id"],
            name_id=facts.name_id[:1024],
            name_id_format=(facts.name_id_format or "")[:255],
            session_index=(facts.session_index or "")[:128],
            username=(user.login or "")[:255],
            directory=user.directory.name[:100],
            user_dn=(user.identifier or "")[:1024],
            authn_class=(facts.authn_context or "")[:255],
            attributes=attributes if mode in ("http_headers", "persist_attributes") else {},
            last_seen_at=now,
            idle_expires_at=now + min(idle, maximum),
            expires_at=expires_at,
        )
    log.info(
        "SP session for %s (%s) opened; %s to %s",
        user.login,
        user.directory.name,
        mode.replace("_", " "),
        target,
        extra={"checkpoint": "SSOSAML2SP_SESSION_CREATED"},
    )
    return Outcome(redirect_url=target, cookies=tuple(cookies), partnership=partnership, session=session)


def _cookie_properties(facts, *, login_id, user_dn=None, session_id=None, expires_at=None):
    return {
        "NameID": facts.name_id,
        "NameIDFormat": facts.name_id_format or None,
        "SessionID": session_id,
        "AuthnContext": facts.authn_context or None,
        "UserDN": user_dn,
        "LoginID": login_id,
        "ExpiresOn": expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if expires_at else None,
    }


def _open_cookie(partnership, properties, attributes, *, max_age):
    application = _step(partnership, "application")
    password = snapshot_secrets(partnership.snapshot_id).get("application.cookie_password")
    if not password:
        raise _config_error(partnership, f"partnership '{partnership.name}' has no open-format cookie password")
    token = opencookie.encode(properties, attributes, password, application.get("cookie_algorithm") or "aes256-gcm")
    name = application.get("cookie_name") or "FEDATTR"
    if len(token) + len(name) + 1 > opencookie.MAX_COOKIE_BYTES:
        raise _config_error(
            partnership,
            f"the open-format cookie would be {len(token) + len(name) + 1} bytes, and browsers drop cookies over "
            f"{opencookie.MAX_COOKIE_BYTES}; map fewer or shorter attributes for partnership '{partnership.name}'",
        )
    return Cookie(name, token, max_age=max_age, domain=application.get("cookie_domain") or None)


# --- The session check (nginx auth_request) --------------------------------------------------------------------------


def session_for_cookie(cookie_value, now=None):
    """The live SpSession of a session cookie value, or None (the single-logout code looks sessions up here too)."""
    now = now or utc_now()
    if not cookie_value or len(cookie_value) > 200:
        return None
    return SpSession.objects.filter(key=_digest(cookie_value), expires_at__gt=now, idle_expires_at__gt=now).first()


def end_session(cookie_value):
    """Delete the SP session of a cookie value (local logout); True when there was one."""
    return bool(cookie_value) and SpSession.objects.filter(key=_digest(cookie_value)).delete()[0] > 0


def _header_items(prefix, name_id, name_id_format, authn_context, attributes, extra=None):
    headers = {f"{prefix}NAMEID": name_id, f"{prefix}FORMAT": name_id_format or "", f"{prefix}AUTHNCONTEXT": authn_context or ""}
    headers.update({f"{prefix}{name}": value for name, value in (extra or {}).items()})
    reserved = {name.lower() for name in headers}
    for name, values in attributes.items():
        header = f"{prefix}{name}"
        if not _HEADER_TOKEN.match(header) or header.lower() in reserved:
            log.warning(
                "attribute %r cannot be an HTTP header (not a header name, or taken); map it to another name",
                name,
                extra={"checkpoint": "SSOSAML2SP_HEADER_SKIPPED"},
            )
            continue
        reserved.add(header.lower())
        headers[header] = ",".join(values)
    # A header value never carries a line break (it would end the header).
    return {name: re.sub(r"[\r\n\x00]+", " ", value) for name, value in headers.items()}


def _forged_headers(prefix, inbound_header_names):
    lowered = prefix.lower()
    return sorted(name for name in inbound_header_names if name.lower().startswith(lowered))


def session_check(cookie_value, inbound_header_names=(), *, provisioning_key=None, now=None):
    """The answer to a reverse proxy's auth subrequest. 200 with `<prefix>NAMEID`, `<prefix>FORMAT`,
    `<prefix>AUTHNCONTEXT` and the attributes (values comma-joined) for a live SP session; 401 without one; 403
    when the browser's request already carried a header with the prefix (a forgery attempt: never passed on).

    With `provisioning_key` (the provisioning application's location asks with ?provisioning=1) the answer is the
    pending provisioning's data, with `<prefix>LOGINID`, when the partnership delivers it by HTTP headers."""
    now = now or utc_now()
    if provisioning_key is not None:
        return _provisioning_check(provisioning_key, inbound_header_names, now)
    session = session_for_cookie(cookie_value, now)
    if session is None:
        log.debug("no SP session", extra={"checkpoint": "SSOSAML2SP_SESSIONCHECK_NONE"})  # every anonymous request: not stored
        return CheckResult(401)
    partnership = _active_by_name(session.partnership)
    if partnership is None:
        SpSession.objects.filter(pk=session.pk).delete()
        log.info(
            "SP session of inactive partnership %s ended",
            session.partnership,
            extra={"checkpoint": "SSOSAML2SP_SESSIONCHECK_NONE"},
        )
        return CheckResult(401)
    prefix = _step(partnership, "application").get("header_prefix") or "Fed-"
    forged = _forged_headers(prefix, inbound_header_names)
    if forged:
        log.warning(
            "request refused: it carried %s, which only this site may set",
            ", ".join(forged),
            extra={"checkpoint": "SSOSAML2SP_SESSIONCHECK_FORGED"},
        )
        return CheckResult(403)
    if now - session.last_seen_at >= SESSION_TOUCH_INTERVAL:
        idle, _ = session_lifetimes(partnership)
        SpSession.objects.filter(pk=session.pk).update(last_seen_at=now, idle_expires_at=min(now + idle, session.expires_at))
    headers = _header_items(prefix, session.name_id, session.name_id_format, session.authn_class, session.attributes or {})
    data = {
        "name_id": session.name_id,
        "name_id_format": session.name_id_format,
        "authn_context": session.authn_class,
        "username": session.username,
        "user_dn": session.user_dn,
        "idp": session.remote_entity_id,
        "partnership": session.partnership,
        "attributes": session.attributes or {},
        "expires_at": session.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return CheckResult(200, headers, data)


def _provisioning_check(key, inbound_header_names, now):
    row = _provisioning_state(key, now)
    partnership = _active_by_name(row.partnership) if row is not None else None
    if partnership is None:
        return CheckResult(401)
    application = _step(partnership, "application")
    if application.get("provisioning_delivery") != "http_headers":
        return CheckResult(401)
    prefix = application.get("header_prefix") or "Fed-"
    if _forged_headers(prefix, inbound_header_names):
        log.warning("provisioning request refused: forged headers", extra={"checkpoint": "SSOSAML2SP_SESSIONCHECK_FORGED"})
        return CheckResult(403)
    facts = AssertionFacts.from_data(row.data["facts"])
    attributes = application_attributes(partnership, facts.attributes)
    headers = _header_items(
        prefix, facts.name_id, facts.name_id_format, facts.authn_context, attributes, {"LOGINID": facts.identity_value or ""}
    )
    data = {"name_id": facts.name_id, "login_id": facts.identity_value, "attributes": attributes, "provisioning": True}
    return CheckResult(200, headers, data)


# --- Maintenance -----------------------------------------------------------------------------------------------------


def sweep_expired(now=None):
    """Delete stored requests, provisioning states and SP sessions past their time (Celery beat)."""
    now = now or utc_now()
    requests = SpRequestState.objects.filter(expires_at__lte=now).delete()[0]
    sessions = (
        SpSession.objects.filter(expires_at__lte=now).delete()[0] + SpSession.objects.filter(idle_expires_at__lte=now).delete()[0]
    )
    return {"requests": requests, "sessions": sessions}


# --- IdP discovery (SAML profiles §4.3) ------------------------------------------------------------------------------


def read_common_domain_cookie(value):
    """The entity IDs in a `_saml_idp` value (URL-encoded, space-separated base64 entity IDs), most recent last.
    Entries that are not base64 of UTF-8 text are skipped, not fatal: the cookie is written by many parties."""
    text = unquote(value or "").strip().strip('"')
    found = []
    for part in text.split():
        try:
            entity_id = base64.b64decode(part, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if entity_id and entity_id not in found:
            found.append(entity_id)
        elif entity_id in found:
            found.remove(entity_id)
            found.append(entity_id)
    return found


def common_domain_cookie_value(entity_ids):
    """The `_saml_idp` value for `entity_ids` (oldest first): base64 each, join with spaces, URL-encode the whole."""
    encoded = " ".join(base64.b64encode(entity_id.encode("utf-8")).decode("ascii") for entity_id in entity_ids)
    return quote(encoded, safe="")


def _discovery_partnerships():
    rows = PartnershipSnapshot.objects.filter(kind__in=(KIND, IDP_KIND), current=True).values_list("pk", flat=True)
    active = [load_snapshot(pk) for pk in rows]
    return [p for p in active if _discovery_settings(p).get("idp_discovery_enabled")]


def _discovery_settings(partnership):
    return (partnership.settings or {}).get("sso_slo") or {}


def _in_domain(host, domain):
    domain = (domain or "").strip().lstrip(".").lower()
    host = (host or "").split(":")[0].lower()
    return bool(domain) and (host == domain or host.endswith("." + domain))


def discovery_target_allowed(url, partnerships):
    """IPDTarget must be an http(s) URL on a host of this site's local entities or partnerships, or in a configured
    common domain (the reference's ValidFedTargetDomain): the discovery service never redirects elsewhere."""
    parts = _url_parts(url or "")
    if parts is None or any(ord(ch) < 0x21 or ch == "\\" for ch in url):
        return False
    host = parts[1]
    hosts = set()
    for base in Entity.objects.filter(location=Entity.Location.LOCAL).exclude(base_url="").values_list("base_url", flat=True):
        found = _url_parts(base)
        if found:
            hosts.add(found[1])
    for partnership in partnerships:
        found = _url_parts(
            base_url(partnership) if partnership.kind == KIND else (_step_any(partnership, "configure").get("base_url") or "")
        )
        if found:
            hosts.add(found[1])
    return host in hosts or any(_in_domain(host, _discovery_settings(p).get("idp_discovery_common_domain")) for p in partnerships)


def _step_any(partnership, step):
    return (partnership.settings or {}).get(step) or {}


def discovery(params, cookie_value, host):
    """The discovery service `saml2ipd`: `SAMLRequest=getIPDCookie` (the default) sends the browser back to
    IPDTarget with the cookie's value in `_saml_idp`; `SAMLRequest=setIPDCookie` with `ProviderID` puts that IdP last
    in the cookie (most recent) and sends the browser to IPDTarget. Only where a partnership enables discovery for a
    common domain holding this host."""
    partnerships = _discovery_partnerships()
    domains = [
        d for d in (_discovery_settings(p).get("idp_discovery_common_domain") for p in partnerships) if _in_domain(host, d)
    ]
    if not domains:
        raise SpError(
            "IdP discovery is not offered at this address.",
            status=404,
            checkpoint="SSOSAML2SP_IPD_DISABLED",
            detail=f"no active partnership enables IdP discovery for a common domain holding {host!r}",
        )
    target = params.get("ipdtarget") or ""
    if not discovery_target_allowed(target, partnerships):
        raise SpError(
            "The page the discovery service was asked to return to is not one this site sends users to.",
            status=403,
            checkpoint="SSOSAML2SP_IPD_TARGET_REFUSED",
            detail=f"IPDTarget {target[:200]!r} is not on a host of this site or in its common domain",
            condition=UNAUTHORIZED,
        )
    request = (params.get("samlrequest") or "getIPDCookie").strip()
    known = read_common_domain_cookie(cookie_value)
    separator = "&" if "?" in target else "?"
    if request.lower() == "getipdcookie":
        value = common_domain_cookie_value(known)
        log.info("common-domain cookie read: %d IdPs", len(known), extra={"checkpoint": "SSOSAML2SP_IPD_GET"})
        return Outcome(redirect_url=f"{target}{separator}{urlencode({COMMON_DOMAIN_COOKIE: value})}")
    if request.lower() == "setipdcookie":
        provider = (params.get("providerid") or "").strip()
        if not provider or len(provider) > 1024:
            raise SpError(
                "The request is not valid.",
                status=400,
                checkpoint="SSOSAML2SP_IPD_BAD_REQUEST",
                detail="setIPDCookie needs ProviderID=<the IdP's entity ID>",
                condition=BAD_REQUEST,
            )
        entries = [entity_id for entity_id in known if entity_id != provider][-(COMMON_DOMAIN_MAX_ENTRIES - 1) :] + [provider]
        log.info("common-domain cookie: %s added", provider, extra={"checkpoint": "SSOSAML2SP_IPD_SET"})
        cookie = Cookie(COMMON_DOMAIN_COOKIE, common_domain_cookie_value(entries), domain=domains[0], http_only=False)
        return Outcome(redirect_url=target, cookies=(cookie,))
    raise SpError(
        "The request is not valid.",
        status=400,
        checkpoint="SSOSAML2SP_IPD_BAD_REQUEST",
        detail=f"SAMLRequest {request[:50]!r} is neither getIPDCookie nor setIPDCookie",
        condition=BAD_REQUEST,
    )


@dataclass(frozen=True)
class SiteSelection:
    """What the site-selection page shows: the IdPs this browser used (most recent first), the others, and the
    RelayState to pass on."""

    used: list
    others: list
    relay_state: str = ""


def site_selection(params, page_url):
    """The site-selection page: first a trip to the discovery service for the common-domain cookie (when a
    partnership names one), then the list. Returns an Outcome (the trip) or a SiteSelection."""
    relay_state = params.get("relaystate") or ""
    rows = PartnershipSnapshot.objects.filter(kind=KIND, current=True).values_list("pk", flat=True)
    active = [load_snapshot(pk) for pk in rows]
    if COMMON_DOMAIN_COOKIE not in params:
        services = [
            _step(p, "sso_slo").get("idp_discovery_service_url")
            for p in active
            if _step(p, "sso_slo").get("idp_discovery_enabled")
        ]
        services = [s for s in services if s]
        if services:
            back = page_url + ("?" + urlencode({"RelayState": relay_state}) if relay_state else "")
            query = urlencode({"IPDTarget": back, "SAMLRequest": "getIPDCookie"})
            log.info(
                "site selection: asking %s for the common-domain cookie",
                services[0],
                extra={"checkpoint": "SSOSAML2SP_SITESELECTION_DISCOVER"},
            )
            return Outcome(redirect_url=f"{services[0]}{'&' if '?' in services[0] else '?'}{query}")
    used_ids = list(reversed(read_common_domain_cookie(params.get(COMMON_DOMAIN_COOKIE) or "")))
    by_id = {}
    for partnership in sorted(active, key=lambda p: p.name):
        by_id.setdefault(partnership.remote["entity_id"], partnership)

    def entry(entity_id):
        partnership = by_id[entity_id]
        query = {"ProviderID": entity_id}
        if relay_state:
            query["RelayState"] = relay_state
        return {
            "entity_id": entity_id,
            "name": partnership.remote.get("name") or entity_id,
            "url": runtime_paths.SAML2_AUTHN_REQUEST + "?" + urlencode(query),
        }

    used = [entry(entity_id) for entity_id in used_ids if entity_id in by_id]
    others = [entry(entity_id) for entity_id in by_id if entity_id not in used_ids]
    log.info("site selection: %d used, %d other IdPs", len(used), len(others), extra={"checkpoint": "SSOSAML2SP_SITESELECTION"})
    return SiteSelection(used, others, relay_state)


__all__ = [
    "AssertionFacts",
    "CheckResult",
    "Cookie",
    "Outcome",
    "SiteSelection",
    "SpError",
    "application_attributes",
    "choose_target",
    "common_domain_cookie_value",
    "complete_sso",
    "consume_artifact",
    "consume_post",
    "consumer_settings",
    "discovery",
    "end_session",
    "finish_provisioning",
    "find_user",
    "identity_value",
    "parameters",
    "read_common_domain_cookie",
    "session_check",
    "session_for_cookie",
    "site_selection",
    "start_sso",
    "sweep_expired",
    "target_allowed",
]
