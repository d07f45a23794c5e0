"""SAML 2.0 identity provider runtime: the service functions behind saml2sso, the login and consent pages and
saml2artifactresolution (docs/idp-runtime.md). Views (federation/views/idp.py) only turn HTTP into the plain values
these functions take and turn the results into responses.

One SSO transaction, whoever starts it:

    start (AuthnRequest on Redirect/POST, or IdP-initiated ?SPID=…)      → checks, chosen ACS, a PendingSSO
    session?   no / ForceAuthn → login page → directories in order → federation users → session (FEDSESSION)
               IsPassive without one → NoPassive response
    issue      federation users, authentication context, NameID, attributes, [consent], build, sign, encrypt
    deliver    HTTP-POST (auto-submitted form) or HTTP-Artifact (stored; 302 with SAMLart), participant recorded

The state between the requests of one transaction travels in a signed token (`PendingSSO`, Django signing with the
site's secret key, so every web node can read it) rather than in process memory or the database. The partnership is
the activated snapshot (`partnerships.runtime`); what the runtime derives from it (URLs, bindings, certificates) is
built once per snapshot and process (`config_for`), and the signing key is opened once per (alias, fingerprint).

Every step logs a trace line with an `SSOSAML2_…` checkpoint and the SAML transaction ID (the AuthnRequest ID, or for
IdP-initiated SSO the Response ID) is bound to each request's transaction ID (`tracing.bind_saml_transaction`).
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from urllib.parse import quote, urlencode

from cryptography import x509
from django.core import signing
from django.utils.crypto import salted_hmac

from federation import artifact_store, backchannel, directories, persistent_ids, runtime_paths, sso_sessions, tracing
from federation.runtime_errors import PostForm, Redirect, Refusal, SoapAnswer
from federation.saml import constants as C
from federation.saml.artifacts import (
    ArtifactError,
    ArtifactResolvePolicy,
    artifact_response_bytes,
    build_artifact,
    build_artifact_response,
    parse_artifact_resolve,
    source_id,
)
from federation.saml.assertions import (
    AssertionBuildError,
    AssertionSettings,
    Attribute,
    EncryptionSettings,
    NameID,
    ResponseSettings,
    SignatureOption,
    build_error_response,
    build_response,
)
from federation.saml.authn_requests import (
    AuthnRequestError,
    AuthnRequestPolicy,
    Endpoint,
    choose_acs,
    parse_post_authn_request,
    parse_redirect_authn_request,
)
from federation.saml.common import (
    DEFAULT_RELAY_STATE_LIMIT,
    MessageExpired,
    ProtocolError,
    SignatureRequired,
    SigningKey,
    encode_post,
    new_id,
    soap_fault,
    status_for_error,
)
from federation.saml.errors import SAMLError, SignatureError
from federation.saml.signing import allowed_signature_algorithms
from federation.saml.xml import to_bytes
from federation.tracing import bind_saml_transaction
from partnerships import authn_context
from partnerships.catalog_choices import ALGORITHM_URIS, BINDING_URIS
from partnerships.expressions import ExpressionSyntaxError, compile_expression
from partnerships.federation_users import FederationUserRule, is_federation_user
from partnerships.runtime import NoActivePartnership, find_active, load_snapshot, snapshot_secrets

log = logging.getLogger("federation.runtime.idp")

KIND = "saml2_idp_sp"
CONSENT_OBTAINED = "urn:oasis:names:tc:SAML:2.0:consent:obtained"
CONSENT_SECONDS = 300  # the reference's fixed 5-minute window (ch09-10 B12)
LOGIN_SECONDS_DEFAULT = 600
PROTECTION_LEVEL_DEFAULT = 5  # the login page's protection level (the reference's forms scheme default)
ARTIFACT_ENDPOINT_INDEX = 0  # our one artifact resolution service

# Inbound size limits, checked on the raw request before any parsing.
MAX_POST_BYTES = C.MAX_MESSAGE_BYTES * 4 // 3 + 16 * 1024
MAX_QUERY_BYTES = 2 * C.MAX_REDIRECT_MESSAGE_BYTES + 8192


class Checkpoint:
    """Trace checkpoint codes of the IdP runtime (grep the logs or search the console's trace by them)."""

    REQUEST_READ = "SSOSAML2_REQUEST_READ"
    PARTNERSHIP_FOUND = "SSOSAML2_PARTNERSHIP_FOUND"
    SESSION_FOUND = "SSOSAML2_SESSION_FOUND"
    LOGIN_REQUIRED = "SSOSAML2_LOGIN_REQUIRED"
    USER_AUTHENTICATED = "SSOSAML2_USER_AUTHENTICATED"
    AUTHN_CONTEXT = "SSOSAML2_AUTHN_CONTEXT"
    NAME_ID = "SSOSAML2_NAMEID"
    CONSENT_REQUESTED = "SSOSAML2_CONSENT_REQUESTED"
    CONSENT_GIVEN = "SSOSAML2_CONSENT_GIVEN"
    ASSERTION_BUILT = "SSOSAML2_ASSERTION_BUILT"
    SIGNED = "SSOSAML2_SIGNED"
    DELIVERED = "SSOSAML2_DELIVERED"
    ARTIFACT_STORED = "SSOSAML2_ARTIFACT_STORED"
    NEGATIVE_RESPONSE = "SSOSAML2_NEGATIVE_RESPONSE"
    # refusals
    NO_MESSAGE = "SSOSAML2_NO_MESSAGE"
    METHOD_NOT_ALLOWED = "SSOSAML2_METHOD_NOT_ALLOWED"
    MESSAGE_TOO_LARGE = "SSOSAML2_MESSAGE_TOO_LARGE"
    INVALID_MESSAGE = "SSOSAML2_INVALID_MESSAGE"
    UNKNOWN_PARTNER = "SSOSAML2_UNKNOWN_PARTNER"
    BINDING_NOT_ENABLED = "SSOSAML2_BINDING_NOT_ENABLED"
    TRANSACTION_NOT_ALLOWED = "SSOSAML2_TRANSACTION_NOT_ALLOWED"
    SIGNATURE_REQUIRED = "SSOSAML2_SIGNATURE_REQUIRED"
    SIGNATURE_INVALID = "SSOSAML2_SIGNATURE_INVALID"
    REQUEST_EXPIRED = "SSOSAML2_REQUEST_EXPIRED"
    ACS_REFUSED = "SSOSAML2_ACS_REFUSED"
    RELAY_STATE_TOO_LONG = "SSOSAML2_RELAY_STATE_TOO_LONG"
    NO_PASSIVE = "SSOSAML2_NO_PASSIVE"
    NO_AUTHN_CONTEXT = "SSOSAML2_NO_AUTHN_CONTEXT"
    NAME_ID_UNAVAILABLE = "SSOSAML2_NAMEID_UNAVAILABLE"
    LOGIN_FAILED = "SSOSAML2_LOGIN_FAILED"
    LOGIN_CANCELLED = "SSOSAML2_LOGIN_CANCELLED"
    DIRECTORY_UNAVAILABLE = "SSOSAML2_DIRECTORY_UNAVAILABLE"
    USER_REFUSED = "SSOSAML2_USER_REFUSED"
    FORM_EXPIRED = "SSOSAML2_FORM_EXPIRED"
    CONSENT_DENIED = "SSOSAML2_CONSENT_DENIED"
    CONSENT_EXPIRED = "SSOSAML2_CONSENT_EXPIRED"
    CONFIGURATION = "SSOSAML2_CONFIGURATION_ERROR"
    SESSION_STORE = "SSOSAML2_SESSION_STORE_ERROR"
    # artifact resolution
    RESOLVE_READ = "SSOSAML2_ARTIFACT_RESOLVE_READ"
    RESOLVE_REFUSED = "SSOSAML2_ARTIFACT_RESOLVE_REFUSED"
    BACKCHANNEL_AUTH_FAILED = "SSOSAML2_BACKCHANNEL_AUTH_FAILED"
    BACKCHANNEL_UNAUTHENTICATED = "SSOSAML2_BACKCHANNEL_UNAUTHENTICATED"
    ARTIFACT_RESOLVED = "SSOSAML2_ARTIFACT_RESOLVED"
    ARTIFACT_NOT_FOUND = "SSOSAML2_ARTIFACT_NOT_FOUND"


def _trace(level, checkpoint, message, *args):
    tracing.log_checkpoint(log, level, checkpoint, message, *args)


def _info(checkpoint, message, *args):
    _trace(logging.INFO, checkpoint, message, *args)


# --- results the views turn into responses -----------------------------------------------------------------------


@dataclass
class LoginPage:
    """Show (or redirect to) the login form for the pending transaction `token`."""

    token: str
    partner: str
    message: str = ""
    username: str = ""
    status: int = 200
    cancel_allowed: bool = True


@dataclass
class ConsentPage:
    token: str
    partner: str
    idp: str
    form_token: str
    attributes: tuple = ()
    custom_template: str = ""


@dataclass
class Outcome:
    """What a service function answers: one of the results above, and the session whose cookie to set."""

    result: object
    set_session: sso_sessions.SessionRecord | None = None


def _refuse(config, status, message, checkpoint, detail="", condition=None):
    return Outcome(Refusal(status, message, checkpoint, detail, config.status_redirects if config else None, condition))


# --- the partnership as the runtime uses it ----------------------------------------------------------------------


class ConfigurationError(Exception):
    """The activated partnership cannot be served as configured (a key gone from the keystore, say)."""


@dataclass(frozen=True)
class IdpConfig:
    """What the runtime needs from one activated IdP→SP snapshot, derived once per process."""

    snapshot_id: int
    partnership_id: int
    name: str
    idp_entity_id: str
    sp_entity_id: str
    base_url: str
    sso_url: str
    artifact_resolution_url: str
    directories: tuple
    settings: dict
    skew_seconds: int
    validity_seconds: int
    authn_request_bindings: tuple
    sso_bindings: tuple
    allowed_transactions: str
    acs_rows: tuple
    verification_certificates: tuple
    require_signed_requests: bool
    allowed_algorithms: frozenset
    signature_disabled: bool
    signing_alias: str
    signing_fingerprint: str
    signature_algorithm: str
    digest_algorithm: str
    sign_post: str
    sign_artifact: str
    encryption: EncryptionSettings | None
    negative_response: bool
    status_redirects: list
    relay_state_limit: int = DEFAULT_RELAY_STATE_LIMIT

    def setting(self, step, key, default=None):
        return (self.settings.get(step) or {}).get(key, default)

    def authn_request_policy(self):
        return AuthnRequestPolicy(
            sp_entity_id=self.sp_entity_id,
            verification_certificates=() if self.signature_disabled else self.verification_certificates,
            require_signed=self.require_signed_requests and not self.signature_disabled,
            allowed_algorithms=self.allowed_algorithms,
            sso_urls=(self.sso_url,) if self.base_url else (),
            skew_seconds=self.skew_seconds,
            relay_state_limit=self.relay_state_limit,
        )


@lru_cache(maxsize=512)
def _certificate(pem):
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def _snapshot_certificate(active, alias):
    entry = active.certificates.get(alias) if alias else None
    return _certificate(entry["certificate_pem"]) if entry else None


def config_for_snapshot(snapshot_id):
    active = load_snapshot(snapshot_id)
    return _config(active.snapshot_id, active.partnership_id, active.version, active.name)


@lru_cache(maxsize=1024)
def _config(snapshot_id, partnership_id, version, name):
    """Keyed by more than the snapshot's primary key, so a reused key (SQLite reuses the highest rowid after a
    delete) can never serve another partnership's derived settings."""
    active = load_snapshot(snapshot_id)
    settings_ = active.settings
    sso = settings_.get("sso_slo") or {}
    sig = settings_.get("signature") or {}
    base_url = ((settings_.get("configure") or {}).get("base_url") or active.local.get("base_url") or "").rstrip("/")
    uris = BINDING_URIS["saml2"]
    # POST first when both are enabled: the reference's default binding (ch10-14 §8.2).
    sso_bindings = tuple(uris[name] for name in ("post", "artifact") if name in (sso.get("sso_bindings") or ()))
    acs_rows = tuple(
        Endpoint(row["location"], row["binding"], row.get("index"), bool(row.get("is_default")))
        for row in active.remote.get("endpoints", ())
        if row.get("kind") == "acs"
    )
    verification = _snapshot_certificate(active, sig.get("verification_certificate"))
    encryption = None
    encrypted_attributes = any(row.get("encrypt") for row in (settings_.get("assertion") or {}).get("attributes", ()))
    if sig.get("encrypt_assertion") or sig.get("encrypt_name_id") or encrypted_attributes:
        certificate = _snapshot_certificate(active, sig.get("encryption_certificate"))
        if certificate is not None:
            encryption = EncryptionSettings(
                certificate=certificate,
                block_algorithm=ALGORITHM_URIS[sig.get("encryption_block_algorithm") or "aes256-gcm"],
                key_transport=ALGORITHM_URIS[sig.get("encryption_key_transport") or "rsa-oaep-mgf1p"],
                encrypt_assertion=bool(sig.get("encrypt_assertion")),
                # Both may be ticked: the NameID is encrypted first, then the signed assertion that holds it.
                encrypt_name_id=bool(sig.get("encrypt_name_id")),
            )
    signing_alias = sig.get("signing_key") or ""
    return IdpConfig(
        snapshot_id=active.snapshot_id,
        partnership_id=active.partnership_id,
        name=active.name,
        idp_entity_id=active.local["entity_id"],
        sp_entity_id=active.remote["entity_id"],
        base_url=base_url,
        sso_url=base_url + runtime_paths.SAML2_SSO,
        artifact_resolution_url=base_url + runtime_paths.SAML2_ARTIFACT_RESOLUTION,
        directories=tuple(active.directories),
        settings=settings_,
        skew_seconds=int((settings_.get("configure") or {}).get("skew_seconds") or 0),
        validity_seconds=int(sso.get("sso_validity_seconds") or 0),
        authn_request_bindings=tuple(uris[name] for name in (sso.get("authn_request_bindings") or ())),
        sso_bindings=sso_bindings,
        allowed_transactions=sso.get("allowed_transactions") or "both",
        acs_rows=acs_rows,
        verification_certificates=(verification,) if verification is not None else (),
        require_signed_requests=bool(sig.get("require_signed_authn_requests")),
        allowed_algorithms=allowed_signature_algorithms(sha1=bool(sig.get("accept_sha1"))),
        signature_disabled=bool(sig.get("disable_signature_processing")),
        signing_alias=signing_alias,
        signing_fingerprint=(active.certificates.get(signing_alias) or {}).get("fingerprint_sha256", ""),
        signature_algorithm=ALGORITHM_URIS[sig.get("signature_algorithm") or "rsa-sha256"],
        digest_algorithm=ALGORITHM_URIS[sig.get("digest_algorithm") or "sha256"],
        sign_post=sig.get("sign_post") or "assertion",
        sign_artifact=sig.get("sign_artifact") or "assertion",
        encryption=encryption,
        negative_response=bool(sso.get("negative_response")),
        status_redirects=list(sso.get("status_redirects") or ()),
    )


class UnknownPartner(LookupError):
    pass


def config_for_sp(sp_entity_id):
    """The config of the active IdP→SP partnership with `sp_entity_id` (one small query), or UnknownPartner."""
    try:
        active = find_active(KIND, sp_entity_id)
    except NoActivePartnership as error:
        raise UnknownPartner(str(error)) from None
    return _config(active.snapshot_id, active.partnership_id, active.version, active.name)


@lru_cache(maxsize=256)
def _signing_key(alias, fingerprint, algorithm, digest):
    """Our signing credential, opened from the keystore once per process and (alias, fingerprint)."""
    from entities.models import KeystoreEntry

    entry = KeystoreEntry.objects.filter(alias=alias).first()
    if entry is None or not entry.has_private_key:
        raise ConfigurationError(f"the signing key pair '{alias}' is no longer in the keystore")
    if fingerprint and entry.fingerprint_sha256 != fingerprint:
        raise ConfigurationError(
            f"the key pair '{alias}' holds another certificate than when the partnership was activated; "
            "activate the partnership again"
        )
    return SigningKey(entry.private_key_object(), entry.certificate(), algorithm, digest)


def signing_key_for(config):
    """The partnership's SigningKey, or None when signature processing is disabled for tests."""
    if config.signature_disabled:
        return None
    if not config.signing_alias:
        raise ConfigurationError("the partnership has no signing key pair")
    return _signing_key(config.signing_alias, config.signing_fingerprint, config.signature_algorithm, config.digest_algorithm)


# --- the pending transaction -------------------------------------------------------------------------------------


@dataclass
class PendingSSO:
    """One SSO transaction between its start and the Response, carried in signed tokens between requests."""

    sp: str  # the SP's entity ID (the partnership is looked up again on every request)
    partnership_id: int
    saml_id: str  # the AuthnRequest ID, or the Response ID made up for IdP-initiated SSO
    acs_url: str
    acs_binding: str
    request_id: str | None = None
    relay_state: str | None = None
    force_authn: bool = False
    is_passive: bool = False
    name_id_format: str | None = None
    allow_create: bool | None = None
    sp_name_qualifier: str | None = None
    requested_classes: tuple = ()
    comparison: str | None = None
    started: int = field(default_factory=lambda: int(time.time()))

    @property
    def sp_initiated(self):
        return self.request_id is not None

    def dumps(self, salt):
        return signing.dumps(asdict(self), salt=salt, compress=True)

    @classmethod
    def loads(cls, token, salt, max_age):
        data = signing.loads(token, salt=salt, max_age=max_age)
        data["requested_classes"] = tuple(data.get("requested_classes") or ())
        return cls(**data)


_PENDING_SALT = "federation.idp.pending"
_CONSENT_SALT = "federation.idp.consent"


def login_seconds():
    return int(sso_sessions.runtime_setting("FEDERATION_IDP_LOGIN_SECONDS", LOGIN_SECONDS_DEFAULT))


def login_form_token(browser_id, token):
    """The login form's anti-forgery value: bound to the browser (the FEDLOGIN cookie) and to the transaction."""
    return salted_hmac("federation.idp.login-form", f"{browser_id}\n{token}").hexdigest()


def consent_form_token(session_key, token):
    """The consent form's anti-forgery value: bound to the SSO session and to the transaction."""
    return salted_hmac("federation.idp.consent-form", f"{session_key}\n{token}").hexdigest()


def _pending_config(pending):
    """The current config of the pending transaction's partnership; UnknownPartner when it is gone or was replaced."""
    config = config_for_sp(pending.sp)
    if config.partnership_id != pending.partnership_id:
        raise UnknownPartner(f"the partnership with {pending.sp} changed during the sign-in")
    if not any(row.location == pending.acs_url for row in config.acs_rows):
        raise UnknownPartner(f"the assertion consumer service {pending.acs_url} is no longer registered")
    return config


# --- saml2sso ----------------------------------------------------------------------------------------------------


def _size_refusal(config=None, detail=""):
    return _refuse(
        config,
        413,
        "The message is larger than this service accepts.",
        Checkpoint.MESSAGE_TOO_LARGE,
        detail,
        condition="bad_request",
    )


def _too_large(error):
    text = str(error)
    return "larger than" in text or "too long" in text


def sso(method, query_string, get, post, cookie, content_length=0):
    """/affwebservices/public/saml2sso: an AuthnRequest (Redirect: GET with SAMLRequest; POST: form SAMLRequest) or
    IdP-initiated SSO (SPID, optional ProtocolBinding and RelayState)."""
    if method not in ("GET", "POST"):
        return _refuse(None, 405, "This address accepts only GET and POST.", Checkpoint.METHOD_NOT_ALLOWED, method)
    if len(query_string) > MAX_QUERY_BYTES or content_length > MAX_POST_BYTES:
        return _size_refusal(
            None,
            f"query {len(query_string)} bytes (limit {MAX_QUERY_BYTES}), body {content_length} bytes (limit {MAX_POST_BYTES})",
        )
    params = get if method == "GET" else post
    if "SAMLRequest" in params:
        return _sp_initiated(method, query_string, params, cookie)
    spid = get.get("SPID") or (post.get("SPID") if method == "POST" else None)
    if spid:
        return _idp_initiated(spid, get if "SPID" in get else post, cookie)
    return _refuse(
        None,
        400,
        "This address starts single sign-on: it needs a SAML AuthnRequest from a service provider, or SPID=<the "
        "service provider's entity ID> for a sign-on started here.",
        Checkpoint.NO_MESSAGE,
    )


def _sp_initiated(method, query_string, params, cookie):
    binding = C.BINDING_HTTP_REDIRECT if method == "GET" else C.BINDING_HTTP_POST
    found = {}

    def policy_for(issuer):
        config = config_for_sp(issuer)
        found["config"] = config
        if binding not in config.authn_request_bindings:
            raise _BindingRefused(config, binding)
        if config.allowed_transactions == "idp_initiated":
            raise _TransactionRefused(config)
        return config.authn_request_policy()

    try:
        if binding == C.BINDING_HTTP_REDIRECT:
            request = parse_redirect_authn_request(query_string, policy_for)
        else:
            request = parse_post_authn_request(params.get("SAMLRequest", ""), params.get("RelayState"), policy_for)
    except UnknownPartner as error:
        return _refuse(
            None,
            400,
            "The service provider that sent you here is not a partner of this site.",
            Checkpoint.UNKNOWN_PARTNER,
            str(error),
        )
    except _BindingRefused as refusal:
        return _refuse(
            refusal.config,
            400,
            "The service provider sent the sign-on request in a way this partnership does not accept.",
            Checkpoint.BINDING_NOT_ENABLED,
            f"AuthnRequest on {refusal.binding}, enabled: {', '.join(refusal.config.authn_request_bindings) or 'none'}",
        )
    except _TransactionRefused as refusal:
        return _refuse(
            refusal.config,
            403,
            "This partnership does not allow sign-on started at the service provider.",
            Checkpoint.TRANSACTION_NOT_ALLOWED,
            "Allowed transactions: IdP-initiated only",
        )
    except SignatureRequired as error:
        return _refuse(
            found.get("config"),
            403,
            "The sign-on request was refused because it is not signed.",
            Checkpoint.SIGNATURE_REQUIRED,
            str(error),
        )
    except SignatureError as error:
        return _refuse(
            found.get("config"),
            403,
            "The sign-on request was refused because its signature is not valid.",
            Checkpoint.SIGNATURE_INVALID,
            str(error),
        )
    except AuthnRequestError as error:
        return _authn_request_refused(found.get("config"), error, cookie)
    except MessageExpired as error:
        return _refuse(
            found.get("config"),
            400,
            "The sign-on request has expired or its time is wrong. Go back to the application and try again.",
            Checkpoint.REQUEST_EXPIRED,
            str(error),
        )
    except SAMLError as error:
        if _too_large(error):
            return _size_refusal(found.get("config"), str(error))
        if "RelayState is longer" in str(error):
            return _refuse(found.get("config"), 400, "The RelayState is too long.", Checkpoint.RELAY_STATE_TOO_LONG, str(error))
        return _refuse(
            found.get("config"),
            400,
            "The sign-on request could not be read.",
            Checkpoint.INVALID_MESSAGE,
            str(error),
        )
    config = found["config"]
    bind_saml_transaction(request.id, "AuthnRequest")
    _info(
        Checkpoint.REQUEST_READ,
        "AuthnRequest %s from %s on %s (%s)%s%s",
        request.id,
        request.issuer,
        "Redirect" if binding == C.BINDING_HTTP_REDIRECT else "POST",
        "signed" if request.signed else "unsigned",
        ", ForceAuthn" if request.force_authn else "",
        ", IsPassive" if request.is_passive else "",
    )
    _info(Checkpoint.PARTNERSHIP_FOUND, "partnership %s (snapshot %s)", config.name, config.snapshot_id)
    try:
        acs = choose_acs(request, config.acs_rows, allowed_bindings=config.sso_bindings)
    except AuthnRequestError as error:
        return _authn_request_refused(config, error, cookie)
    pending = PendingSSO(
        sp=config.sp_entity_id,
        partnership_id=config.partnership_id,
        saml_id=request.id,
        acs_url=acs.url,
        acs_binding=acs.binding,
        request_id=request.id,
        relay_state=request.relay_state,
        force_authn=request.force_authn,
        is_passive=request.is_passive,
        name_id_format=request.name_id_policy_format,
        allow_create=request.allow_create,
        sp_name_qualifier=request.sp_name_qualifier,
        requested_classes=tuple(request.requested_authn_context_classes),
        comparison=request.authn_context_comparison,
    )
    return _continue(config, pending, cookie)


class _BindingRefused(Exception):
    def __init__(self, config, binding):
        self.config, self.binding = config, binding


class _TransactionRefused(Exception):
    def __init__(self, config):
        self.config = config


def _authn_request_refused(config, error, cookie):
    """An authentic AuthnRequest that cannot be served as sent: a SAML status response to the SP when negative
    responses are on (at its default ACS: never at an ACS URL it named that is not registered), else an error page."""
    request = error.request
    if config is not None and request is not None:
        bind_saml_transaction(request.id, "AuthnRequest")
        if config.negative_response:
            try:
                acs = choose_acs(None, config.acs_rows, allowed_bindings=config.sso_bindings)
            except AuthnRequestError:
                acs = None
            if acs is not None:
                pending = PendingSSO(
                    sp=config.sp_entity_id,
                    partnership_id=config.partnership_id,
                    saml_id=request.id,
                    acs_url=acs.url,
                    acs_binding=acs.binding,
                    request_id=request.id,
                    relay_state=request.relay_state,
                )
                status, sub_status = status_for_error(error)
                _trace(logging.WARNING, Checkpoint.ACS_REFUSED, "AuthnRequest refused: %s", error)
                return _negative(config, pending, status, sub_status, "The request cannot be served as sent.")
    return _refuse(
        config,
        400,
        "The sign-on request cannot be served as the service provider sent it.",
        Checkpoint.ACS_REFUSED,
        str(error),
    )


def _idp_initiated(spid, params, cookie):
    try:
        config = config_for_sp(spid)
    except UnknownPartner as error:
        return _refuse(
            None, 400, "There is no active partnership with this service provider.", Checkpoint.UNKNOWN_PARTNER, str(error)
        )
    if config.allowed_transactions == "sp_initiated":
        return _refuse(
            config,
            403,
            "This partnership allows sign-on only when it starts at the service provider.",
            Checkpoint.TRANSACTION_NOT_ALLOWED,
            "Allowed transactions: SP-initiated only",
        )
    relay_state = params.get("RelayState")
    if relay_state is not None and len(relay_state.encode("utf-8")) > config.relay_state_limit:
        return _refuse(
            config,
            400,
            "The RelayState is too long.",
            Checkpoint.RELAY_STATE_TOO_LONG,
            f"{len(relay_state.encode('utf-8'))} bytes, limit {config.relay_state_limit}",
        )
    protocol_binding = params.get("ProtocolBinding") or None
    if protocol_binding is not None and protocol_binding not in (C.BINDING_HTTP_POST, C.BINDING_HTTP_ARTIFACT):
        return _refuse(
            config,
            400,
            "ProtocolBinding must be the HTTP-POST or the HTTP-Artifact binding.",
            Checkpoint.BINDING_NOT_ENABLED,
            f"ProtocolBinding {protocol_binding!r}",
        )
    saml_id = new_id()
    bind_saml_transaction(saml_id, "IdP-initiated")
    _info(
        Checkpoint.REQUEST_READ,
        "IdP-initiated SSO to %s%s",
        spid,
        f" with ProtocolBinding {protocol_binding.rsplit(':', 1)[-1]}" if protocol_binding else "",
    )
    _info(Checkpoint.PARTNERSHIP_FOUND, "partnership %s (snapshot %s)", config.name, config.snapshot_id)
    try:
        acs = choose_acs(None, config.acs_rows, allowed_bindings=config.sso_bindings, protocol_binding=protocol_binding)
    except AuthnRequestError as error:
        return _refuse(
            config,
            400,
            "The requested way of sending the sign-on is not enabled for this partnership.",
            Checkpoint.BINDING_NOT_ENABLED,
            str(error),
        )
    pending = PendingSSO(
        sp=config.sp_entity_id,
        partnership_id=config.partnership_id,
        saml_id=saml_id,
        acs_url=acs.url,
        acs_binding=acs.binding,
        relay_state=relay_state,
    )
    return _continue(config, pending, cookie)


def _usable_session(config, cookie):
    """The browser's session when the partnership may use it (its directory is one of the partnership's)."""
    store = sso_sessions.session_store()
    session = store.get(cookie, participant_for=config.sp_entity_id) if cookie else None
    if session is not None and session.directory not in config.directories:
        _info(
            Checkpoint.SESSION_FOUND,
            "the session of %s comes from directory %s, which this partnership does not use",
            session.username,
            session.directory,
        )
        return None
    return session


def _continue(config, pending, cookie):
    """After the request is accepted: use the session, or ask the user to sign in (ForceAuthn always does)."""
    try:
        session = _usable_session(config, cookie)
    except sso_sessions.SessionStoreError as error:
        return _refuse(config, 500, "Sign-on is not available right now.", Checkpoint.SESSION_STORE, str(error))
    if pending.is_passive and session is None:
        _trace(logging.WARNING, Checkpoint.NO_PASSIVE, "IsPassive and no session: answering NoPassive")
        return _negative(config, pending, C.STATUS_RESPONDER, C.STATUS_NO_PASSIVE, "The user is not signed in.")
    if session is None or pending.force_authn:
        if config.setting("sso_slo", "authn_mode") == "delegated":
            return _refuse(
                config,
                500,
                "Sign-in for this partner is handled by another system, which this release cannot use yet.",
                Checkpoint.CONFIGURATION,
                "delegated authentication is not implemented by this release",
            )
        if config.setting("sso_slo", "authn_url"):
            _trace(
                logging.WARNING,
                Checkpoint.CONFIGURATION,
                "the partnership's authentication URL %s is not used by this release; the built-in login page signs users in",
                config.setting("sso_slo", "authn_url"),
            )
        _info(
            Checkpoint.LOGIN_REQUIRED,
            "%s: login page",
            "ForceAuthn" if session is not None else "no session",
        )
        return Outcome(LoginPage(pending.dumps(_PENDING_SALT), config.sp_entity_id, cancel_allowed=True))
    _info(
        Checkpoint.SESSION_FOUND,
        "session of %s (directory %s, authenticated %s)",
        session.username,
        session.directory,
        session.authn_instant.isoformat(timespec="seconds"),
    )
    return _issue(config, pending, session)


# --- login -------------------------------------------------------------------------------------------------------


def _load_pending(token, salt, max_age):
    try:
        return PendingSSO.loads(token, salt, max_age)
    except (signing.BadSignature, TypeError, ValueError):
        return None


def login_page(token):
    """GET of the login page: the form for a pending transaction, or a refusal when the token is stale."""
    pending = _load_pending(token, _PENDING_SALT, login_seconds())
    if pending is None:
        return _form_expired(None)
    bind_saml_transaction(pending.saml_id, "login page")
    try:
        config = _pending_config(pending)
    except UnknownPartner as error:
        return _refuse(None, 400, "This sign-in can no longer be completed.", Checkpoint.UNKNOWN_PARTNER, str(error))
    return Outcome(LoginPage(token, config.sp_entity_id))


def _form_expired(config, what="sign-in page"):
    return _refuse(
        config,
        400,
        f"This {what} has expired or was not sent by this browser. Go back to the application and start again.",
        Checkpoint.FORM_EXPIRED,
    )


def _ordered_directories(config):
    from federation.models import UserDirectory

    found = {d.name: d for d in UserDirectory.objects.filter(name__in=config.directories)}
    return [found[name] for name in config.directories if name in found]


def _login_class(secure):
    return C.AC_PASSWORD_PROTECTED_TRANSPORT if secure else C.AC_PASSWORD


def login(token, form_token, browser_id, username, password, cancel, cookie, secure):
    """POST of the login page: check the form, authenticate against the partnership's directories in order, apply
    the federation-users rules, start (or renew, for ForceAuthn) the session, and issue the Response."""
    pending = _load_pending(token, _PENDING_SALT, login_seconds())
    if pending is None or not browser_id or not hmac.compare_digest(form_token or "", login_form_token(browser_id, token)):
        return _form_expired(None)
    bind_saml_transaction(pending.saml_id, "login")
    try:
        config = _pending_config(pending)
    except UnknownPartner as error:
        return _refuse(None, 400, "This sign-in can no longer be completed.", Checkpoint.UNKNOWN_PARTNER, str(error))
    if cancel:
        _trace(logging.WARNING, Checkpoint.LOGIN_CANCELLED, "the user cancelled the sign-in")
        if pending.sp_initiated and config.negative_response:
            return _negative(config, pending, C.STATUS_RESPONDER, C.STATUS_AUTHN_FAILED, "The user cancelled the sign-in.")
        return _refuse(config, 403, "You cancelled signing in.", Checkpoint.LOGIN_CANCELLED, condition="unauthorized")
    username = (username or "").strip()[:255]
    user, unavailable = None, []
    for directory in _ordered_directories(config):
        try:
            user = directories.authenticate(directory, username, password or "")
        except directories.DirectoryUnavailable as error:
            unavailable.append(f"{directory.name}: {error.message}")
            continue
        except directories.DirectoryError as error:
            unavailable.append(f"{directory.name}: {error.message}")
            continue
        if user is not None:
            break
    if user is None:
        if unavailable:
            _trace(
                logging.ERROR,
                Checkpoint.DIRECTORY_UNAVAILABLE,
                "cannot check the password of %s: %s",
                username,
                "; ".join(unavailable),
            )
            message = (
                "Your password cannot be checked right now because the user directory is not answering. "
                "Try again in a few minutes."
            )
            return Outcome(LoginPage(token, config.sp_entity_id, message, username, status=503))
        _trace(logging.WARNING, Checkpoint.LOGIN_FAILED, "login refused for %r", username)
        return Outcome(LoginPage(token, config.sp_entity_id, "The user name or password is not correct.", username))

    refusal = _federation_user_refusal(config, pending, user.directory, user)
    if refusal is not None:
        return refusal
    store = sso_sessions.session_store()
    authn_class = _login_class(secure)
    try:
        existing = store.get(cookie) if cookie else None
        if (
            existing is not None
            and existing.directory == user.directory.name
            and (existing.user_dn or existing.username) == _user_dn(user)
        ):
            session = store.reauthenticated(existing, authn_class=authn_class, protection_level=_protection_level())
        else:
            if existing is not None:
                store.delete(existing.key)  # another user signs in on this browser: the old session ends
            session = store.create(
                username=user.login,
                directory=user.directory.name,
                user_dn=_user_dn(user) if not user.directory.is_embedded else "",
                authn_class=authn_class,
                protection_level=_protection_level(),
            )
        session.participant = None
        session = store.get(session.cookie, participant_for=config.sp_entity_id) or session
    except sso_sessions.SessionStoreError as error:
        return _refuse(config, 500, "Sign-on is not available right now.", Checkpoint.SESSION_STORE, str(error))
    _info(
        Checkpoint.USER_AUTHENTICATED,
        "user %s authenticated by directory %s (%s)",
        user.login,
        user.directory.name,
        authn_class.rsplit(":", 1)[-1],
    )
    outcome = _issue(config, pending, session, federation_user_checked=True)
    outcome.set_session = session
    return outcome


def _user_dn(user):
    return user.identifier


def _protection_level():
    return int(sso_sessions.runtime_setting("FEDERATION_IDP_LOGIN_PROTECTION_LEVEL", PROTECTION_LEVEL_DEFAULT))


def _rules(config):
    rows = config.setting("federation_users", "rules") or ()
    return [FederationUserRule.from_dict(row) for row in rows]


def _federation_user_refusal(config, pending, directory, user):
    """None when `user` is a federation user of this partnership, else the refusal (negative response when on)."""
    rules = _rules(config)
    if not any(rule.directory == directory.name for rule in rules):
        return None  # no rows for the directory: every user of it is a federation user
    try:
        decision = is_federation_user(rules, directory, user)
    except directories.DirectoryError as error:
        return _refuse(
            config,
            503,
            "Your account cannot be checked right now because the user directory is not answering. Try again later.",
            Checkpoint.DIRECTORY_UNAVAILABLE,
            error.message,
        )
    if decision.allowed:
        return None
    _trace(logging.WARNING, Checkpoint.USER_REFUSED, "%s is not a federation user: %s", user.login, decision.reason)
    if pending.sp_initiated and config.negative_response:
        return _negative(config, pending, C.STATUS_RESPONDER, C.STATUS_AUTHN_FAILED, "The user may not sign in to this partner.")
    return _refuse(
        config,
        403,
        "Your account may not sign in to this partner.",
        Checkpoint.USER_REFUSED,
        decision.reason,
        condition="unauthorized",
    )


# --- consent -----------------------------------------------------------------------------------------------------


def consent(token, form_token, allow, cookie):
    """POST of the consent page: within 5 minutes of the question, by the same session; then issue (with
    Consent="…:consent:obtained") or tell the SP the user said no."""
    try:
        data = signing.loads(token, salt=_CONSENT_SALT, max_age=CONSENT_SECONDS)
    except signing.SignatureExpired:
        return _refuse(
            None,
            403,
            "You took longer than 5 minutes to answer, so nothing was sent. Go back to the application and start again.",
            Checkpoint.CONSENT_EXPIRED,
            condition="unauthorized",
        )
    except (signing.BadSignature, TypeError, ValueError):
        return _form_expired(None, "consent page")
    pending = PendingSSO(**dict(data["p"], requested_classes=tuple(data["p"].get("requested_classes") or ())))
    bind_saml_transaction(pending.saml_id, "consent")
    try:
        config = _pending_config(pending)
    except UnknownPartner as error:
        return _refuse(None, 400, "This sign-on can no longer be completed.", Checkpoint.UNKNOWN_PARTNER, str(error))
    try:
        session = _usable_session(config, cookie)
    except sso_sessions.SessionStoreError as error:
        return _refuse(config, 500, "Sign-on is not available right now.", Checkpoint.SESSION_STORE, str(error))
    if (
        session is None
        or session.key != data["s"]
        or not hmac.compare_digest(form_token or "", consent_form_token(session.key, token))
    ):
        return _form_expired(config, "consent page")
    if not allow:
        _trace(logging.WARNING, Checkpoint.CONSENT_DENIED, "%s did not allow sending their identity", session.username)
        if pending.sp_initiated and config.negative_response:
            return _negative(config, pending, C.STATUS_RESPONDER, C.STATUS_REQUEST_DENIED, "The user did not give consent.")
        return _refuse(
            config,
            403,
            "You chose not to send your identity to this partner.",
            Checkpoint.CONSENT_DENIED,
            condition="unauthorized",
        )
    _info(Checkpoint.CONSENT_GIVEN, "%s allowed sending their identity to %s", session.username, config.sp_entity_id)
    return _issue(config, pending, session, consent_obtained=True)


# --- issuing -----------------------------------------------------------------------------------------------------


class _UserData:
    """The session's user in its directory, read lazily and once per request."""

    def __init__(self, config, session):
        self.config = config
        self.session = session
        self._directory = None
        self._values = {}

    @property
    def directory(self):
        if self._directory is None:
            from federation.models import UserDirectory

            self._directory = UserDirectory.objects.get(name=self.session.directory)
        return self._directory

    @property
    def user(self):
        return directories.DirectoryUser(self.directory, self.session.user_dn or self.session.username, self.session.username)

    def attributes(self, names):
        """{name: [values]} of the user's directory entry (the names read in one directory call)."""
        missing = [name for name in dict.fromkeys(names) if name not in self._values]
        if missing:
            self._values.update(directories.attributes(self.directory, self.user, missing))
        return {name: self._values.get(name, []) for name in names}

    def dn_attribute(self, dn_spec, name):
        """The values of attribute `name` of the LDAP entry `dn_spec` (the DN-attribute type)."""
        if self.directory.is_embedded:
            raise directories.DirectoryError("DN attributes need an LDAP directory; the user comes from the embedded one")
        entry = directories.DirectoryUser(self.directory, dn_spec, dn_spec)
        return directories.attributes(self.directory, entry, [name]).get(name, [])


def _values(row_type, value, dn_spec, data, session):
    if row_type == "static":
        return [value]
    if row_type == "session":
        found = (session.attributes or {}).get(value)
        return [] if found is None else ([found] if isinstance(found, str) else [str(v) for v in found])
    if row_type == "dn":
        return data.dn_attribute(dn_spec, value)
    return data.attributes([value])[value]  # user


class _NameIdUnavailable(Exception):
    pass


def _name_id(config, pending, session, data):
    """The NameID for this user and SP (reference ch09-10 A2, ch01-08 F7.4)."""
    assertion = config.settings.get("assertion") or {}
    name_format = assertion.get("name_id_format") or C.NAMEID_UNSPECIFIED
    requested = pending.name_id_format
    if requested and requested not in (C.NAMEID_UNSPECIFIED, name_format):
        raise _NameIdUnavailable(f"the SP asks for NameID format {requested}, the partnership sends {name_format}")
    qualified = name_format in (C.NAMEID_PERSISTENT, C.NAMEID_TRANSIENT)
    qualifiers = {
        "name_qualifier": config.idp_entity_id if qualified else None,
        "sp_name_qualifier": (pending.sp_name_qualifier or config.sp_entity_id) if qualified else None,
    }
    if name_format == C.NAMEID_TRANSIENT:
        return NameID(new_id(), name_format, **qualifiers)
    values = _values(
        assertion.get("name_id_type") or "user",
        assertion.get("name_id_value") or "",
        assertion.get("name_id_dn_spec") or "",
        data,
        session,
    )
    value = next((v for v in values if v), None)
    if value is None and name_format == C.NAMEID_PERSISTENT:
        stored = persistent_ids.find(config.idp_entity_id, config.sp_entity_id, session.user_key)
        if stored is not None:
            value = stored
        elif assertion.get("allow_create") and pending.allow_create:
            value, _ = persistent_ids.get_or_create(config.idp_entity_id, config.sp_entity_id, session.user_key)
            _info(Checkpoint.NAME_ID, "persistent identifier created for %s (AllowCreate)", session.username)
    if value is None:
        raise _NameIdUnavailable(
            f"{session.username} has no value for the NameID ({assertion.get('name_id_type')} "
            f"{assertion.get('name_id_value')!r}) and no persistent identifier may be created"
        )
    return NameID(str(value), name_format, **qualifiers)


def _attributes(config, session, data):
    """The assertion's attributes: directory, static, DN, session and expression rows (SSO retrieval)."""
    rows = [row for row in (config.setting("assertion", "attributes") or ()) if row.get("retrieval", "sso") in ("sso", "both")]
    user_names = [row["value"] for row in rows if row.get("value_type", "user") == "user"]
    expressions = {}
    for row in rows:
        if row.get("value_type") == "expression":
            try:
                expressions[row["name"]] = compiled = compile_expression(row["value"])
            except ExpressionSyntaxError as error:
                raise ConfigurationError(f"the expression of attribute {row['name']} does not compile: {error}") from None
            user_names += [ref.name for ref in compiled.references() if ref.store == "attr"]
    user_values = data.attributes(user_names) if user_names else {}
    built = []
    for row in rows:
        kind = row.get("value_type", "user")
        if kind == "expression":
            result = expressions[row["name"]].evaluate(user_values, session.attributes or {})
            if result.deleted:
                continue
            values = result.values
        elif kind == "user":
            values = user_values.get(row["value"], [])
        else:
            values = _values(kind, row.get("value", ""), row.get("dn_spec", ""), data, session)
        if not values:
            continue
        built.append(
            Attribute(
                row["name"],
                tuple(values),
                row.get("name_format") or C.ATTRNAME_UNSPECIFIED,
                encrypt=bool(row.get("encrypt")),
            )
        )
    return tuple(built)


def _authn_class(config, pending, session):
    """(class URI, None) or (None, (status, sub_status, reason)) from the partnership's authentication context
    settings and the SP's RequestedAuthnContext (reference ch15-20 B5–B6)."""
    mode = config.setting("sso_slo", "authn_context_mode") or "predefined"
    template = None
    if mode == authn_context.IdpMode.AUTO_DETECT:
        from partnerships.models import AuthnContextTemplate

        row = AuthnContextTemplate.objects.filter(name=config.setting("sso_slo", "authn_template")).first()
        if row is None:
            raise ConfigurationError(
                f"the authentication context template {config.setting('sso_slo', 'authn_template')!r} is gone"
            )
        template = row.compiled()
    requested = None
    if pending.requested_classes:
        requested = authn_context.RequestedAuthnContext(pending.requested_classes, pending.comparison or "exact")
    decision = authn_context.decide_idp_context(
        mode=mode,
        predefined_class=config.setting("sso_slo", "authn_class"),
        template=template,
        ignore_requested=bool(config.setting("sso_slo", "ignore_requested_authn_context")),
        requested=requested,
        protection_level=session.protection_level,
        session_class=session.authn_class or None,
    )
    if decision.ok:
        return decision.class_ref, None, decision.reason
    status, sub_status = decision.status
    return None, (status, sub_status), decision.reason


def _session_not_on_or_after(config, session, now):
    option = config.setting("sso_slo", "session_not_on_or_after") or "assertion_validity"
    if option == "omit":
        return None
    if option == "idp_session":
        return session.expires_at
    if option == "custom":
        return session.authn_instant + timedelta(minutes=int(config.setting("sso_slo", "session_duration_minutes") or 0))
    return now + timedelta(seconds=config.validity_seconds + config.skew_seconds)


def _issue(config, pending, session, *, federation_user_checked=False, consent_obtained=False):
    try:
        return _issue_checked(config, pending, session, federation_user_checked, consent_obtained)
    except ConfigurationError as error:
        return _refuse(config, 500, "Sign-on to this partner is not available right now.", Checkpoint.CONFIGURATION, str(error))
    except directories.DirectoryError as error:
        return _refuse(
            config,
            503,
            "Your account cannot be read right now because the user directory is not answering. Try again later.",
            Checkpoint.DIRECTORY_UNAVAILABLE,
            error.message,
        )
    except (AssertionBuildError, SAMLError) as error:
        return _refuse(config, 500, "The sign-on could not be completed.", Checkpoint.CONFIGURATION, str(error))


def _issue_checked(config, pending, session, federation_user_checked, consent_obtained):
    data = _UserData(config, session)
    if not federation_user_checked and _rules(config):
        refusal = _federation_user_refusal(config, pending, data.directory, data.user)
        if refusal is not None:
            return refusal
    class_ref, failure, reason = _authn_class(config, pending, session)
    if failure is not None:
        _trace(logging.WARNING, Checkpoint.NO_AUTHN_CONTEXT, "no authentication context: %s", reason)
        if pending.sp_initiated:
            return _negative(config, pending, *failure, "No authentication context satisfies the request.")
        return _refuse(config, 403, "Your sign-in is not strong enough for this partner.", Checkpoint.NO_AUTHN_CONTEXT, reason)
    if config.setting("sso_slo", "user_consent") and not consent_obtained:
        # Asked before anything about the user is computed or stored (a persistent identifier, say).
        token = signing.dumps({"p": asdict(pending), "s": session.key}, salt=_CONSENT_SALT, compress=True)
        _info(Checkpoint.CONSENT_REQUESTED, "asking %s for consent (5 minutes)", session.username)
        rows = config.setting("assertion", "attributes") or ()
        page = ConsentPage(
            token,
            config.sp_entity_id,
            config.idp_entity_id,
            consent_form_token(session.key, token),
            tuple(dict.fromkeys(row["name"] for row in rows if row.get("retrieval", "sso") in ("sso", "both"))),
            config.setting("sso_slo", "user_consent_form") or "",
        )
        return Outcome(page)
    try:
        name_id = _name_id(config, pending, session, data)
    except _NameIdUnavailable as error:
        _trace(logging.WARNING, Checkpoint.NAME_ID_UNAVAILABLE, "%s", error)
        if pending.sp_initiated:
            return _negative(config, pending, C.STATUS_REQUESTER, C.STATUS_INVALID_NAMEID_POLICY, "No identifier can be sent.")
        return _refuse(
            config, 500, "Your account has no identifier this partner can use.", Checkpoint.NAME_ID_UNAVAILABLE, str(error)
        )
    attributes = _attributes(config, session, data)
    return _deliver(config, pending, session, name_id, attributes, class_ref, reason, consent_obtained)


def _deliver(config, pending, session, name_id, attributes, class_ref, context_reason, consent_obtained):
    signing_key = signing_key_for(config)
    artifact = pending.acs_binding == C.BINDING_HTTP_ARTIFACT
    option = SignatureOption(config.sign_artifact if artifact else config.sign_post)
    if config.signature_disabled:
        option = SignatureOption.NONE
    now = datetime.now(UTC)
    session_index = session.participant.session_index if session.participant else new_id()
    settings_ = ResponseSettings(
        assertion=AssertionSettings(
            issuer=config.idp_entity_id,
            audiences=(config.sp_entity_id,),
            recipient=pending.acs_url,
            name_id=name_id,
            in_response_to=pending.request_id,
            attributes=attributes,
            authn_context_class=class_ref,
            authn_instant=session.authn_instant,
            session_index=session_index,
            session_not_on_or_after=_session_not_on_or_after(config, session, now),
            validity_seconds=config.validity_seconds,
            skew_seconds=config.skew_seconds,
            one_time_use=bool(config.setting("sso_slo", "one_time_use")),
            # Artifact partners read the Response from a SOAP body; some re-serialise it and lose the xs prefix that
            # xsi:type values need, so artifact responses carry plain values (docs/idp-protocol-core.md §7).
            typed_attribute_values=not artifact,
        ),
        destination=pending.acs_url,
        signing=signing_key,
        sign=option,
        encryption=config.encryption,
        binding=pending.acs_binding,
        consent=CONSENT_OBTAINED if consent_obtained else None,
    )
    issued = build_response(settings_, now, response_id=None if pending.sp_initiated else pending.saml_id)
    _info(
        Checkpoint.ASSERTION_BUILT,
        "Response %s, assertion %s for %s: NameID format %s, %d attributes, %s (%s)%s",
        issued.response_id,
        issued.assertion_id,
        session.username,
        name_id.format.rsplit(":", 1)[-1],
        len(attributes),
        class_ref.rsplit(":", 1)[-1],
        context_reason,
        ", encrypted" if config.encryption is not None else "",
    )
    _info(
        Checkpoint.SIGNED,
        "signed: %s%s",
        option.value,
        f" with {config.signing_alias} ({config.signature_algorithm.rsplit('#', 1)[-1]})" if signing_key else "",
    )
    store = sso_sessions.session_store()
    store.record_participant(
        session,
        sso_sessions.Participant(
            partnership=config.name,
            snapshot_id=config.snapshot_id,
            remote_entity_id=config.sp_entity_id,
            name_id=name_id.value,
            name_id_format=name_id.format or "",
            name_qualifier=name_id.name_qualifier or "",
            sp_name_qualifier=name_id.sp_name_qualifier or "",
            session_index=issued.session_index,
        ),
    )
    return Outcome(_delivery(config, pending, issued.element, issued.response_id, "Response"))


def _delivery(config, pending, element, response_id, what):
    if pending.acs_binding == C.BINDING_HTTP_ARTIFACT:
        artifact = build_artifact(config.idp_entity_id, ARTIFACT_ENDPOINT_INDEX)
        artifact_store.store(
            artifact,
            issuer=config.idp_entity_id,
            recipient=config.sp_entity_id,
            partnership=config.name,
            message=to_bytes(element),
        )
        query = {"SAMLart": artifact.value}
        if pending.relay_state is not None:
            query["RelayState"] = pending.relay_state
        url = pending.acs_url + ("&" if "?" in pending.acs_url else "?") + urlencode(query)
        _info(Checkpoint.ARTIFACT_STORED, "%s %s stored for artifact resolution by %s", what, response_id, config.sp_entity_id)
        _info(Checkpoint.DELIVERED, "%s %s sent to %s by HTTP-Artifact", what, response_id, pending.acs_url)
        return Redirect(url)
    fields = {"SAMLResponse": encode_post(element)}
    if pending.relay_state is not None:
        fields["RelayState"] = pending.relay_state
    _info(Checkpoint.DELIVERED, "%s %s sent to %s by HTTP-POST", what, response_id, pending.acs_url)
    return PostForm(pending.acs_url, fields)


def _negative(config, pending, status, sub_status, message):
    """A Response without an assertion and with a failure status, delivered to the SP's ACS."""
    try:
        signing_key = signing_key_for(config)
    except ConfigurationError as error:
        return _refuse(config, 500, "Sign-on to this partner is not available right now.", Checkpoint.CONFIGURATION, str(error))
    issued = build_error_response(
        issuer=config.idp_entity_id,
        destination=pending.acs_url,
        in_response_to=pending.request_id,
        status=status,
        sub_status=sub_status,
        message=message,
        signing=signing_key,
    )
    _trace(
        logging.WARNING,
        Checkpoint.NEGATIVE_RESPONSE,
        "negative Response %s: %s%s",
        issued.response_id,
        status.rsplit(":", 1)[-1],
        f"/{sub_status.rsplit(':', 1)[-1]}" if sub_status else "",
    )
    return Outcome(_delivery(config, pending, issued.element, issued.response_id, "negative Response"))


# --- saml2artifactresolution -------------------------------------------------------------------------------------


def _fault(status, fault_code, text, checkpoint, detail="", headers=None):
    _trace(logging.WARNING, checkpoint, "%s%s", text, f": {detail}" if detail else "")
    return SoapAnswer(status, to_bytes(soap_fault(text, fault_code), xml_declaration=True), headers or {})


def _backchannel_refusal(config, authorization, headers, remote_addr):
    """None when the caller authenticated as the partnership's back channel demands, else the SOAP fault."""
    method = config.setting("sso_slo", "backchannel_in_auth") or backchannel.NONE
    if method == backchannel.NONE:
        _trace(
            logging.WARNING,
            Checkpoint.BACKCHANNEL_UNAUTHENTICATED,
            "artifact resolution by %s without back-channel authentication (partnership %s: none)",
            config.sp_entity_id,
            config.name,
        )
        return None
    refused = backchannel.refusal(
        method,
        partnership_name=config.name,
        password=lambda: snapshot_secrets(config.snapshot_id).get("sso_slo.backchannel_in_password", ""),
        realm=runtime_paths.SAML2_ARTIFACT_RESOLUTION,
        authorization=authorization,
        headers=headers,
        remote_addr=remote_addr,
    )
    if refused is None:
        return None
    return _fault(refused.status, "Client", refused.message, Checkpoint.BACKCHANNEL_AUTH_FAILED, refused.detail, refused.headers)


def resolve_artifact(method, body, authorization="", headers=None, remote_addr="", content_length=None):
    """/affwebservices/saml2artifactresolution: a SOAP ArtifactResolve from an SP → the SOAP ArtifactResponse with the
    stored Response (once), after the partnership's back-channel authentication."""
    headers = headers or {}
    if method != "POST":
        return _fault(405, "Client", "Artifact resolution takes a SOAP POST.", Checkpoint.METHOD_NOT_ALLOWED, method)
    size = max(len(body), content_length or 0)
    if size > C.MAX_MESSAGE_BYTES:
        return _fault(413, "Client", "The message is too large.", Checkpoint.MESSAGE_TOO_LARGE, f"{size} bytes")
    found = {}

    def policy_for(issuer):
        config = config_for_sp(issuer)
        found["config"] = config
        return ArtifactResolvePolicy(
            requester_entity_id=issuer,
            verification_certificates=() if config.signature_disabled else config.verification_certificates,
            allowed_algorithms=config.allowed_algorithms,
            resolution_urls=(config.artifact_resolution_url,) if config.base_url else (),
            skew_seconds=config.skew_seconds,
        )

    try:
        resolve = parse_artifact_resolve(body, policy_for)
    except UnknownPartner as error:
        return _fault(403, "Client", "The requester is not a partner of this site.", Checkpoint.UNKNOWN_PARTNER, str(error))
    except SignatureError as error:
        return _fault(500, "Client", "The ArtifactResolve signature is not valid.", Checkpoint.SIGNATURE_INVALID, str(error))
    except (ProtocolError, ArtifactError, SAMLError) as error:
        code = 413 if _too_large(error) else 500
        return _fault(code, "Client", "The ArtifactResolve could not be read.", Checkpoint.RESOLVE_REFUSED, str(error))
    config = found["config"]
    bind_saml_transaction(resolve.id, "ArtifactResolve")
    _info(
        Checkpoint.RESOLVE_READ,
        "ArtifactResolve %s from %s (%s)",
        resolve.id,
        resolve.issuer,
        "signed" if resolve.signed else "unsigned",
    )
    refusal = _backchannel_refusal(config, authorization, headers, remote_addr)
    if refusal is not None:
        return refusal
    if resolve.artifact.source_id != source_id(config.idp_entity_id):
        message = None
        _trace(logging.WARNING, Checkpoint.ARTIFACT_NOT_FOUND, "the artifact was not issued by %s", config.idp_entity_id)
    else:
        message = artifact_store.take(resolve.artifact, recipient=config.sp_entity_id)
        if message is None:
            why = artifact_store.describe_missing(resolve.artifact, recipient=config.sp_entity_id)
            _trace(logging.WARNING, Checkpoint.ARTIFACT_NOT_FOUND, "no message for the artifact: %s", why)
        else:
            _info(Checkpoint.ARTIFACT_RESOLVED, "artifact resolved by %s; the message is handed out once", config.sp_entity_id)
    envelope = build_artifact_response(
        issuer=config.idp_entity_id,
        in_response_to=resolve.id,
        message=message.encode("utf-8") if message is not None else None,
    )
    return SoapAnswer(200, artifact_response_bytes(envelope))


# --- small helpers for the console ------------------------------------------------------------------------------


def idp_initiated_path(sp_entity_id, protocol_binding=None, relay_state=None):
    """The path of the IdP-initiated SSO link to an SP ("Test SSO" on the partnership page)."""
    query = [("SPID", sp_entity_id)]
    if protocol_binding:
        query.append(("ProtocolBinding", protocol_binding))
    if relay_state:
        query.append(("RelayState", relay_state))
    return runtime_paths.SAML2_SSO + "?" + "&".join(f"{name}={quote(value, safe='')}" for name, value in query)


__all__ = [
    "Checkpoint",
    "ConsentPage",
    "LoginPage",
    "Outcome",
    "PostForm",
    "Redirect",
    "Refusal",
    "SoapAnswer",
    "consent",
    "login",
    "login_page",
    "resolve_artifact",
    "sso",
]
