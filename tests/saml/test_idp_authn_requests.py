"""Inbound AuthnRequests at the IdP (federation.saml.authn_requests): requests made by the real
peers (pysaml2 on Redirect and POST, python3-saml on Redirect) parse, and the attack fixtures
are refused with a message an SP administrator understands. Then the ACS selection rules."""

import base64
import copy
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import pytest
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from saml2 import BINDING_HTTP_POST

from federation.saml import constants as C
from federation.saml.authn_requests import (
    AuthnRequestError,
    AuthnRequestPolicy,
    Endpoint,
    choose_acs,
    parse_post_authn_request,
    parse_redirect_authn_request,
)
from federation.saml.bindings import deflate_encode
from federation.saml.common import (
    InvalidMessage,
    MessageExpired,
    SignatureRequired,
    UnsupportedVersion,
    format_instant,
    new_id,
    status_for_error,
)
from federation.saml.errors import BindingError, SignatureError, XMLSecurityError
from federation.saml.signing import allowed_signature_algorithms, sign, sign_query
from federation.saml.xml import children, parse_xml, to_bytes

from . import idp_peers, messages, peers

RELAY_STATE = "https://sp.example.org/app/start?tab=1&lang=en&x=%41 é"


# --- Requests the peers make -----------------------------------------------------------------


def pysaml2_redirect_query(client, **kwargs):
    _, info = client.prepare_for_authenticate(entityid=messages.IDP_ENTITY_ID, relay_state=RELAY_STATE, **kwargs)
    return peers.query_of(dict(info["headers"])["Location"])


def pysaml2_post_request(client, sign=True, **kwargs):
    request_id, xml = client.create_authn_request(
        messages.IDP_SSO_URL, binding=BINDING_HTTP_POST, sign=sign, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256, **kwargs
    )
    return request_id, base64.b64encode(str(xml).encode()).decode()


def test_pysaml2_redirect_request_with_query_signature(tmp_path, sp_rsa, idp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    query = pysaml2_redirect_query(client, sign=True, sigalg=C.RSA_SHA256)
    request = parse_redirect_authn_request(query, idp_peers.authn_request_policy(sp_rsa))
    assert request.signed and request.binding == C.BINDING_HTTP_REDIRECT
    assert request.issuer == messages.SP_ENTITY_ID
    assert request.destination == messages.IDP_SSO_URL
    assert request.relay_state == RELAY_STATE
    assert request.acs_url == messages.SP_ACS_URL and request.protocol_binding == C.BINDING_HTTP_POST
    assert request.name_id_policy_format == C.NAMEID_PERSISTENT
    assert (request.force_authn, request.is_passive) == (False, False)
    assert choose_acs(request, idp_peers.SP_ACS_ROWS).url == messages.SP_ACS_URL


def test_pysaml2_post_request_with_enveloped_signature(tmp_path, sp_rsa, idp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    request_id, value = pysaml2_post_request(client, force_authn="true", allow_create="true")
    request = parse_post_authn_request(value, "state-1", idp_peers.authn_request_policy(sp_rsa))
    assert request.signed and request.binding == C.BINDING_HTTP_POST
    assert request.id == request_id and request.relay_state == "state-1"
    assert request.force_authn is True and request.allow_create is True
    # What was read comes from the verified copy, not from the message as received.
    assert children(request.element, C.NS_DS, "Signature") and request.element.getparent() is None


def test_python3saml_redirect_request(sp_rsa, idp_rsa):
    settings = OneLogin_Saml2_Settings(_python3saml_settings_dict(sp_rsa, idp_rsa))
    auth = OneLogin_Saml2_Auth(peers.python3saml_request("/sp/login"), old_settings=settings)
    url = auth.login(return_to=RELAY_STATE, is_passive=True)
    request = parse_redirect_authn_request(peers.query_of(url), idp_peers.authn_request_policy(sp_rsa))
    assert request.signed and request.id == auth.get_last_request_id()
    assert request.is_passive is True and request.relay_state == RELAY_STATE
    assert request.requested_authn_context_classes == (C.AC_PASSWORD_PROTECTED_TRANSPORT, C.AC_X509)
    assert request.authn_context_comparison == "minimum"
    assert request.name_id_policy_format == C.NAMEID_PERSISTENT and request.allow_create is True
    assert request.acs_url == messages.SP_ACS_URL


def _python3saml_settings_dict(sp, idp):
    return {
        "strict": True,
        "sp": {
            "entityId": messages.SP_ENTITY_ID,
            "assertionConsumerService": {"url": messages.SP_ACS_URL, "binding": C.BINDING_HTTP_POST},
            "NameIDFormat": C.NAMEID_PERSISTENT,
            "x509cert": sp.cert_base64,
            "privateKey": sp.key_pem.decode(),
        },
        "idp": {
            "entityId": messages.IDP_ENTITY_ID,
            "singleSignOnService": {"url": messages.IDP_SSO_URL, "binding": C.BINDING_HTTP_REDIRECT},
            "x509cert": idp.cert_base64,
        },
        "security": {
            "authnRequestsSigned": True,
            "signatureAlgorithm": C.RSA_SHA256,
            "digestAlgorithm": C.SHA256,
            "requestedAuthnContext": [C.AC_PASSWORD_PROTECTED_TRANSPORT, C.AC_X509],
            "requestedAuthnContextComparison": "minimum",
        },
    }


def test_issuer_lookup_picks_the_partnership(tmp_path, sp_rsa, idp_rsa):
    """The policy can be a lookup of the (unverified) Issuer; only that partner's certificates count."""
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    query = pysaml2_redirect_query(client, sign=True, sigalg=C.RSA_SHA256)
    seen = []

    def policy_for(issuer):
        seen.append(issuer)
        return idp_peers.authn_request_policy(sp_rsa)

    assert parse_redirect_authn_request(query, policy_for).issuer == messages.SP_ENTITY_ID
    assert seen == [messages.SP_ENTITY_ID]


def test_unsigned_request_is_accepted_when_the_partnership_allows_it(tmp_path, sp_rsa, idp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    _, value = pysaml2_post_request(client, sign=False)
    request = parse_post_authn_request(value, None, idp_peers.authn_request_policy(sp_rsa, require_signed=False))
    assert request.signed is False and request.relay_state is None


# --- Attacks and broken requests -------------------------------------------------------------


def own_request(sp, *, sign_it=True, now=None, **attributes):
    """An AuthnRequest shaped like pysaml2's, with attributes changed, signed with `sp` (POST)."""
    root = messages.authn_request(now=now)
    for name, value in attributes.items():
        if value is None:
            root.attrib.pop(name, None)
        else:
            root.set(name, value)
    if sign_it:
        sign(root, sp.key, sp.certificate)
    return root


def post_value(root):
    return base64.b64encode(to_bytes(root)).decode()


def test_unsigned_request_refused_when_signing_is_required(tmp_path, sp_rsa, idp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    policy = idp_peers.authn_request_policy(sp_rsa)
    with pytest.raises(SignatureRequired, match="the partnership requires signed AuthnRequests"):
        parse_redirect_authn_request(pysaml2_redirect_query(client, sign=False), policy)
    _, value = pysaml2_post_request(client, sign=False)
    with pytest.raises(SignatureRequired, match="the partnership requires signed AuthnRequests") as caught:
        parse_post_authn_request(value, None, policy)
    assert status_for_error(caught.value) == (C.STATUS_REQUESTER, C.STATUS_REQUEST_DENIED)


def test_signature_over_another_element_is_refused(sp_rsa):
    """Signature wrapping: the SP's genuine signed request is hidden in Extensions and its
    signature moved onto an evil request that points the response elsewhere."""
    genuine = own_request(sp_rsa)
    evil = own_request(sp_rsa, sign_it=False, ID=new_id(), AssertionConsumerServiceURL="https://evil.example.net/acs")
    signature = children(genuine, C.NS_DS, "Signature")[0]
    evil.insert(1, copy.deepcopy(signature))
    extensions = parse_xml(f'<samlp:Extensions xmlns:samlp="{C.NS_SAMLP}"/>')
    extensions.append(genuine)
    evil.insert(2, extensions)
    with pytest.raises(SignatureError, match="signature does not cover this element"):
        parse_post_authn_request(post_value(evil), None, idp_peers.authn_request_policy(sp_rsa))


def test_tampered_post_request_is_refused(sp_rsa, attacker_rsa):
    tampered = to_bytes(own_request(sp_rsa)).replace(messages.SP_ACS_URL.encode(), b"https://evil.example.net/acs")
    with pytest.raises(SignatureError, match="modified after signing"):
        parse_post_authn_request(base64.b64encode(tampered), None, idp_peers.authn_request_policy(sp_rsa))
    with pytest.raises(SignatureError, match="signature invalid for every trusted certificate"):
        parse_post_authn_request(post_value(own_request(attacker_rsa)), None, idp_peers.authn_request_policy(sp_rsa))


def test_query_signature_over_another_query_is_refused(tmp_path, sp_rsa, idp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    query = pysaml2_redirect_query(client, sign=True, sigalg=C.RSA_SHA256)
    values = dict(part.split("=", 1) for part in query.split("&"))
    other = own_request(sp_rsa, sign_it=False, AssertionConsumerServiceURL="https://evil.example.net/acs")
    swapped = query.replace(values["SAMLRequest"], quote_plus(deflate_encode(to_bytes(other))))
    policy = idp_peers.authn_request_policy(sp_rsa)
    with pytest.raises(SignatureError, match="signature invalid for every trusted certificate"):
        parse_redirect_authn_request(swapped, policy)
    with pytest.raises(SignatureError, match="signature invalid"):
        parse_redirect_authn_request(query.replace(values["RelayState"], quote_plus("https://evil.example.net/")), policy)
    with pytest.raises(BindingError, match="appears more than once"):
        parse_redirect_authn_request(f"{query}&SAMLRequest={quote_plus(deflate_encode(to_bytes(other)))}", policy)


def test_sha1_query_signature_needs_the_partnership_to_allow_it(tmp_path, sp_rsa, idp_rsa):
    client = idp_peers.pysaml2_sp_client(tmp_path, sp_rsa, idp_rsa)
    query = pysaml2_redirect_query(client, sign=True, sigalg=C.RSA_SHA1)
    with pytest.raises(SignatureError, match="algorithm rsa-sha1 not allowed"):
        parse_redirect_authn_request(query, idp_peers.authn_request_policy(sp_rsa))
    policy = idp_peers.authn_request_policy(sp_rsa, allowed_algorithms=allowed_signature_algorithms(sha1=True))
    assert parse_redirect_authn_request(query, policy).signed


def test_unregistered_acs_url_is_refused(sp_rsa):
    request = parse_post_authn_request(
        post_value(own_request(sp_rsa, AssertionConsumerServiceURL="https://evil.example.net/acs")),
        None,
        idp_peers.authn_request_policy(sp_rsa),
    )
    with pytest.raises(AuthnRequestError, match="is not one of the SP's registered assertion consumer services") as caught:
        choose_acs(request, idp_peers.SP_ACS_ROWS)
    assert caught.value.request is request
    # A URL that only starts like a registered one is no match either.
    prefix = parse_post_authn_request(
        post_value(own_request(sp_rsa, AssertionConsumerServiceURL=messages.SP_ACS_URL + "/../../evil")),
        None,
        idp_peers.authn_request_policy(sp_rsa),
    )
    with pytest.raises(AuthnRequestError, match="not one of the SP's registered"):
        choose_acs(prefix, idp_peers.SP_ACS_ROWS)


def test_protocol_binding_with_acs_index_is_refused(sp_rsa):
    root = own_request(sp_rsa, AssertionConsumerServiceURL=None, AssertionConsumerServiceIndex="1")
    with pytest.raises(AuthnRequestError, match="both AssertionConsumerServiceIndex and ProtocolBinding") as caught:
        parse_post_authn_request(post_value(root), None, idp_peers.authn_request_policy(sp_rsa))
    assert caught.value.request.id == root.get("ID")
    assert caught.value.status == C.STATUS_REQUESTER


def test_force_authn_with_is_passive_is_refused(sp_rsa):
    root = own_request(sp_rsa, ForceAuthn="true", IsPassive="1")
    with pytest.raises(AuthnRequestError, match="both ForceAuthn and IsPassive"):
        parse_post_authn_request(post_value(root), None, idp_peers.authn_request_policy(sp_rsa))


def test_dtd_and_entities_are_refused(sp_rsa):
    signed = to_bytes(own_request(sp_rsa))
    with_dtd = b'<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + signed.replace(
        b"</saml:Issuer>", b"&e;</saml:Issuer>", 1
    )
    policy = idp_peers.authn_request_policy(sp_rsa)
    with pytest.raises(XMLSecurityError, match="DTDs and entity declarations are not allowed"):
        parse_post_authn_request(base64.b64encode(with_dtd), None, policy)
    with pytest.raises(XMLSecurityError, match="DTDs"):
        parse_redirect_authn_request(f"SAMLRequest={quote_plus(deflate_encode(with_dtd))}", policy)


def test_oversized_messages_are_refused(sp_rsa):
    policy = idp_peers.authn_request_policy(sp_rsa, max_bytes=64 * 1024)
    padded = to_bytes(own_request(sp_rsa, sign_it=False, ProviderName="x" * 70_000))
    with pytest.raises(XMLSecurityError, match="larger than the limit of 65536 bytes"):
        parse_post_authn_request(base64.b64encode(padded), None, policy)
    bomb = base64.b64encode(zlib.compress(b" " * 20_000_000)[2:-4]).decode()
    with pytest.raises(BindingError, match="larger than 262144 bytes after decompression"):
        parse_redirect_authn_request(f"SAMLRequest={quote_plus(bomb)}", policy)


def test_issue_instant_far_outside_the_window_is_refused(sp_rsa):
    policy = idp_peers.authn_request_policy(sp_rsa, max_age_seconds=300, skew_seconds=60)
    now = datetime.now(UTC)
    with pytest.raises(MessageExpired, match="the AuthnRequest is too old"):
        parse_post_authn_request(post_value(own_request(sp_rsa, now=now - timedelta(hours=2))), None, policy)
    with pytest.raises(MessageExpired, match="issued in the future"):
        parse_post_authn_request(post_value(own_request(sp_rsa, now=now + timedelta(minutes=10))), None, policy)
    # Inside the window (old, but within max age + skew) it is accepted.
    assert parse_post_authn_request(post_value(own_request(sp_rsa, now=now - timedelta(seconds=320))), None, policy)


def test_version_destination_and_issuer_are_checked(sp_rsa, attacker_rsa):
    policy = idp_peers.authn_request_policy(sp_rsa)
    with pytest.raises(UnsupportedVersion, match="only 2.0 is accepted") as caught:
        parse_post_authn_request(post_value(own_request(sp_rsa, Version="1.1")), None, policy)
    assert caught.value.status == C.STATUS_VERSION_MISMATCH and caught.value.sub_status == C.STATUS_REQUEST_VERSION_TOO_LOW
    with pytest.raises(InvalidMessage, match="not our SSO service URL"):
        parse_post_authn_request(post_value(own_request(sp_rsa, Destination="https://other.example/sso")), None, policy)
    with pytest.raises(InvalidMessage, match="signed AuthnRequest has no Destination"):
        parse_post_authn_request(post_value(own_request(sp_rsa, Destination=None)), None, policy)
    other_sp = AuthnRequestPolicy(
        sp_entity_id="https://other-sp.example", verification_certificates=(sp_rsa.certificate,), require_signed=True
    )
    with pytest.raises(InvalidMessage, match="not from this partnership's SP"):
        parse_post_authn_request(post_value(own_request(sp_rsa)), None, other_sp)
    with pytest.raises(InvalidMessage, match="expected a AuthnRequest message, got LogoutRequest"):
        parse_post_authn_request(post_value(messages.logout_request()), None, policy)
    with pytest.raises(InvalidMessage, match="ForceAuthn must be true or false"):
        parse_post_authn_request(post_value(own_request(sp_rsa, ForceAuthn="yes")), None, policy)


def test_relay_state_limit_and_passthrough(sp_rsa):
    policy = idp_peers.authn_request_policy(sp_rsa)
    value = post_value(own_request(sp_rsa))
    relay_state = "https://sp.example.org/deep/link?" + "q=%20+&" * 100 + "é"
    assert len(relay_state.encode()) <= 1024
    assert parse_post_authn_request(value, relay_state, policy).relay_state == relay_state
    with pytest.raises(InvalidMessage, match="RelayState is longer than 1024 bytes"):
        parse_post_authn_request(value, "x" * 1025, policy)
    strict = idp_peers.authn_request_policy(sp_rsa, relay_state_limit=80)
    with pytest.raises(InvalidMessage, match="longer than 80 bytes"):
        parse_post_authn_request(value, "x" * 81, strict)
    # On the Redirect binding the (signed) RelayState is checked the same way.
    query = sign_query(
        [("SAMLRequest", deflate_encode(to_bytes(own_request(sp_rsa, sign_it=False)))), ("RelayState", "y" * 2000)], sp_rsa.key
    )
    with pytest.raises(InvalidMessage, match="RelayState is longer than 1024 bytes"):
        parse_redirect_authn_request(query, policy)


def test_bad_instant_and_bad_base64(sp_rsa):
    policy = idp_peers.authn_request_policy(sp_rsa, require_signed=False)
    with pytest.raises(InvalidMessage, match="IssueInstant 'yesterday' is not a valid date and time"):
        parse_post_authn_request(post_value(own_request(sp_rsa, sign_it=False, IssueInstant="yesterday")), None, policy)
    with pytest.raises(BindingError, match="not valid base64"):
        parse_post_authn_request("%%%not base64", None, policy)
    assert format_instant(datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC)) == "2026-01-02T03:04:05Z"


# --- ACS selection ---------------------------------------------------------------------------

ROWS = (
    Endpoint("https://sp.example.org/acs/post", C.BINDING_HTTP_POST, 0, False),
    Endpoint("https://sp.example.org/acs/artifact", C.BINDING_HTTP_ARTIFACT, 1, True),
    Endpoint("https://sp.example.org/acs/post2", C.BINDING_HTTP_POST, 2, False),
    {"location": "https://sp.example.org/acs/paos", "binding": C.BINDING_PAOS, "index": 3},
)


def request_with(sp, **attributes):
    return parse_post_authn_request(
        post_value(own_request(sp, **{"AssertionConsumerServiceURL": None, "ProtocolBinding": None, **attributes})),
        None,
        idp_peers.authn_request_policy(sp),
    )


def test_choose_acs_rules(sp_rsa):
    pick = lambda request, **kwargs: (lambda chosen: (chosen.url, chosen.binding))(choose_acs(request, ROWS, **kwargs))  # noqa: E731
    # Neither URL nor index: the default ACS (isDefault wins over the lowest index).
    assert pick(request_with(sp_rsa)) == ("https://sp.example.org/acs/artifact", C.BINDING_HTTP_ARTIFACT)
    # Only POST enabled: the default of the usable rows (lowest index).
    assert pick(request_with(sp_rsa), allowed_bindings=(C.BINDING_HTTP_POST,))[0] == "https://sp.example.org/acs/post"
    # ProtocolBinding alone: the default among rows of that binding.
    assert pick(request_with(sp_rsa, ProtocolBinding=C.BINDING_HTTP_POST))[0] == "https://sp.example.org/acs/post"
    # Exact URL (and binding) match.
    assert pick(request_with(sp_rsa, AssertionConsumerServiceURL="https://sp.example.org/acs/post2")) == (
        "https://sp.example.org/acs/post2",
        C.BINDING_HTTP_POST,
    )
    # Index.
    assert pick(request_with(sp_rsa, AssertionConsumerServiceIndex="2"))[0] == "https://sp.example.org/acs/post2"
    with pytest.raises(AuthnRequestError, match="no assertion consumer service with index 7"):
        choose_acs(request_with(sp_rsa, AssertionConsumerServiceIndex="7"), ROWS)
    with pytest.raises(AuthnRequestError, match="uses .*PAOS, which is not enabled") as caught:
        choose_acs(request_with(sp_rsa, AssertionConsumerServiceIndex="3"), ROWS)
    assert caught.value.sub_status == C.STATUS_UNSUPPORTED_BINDING
    with pytest.raises(AuthnRequestError, match="not registered for the binding"):
        choose_acs(
            request_with(
                sp_rsa, AssertionConsumerServiceURL="https://sp.example.org/acs/post2", ProtocolBinding=C.BINDING_HTTP_ARTIFACT
            ),
            ROWS,
        )
    with pytest.raises(AuthnRequestError, match="registered only for bindings this partnership does not enable"):
        choose_acs(request_with(sp_rsa, AssertionConsumerServiceURL="https://sp.example.org/acs/paos"), ROWS)
    with pytest.raises(AuthnRequestError, match="is not enabled for this partnership"):
        choose_acs(request_with(sp_rsa, ProtocolBinding=C.BINDING_HTTP_ARTIFACT), ROWS, allowed_bindings=(C.BINDING_HTTP_POST,))


def test_choose_acs_idp_initiated():
    """IdP-initiated (no request): the ProtocolBinding query parameter, else the default ACS."""
    assert choose_acs(None, ROWS).url == "https://sp.example.org/acs/artifact"
    assert choose_acs(None, ROWS, protocol_binding=C.BINDING_HTTP_POST).url == "https://sp.example.org/acs/post"
    with pytest.raises(AuthnRequestError, match="no assertion consumer service with a binding this partnership enables"):
        choose_acs(None, ROWS[3:])
    with pytest.raises(AuthnRequestError, match="not enabled"):
        choose_acs(None, ROWS, protocol_binding=C.BINDING_HTTP_REDIRECT)
