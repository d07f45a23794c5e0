"""What a SAML 2.0 SP sends to an IdP, and the artifact resolution round trip.

- `authn_request_redirect` / `authn_request_post`: an AuthnRequest on the HTTP-Redirect binding
  (DEFLATE, query signature over `SAMLRequest`, `RelayState`, `SigAlg` in that order) or the
  HTTP-POST binding (enveloped signature), built from an `AuthnRequestOptions` and encoded by
  `common.encode_redirect` / `common.encode_post`. Both return the request ID, which the caller
  stores to check the response's InResponseTo.
- `artifact_resolve`: an ArtifactResolve (signed when a `SigningKey` is given) in a SOAP 1.1
  envelope; `read_artifact_response`: the IdP's SOAP answer, checked (signature, issuer,
  InResponseTo, status) down to the `samlp:Response` it carries, which
  `consumer.consume_response` validates. The artifact itself and the generic ArtifactResolve /
  ArtifactResponse messages are `artifacts.py`'s, shared with the IdP side.

The reference's SP-initiated rules (ch10-14 §8.4) are enforced on the options:
ProtocolBinding/AssertionConsumerServiceURL and AssertionConsumerServiceIndex exclude each other,
and ForceAuthn with IsPassive is refused.
"""

from dataclasses import dataclass

from lxml import etree

from partnerships.authn_context import RequestedAuthnContext

from .artifacts import Artifact, build_artifact_resolve, parse_artifact, parse_artifact_response
from .common import InvalidMessage, encode_post, encode_redirect, encode_soap, format_instant, new_id, utc_now
from .constants import (
    BINDING_HTTP_ARTIFACT,
    BINDING_HTTP_POST,
    BINDING_PAOS,
    DEFAULT_SIGNATURE_ALGORITHMS,
    NS_SAML,
    NS_SAMLP,
)
from .consumer import IdPStatusError, InResponseToMismatch, IssuerMismatch
from .keys import load_certificates
from .xml import to_bytes

RESPONSE_BINDINGS = frozenset({BINDING_HTTP_POST, BINDING_HTTP_ARTIFACT, BINDING_PAOS})
_NSMAP = {"samlp": NS_SAMLP, "saml": NS_SAML}


def _samlp(local):
    return f"{{{NS_SAMLP}}}{local}"


def _saml(local):
    return f"{{{NS_SAML}}}{local}"


def _boolean(value):
    return "true" if value else "false"


# --- AuthnRequest ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthnRequestOptions:
    """The AuthnRequest of an SP-to-IdP partnership for one SSO transaction.

    `destination` is the IdP's SSO service URL for the binding the request travels on. Name the
    ACS either by `acs_url` (with `protocol_binding`, the binding the response must use) or by
    `acs_index`, never both. `allow_create=None` leaves AllowCreate out of NameIDPolicy.
    """

    sp_entity_id: str
    destination: str
    acs_url: str | None = None
    protocol_binding: str | None = None
    acs_index: int | None = None
    force_authn: bool = False
    is_passive: bool = False
    name_id_format: str | None = None
    allow_create: bool | None = None
    sp_name_qualifier: str | None = None
    requested_authn_context: RequestedAuthnContext | None = None
    provider_name: str | None = None

    def __post_init__(self):
        if not self.sp_entity_id or not self.destination:
            raise ValueError("an AuthnRequest needs our SP entity ID and the IdP's SSO service URL")
        if self.acs_index is not None and (self.acs_url or self.protocol_binding):
            raise ValueError(
                "ProtocolBinding and AssertionConsumerServiceIndex cannot be used together: the indexed ACS has its own binding"
            )
        if self.acs_index is not None and (isinstance(self.acs_index, bool) or not 0 <= int(self.acs_index) <= 65535):
            raise ValueError("AssertionConsumerServiceIndex must be a number from 0 to 65535")
        if self.protocol_binding is not None and self.protocol_binding not in RESPONSE_BINDINGS:
            raise ValueError(f"ProtocolBinding {self.protocol_binding!r} is not a binding a response can use")
        if self.force_authn and self.is_passive:
            raise ValueError("ForceAuthn and IsPassive exclude each other: the IdP would answer with an error")


def build_authn_request(options, *, request_id=None, now=None):
    """The `samlp:AuthnRequest` element (unsigned), in schema order."""
    request = etree.Element(_samlp("AuthnRequest"), nsmap=_NSMAP)
    request.set("ID", request_id or new_id())
    request.set("Version", "2.0")
    request.set("IssueInstant", format_instant(now or utc_now()))
    request.set("Destination", options.destination)
    if options.force_authn:
        request.set("ForceAuthn", "true")
    if options.is_passive:
        request.set("IsPassive", "true")
    if options.protocol_binding:
        request.set("ProtocolBinding", options.protocol_binding)
    if options.acs_index is not None:
        request.set("AssertionConsumerServiceIndex", str(int(options.acs_index)))
    if options.acs_url:
        request.set("AssertionConsumerServiceURL", options.acs_url)
    if options.provider_name:
        request.set("ProviderName", options.provider_name)
    etree.SubElement(request, _saml("Issuer")).text = options.sp_entity_id
    if options.name_id_format or options.allow_create is not None or options.sp_name_qualifier:
        policy = etree.SubElement(request, _samlp("NameIDPolicy"))
        if options.name_id_format:
            policy.set("Format", options.name_id_format)
        if options.sp_name_qualifier:
            policy.set("SPNameQualifier", options.sp_name_qualifier)
        if options.allow_create is not None:
            policy.set("AllowCreate", _boolean(options.allow_create))
    if options.requested_authn_context is not None:
        request.append(options.requested_authn_context.to_element())
    return request


@dataclass(frozen=True)
class RedirectMessage:
    """Where to send the browser (a 302 to `url`) and the ID to remember for InResponseTo."""

    url: str
    request_id: str


@dataclass(frozen=True)
class PostMessage:
    """An auto-submitting form: POST `fields` to `url`. `xml` is the signed (or plain) request."""

    url: str
    fields: dict
    request_id: str
    xml: bytes


def authn_request_redirect(options, relay_state=None, *, signing=None, now=None):
    """The AuthnRequest on the HTTP-Redirect binding. With `signing` (a `common.SigningKey`; its
    certificate is not needed here) the query is signed (`SAMLRequest`, `RelayState`, `SigAlg`,
    then `Signature`); the XML itself carries no signature on this binding (bindings §3.4.4.1)."""
    request = build_authn_request(options, now=now)
    url = encode_redirect(options.destination, request, relay_state=relay_state, signing=signing)
    return RedirectMessage(url, request.get("ID"))


def authn_request_post(options, relay_state=None, *, signing=None, now=None):
    """The AuthnRequest on the HTTP-POST binding, with an enveloped signature (and our
    certificate in KeyInfo) when `signing` (a `common.SigningKey`) is given."""
    request = build_authn_request(options, now=now)
    fields = {"SAMLRequest": encode_post(request, signing=signing)}
    if relay_state is not None:
        fields["RelayState"] = relay_state
    return PostMessage(options.destination, fields, request.get("ID"), to_bytes(request))


# --- Artifact resolution ---------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactResolveMessage:
    """The SOAP request to POST to the IdP's artifact resolution service."""

    destination: str
    request_id: str
    envelope: bytes


def artifact_resolve(artifact, *, sp_entity_id, destination, signing=None, now=None):
    """An ArtifactResolve for `artifact` (the SAMLart value or an `artifacts.Artifact`), signed
    when `signing` (a `common.SigningKey`) is given, as the SOAP 1.1 request body."""
    artifact = artifact if isinstance(artifact, Artifact) else parse_artifact(artifact)
    issued = build_artifact_resolve(sp_entity_id, artifact, destination, signing=signing, now=now)
    return ArtifactResolveMessage(destination, issued.id, encode_soap(issued.element))


@dataclass(frozen=True)
class ResolvedArtifact:
    """The message the IdP returned for our artifact. `response` is the `samlp:Response` inside
    the verified ArtifactResponse copy when `signed`; pass `signed` on to `consume_response` as
    `signed_envelope`."""

    response: etree._Element
    signed: bool
    artifact_response_id: str


def read_artifact_response(
    data, *, request_id, idp_entity_id, idp_certificates, require_signed=True, allowed_algorithms=DEFAULT_SIGNATURE_ALGORITHMS
):
    """Check the IdP's SOAP answer to our ArtifactResolve `request_id` and return the Response
    it carries. `artifacts.parse_artifact_response` reads the envelope (a SOAP Fault raises
    `SOAPFault`) and the signature (verified when present, required when `require_signed`; a
    back channel authenticated by TLS client certificates may turn that off); then, from the
    verified copy: Issuer, InResponseTo, Status, and exactly one `samlp:Response`."""
    answer = parse_artifact_response(
        data, load_certificates(idp_certificates), require_signed=require_signed, allowed_algorithms=allowed_algorithms
    )
    if answer.issuer != idp_entity_id:
        raise IssuerMismatch(
            f"the ArtifactResponse was issued by {answer.issuer!r}, not by this partnership's IdP {idp_entity_id!r}"
        )
    if answer.in_response_to != request_id:
        raise InResponseToMismatch(
            f"the ArtifactResponse answers {answer.in_response_to!r}, not our ArtifactResolve {request_id!r}"
        )
    if not answer.status.success:
        raise IdPStatusError(answer.status, "the ArtifactResponse")
    if answer.message is None:
        raise InvalidMessage("the IdP returned no message for the artifact (unknown, expired or already resolved)")
    if answer.message.tag != f"{{{NS_SAMLP}}}Response":
        raise InvalidMessage(f"the ArtifactResponse must carry a Response, not a {etree.QName(answer.message).localname}")
    return ResolvedArtifact(answer.message, answer.signed, answer.id)
