"""SAML 2.0 single logout at run time, in both roles (docs/single-logout.md): the service functions behind
`/affwebservices/public/saml2slo` (HTTP-Redirect and HTTP-POST) and `/affwebservices/public/saml2slosoap` (SOAP).
Views (federation/views/slo.py) only hand in plain values and turn the `Outcome` into a response.

Who handles a message is decided by its Issuer: an SP of an active IdP→SP partnership talks to this site as IdP, an
IdP of an active SP→IdP partnership talks to it as SP (a LogoutResponse goes to whichever role sent the request it
answers). The messages themselves are federation.saml.logout's; this module picks the partnership, checks what the
partnership allows, finds the sessions and orchestrates.

As IdP (session authority):
    LogoutRequest from an SP → its sessions (by SessionIndex, the FEDSESSION cookie, or the NameID) end here first,
    then every OTHER participant is told: SOAP-capable ones first over the back channel, then the front-channel ones
    one after another through the browser (the state between those requests is an `SloTransaction` row, so any web
    node continues it); a failing SP does not stop the rest, and the initiator hears PartialLogout. Then the
    initiator gets its LogoutResponse on the binding its request came on. IdP-initiated: `saml2slo?SPID=…` or
    `saml2slo?Logout=all` ends the browser's session everywhere and lands on the confirm page.
As SP:
    `saml2slo?ProviderID=<IdP>` ends the local session, then sends a LogoutRequest to the IdP (Redirect, else POST,
    else SOAP); the LogoutResponse that comes back leads to the confirm URL. A LogoutRequest from the IdP (Redirect,
    POST or SOAP) ends the SP sessions of that NameID / SessionIndex and is answered on its binding.
    `saml2slo?LocalLogout=true` ends only the local SP session.

Every step logs a trace line with an `SLOSAML2_…` checkpoint; the SAML transaction ID (the initiating LogoutRequest's
ID) is bound to every request of one logout (`tracing.bind_saml_transaction`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from urllib.parse import urlsplit

from cryptography import x509
from django.db import transaction

from federation import backchannel, runtime_paths, sp_runtime, sso_sessions, tracing
from federation.models import SloTransaction, SpSession, SsoParticipant
from federation.runtime_errors import PostForm, Redirect, Refusal, SoapAnswer
from federation.saml import constants as C
from federation.saml.assertions import NameID
from federation.saml.common import (
    DEFAULT_RELAY_STATE_LIMIT,
    MessageExpired,
    ProtocolError,
    SignatureRequired,
    SigningKey,
    encode_post,
    encode_redirect,
    encode_soap,
    new_id,
    read_post,
    read_redirect,
    read_soap,
    soap_fault,
    status_for_error,
    utc_now,
)
from federation.saml.errors import SAMLError, SignatureError, XMLSecurityError
from federation.saml.logout import (
    LogoutPolicy,
    LogoutRequestSettings,
    build_logout_request,
    build_logout_response,
    parse_logout_request_post,
    parse_logout_request_redirect,
    parse_logout_request_soap,
    parse_logout_response_post,
    parse_logout_response_redirect,
    parse_logout_response_soap,
)
from federation.saml.signing import allowed_signature_algorithms
from federation.saml.xml import to_bytes
from federation.tracing import bind_saml_transaction
from partnerships.catalog_choices import ALGORITHM_URIS, BINDING_URIS
from partnerships.models import PartnershipSnapshot
from partnerships.runtime import NoActivePartnership, find_active, load_snapshot, snapshot_secrets

log = logging.getLogger("federation.runtime.slo")

IDP, SP = SloTransaction.Role.IDP, SloTransaction.Role.SP
KIND = {IDP: "saml2_idp_sp", SP: "saml2_sp_idp"}  # the partnership kind of each role of this site
TRANSACTION_LIFETIME = timedelta(minutes=10)  # how long a front-channel logout may take between two hops
DEFAULT_BINDINGS = ("redirect",)  # the catalogue's default SLO binding
DEFAULT_VALIDITY_SECONDS = 60

MAX_POST_BYTES = C.MAX_MESSAGE_BYTES * 4 // 3 + 16 * 1024
MAX_QUERY_BYTES = 2 * C.MAX_REDIRECT_MESSAGE_BYTES + 8192
MAX_PARAMETER_CHARS = 8192

_URIS = BINDING_URIS["saml2"]
REDIRECT, POST, SOAP = C.BINDING_HTTP_REDIRECT, C.BINDING_HTTP_POST, C.BINDING_SOAP
FRONT_CHANNEL = (REDIRECT, POST)  # in order of preference: the reference starts logout with HTTP-Redirect
BINDING_NAMES = {REDIRECT: "HTTP-Redirect", POST: "HTTP-POST", SOAP: "SOAP"}
_TRUE = {"true", "yes", "1", "on"}


class Checkpoint:
    """Trace checkpoint codes of single logout (grep the logs or search the console's trace by them)."""

    REQUEST_READ = "SLOSAML2_REQUEST_READ"
    RESPONSE_READ = "SLOSAML2_RESPONSE_READ"
    SESSION_FOUND = "SLOSAML2_SESSION_FOUND"
    SESSION_UNKNOWN = "SLOSAML2_SESSION_UNKNOWN"
    LOCAL_LOGOUT = "SLOSAML2_LOCAL_LOGOUT"
    PARTICIPANT_SOAP = "SLOSAML2_PARTICIPANT_SOAP"
    PARTICIPANT_SENT = "SLOSAML2_PARTICIPANT_SENT"
    PARTICIPANT_DONE = "SLOSAML2_PARTICIPANT_DONE"
    PARTICIPANT_FAILED = "SLOSAML2_PARTICIPANT_FAILED"
    REQUEST_SENT = "SLOSAML2_REQUEST_SENT"
    RESPONSE_SENT = "SLOSAML2_RESPONSE_SENT"
    IDP_ANSWERED = "SLOSAML2_IDP_ANSWERED"
    CONFIRM = "SLOSAML2_CONFIRM"
    NO_SESSION = "SLOSAML2_NO_SESSION"
    # refusals
    METHOD_NOT_ALLOWED = "SLOSAML2_METHOD_NOT_ALLOWED"
    MESSAGE_TOO_LARGE = "SLOSAML2_MESSAGE_TOO_LARGE"
    BAD_PARAMETER = "SLOSAML2_BAD_PARAMETER"
    INVALID_MESSAGE = "SLOSAML2_INVALID_MESSAGE"
    UNKNOWN_PARTNER = "SLOSAML2_UNKNOWN_PARTNER"
    SLO_DISABLED = "SLOSAML2_SLO_DISABLED"
    BINDING_NOT_ENABLED = "SLOSAML2_BINDING_NOT_ENABLED"
    SIGNATURE_REQUIRED = "SLOSAML2_SIGNATURE_REQUIRED"
    SIGNATURE_INVALID = "SLOSAML2_SIGNATURE_INVALID"
    REQUEST_EXPIRED = "SLOSAML2_REQUEST_EXPIRED"
    REQUEST_REFUSED = "SLOSAML2_REQUEST_REFUSED"
    UNKNOWN_TRANSACTION = "SLOSAML2_UNKNOWN_TRANSACTION"
    BACKCHANNEL_AUTH_FAILED = "SLOSAML2_BACKCHANNEL_AUTH_FAILED"
    BACKCHANNEL_UNAUTHENTICATED = "SLOSAML2_BACKCHANNEL_UNAUTHENTICATED"
    CONFIGURATION = "SLOSAML2_CONFIGURATION_ERROR"
    SERVER_ERROR = "SLOSAML2_SERVER_ERROR"


def _trace(level, checkpoint, message, *args):
    tracing.log_checkpoint(log, level, checkpoint, message, *args)


def _info(checkpoint, message, *args):
    _trace(logging.INFO, checkpoint, message, *args)


def _warn(checkpoint, message, *args):
    _trace(logging.WARNING, checkpoint, message, *args)


# --- results the views turn into responses -------------------------------------------------------------------------


@dataclass
class ConfirmPage:
    """The built-in "you are signed out" page (when no confirm URL is configured). `failed`: partners that could not
    be told, by name, for the user to know a session may still be open there."""

    message: str
    failed: tuple = ()


@dataclass(frozen=True)
class ExpiredCookie:
    """A cookie of the SP runtime to delete (its path is "/", as the SP runtime sets it)."""

    name: str
    domain: str | None = None


@dataclass
class Outcome:
    """What a front-channel service function answers: one of the results above, whether the browser's IdP session
    cookie (FEDSESSION) is to be cleared, and the SP runtime's cookies to delete."""

    result: object
    clear_idp_cookie: bool = False
    clear_sp_cookies: tuple = ()


class LogoutRefused(Exception):
    """Carries a `Refusal` out of nested helpers (and out of `parameters`) to the entry point."""

    def __init__(self, refusal):
        super().__init__(refusal.detail or refusal.message)
        self.refusal = refusal


class ConfigurationError(Exception):
    """The activated partnership cannot be served as configured (a key gone from the keystore, say)."""


# --- the partnership as single logout uses it ---------------------------------------------------------------------


@dataclass(frozen=True)
class SloPartner:
    """One activated partnership, either role, with what single logout needs from it. `role` is this site's role:
    IDP (the partner is an SP) or SP (the partner is an IdP)."""

    role: str
    active: object  # partnerships.runtime.ActivePartnership
    local_entity_id: str
    remote_entity_id: str
    enabled: bool
    bindings: tuple  # binding URIs this site sends and receives logout messages with, for this partner
    remote_slo: dict  # binding URI -> (location, response location) of the partner's SLO services
    our_urls: tuple  # our SLO service URLs (a present Destination must be one of them)
    validity_seconds: int
    skew_seconds: int
    confirm_url: str
    relay_state_overrides_confirm: bool
    verification_certificates: tuple
    signature_disabled: bool
    allowed_algorithms: frozenset
    sign_soap_requests: bool
    sign_soap_responses: bool
    soap_name_id_certificate: object  # the partner's certificate when NameIDs in SOAP logout messages are encrypted
    block_algorithm: str
    key_transport: str
    backchannel_in_auth: str
    status_redirects: tuple
    base_url: str

    @property
    def name(self):
        return self.active.name

    @property
    def snapshot_id(self):
        return self.active.snapshot_id

    def supports(self, binding):
        """The binding is enabled for this partnership and the partner has an SLO service URL for it."""
        return binding in self.bindings and binding in self.remote_slo

    def front_channel_binding(self, preferred=None):
        """The front-channel binding to use with this partner (the preferred one when possible), or None."""
        for binding in ((preferred,) if preferred in FRONT_CHANNEL else ()) + FRONT_CHANNEL:
            if self.supports(binding):
                return binding
        return None

    def location(self, binding, response=False):
        """Where a message on `binding` goes (a response to the ResponseLocation when the partner names one)."""
        location, response_location = self.remote_slo[binding]
        return (response_location or location) if response else location

    def policy(self, require_signed):
        return LogoutPolicy(
            partner_entity_id=self.remote_entity_id,
            verification_certificates=() if self.signature_disabled else self.verification_certificates,
            require_signed=require_signed and not self.signature_disabled,
            allowed_algorithms=self.allowed_algorithms,
            slo_urls=self.our_urls,
            decryption_key=_decryption_key(self),
            skew_seconds=self.skew_seconds,
        )


def _certificate(active, alias):
    entry = (active.certificates or {}).get(alias or "")
    return x509.load_pem_x509_certificate(entry["certificate_pem"].encode()) if entry else None


@lru_cache(maxsize=512)
def _partner(snapshot_id, partnership_id, version, role):
    """Derived once per snapshot and process; keyed by more than the snapshot's primary key (a reused key can never
    serve another partnership's settings)."""
    active = load_snapshot(snapshot_id)
    values = active.settings or {}
    sso = values.get("sso_slo") or {}
    sig = values.get("signature") or {}
    configure = values.get("configure") or {}
    bases = tuple(dict.fromkeys(base.rstrip("/") for base in (configure.get("base_url"), active.local.get("base_url")) if base))
    remote_slo = {}
    for row in active.remote.get("endpoints") or ():
        if row.get("kind") == "slo" and row.get("binding") not in remote_slo:
            remote_slo[row["binding"]] = (row["location"], row.get("response_location") or "")
    verification = _certificate(active, sig.get("verification_certificate"))
    sign_soap = sig.get("sign_slo_soap") or "both"
    encrypt_name_id = role == IDP and bool(sig.get("encrypt_name_id"))
    if role == IDP:
        redirects = tuple(sso.get("status_redirects") or ())
    else:
        redirects = tuple((values.get("application") or {}).get("status_redirects") or ())
    return SloPartner(
        role=role,
        active=active,
        local_entity_id=active.local["entity_id"],
        remote_entity_id=active.remote["entity_id"],
        enabled=bool(sso.get("slo_enabled")),
        bindings=tuple(_URIS[name] for name in (sso.get("slo_bindings") or DEFAULT_BINDINGS) if name in _URIS),
        remote_slo=remote_slo,
        our_urls=tuple(base + path for base in bases for path in (runtime_paths.SAML2_SLO, runtime_paths.SAML2_SLO_SOAP)),
        validity_seconds=int(sso.get("slo_validity_seconds", DEFAULT_VALIDITY_SECONDS) or 0),
        skew_seconds=int(configure.get("skew_seconds") or 0),
        confirm_url=(sso.get("slo_confirm_url") or "").strip(),
        relay_state_overrides_confirm=bool(sso.get("slo_relay_state_overrides_confirm")),
        verification_certificates=(verification,) if verification is not None else (),
        signature_disabled=bool(sig.get("disable_signature_processing")),
        allowed_algorithms=allowed_signature_algorithms(sha1=bool(sig.get("accept_sha1"))),
        # Front-channel logout messages are always signed. Over SOAP the IdP signs what "SLO SOAP signature options"
        # says; an SP (which has no such setting) signs its LogoutRequests, and answers the IdP's SOAP call unsigned:
        # the IdP called our URL directly, so TLS authenticates the answer (SAML bindings §3.2.2.2).
        sign_soap_requests=role == SP or sign_soap in ("both", "request"),
        sign_soap_responses=role == IDP and sign_soap in ("both", "response"),
        soap_name_id_certificate=_certificate(active, sig.get("encryption_certificate")) if encrypt_name_id else None,
        block_algorithm=ALGORITHM_URIS[sig.get("encryption_block_algorithm") or "aes256-gcm"],
        key_transport=ALGORITHM_URIS[sig.get("encryption_key_transport") or "rsa-oaep-mgf1p"],
        backchannel_in_auth=sso.get("backchannel_in_auth") or "none",
        status_redirects=redirects,
        base_url=bases[0] if bases else "",
    )


def partner_for(role, remote_entity_id):
    """The `SloPartner` of the active partnership of `role` with the partner `remote_entity_id`, or
    NoActivePartnership."""
    active = find_active(KIND[role], remote_entity_id)
    return _partner(active.snapshot_id, active.partnership_id, active.version, role)


def _sending_partner(remote_entity_id):
    """The partner that sent a LogoutRequest, in one query over both roles' partnerships: this site is its IdP when
    it is an SP of an active IdP→SP partnership, else its SP. NoActivePartnership when there is none (or several of
    the chosen role)."""
    rows = PartnershipSnapshot.objects.filter(kind__in=tuple(KIND.values()), remote_entity_id=remote_entity_id, current=True)
    found = list(rows.values_list("kind", "pk")[:4])
    for role in (IDP, SP):
        mine = [pk for kind, pk in found if kind == KIND[role]]
        if len(mine) > 1:
            raise NoActivePartnership(
                f"Several active {KIND[role]} partnerships have the partner '{remote_entity_id}'; single logout cannot "
                "tell which one is meant."
            )
        if mine:
            active = load_snapshot(mine[0])
            return _partner(active.snapshot_id, active.partnership_id, active.version, role)
    raise NoActivePartnership(f"There is no active SAML 2.0 partnership with '{remote_entity_id}'.")


@lru_cache(maxsize=256)
def _key_pair(alias, fingerprint):
    """(private key, certificate) of a keystore key pair, opened once per process and (alias, fingerprint)."""
    from entities.models import KeystoreEntry

    entry = KeystoreEntry.objects.filter(alias=alias).first()
    if entry is None or not entry.has_private_key:
        raise ConfigurationError(f"the key pair '{alias}' is no longer in the keystore")
    if fingerprint and entry.fingerprint_sha256 != fingerprint:
        raise ConfigurationError(
            f"the key pair '{alias}' holds another certificate than when the partnership was activated; activate it again"
        )
    return entry.private_key_object(), entry.certificate()


def signing_key(partner):
    """Our SigningKey for this partnership's logout messages, or None when signature processing is disabled."""
    if partner.signature_disabled:
        return None
    sig = (partner.active.settings or {}).get("signature") or {}
    alias = sig.get("signing_key") or ""
    if not alias:
        raise ConfigurationError(f"partnership '{partner.name}' has no signing key pair for logout messages")
    fingerprint = ((partner.active.certificates or {}).get(alias) or {}).get("fingerprint_sha256", "")
    key, certificate = _key_pair(alias, fingerprint)
    return SigningKey(
        key,
        certificate,
        ALGORITHM_URIS[sig.get("signature_algorithm") or "rsa-sha256"],
        ALGORITHM_URIS[sig.get("digest_algorithm") or "sha256"],
    )


def _decryption_key(partner):
    """Our RSA key for an EncryptedID in a logout message: the SP's decryption key pair; at the IdP the local
    entity's decryption key when it has one. None when there is none (an EncryptedID is then refused)."""
    if partner.role == SP:
        alias = ((partner.active.settings or {}).get("signature") or {}).get("decryption_key") or ""
    else:
        alias = (partner.active.local.get("keys") or {}).get("decryption_key") or ""
    if not alias:
        return None
    fingerprint = ((partner.active.certificates or {}).get(alias) or {}).get("fingerprint_sha256", "")
    try:
        return _key_pair(alias, fingerprint)[0]
    except ConfigurationError:
        return None


def clear_caches():
    """Drop the per-process caches (tests: the database hands the same primary keys out again)."""
    _partner.cache_clear()
    _key_pair.cache_clear()


# --- small helpers ------------------------------------------------------------------------------------------------


def _refused(status, message, checkpoint, detail="", partner=None, condition=None):
    return LogoutRefused(
        Refusal(status, message, checkpoint, detail, list(partner.status_redirects) if partner else None, condition)
    )


def parameters(items):
    """Query or form parameters by lower-case name (the reference's names are matched ignoring case, such as
    LocalLogout / locallogout). A name given twice is refused."""
    found = {}
    for name, value in items:
        key = name.lower()
        if key in found:
            raise _refused(400, "The logout request is not valid.", Checkpoint.BAD_PARAMETER, f"parameter {name} appears twice")
        if len(value) > MAX_PARAMETER_CHARS and key not in ("samlrequest", "samlresponse"):
            raise _refused(400, "The logout request is not valid.", Checkpoint.BAD_PARAMETER, f"parameter {name} is too long")
        found[key] = value
    return found


def _same_origin(url, allowed):
    """Whether `url` is an absolute http(s) URL on the scheme, host and port of one of the `allowed` URLs."""
    try:
        wanted = urlsplit(url)
        wanted_origin = (wanted.scheme, (wanted.hostname or "").lower(), wanted.port)
    except ValueError:
        return False
    if wanted.scheme not in ("http", "https") or not wanted.hostname or wanted.username or any(ord(c) < 0x21 for c in url):
        return False
    for base in allowed:
        try:
            parts = urlsplit(base)
            if (parts.scheme, (parts.hostname or "").lower(), parts.port) == wanted_origin:
                return True
        except ValueError:
            continue
    return False


def _relay_state_allowed(partner, url):
    """A RelayState may replace the confirm URL only when it stays on this site (no open redirects): at an SP, the
    partnership's target or an allowed target URL, or the confirm URL's site; at an IdP, the confirm URL's site or
    the partnership's base URL."""
    if partner.role == SP and sp_runtime.target_allowed(partner.active, url):
        return True
    return _same_origin(url, [u for u in (partner.confirm_url, partner.base_url) if u])


def _confirm(partner, relay_state, message, failed=()):
    """Where the user goes when a logout they started is over: the RelayState when the partnership lets it override
    the confirm URL (and it stays on this site), else the confirm URL, else the built-in page."""
    if partner is not None and relay_state and partner.relay_state_overrides_confirm:
        if _relay_state_allowed(partner, relay_state):
            _info(Checkpoint.CONFIRM, "logout finished; to the RelayState %s", relay_state[:200])
            return Redirect(relay_state)
        _warn(Checkpoint.CONFIRM, "the RelayState %r is not on this site; it does not replace the confirm URL", relay_state[:200])
    if partner is not None and partner.confirm_url:
        _info(Checkpoint.CONFIRM, "logout finished; to the confirm URL %s", partner.confirm_url)
        return Redirect(partner.confirm_url)
    _info(Checkpoint.CONFIRM, "logout finished; built-in confirmation page")
    return ConfirmPage(message, tuple(failed))


def _name_id(value, name_format="", name_qualifier="", sp_name_qualifier=""):
    return NameID(value, name_format or C.NAMEID_UNSPECIFIED, name_qualifier or None, sp_name_qualifier or None)


def _logout_request(partner, name_id, session_indexes, binding):
    """An unsigned LogoutRequest to the partner on `binding` (NameID encrypted on SOAP when the partnership says)."""
    return build_logout_request(
        LogoutRequestSettings(
            issuer=partner.local_entity_id,
            destination=partner.location(binding),
            name_id=name_id,
            session_indexes=tuple(index for index in session_indexes if index),
            validity_seconds=partner.validity_seconds,
            skew_seconds=partner.skew_seconds,
            encryption_certificate=partner.soap_name_id_certificate if binding == SOAP else None,
            block_algorithm=partner.block_algorithm,
            key_transport=partner.key_transport,
        )
    )


def _front_channel(partner, element, binding, relay_state=None, response=False):
    """Send a logout message through the browser: a signed Redirect URL or an auto-submitted signed POST form."""
    location = partner.location(binding, response=response)
    signing = signing_key(partner)  # front-channel logout messages are always signed (unless signing is disabled)
    if binding == REDIRECT:
        return Redirect(encode_redirect(location, element, relay_state=relay_state, signing=signing))
    fields = {"SAMLResponse" if response else "SAMLRequest": encode_post(element, signing=signing)}
    if relay_state is not None:
        fields["RelayState"] = relay_state
    return PostForm(location, fields)


def _soap_answer(partner, element):
    signing = signing_key(partner) if partner.sign_soap_responses else None
    return SoapAnswer(200, encode_soap(element, signing=signing))


def _fault(status, fault_code, text, checkpoint, detail="", headers=None):
    _warn(checkpoint, "%s%s", text, f": {detail}" if detail else "")
    return SoapAnswer(status, to_bytes(soap_fault(text, fault_code), xml_declaration=True), headers or {})


def _soap_exchange(partner, request_element, request_id):
    """Send a LogoutRequest over the partnership's outgoing back channel; (success, why not). An answer of
    UnknownPrincipal counts as done: the partner had no session left to end."""
    location = partner.location(SOAP)
    try:
        body = encode_soap(request_element, signing=signing_key(partner) if partner.sign_soap_requests else None)
        answer = sp_runtime.soap_call(partner.active, location, body)
    except sp_runtime.SpError as error:
        return False, error.detail or error.message
    except ConfigurationError as error:
        return False, str(error)
    try:
        response = parse_logout_response_soap(answer, partner.policy(require_signed=False))
    except (ProtocolError, SAMLError) as error:
        return False, f"its answer could not be used: {error}"
    if response.in_response_to != request_id:
        return False, f"its answer is not for our LogoutRequest {request_id}"
    return _answered_ok(response)


def _answered_ok(response):
    if response.status.success or response.status.sub_code == C.STATUS_UNKNOWN_PRINCIPAL:
        return True, ""
    return False, f"it answered {response.status.describe()}"


def _transaction(role, saml_id, partnership, data, waiting_for="", now=None):
    now = now or utc_now()
    SloTransaction.objects.filter(expires_at__lte=now).delete()  # a cheap sweep: expired logouts can never continue
    return SloTransaction.objects.create(
        key=secrets.token_hex(16),
        role=role,
        saml_id=saml_id[:128],
        waiting_for=waiting_for,
        partnership=partnership[:128],
        data=data,
        expires_at=now + TRANSACTION_LIFETIME,
    )


def sweep_expired(now=None):
    """Delete logouts that can no longer continue; returns how many (for a periodic task)."""
    return SloTransaction.objects.filter(expires_at__lte=now or utc_now()).delete()[0]


# --- saml2slo: the front channel ----------------------------------------------------------------------------------


def front_channel(method, query_string, params, *, idp_cookie="", sp_cookie="", content_length=0, now=None):
    """/affwebservices/public/saml2slo. `params`: the request's parameters by lower-case name (`parameters`);
    `query_string`: the raw query (the Redirect binding's signature covers it)."""
    try:
        return _front_channel_request(method, query_string, params, idp_cookie, sp_cookie, content_length, now)
    except LogoutRefused as refused:
        return Outcome(refused.refusal)
    except ConfigurationError as error:
        return Outcome(
            Refusal(
                500, "Sign-out is not available right now. The administrator has been told.", Checkpoint.CONFIGURATION, str(error)
            )
        )
    except sso_sessions.SessionStoreError as error:
        return Outcome(
            Refusal(503, "Sign-out is not available right now. Please try again.", Checkpoint.SERVER_ERROR, str(error))
        )


def _front_channel_request(method, query_string, params, idp_cookie, sp_cookie, content_length, now):
    if method not in ("GET", "POST"):
        raise _refused(405, "This address accepts only GET and POST.", Checkpoint.METHOD_NOT_ALLOWED, method)
    if len(query_string) > MAX_QUERY_BYTES or content_length > MAX_POST_BYTES:
        raise _refused(
            413,
            "The message is larger than this service accepts.",
            Checkpoint.MESSAGE_TOO_LARGE,
            f"query {len(query_string)} bytes, body {content_length} bytes",
            condition="bad_request",
        )
    relay_state = params.get("relaystate")
    if relay_state is not None and len(relay_state.encode("utf-8")) > DEFAULT_RELAY_STATE_LIMIT:
        raise _refused(400, "The logout request is not valid.", Checkpoint.BAD_PARAMETER, "RelayState is too long")
    if "samlrequest" in params or "samlresponse" in params:
        return _message(method, query_string, params, idp_cookie, sp_cookie, now)
    if (params.get("locallogout") or "").strip().lower() in _TRUE:
        return local_logout(sp_cookie, relay_state, now=now)
    if params.get("providerid"):
        return sp_initiated(params["providerid"].strip(), relay_state, sp_cookie, now=now)
    if params.get("spid") or (params.get("logout") or "").strip().lower() == "all":
        return idp_initiated((params.get("spid") or "").strip() or None, relay_state, idp_cookie, now=now)
    # A bare link: log out whatever this browser has; an SP session first (our IdP then ends its own session, too).
    if sp_runtime.session_for_cookie(sp_cookie, now) is not None:
        return sp_initiated(None, relay_state, sp_cookie, now=now)
    if idp_cookie and sso_sessions.session_store().get(idp_cookie, now=now) is not None:
        return idp_initiated(None, relay_state, idp_cookie, now=now)
    _info(Checkpoint.NO_SESSION, "logout without a session at this site")
    return Outcome(ConfirmPage("You are signed out."), clear_idp_cookie=bool(idp_cookie))


def _peek(method, query_string, params):
    """The still-unverified message: (UnverifiedMessage, binding). Only for choosing the role and the partner."""
    name = "SAMLRequest" if "samlrequest" in params else "SAMLResponse"
    try:
        if method == "GET":
            return read_redirect(query_string, name), REDIRECT
        return read_post(params[name.lower()], params.get("relaystate")), POST
    except (SAMLError, ProtocolError, ValueError) as error:
        too_large = isinstance(error, XMLSecurityError) and "larger" in str(error)
        raise _refused(
            413 if too_large else 400,
            "The logout message could not be read.",
            Checkpoint.MESSAGE_TOO_LARGE if too_large else Checkpoint.INVALID_MESSAGE,
            str(error),
            condition="bad_request",
        ) from None


def _message(method, query_string, params, idp_cookie, sp_cookie, now):
    message, binding = _peek(method, query_string, params)
    if message.name == "LogoutResponse":
        return _logout_response(message, binding, query_string, params, now)
    if message.name != "LogoutRequest":
        raise _refused(400, "The message is not a logout message.", Checkpoint.INVALID_MESSAGE, f"got {message.name}")
    partner = _sender(message.issuer, "LogoutRequest")
    _check_enabled(partner, binding)
    try:
        if binding == REDIRECT:
            request = parse_logout_request_redirect(query_string, partner.policy(require_signed=True), now)
        else:
            request = parse_logout_request_post(params["samlrequest"], params.get("relaystate"), partner.policy(True), now)
    except (ProtocolError, SAMLError) as error:
        return _request_refused(partner, message, binding, error)
    bind_saml_transaction(request.id, "LogoutRequest")
    _info(
        Checkpoint.REQUEST_READ,
        "LogoutRequest %s from %s by %s (%s), partnership %s",
        request.id,
        request.issuer,
        BINDING_NAMES[binding],
        "signed" if request.signed else "unsigned",
        partner.name,
    )
    if partner.role == IDP:
        return _idp_request(partner, request, binding, idp_cookie, now)
    return _sp_request(partner, request, binding, sp_cookie, now)


def _sender(issuer, what):
    """The partner that sent a LogoutRequest (by its still-unverified Issuer: a lookup key only): this site is its
    IdP when it is an SP of an active IdP→SP partnership, else its SP."""
    if not issuer:
        raise _refused(400, "The logout message does not say who sent it.", Checkpoint.INVALID_MESSAGE, f"{what} without Issuer")
    try:
        return _sending_partner(issuer)
    except NoActivePartnership as error:
        raise _refused(
            400, "The logout message does not come from a partner of this site.", Checkpoint.UNKNOWN_PARTNER, str(error)
        ) from None


def _check_enabled(partner, binding):
    """A7: a logout message on a binding the partnership does not use fails, with a trace line."""
    if not partner.enabled:
        raise _refused(
            400,
            "Single logout is not enabled with this partner.",
            Checkpoint.SLO_DISABLED,
            f"partnership {partner.name} has single logout off",
            partner,
        )
    if binding not in partner.bindings:
        raise _refused(
            400,
            "The logout message arrived in a way this site does not accept from this partner.",
            Checkpoint.BINDING_NOT_ENABLED,
            f"partnership {partner.name} does not use {BINDING_NAMES[binding]} for single logout",
            partner,
        )
    if binding != SOAP and partner.front_channel_binding(binding) is None:
        raise _refused(
            500,
            "Sign-out with this partner is not set up correctly. The administrator has been told.",
            Checkpoint.CONFIGURATION,
            f"partner {partner.remote_entity_id} has no SLO service URL for an enabled front-channel binding",
            partner,
        )


def _request_refused(partner, message, binding, error):
    """A LogoutRequest that cannot be used. Refusals with a SAML status (expired, unsigned where signing is required,
    a wrong Destination…) are answered with a LogoutResponse carrying that status, to the partner's registered SLO
    URL (nothing ends here); a bad signature or unreadable XML gets the error page."""
    if isinstance(error, MessageExpired):
        checkpoint = Checkpoint.REQUEST_EXPIRED
    elif isinstance(error, SignatureRequired):
        checkpoint = Checkpoint.SIGNATURE_REQUIRED
    elif isinstance(error, SignatureError):
        checkpoint = Checkpoint.SIGNATURE_INVALID
    else:
        checkpoint = Checkpoint.REQUEST_REFUSED if isinstance(error, ProtocolError) else Checkpoint.INVALID_MESSAGE
    request_id = message.element.get("ID")
    bind_saml_transaction(request_id or "", "refused LogoutRequest")
    _warn(checkpoint, "LogoutRequest %s from %s refused: %s", request_id, partner.remote_entity_id, error)
    if not isinstance(error, ProtocolError) or (binding != SOAP and partner.front_channel_binding(binding) is None):
        status = 403 if isinstance(error, SignatureError) else 400
        raise _refused(status, "The logout request could not be accepted.", checkpoint, str(error), partner)
    status, sub_status = status_for_error(error)
    answer = build_logout_response(
        issuer=partner.local_entity_id,
        destination=None if binding == SOAP else partner.location(partner.front_channel_binding(binding), response=True),
        in_response_to=request_id,
        status=status,
        sub_status=sub_status,
        message=str(error)[:500],
    )
    _info(Checkpoint.RESPONSE_SENT, "negative LogoutResponse %s to %s", answer.id, partner.remote_entity_id)
    if binding == SOAP:
        return _soap_answer(partner, answer.element)
    relay_state = message.relay_state if message.relay_state and len(message.relay_state) <= DEFAULT_RELAY_STATE_LIMIT else None
    return Outcome(_front_channel(partner, answer.element, partner.front_channel_binding(binding), relay_state, response=True))


def _logout_response(message, binding, query_string, params, now):
    """A LogoutResponse to a LogoutRequest this site sent through the browser (IdP: from a participant; SP: from
    the IdP). It continues the logout it belongs to, once."""
    in_response_to = message.element.get("InResponseTo") or ""
    row = (
        SloTransaction.objects.filter(waiting_for=in_response_to, expires_at__gt=now or utc_now()).first()
        if in_response_to
        else None
    )
    if row is None:
        raise _refused(
            400,
            "This sign-out has already finished or took too long. You may close this window.",
            Checkpoint.UNKNOWN_TRANSACTION,
            f"LogoutResponse from {message.issuer!r} for {in_response_to!r}, which no logout in progress waits for",
        )
    bind_saml_transaction(row.saml_id, "LogoutResponse")
    expected = row.data.get("expect") or ""
    if message.issuer != expected:
        raise _refused(
            400,
            "The logout answer could not be accepted.",
            Checkpoint.INVALID_MESSAGE,
            f"LogoutResponse for {in_response_to} comes from {message.issuer!r}, not from {expected!r}",
        )
    try:
        partner = partner_for(row.role, expected)
    except NoActivePartnership as error:
        raise _refused(400, "The logout answer could not be accepted.", Checkpoint.UNKNOWN_PARTNER, str(error)) from None
    try:
        if binding == REDIRECT:
            response = parse_logout_response_redirect(query_string, partner.policy(require_signed=True), now)
        else:
            response = parse_logout_response_post(params["samlresponse"], params.get("relaystate"), partner.policy(True), now)
        problem = None
    except (ProtocolError, SAMLError) as error:
        response, problem = None, error
    if not SloTransaction.objects.filter(pk=row.pk, waiting_for=in_response_to).update(waiting_for=""):
        raise _refused(400, "This sign-out has already finished.", Checkpoint.UNKNOWN_TRANSACTION, "answer already handled")
    row.waiting_for = ""
    if problem is not None:
        # The user is already logged out here; an answer that cannot be used counts as that partner's failure, and
        # the logout goes on (IdP: with the next participant; SP: to the confirm page), never to a dead end.
        checkpoint = (
            Checkpoint.SIGNATURE_INVALID
            if isinstance(problem, SignatureError | SignatureRequired)
            else Checkpoint.INVALID_MESSAGE
        )
        _warn(checkpoint, "LogoutResponse from %s for %s could not be used: %s", expected, in_response_to, problem)
        if row.role == IDP:
            _participant_result(row.data, expected, False, f"its LogoutResponse could not be used: {problem}")
            return Outcome(_idp_continue(row))
        row.delete()
        return Outcome(
            _confirm(
                partner,
                row.data.get("relay_state"),
                "You are signed out of this site, but the sign-in service could not confirm it.",
            )
        )
    _info(
        Checkpoint.RESPONSE_READ,
        "LogoutResponse %s from %s by %s: %s",
        response.id,
        response.issuer,
        BINDING_NAMES[binding],
        response.status.describe(),
    )
    if row.role == IDP:
        ok, why = _answered_ok(response)
        _participant_result(row.data, expected, ok, why)
        return Outcome(_idp_continue(row))
    return _sp_answered(row, partner, response)


# --- IdP role -----------------------------------------------------------------------------------------------------


def _participant_partner(participant):
    return partner_for(IDP, participant["remote_entity_id"])


def _participant_result(data, entity_id, ok, why=""):
    if ok:
        data.setdefault("done", []).append(entity_id)
        _info(Checkpoint.PARTICIPANT_DONE, "%s is logged out", entity_id)
    else:
        data.setdefault("failed", []).append({"entity": entity_id, "why": why})
        _warn(Checkpoint.PARTICIPANT_FAILED, "%s could not be logged out: %s", entity_id, why)


def _sessions_for(partner, request, idp_cookie, now):
    """The live IdP sessions the LogoutRequest names: by SessionIndex, else the browser's session when the SP is a
    participant of it under that NameID, else (no SessionIndex given, database store) every session in which the SP
    received that NameID."""
    store = sso_sessions.session_store()
    entity, value = partner.remote_entity_id, request.name_id.value
    found = {}
    for index in request.session_indexes:
        record = store.find_by_participant(entity, index, now)
        if record is not None and record.participant is not None and record.participant.name_id == value:
            found[record.key] = record
    if not found and idp_cookie:
        record = store.get(idp_cookie, now=now, participant_for=entity)
        mine = record.participant if record is not None else None
        if (
            mine is not None
            and mine.name_id == value
            and (not request.session_indexes or mine.session_index in request.session_indexes)
        ):
            found[record.key] = record
    if not found and not request.session_indexes and store.name == sso_sessions.DATABASE:
        keys = SsoParticipant.objects.filter(remote_entity_id=entity, name_id=value).values_list("session__key", flat=True)
        for key in keys[:20]:
            record = store.find_by_key(key, now)
            if record is not None:
                found[record.key] = record
    return list(found.values())


def _idp_request(partner, request, binding, idp_cookie, now):
    """IdP role: a verified LogoutRequest from an SP, on the front channel."""
    sessions = _sessions_for(partner, request, idp_cookie, now)
    initiator = {
        "sp": partner.remote_entity_id,
        "binding": binding,
        "request_id": request.id,
        "relay_state": request.relay_state,
    }
    if not sessions:
        _info(Checkpoint.SESSION_UNKNOWN, "no session of %s at this IdP for that NameID / SessionIndex", partner.remote_entity_id)
        answer = build_logout_response(
            issuer=partner.local_entity_id,
            destination=partner.location(partner.front_channel_binding(binding), response=True),
            in_response_to=request.id,
            status=C.STATUS_REQUESTER,
            sub_status=C.STATUS_UNKNOWN_PRINCIPAL,
            message="no session of this user is known here",
        )
        _info(Checkpoint.RESPONSE_SENT, "LogoutResponse %s (UnknownPrincipal) to %s", answer.id, partner.remote_entity_id)
        result = _front_channel(partner, answer.element, partner.front_channel_binding(binding), request.relay_state, True)
        return Outcome(result, clear_idp_cookie=_cookie_session_gone(idp_cookie, now))
    _info(Checkpoint.SESSION_FOUND, "%d IdP session(s) of %s", len(sessions), ", ".join(sorted({s.username for s in sessions})))
    data = _end_sessions(sessions, initiator=partner.remote_entity_id, browser=True, now=now)
    data["initiator"] = initiator
    result = _idp_orchestrate(request.id, partner.name, data, now, partner)
    return Outcome(result, clear_idp_cookie=_cookie_session_gone(idp_cookie, now))


def _cookie_session_gone(idp_cookie, now):
    return bool(idp_cookie) and sso_sessions.session_store().get(idp_cookie, now=now) is None


def _end_sessions(sessions, *, initiator, browser, now):
    """End the IdP sessions here (the user is logged out of this site first), tell every SOAP-capable participant
    over the back channel, and return the logout's state: the front-channel participants still to be told."""
    store = sso_sessions.session_store()
    participants = {}
    for record in sessions:
        for participant in store.participants(record):
            if participant.remote_entity_id != initiator:
                participants.setdefault((participant.remote_entity_id, participant.session_index), participant)
        store.delete(record.key)
        _info(Checkpoint.LOCAL_LOGOUT, "IdP session of %s (%s) ended", record.username, record.directory)
    data = {"done": [], "failed": [], "pending": []}
    soap = []
    for participant in participants.values():
        row = {
            "remote_entity_id": participant.remote_entity_id,
            "name_id": participant.name_id,
            "name_id_format": participant.name_id_format,
            "name_qualifier": participant.name_qualifier,
            "sp_name_qualifier": participant.sp_name_qualifier,
            "session_index": participant.session_index,
        }
        try:
            partner = _participant_partner(row)
        except NoActivePartnership:
            _participant_result(data, participant.remote_entity_id, False, "no active partnership with it any more")
            continue
        if not partner.enabled:
            _participant_result(data, participant.remote_entity_id, False, "single logout is not enabled with it")
        elif partner.supports(SOAP):
            soap.append((partner, row))
        elif partner.front_channel_binding() is None:
            _participant_result(data, participant.remote_entity_id, False, "it has no SLO service URL for an enabled binding")
        elif not browser:
            _participant_result(
                data, participant.remote_entity_id, False, "it logs out through the browser, and this logout came over SOAP"
            )
        else:
            data["pending"].append(row)
    # The reference's order: every SOAP-capable participant first (one failure does not stop the rest), then the
    # front channel one after another.
    for partner, row in soap:
        issued = _logout_request(partner, _participant_name_id(row), (row["session_index"],), SOAP)
        _info(
            Checkpoint.PARTICIPANT_SOAP,
            "LogoutRequest %s to %s over SOAP (%s)",
            issued.id,
            partner.remote_entity_id,
            partner.location(SOAP),
        )
        ok, why = _soap_exchange(partner, issued.element, issued.id)
        _participant_result(data, partner.remote_entity_id, ok, why)
    return data


def _participant_name_id(row):
    return _name_id(row["name_id"], row.get("name_id_format"), row.get("name_qualifier"), row.get("sp_name_qualifier"))


def _idp_orchestrate(saml_id, partnership, data, now, initiator_partner=None):
    """Continue with the front-channel participants (kept in an SloTransaction between hops), or finish."""
    if not data.get("pending"):
        return _idp_finish(data, initiator_partner)
    row = _transaction(IDP, saml_id, partnership, data, now=now)
    return _idp_continue(row)


def _idp_continue(row):
    """The next front-channel participant, or the end of the logout. One that cannot be sent to is recorded as
    failed and the next one is tried."""
    data = row.data
    while data.get("pending"):
        participant = data["pending"].pop(0)
        entity = participant["remote_entity_id"]
        try:
            partner = _participant_partner(participant)
            binding = partner.front_channel_binding()
            if binding is None or not partner.enabled:
                raise ConfigurationError("single logout through the browser is no longer enabled with it")
            issued = _logout_request(partner, _participant_name_id(participant), (participant["session_index"],), binding)
            result = _front_channel(partner, issued.element, binding)
        except (NoActivePartnership, ConfigurationError) as error:
            _participant_result(data, entity, False, str(error))
            continue
        row.waiting_for = issued.id
        data["expect"] = entity
        row.data = data
        row.save(update_fields=["waiting_for", "data"])
        _info(Checkpoint.PARTICIPANT_SENT, "LogoutRequest %s to %s by %s", issued.id, entity, BINDING_NAMES[binding])
        return result
    row.delete()
    return _idp_finish(data)


def _failure_summary(failed):
    names = ", ".join(item["entity"] for item in failed)
    return f"{len(failed)} service provider(s) could not be logged out: {names}"[:500]


def _idp_finish(data, initiator_partner=None):
    """Answer the SP that started the logout (success, or PartialLogout when a participant failed), or, for an
    IdP-initiated logout, go to the confirm page. `initiator_partner`: the initiator's SloPartner when the caller
    has it (else it is looked up again: the partnership may have changed between hops)."""
    failed = data.get("failed") or []
    initiator = data.get("initiator")
    if initiator is None:
        partner = None
        if data.get("spid"):
            try:
                partner = partner_for(IDP, data["spid"])
            except NoActivePartnership:
                partner = None
        message = "You are signed out." if not failed else "You are signed out here, but not every site could be told."
        return _confirm(partner, data.get("relay_state"), message, [item["entity"] for item in failed])
    try:
        partner = initiator_partner or partner_for(IDP, initiator["sp"])
    except NoActivePartnership:
        return ConfirmPage("You are signed out.", tuple(item["entity"] for item in failed))
    binding = initiator["binding"]
    status, sub_status, text = (
        (C.STATUS_SUCCESS, None, None) if not failed else (C.STATUS_RESPONDER, C.STATUS_PARTIAL_LOGOUT, _failure_summary(failed))
    )
    front = partner.front_channel_binding(binding) if binding != SOAP else None
    answer = build_logout_response(
        issuer=partner.local_entity_id,
        destination=partner.location(front, response=True) if front else None,
        in_response_to=initiator["request_id"],
        status=status,
        sub_status=sub_status,
        message=text,
    )
    _info(
        Checkpoint.RESPONSE_SENT,
        "LogoutResponse %s to %s by %s: %s (%d logged out, %d failed)",
        answer.id,
        partner.remote_entity_id,
        BINDING_NAMES[front or SOAP],
        "Success" if not failed else "PartialLogout",
        len(data.get("done") or ()),
        len(failed),
    )
    if binding == SOAP:
        return _soap_answer(partner, answer.element)
    if front is None:
        return ConfirmPage("You are signed out.", tuple(item["entity"] for item in failed))
    return _front_channel(partner, answer.element, front, initiator.get("relay_state"), response=True)


def idp_initiated(spid, relay_state, idp_cookie, now=None):
    """IdP-initiated logout of the browser's session: every participant, then the confirm page (SPID's partnership
    decides the confirm URL and whether RelayState may replace it)."""
    now = now or utc_now()
    confirm_partner = None
    if spid:
        try:
            confirm_partner = partner_for(IDP, spid)
        except NoActivePartnership as error:
            raise _refused(
                400, "The logout link names a partner this site does not know.", Checkpoint.UNKNOWN_PARTNER, str(error)
            ) from None
    store = sso_sessions.session_store()
    record = store.get(idp_cookie, now=now) if idp_cookie else None
    saml_id = bind_saml_transaction(new_id(), "IdP-initiated logout")
    if record is None:
        _info(Checkpoint.NO_SESSION, "IdP-initiated logout without a session")
        return Outcome(_confirm(confirm_partner, relay_state, "You are signed out."), clear_idp_cookie=bool(idp_cookie))
    _info(Checkpoint.SESSION_FOUND, "IdP-initiated logout of %s (%s)", record.username, record.directory)
    data = _end_sessions([record], initiator=None, browser=True, now=now)
    data.update({"initiator": None, "spid": spid or "", "relay_state": relay_state})
    return Outcome(_idp_orchestrate(saml_id, confirm_partner.name if confirm_partner else "", data, now), clear_idp_cookie=True)


# --- SP role ------------------------------------------------------------------------------------------------------


def _sp_cookies(session):
    """The SP runtime's cookies that belong to an SP session: FEDSPSESSION, and the open-format cookie when the
    partnership delivers one."""
    cookies = [ExpiredCookie(sp_runtime.SESSION_COOKIE)]
    try:
        application = (load_snapshot(session.snapshot_id).settings or {}).get("application") or {}
    except Exception:  # noqa: BLE001 - a snapshot gone since: the session cookie is what matters
        application = {}
    if application.get("redirect_mode") == "open_format_cookie":
        cookies.append(ExpiredCookie(application.get("cookie_name") or "FEDATTR", application.get("cookie_domain") or None))
    return tuple(cookies)


def local_logout(sp_cookie, relay_state=None, now=None):
    """`saml2slo?LocalLogout=true`: end this browser's SP session only; no message to the IdP or other SPs."""
    session = sp_runtime.session_for_cookie(sp_cookie, now)
    if session is None:
        _info(Checkpoint.NO_SESSION, "local logout without an SP session")
        return Outcome(
            ConfirmPage("You are signed out of this site."), clear_sp_cookies=(ExpiredCookie(sp_runtime.SESSION_COOKIE),)
        )
    cookies = _sp_cookies(session)
    sp_runtime.end_session(sp_cookie)
    _info(
        Checkpoint.LOCAL_LOGOUT,
        "local logout: SP session of %s (%s) ended",
        session.username or session.name_id,
        session.partnership,
    )
    try:
        partner = partner_for(SP, session.remote_entity_id)
    except NoActivePartnership:
        partner = None
    return Outcome(_confirm(partner, relay_state, "You are signed out of this site."), clear_sp_cookies=cookies)


def sp_initiated(provider_id, relay_state, sp_cookie, now=None):
    """`saml2slo?ProviderID=<IdP>`: end the local SP session first, then tell the IdP (Redirect, else POST, else SOAP),
    which logs the user out everywhere else."""
    now = now or utc_now()
    session = sp_runtime.session_for_cookie(sp_cookie, now)
    provider_id = provider_id or (session.remote_entity_id if session else "")
    try:
        partner = partner_for(SP, provider_id)
    except NoActivePartnership as error:
        raise _refused(
            400, "The logout link names an identity provider this site does not know.", Checkpoint.UNKNOWN_PARTNER, str(error)
        ) from None
    if session is None or session.remote_entity_id != partner.remote_entity_id:
        # Nothing to tell this IdP; a session this browser has with another IdP is left alone (cookie included).
        _info(Checkpoint.NO_SESSION, "SP-initiated logout without a session with %s", partner.remote_entity_id)
        stale = (ExpiredCookie(sp_runtime.SESSION_COOKIE),) if session is None and sp_cookie else ()
        return Outcome(_confirm(partner, relay_state, "You are signed out."), clear_sp_cookies=stale)
    cookies = _sp_cookies(session)
    sp_runtime.end_session(sp_cookie)
    _info(Checkpoint.LOCAL_LOGOUT, "SP session of %s (%s) ended", session.username or session.name_id, session.partnership)
    binding = partner.front_channel_binding() if partner.enabled else None
    if binding is None and partner.enabled and partner.supports(SOAP):
        binding = SOAP
    if binding is None:
        _warn(
            Checkpoint.SLO_DISABLED,
            "the IdP %s was not told: partnership %s has no usable single logout binding",
            partner.remote_entity_id,
            partner.name,
        )
        return Outcome(_confirm(partner, relay_state, "You are signed out of this site."), clear_sp_cookies=cookies)
    name_id = _name_id(session.name_id, session.name_id_format)
    issued = _logout_request(partner, name_id, (session.session_index,), binding)
    bind_saml_transaction(issued.id, "SP-initiated logout")
    _info(Checkpoint.REQUEST_SENT, "LogoutRequest %s to %s by %s", issued.id, partner.remote_entity_id, BINDING_NAMES[binding])
    if binding == SOAP:
        ok, why = _soap_exchange(partner, issued.element, issued.id)
        if ok:
            _info(Checkpoint.IDP_ANSWERED, "the IdP logged the user out")
        else:
            _warn(Checkpoint.IDP_ANSWERED, "the IdP did not confirm the logout: %s", why)
        message = (
            "You are signed out." if ok else "You are signed out of this site, but the sign-in service could not confirm it."
        )
        return Outcome(_confirm(partner, relay_state, message), clear_sp_cookies=cookies)
    _transaction(SP, issued.id, partner.name, {"expect": partner.remote_entity_id, "relay_state": relay_state}, issued.id, now)
    return Outcome(_front_channel(partner, issued.element, binding, relay_state), clear_sp_cookies=cookies)


def _sp_answered(row, partner, response):
    """SP role: the IdP's LogoutResponse to our LogoutRequest → the confirm URL (the RelayState we stored wins over
    what came back)."""
    row.delete()
    ok = response.status.success or response.status.sub_code == C.STATUS_UNKNOWN_PRINCIPAL
    if ok:
        _info(Checkpoint.IDP_ANSWERED, "the IdP logged the user out: %s", response.status.describe())
        message = "You are signed out."
    else:
        _warn(Checkpoint.IDP_ANSWERED, "the IdP did not log the user out everywhere: %s", response.status.describe())
        message = "You are signed out of this site, but not every site could be told."
    relay_state = row.data.get("relay_state") or response.relay_state
    return Outcome(_confirm(partner, relay_state, message))


def _sp_sessions(partner, request):
    rows = SpSession.objects.filter(remote_entity_id=partner.remote_entity_id, name_id=request.name_id.value)
    if request.session_indexes:
        rows = rows.filter(session_index__in=request.session_indexes)
    return list(rows)


def _sp_end(partner, request, sp_cookie):
    """End the SP sessions the IdP's LogoutRequest names; (status, sub status, cookies to clear)."""
    sessions = _sp_sessions(partner, request)
    cookies = ()
    if sessions:
        mine = sp_runtime.session_for_cookie(sp_cookie) if sp_cookie else None
        if mine is not None and any(session.pk == mine.pk for session in sessions):
            cookies = _sp_cookies(mine)
        SpSession.objects.filter(pk__in=[session.pk for session in sessions]).delete()
        _info(Checkpoint.LOCAL_LOGOUT, "%d SP session(s) of %s ended at the IdP's request", len(sessions), request.name_id.value)
        return C.STATUS_SUCCESS, None, cookies
    _info(Checkpoint.SESSION_UNKNOWN, "no SP session for that NameID / SessionIndex from %s", partner.remote_entity_id)
    return C.STATUS_REQUESTER, C.STATUS_UNKNOWN_PRINCIPAL, cookies


def _sp_request(partner, request, binding, sp_cookie, now):
    """SP role: the IdP's LogoutRequest on the front channel → end the sessions, answer on the same binding."""
    with transaction.atomic():
        status, sub_status, cookies = _sp_end(partner, request, sp_cookie)
    front = partner.front_channel_binding(binding)
    answer = build_logout_response(
        issuer=partner.local_entity_id,
        destination=partner.location(front, response=True) if front else None,
        in_response_to=request.id,
        status=status,
        sub_status=sub_status,
    )
    _info(Checkpoint.RESPONSE_SENT, "LogoutResponse %s to %s: %s", answer.id, partner.remote_entity_id, status.rsplit(":", 1)[-1])
    if front is None:
        return Outcome(ConfirmPage("You are signed out of this site."), clear_sp_cookies=cookies)
    return Outcome(_front_channel(partner, answer.element, front, request.relay_state, response=True), clear_sp_cookies=cookies)


# --- saml2slosoap: the back channel -------------------------------------------------------------------------------


def _backchannel_refusal(partner, authorization, headers, remote_addr, now):
    """None when the caller authenticated as the partnership's incoming back channel demands, else the SOAP fault."""
    if partner.backchannel_in_auth == backchannel.NONE:
        _warn(
            Checkpoint.BACKCHANNEL_UNAUTHENTICATED,
            "SOAP logout from %s without back-channel authentication (partnership %s: none)",
            partner.remote_entity_id,
            partner.name,
        )
        return None
    refused = backchannel.refusal(
        partner.backchannel_in_auth,
        partnership_name=partner.name,
        password=lambda: snapshot_secrets(partner.snapshot_id).get("sso_slo.backchannel_in_password", ""),
        realm=runtime_paths.SAML2_SLO_SOAP,
        authorization=authorization,
        headers=headers,
        remote_addr=remote_addr,
        now=now,
    )
    if refused is None:
        return None
    return _fault(refused.status, "Client", refused.message, Checkpoint.BACKCHANNEL_AUTH_FAILED, refused.detail, refused.headers)


def back_channel(method, body, *, authorization="", headers=None, remote_addr="", content_length=0, now=None):
    """/affwebservices/public/saml2slosoap: a SOAP LogoutRequest, from an SP (this site answers as IdP, after logging
    out the other participants it can reach) or from an IdP (this site answers as SP)."""
    now = now or utc_now()
    headers = headers or {}
    if method != "POST":
        return _fault(
            405, "Client", "Single logout over SOAP takes a POST.", Checkpoint.METHOD_NOT_ALLOWED, method, {"Allow": "POST"}
        )
    size = max(len(body), content_length or 0)
    if size > C.MAX_MESSAGE_BYTES:
        return _fault(413, "Client", "The message is too large.", Checkpoint.MESSAGE_TOO_LARGE, f"{size} bytes")
    try:
        message = read_soap(body)
    except (SAMLError, ProtocolError) as error:
        return _fault(400, "Client", "The SOAP message could not be read.", Checkpoint.INVALID_MESSAGE, str(error))
    if message.name != "LogoutRequest":
        return _fault(
            400, "Client", "This endpoint takes LogoutRequest messages.", Checkpoint.INVALID_MESSAGE, f"got {message.name}"
        )
    try:
        partner = _sender(message.issuer, "LogoutRequest")
    except LogoutRefused as refused:
        return _fault(
            403, "Client", "The sender is not a partner of this site.", refused.refusal.checkpoint, refused.refusal.detail
        )
    refusal = _backchannel_refusal(partner, authorization, headers, remote_addr, now)
    if refusal is not None:
        return refusal
    try:
        _check_enabled(partner, SOAP)
    except LogoutRefused as refused:
        _warn(refused.refusal.checkpoint, "%s", refused.refusal.detail)
        return _negative_soap(partner, message, C.STATUS_REQUESTER, C.STATUS_UNSUPPORTED_BINDING, refused.refusal.detail)
    # On the back channel a signature is required unless the channel itself authenticates the partner.
    require_signed = partner.backchannel_in_auth == "none"
    try:
        request = parse_logout_request_soap(body, partner.policy(require_signed), now)
    except (ProtocolError, SAMLError) as error:
        try:
            return _request_refused(partner, message, SOAP, error)
        except LogoutRefused as refused:
            return _fault(
                400, "Client", "The LogoutRequest could not be accepted.", refused.refusal.checkpoint, refused.refusal.detail
            )
    except ConfigurationError as error:
        return _fault(500, "Server", "Single logout is not available right now.", Checkpoint.CONFIGURATION, str(error))
    bind_saml_transaction(request.id, "LogoutRequest (SOAP)")
    _info(
        Checkpoint.REQUEST_READ,
        "LogoutRequest %s from %s by SOAP (%s), partnership %s",
        request.id,
        request.issuer,
        "signed" if request.signed else "unsigned",
        partner.name,
    )
    try:
        if partner.role == IDP:
            return _idp_soap_request(partner, request, now)
        with transaction.atomic():
            status, sub_status, _ = _sp_end(partner, request, "")
        answer = build_logout_response(
            issuer=partner.local_entity_id, destination=None, in_response_to=request.id, status=status, sub_status=sub_status
        )
        _info(Checkpoint.RESPONSE_SENT, "LogoutResponse %s over SOAP: %s", answer.id, status.rsplit(":", 1)[-1])
        return _soap_answer(partner, answer.element)
    except ConfigurationError as error:
        return _fault(500, "Server", "Single logout is not available right now.", Checkpoint.CONFIGURATION, str(error))
    except sso_sessions.SessionStoreError as error:
        return _fault(503, "Server", "Single logout is not available right now.", Checkpoint.SERVER_ERROR, str(error))


def server_fault():
    """The SOAP fault for an unexpected failure (the traceback goes to the log, never to the partner)."""
    return _fault(500, "Server", "Single logout failed on this site.", Checkpoint.SERVER_ERROR)


def _negative_soap(partner, message, status, sub_status, text):
    try:
        answer = build_logout_response(
            issuer=partner.local_entity_id,
            destination=None,
            in_response_to=message.element.get("ID"),
            status=status,
            sub_status=sub_status,
            message=text[:500],
        )
        return _soap_answer(partner, answer.element)
    except ConfigurationError as error:
        return _fault(500, "Server", "Single logout is not available right now.", Checkpoint.CONFIGURATION, str(error))


def _idp_soap_request(partner, request, now):
    """IdP role over SOAP: no browser, so only SOAP-capable participants can be told; the others count as failed."""
    sessions = _sessions_for(partner, request, "", now)
    if not sessions:
        _info(Checkpoint.SESSION_UNKNOWN, "no session of %s at this IdP for that NameID / SessionIndex", partner.remote_entity_id)
        return _negative_soap(
            partner, request, C.STATUS_REQUESTER, C.STATUS_UNKNOWN_PRINCIPAL, "no session of this user is known here"
        )
    _info(Checkpoint.SESSION_FOUND, "%d IdP session(s) of %s", len(sessions), ", ".join(sorted({s.username for s in sessions})))
    data = _end_sessions(sessions, initiator=partner.remote_entity_id, browser=False, now=now)
    data["initiator"] = {"sp": partner.remote_entity_id, "binding": SOAP, "request_id": request.id, "relay_state": None}
    return _idp_finish(data, partner)


# --- small helpers for the console and applications --------------------------------------------------------------


def sp_logout_path(provider_id, relay_state=None):
    """The path of the SP-initiated logout link an application puts on its pages."""
    from urllib.parse import urlencode

    query = {"ProviderID": provider_id}
    if relay_state:
        query["RelayState"] = relay_state
    return runtime_paths.SAML2_SLO + "?" + urlencode(query)


__all__ = [
    "Checkpoint",
    "ConfirmPage",
    "Outcome",
    "PostForm",
    "Redirect",
    "Refusal",
    "SoapAnswer",
    "back_channel",
    "front_channel",
    "idp_initiated",
    "local_logout",
    "parameters",
    "sp_initiated",
    "sweep_expired",
]
