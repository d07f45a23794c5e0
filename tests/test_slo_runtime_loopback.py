"""Our IdP and our SP on one installation (the reference's sample network: two partnerships, IdP→SP and SP→IdP,
each naming the other side of this same site), logging out end to end through one browser: SP-initiated and
IdP-initiated, both sessions and both cookies gone, one SAML transaction across every hop."""

import pytest

from entities import services as keystore
from entities.models import Binding, EndpointKind, EntityType, Location
from federation import runtime_paths, sp_runtime
from federation.directories import EMBEDDED_NAME
from federation.models import SloTransaction, SpSession, SsoParticipant, SsoSession, TraceLine
from federation.sso_sessions import COOKIE_NAME
from partnerships import services as partnership_services
from tests import idp_runtime_support as idp_support
from tests import slo_support as support
from tests.partnership_fixtures import endpoint, entity

BASE = "https://fed.example.test"
IDP_ID = BASE + "/idp"
SP_ID = BASE + "/sp"
SLO = BASE + runtime_paths.SAML2_SLO
IDP_CONFIRM = BASE + "/idp-signed-out"
SP_CONFIRM = BASE + "/app/signed-out"
TARGET = BASE + "/app/"


@pytest.fixture(autouse=True)
def fresh_caches():
    support.clear_caches()


@pytest.fixture
def network(db, make_partnership, django_user_model):
    """Both partnerships of one site, activated; alice in the embedded directory."""
    idp_key = keystore.generate_key_pair("fed-idp-signing", "rsa2048", "CN=fed idp", 365, [])
    sp_key = keystore.generate_key_pair("fed-sp-signing", "rsa2048", "CN=fed sp", 365, [])
    keystore.import_trusted_certificate("fed-idp-cert", idp_key.certificate_pem)
    keystore.import_trusted_certificate("fed-sp-cert", sp_key.certificate_pem)
    local_idp = entity(
        "fed-idp", Location.LOCAL, EntityType.SAML2_IDP, signing_key="fed-idp-signing", base_url=BASE, entity_id=IDP_ID
    )
    local_sp = entity(
        "fed-sp",
        Location.LOCAL,
        EntityType.SAML2_SP,
        signing_key="fed-sp-signing",
        decryption_key="fed-sp-signing",
        base_url=BASE,
        entity_id=SP_ID,
    )
    sp_as_partner = entity(
        "fed-sp-partner",
        Location.REMOTE,
        EntityType.SAML2_SP,
        [
            endpoint(
                EndpointKind.ACS, Binding.HTTP_POST, BASE + runtime_paths.SAML2_ASSERTION_CONSUMER, index=0, is_default=True
            ),
            endpoint(EndpointKind.SLO, Binding.HTTP_REDIRECT, SLO),
        ],
        entity_id=SP_ID,
        verification_certificate="fed-sp-cert",
        encryption_certificate="fed-sp-cert",
    )
    idp_as_partner = entity(
        "fed-idp-partner",
        Location.REMOTE,
        EntityType.SAML2_IDP,
        [
            endpoint(EndpointKind.SSO, Binding.HTTP_REDIRECT, BASE + runtime_paths.SAML2_SSO),
            endpoint(EndpointKind.SLO, Binding.HTTP_REDIRECT, SLO),
        ],
        entity_id=IDP_ID,
        verification_certificate="fed-idp-cert",
    )
    slo = {"slo_enabled": True, "slo_bindings": ["redirect"]}
    idp_side = make_partnership(
        "fed-idp-to-sp",
        "saml2_idp_sp",
        local_idp,
        sp_as_partner,
        settings=idp_support.merge(
            idp_support.default_settings(),
            {
                "sso_slo": {"sso_bindings": ["post"], **slo, "slo_confirm_url": IDP_CONFIRM},
                "signature": {"verification_certificate": "fed-sp-cert", "require_signed_authn_requests": True},
            },
        ),
    )
    sp_side = make_partnership(
        "fed-sp-to-idp",
        "saml2_sp_idp",
        local_sp,
        idp_as_partner,
        settings={
            "user_identification": {"search_specs": [{"directory": EMBEDDED_NAME, "search_spec": "email=%s"}]},
            "sso_slo": {"sso_bindings": ["post"], "authn_request_bindings": ["redirect"], **slo, "slo_confirm_url": SP_CONFIRM},
            "signature": {
                "verification_certificate": "fed-idp-cert",
                "signing_key": "fed-sp-signing",
                "decryption_key": "fed-sp-signing",
                "sign_authn_requests": True,
            },
            "application": {"target": TARGET, "allowed_targets": [{"url": TARGET}]},
        },
    )
    for partnership in (idp_side, sp_side):
        assert partnership.state != "incomplete", partnership.problems
        partnership_services.activate(partnership)
    idp_support.make_alice(django_user_model)
    return idp_side, sp_side


def follow(client, response, *, limit=8):
    """Follow the runtime's redirects and auto-submitted forms within this site until it leaves it (or shows a
    page); returns the last response and the paths it went through."""
    paths = []
    for _ in range(limit):
        if response.status_code == 302 and response["Location"].startswith(BASE + runtime_paths.PREFIX):
            paths.append(response["Location"])
            response = client.get(idp_support.local_part(response["Location"]), secure=True)
        elif response.status_code == 302 and response["Location"].startswith(runtime_paths.IDP_LOGIN):
            response = idp_support.sign_in(client, response)
        elif response.status_code == 200 and b"<form" in response.content and b"SAML" in response.content:
            action, fields = idp_support.form_of(response)
            paths.append(action)
            response = client.post(idp_support.local_part(action), fields, secure=True)
        else:
            return response, paths
    raise AssertionError(f"no end after {limit} hops: {paths}")


def sign_on(client):
    start = client.get(runtime_paths.SAML2_AUTHN_REQUEST, {"ProviderID": IDP_ID}, secure=True)
    landed, _ = follow(client, start)
    assert landed.status_code == 302 and landed["Location"] == TARGET, landed.content[:500]
    assert SpSession.objects.count() == 1 and SsoSession.objects.count() == 1
    assert SsoParticipant.objects.get().remote_entity_id == SP_ID


def test_sp_initiated_logout_through_our_own_idp(client, network):
    sign_on(client)
    start = client.get(runtime_paths.SAML2_SLO, {"ProviderID": IDP_ID}, secure=True)
    done, hops = follow(client, start)
    assert done.status_code == 302 and done["Location"] == SP_CONFIRM, (done.content[:500], hops)
    assert [hop.split("?")[1].split("=")[0] for hop in hops] == ["SAMLRequest", "SAMLResponse"]
    assert not SpSession.objects.exists() and not SsoSession.objects.exists() and not SloTransaction.objects.exists()
    assert client.cookies[COOKIE_NAME].value == "" and client.cookies[sp_runtime.SESSION_COOKIE].value == ""
    # One SAML transaction (the SP's LogoutRequest ID) ties the SP's, the IdP's and the SP's requests together.
    request_line = TraceLine.objects.filter(checkpoint="SLOSAML2_REQUEST_SENT").get()
    saml_id = request_line.message.split("LogoutRequest ", 1)[1].split(" ", 1)[0]
    links = TraceLine.objects.filter(transaction_id=saml_id, checkpoint="SAML_TRANSACTION")
    assert links.count() == 3, list(links.values_list("message", flat=True))
    assert support.trace("SLOSAML2_REQUEST_READ", f"from {SP_ID}")
    assert support.trace("SLOSAML2_IDP_ANSWERED", "logged the user out")


def test_idp_initiated_logout_reaches_our_own_sp(client, network):
    sign_on(client)
    start = client.get(runtime_paths.SAML2_SLO + "?Logout=all", secure=True)
    done, hops = follow(client, start)
    assert len(hops) == 2, hops
    assert done.status_code == 200 and b"Signed out" in done.content  # no SPID: the built-in page
    assert not SpSession.objects.exists() and not SsoSession.objects.exists()
    assert client.cookies[sp_runtime.SESSION_COOKIE].value == ""  # the SP runtime cleared its own cookie
    assert support.trace("SLOSAML2_PARTICIPANT_DONE", SP_ID)

    sign_on(client)
    start = client.get(runtime_paths.SAML2_SLO, {"SPID": SP_ID}, secure=True)
    done, _ = follow(client, start)
    assert done.status_code == 302 and done["Location"] == IDP_CONFIRM


def test_bare_logout_link_prefers_the_sp_session(client, network):
    sign_on(client)
    done, hops = follow(client, client.get(runtime_paths.SAML2_SLO, secure=True))
    assert done["Location"] == SP_CONFIRM and len(hops) == 2
    nothing = client.get(runtime_paths.SAML2_SLO, secure=True)
    assert nothing.status_code == 200 and b"You are signed out" in nothing.content
