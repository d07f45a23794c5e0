"""Inbound SAML 2.0 AuthnRequests at the IdP (SAML core §3.4, profiles §4.1.4.1) and the choice
of the assertion consumer service the response goes to.

    request = parse_redirect_authn_request(request.META["QUERY_STRING"], policy_for_issuer)
    request = parse_post_authn_request(form["SAMLRequest"], form.get("RelayState"), policy_for_issuer)
    endpoint = choose_acs(request, partnership.acs_rows, allowed_bindings=partnership.sso_bindings)

`policy_for_issuer` is an `AuthnRequestPolicy`, or a function that receives the (still
unverified) Issuer and returns the policy of that SP's partnership, raising when there is none.
The Issuer is trusted only once the signature checked with that policy's certificates holds, or
when the policy accepts unsigned requests.
"""

from dataclasses import dataclass
from datetime import datetime

from .common import (
    DEFAULT_RELAY_STATE_LIMIT,
    InboundMessage,
    InvalidMessage,
    ProtocolError,
    check_issue_instant,
    expect_root,
    read_header,
    read_post,
    read_redirect,
    utc_now,
)
from .constants import (
    BINDING_HTTP_ARTIFACT,
    BINDING_HTTP_POST,
    DEFAULT_SIGNATURE_ALGORITHMS,
    MAX_MESSAGE_BYTES,
    MAX_REDIRECT_MESSAGE_BYTES,
    NS_SAML,
    NS_SAMLP,
    STATUS_REQUEST_UNSUPPORTED,
    STATUS_REQUESTER,
    STATUS_UNSUPPORTED_BINDING,
)
from .xml import children, local_name

COMPARISONS = ("exact", "minimum", "maximum", "better")


class AuthnRequestError(ProtocolError):
    """The AuthnRequest cannot be served as sent (contradictory options, an unknown ACS)."""


@dataclass(frozen=True)
class AuthnRequestPolicy:
    """The rules of one SP partnership for inbound AuthnRequests.

    `sp_entity_id`: the Issuer the request must carry (None: any, the caller checks).
    `verification_certificates`: the SP's signing certificates. `require_signed`: the
    partnership's "Require Signed AuthnRequests". `sso_urls`: our SSO service URLs; a present
    Destination must be one of them (a signed request must carry one). IssueInstant must lie
    within `max_age_seconds` in the past (plus `skew_seconds` both ways)."""

    sp_entity_id: str | None = None
    verification_certificates: tuple = ()
    require_signed: bool = False
    allowed_algorithms: frozenset = DEFAULT_SIGNATURE_ALGORITHMS
    sso_urls: tuple = ()
    max_age_seconds: int = 300
    skew_seconds: int = 60
    relay_state_limit: int = DEFAULT_RELAY_STATE_LIMIT
    max_bytes: int = MAX_MESSAGE_BYTES
    max_redirect_bytes: int = MAX_REDIRECT_MESSAGE_BYTES


@dataclass(frozen=True)
class AuthnRequest:
    """A parsed, checked AuthnRequest. `signed` says whether a signature was verified (query
    signature on Redirect, enveloped on POST); `element` is what the values were read from."""

    id: str
    issuer: str
    issue_instant: datetime
    destination: str | None
    acs_url: str | None
    acs_index: int | None
    protocol_binding: str | None
    force_authn: bool
    is_passive: bool
    name_id_policy_format: str | None
    allow_create: bool | None
    sp_name_qualifier: str | None
    requested_authn_context_classes: tuple
    authn_context_comparison: str | None
    relay_state: str | None
    signed: bool
    binding: str
    attribute_consuming_service_index: int | None = None
    provider_name: str | None = None
    consent: str | None = None
    element: object = None


def parse_redirect_authn_request(raw_query, policy, now=None):
    """An `AuthnRequest` from the HTTP-Redirect binding. `raw_query` is the query string exactly
    as received (still URL-encoded), because the query signature covers those octets."""
    message = read_redirect(raw_query, "SAMLRequest", max_bytes=_policy_limit(policy, redirect=True))
    return _checked(message, policy, now)


def parse_post_authn_request(saml_request, relay_state, policy, now=None):
    """An `AuthnRequest` from the HTTP-POST binding: the base64 `SAMLRequest` form field and the
    `RelayState` field (None when absent)."""
    message = read_post(saml_request, relay_state, max_bytes=_policy_limit(policy, redirect=False))
    return _checked(message, policy, now)


def _policy_limit(policy, redirect):
    # The size limit applies before the Issuer (and so the partnership) is known.
    if isinstance(policy, AuthnRequestPolicy):
        return policy.max_redirect_bytes if redirect else policy.max_bytes
    return MAX_REDIRECT_MESSAGE_BYTES if redirect else MAX_MESSAGE_BYTES


def _checked(message, policy, now):
    expect_root(message.element, NS_SAMLP, "AuthnRequest")
    if not isinstance(policy, AuthnRequestPolicy):
        issuer = message.issuer
        if not issuer:
            raise InvalidMessage("the AuthnRequest has no Issuer, so the SP cannot be identified")
        policy = policy(issuer)
    inbound = message.verify(
        policy.verification_certificates,
        require_signed=policy.require_signed,
        allowed_algorithms=policy.allowed_algorithms,
        relay_state_limit=policy.relay_state_limit,
    )
    return read_authn_request(inbound, policy, now)


def read_authn_request(inbound: InboundMessage, policy: AuthnRequestPolicy, now=None):
    """Check and read an `InboundMessage` holding an AuthnRequest (the SOAP/ECP runtime decodes
    its own and calls this)."""
    now = now or utc_now()
    element = inbound.element
    expect_root(element, NS_SAMLP, "AuthnRequest")
    header = read_header(element)
    if not header.issuer:
        raise InvalidMessage("the AuthnRequest has no Issuer")
    if policy.sp_entity_id and header.issuer != policy.sp_entity_id:
        raise InvalidMessage(
            f"the AuthnRequest comes from {header.issuer!r}, not from this partnership's SP {policy.sp_entity_id!r}"
        )
    check_issue_instant(header.issue_instant, now, policy.max_age_seconds, policy.skew_seconds, "the AuthnRequest")
    if policy.sso_urls:
        if header.destination is None and inbound.signed:
            raise InvalidMessage("the signed AuthnRequest has no Destination")
        if header.destination is not None and header.destination not in policy.sso_urls:
            raise InvalidMessage(f"the AuthnRequest is addressed to {header.destination!r}, which is not our SSO service URL")

    acs_url = element.get("AssertionConsumerServiceURL")
    acs_index = _integer(element, "AssertionConsumerServiceIndex")
    protocol_binding = element.get("ProtocolBinding")
    force_authn = _boolean(element, "ForceAuthn") or False
    is_passive = _boolean(element, "IsPassive") or False

    policy_format = allow_create = sp_name_qualifier = None
    name_id_policy = children(element, NS_SAMLP, "NameIDPolicy")
    if len(name_id_policy) > 1:
        raise InvalidMessage("the AuthnRequest has more than one NameIDPolicy")
    if name_id_policy:
        policy_format = name_id_policy[0].get("Format")
        allow_create = _boolean(name_id_policy[0], "AllowCreate")
        sp_name_qualifier = name_id_policy[0].get("SPNameQualifier")

    classes, comparison = (), None
    requested = children(element, NS_SAMLP, "RequestedAuthnContext")
    if len(requested) > 1:
        raise InvalidMessage("the AuthnRequest has more than one RequestedAuthnContext")
    if requested:
        comparison = requested[0].get("Comparison") or "exact"
        if comparison not in COMPARISONS:
            raise InvalidMessage(f"RequestedAuthnContext Comparison {comparison!r} is not one of {', '.join(COMPARISONS)}")
        classes = tuple((ref.text or "").strip() for ref in children(requested[0], NS_SAML, "AuthnContextClassRef"))
        if not classes and children(requested[0], NS_SAML, "AuthnContextDeclRef"):
            raise AuthnRequestError(
                "the SP requested an authentication context by declaration (AuthnContextDeclRef), which is not supported; "
                "ask for classes (AuthnContextClassRef)",
                sub_status=STATUS_REQUEST_UNSUPPORTED,
            )

    request = AuthnRequest(
        id=header.id,
        issuer=header.issuer,
        issue_instant=header.issue_instant,
        destination=header.destination,
        acs_url=acs_url,
        acs_index=acs_index,
        protocol_binding=protocol_binding,
        force_authn=force_authn,
        is_passive=is_passive,
        name_id_policy_format=policy_format,
        allow_create=allow_create,
        sp_name_qualifier=sp_name_qualifier,
        requested_authn_context_classes=classes,
        authn_context_comparison=comparison,
        relay_state=inbound.relay_state,
        signed=inbound.signed,
        binding=inbound.binding,
        attribute_consuming_service_index=_integer(element, "AttributeConsumingServiceIndex"),
        provider_name=element.get("ProviderName"),
        consent=header.consent,
        element=element,
    )
    # From here on the request is authentic: errors carry it so the runtime can answer the SP.
    if acs_index is not None and (protocol_binding is not None or acs_url is not None):
        other = "ProtocolBinding" if protocol_binding is not None else "AssertionConsumerServiceURL"
        raise AuthnRequestError(
            f"the AuthnRequest names both AssertionConsumerServiceIndex and {other}; SAML allows only one of them",
            request=request,
        )
    if force_authn and is_passive:
        raise AuthnRequestError(
            "the AuthnRequest asks for both ForceAuthn and IsPassive, which exclude each other",
            sub_status=STATUS_REQUEST_UNSUPPORTED,
            request=request,
        )
    return request


def _boolean(element, name):
    value = element.get(name)
    if value is None:
        return None
    value = value.strip()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise InvalidMessage(f"{local_name(element)} {name} must be true or false, not {value!r}")


def _integer(element, name):
    value = element.get(name)
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        raise InvalidMessage(f"{local_name(element)} {name} must be a number, not {value!r}") from None
    if not 0 <= number <= 65535:
        raise InvalidMessage(f"{local_name(element)} {name} {number} is out of range (0 to 65535)")
    return number


# --- Choosing the assertion consumer service -------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A registered ACS row (the same attribute names as `entities.models.Endpoint`)."""

    location: str
    binding: str
    index: int | None = None
    is_default: bool = False


@dataclass(frozen=True)
class ChosenACS:
    url: str
    binding: str
    index: int | None


def _row(row):
    if isinstance(row, dict):
        return Endpoint(row["location"], row["binding"], row.get("index"), bool(row.get("is_default")))
    return Endpoint(row.location, row.binding, getattr(row, "index", None), bool(getattr(row, "is_default", False)))


def _default_of(rows):
    """SAML metadata's default endpoint: isDefault="true", else the lowest index, else the first."""
    for row in rows:
        if row.is_default:
            return row
    indexed = [row for row in rows if row.index is not None]
    if indexed:
        return min(indexed, key=lambda row: row.index)
    return rows[0]


def choose_acs(
    request, registered_acs_rows, *, allowed_bindings=(BINDING_HTTP_POST, BINDING_HTTP_ARTIFACT), protocol_binding=None
):
    """Where and how to send the Response: a `ChosenACS` (url, binding, index).

    `request` is the `AuthnRequest`, or None for IdP-initiated SSO, where `protocol_binding`
    is the `ProtocolBinding` query parameter. `registered_acs_rows` are the SP's ACS endpoints
    (objects or dicts with location, binding, index, is_default); `allowed_bindings` the
    partnership's enabled SSO bindings, in order of preference.

    - AssertionConsumerServiceURL: must equal a registered ACS location exactly (never an
      arbitrary URL: no open redirect); the binding is ProtocolBinding, else the registered
      row's (POST first when the URL is registered for several).
    - AssertionConsumerServiceIndex: that registered index must exist.
    - Neither: the default ACS (isDefault, else the lowest index, else the first) among the
      rows with the requested binding, or among all usable rows when none was requested.
    Every error is an `AuthnRequestError` naming what the SP must fix.
    """
    rows = [_row(row) for row in registered_acs_rows]
    if request is not None:
        protocol_binding = request.protocol_binding
    usable = [row for row in rows if row.binding in allowed_bindings]
    if not usable:
        raise AuthnRequestError(
            "the SP has no assertion consumer service with a binding this partnership enables",
            status=STATUS_REQUESTER,
            sub_status=STATUS_UNSUPPORTED_BINDING,
            request=request,
        )
    if protocol_binding is not None and protocol_binding not in allowed_bindings:
        raise AuthnRequestError(
            f"the requested binding {protocol_binding} is not enabled for this partnership",
            sub_status=STATUS_UNSUPPORTED_BINDING,
            request=request,
        )

    acs_url = request.acs_url if request is not None else None
    acs_index = request.acs_index if request is not None else None
    if acs_url is not None:
        registered = [row for row in rows if row.location == acs_url]
        if not registered:
            raise AuthnRequestError(
                f"the AssertionConsumerServiceURL {acs_url!r} is not one of the SP's registered assertion consumer services",
                request=request,
            )
        matching = [row for row in registered if row.binding in allowed_bindings]
        if not matching:
            raise AuthnRequestError(
                f"the assertion consumer service {acs_url!r} is registered only for bindings this partnership does not enable",
                sub_status=STATUS_UNSUPPORTED_BINDING,
                request=request,
            )
        if protocol_binding is not None:
            matching = [row for row in matching if row.binding == protocol_binding]
            if not matching:
                raise AuthnRequestError(
                    f"the assertion consumer service {acs_url!r} is not registered for the binding {protocol_binding}",
                    sub_status=STATUS_UNSUPPORTED_BINDING,
                    request=request,
                )
        row = sorted(matching, key=lambda row: allowed_bindings.index(row.binding))[0]
        return ChosenACS(row.location, row.binding, row.index)
    if acs_index is not None:
        for row in rows:
            if row.index == acs_index:
                if row.binding not in allowed_bindings:
                    raise AuthnRequestError(
                        f"the assertion consumer service with index {acs_index} uses {row.binding}, "
                        "which is not enabled for this partnership",
                        sub_status=STATUS_UNSUPPORTED_BINDING,
                        request=request,
                    )
                return ChosenACS(row.location, row.binding, row.index)
        raise AuthnRequestError(f"the SP has no assertion consumer service with index {acs_index}", request=request)
    if protocol_binding is not None:
        candidates = [row for row in usable if row.binding == protocol_binding]
        if not candidates:
            raise AuthnRequestError(
                f"the SP has no assertion consumer service for the binding {protocol_binding}",
                sub_status=STATUS_UNSUPPORTED_BINDING,
                request=request,
            )
        row = _default_of(candidates)
        return ChosenACS(row.location, row.binding, row.index)
    default = _default_of(rows)
    row = default if default.binding in allowed_bindings else _default_of(usable)
    return ChosenACS(row.location, row.binding, row.index)
