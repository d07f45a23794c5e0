"""Single logout at our SP with a real pysaml2 IdP (docs/single-logout.md): the IdP logs the user out of our SP by
Redirect, POST and SOAP; our SP starts the logout at the IdP (Redirect; SOAP when that is all the partnership
uses) and lands on the confirm URL; LocalLogout=true; and the refusals."""

import base64
import threading
import warnings
from wsgiref.simple_server import WSGIServer, make_server

import pytest
from cryptography.utils import CryptographyDeprecationWarning

from federation import sp_runtime
from federation.models import SloTransaction, SpSession
from federation.saml import constants as C
from federation.saml.bindings import inflate_decode
from federation.saml.common import encode_soap
from federation.saml.logout import LogoutPolicy, build_logout_response, parse_logout_request_soap
from federation.saml.xml import parse_xml
from tests import slo_support as support
from tests import sp_runtime_support as sp_support

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
    from saml2.pack import make_soap_enveloped_saml_thingy
    from saml2.sigver import RSACrypto, verify_redirect_signature

REASON = "urn:oasis:names:tc:SAML:2.0:logout:admin"


@pytest.fixture(autouse=True)
def fresh_caches():
    support.clear_caches()


@pytest.fixture
def keys():
    return sp_support.keys()


@pytest.fixture
def world(db, django_user_model, keys):
    django_user_model.objects.create_user("alice", email="alice@example.org", password="not-used-here-1")
    return support.make_sp_world(*keys)


@pytest.fixture
def idp(tmp_path, keys):
    return support.pysaml2_idp(tmp_path, *keys)


def signed_on(client, idp):
    answer = support.sp_sign_on(client, idp)
    assert answer.status_code == 302 and answer["Location"] == sp_support.TARGET, answer.content[:500]
    session = SpSession.objects.get()
    assert session.session_index
    return session


def idp_logout_request(idp, session, binding, *, sign=True, relay_state="idp-relay", name_id=None):
    """The pysaml2 IdP's LogoutRequest for alice: (request ID, URL | form fields | SOAP envelope)."""
    destination = support.SP_SLO_SOAP if binding == BINDING_SOAP else support.SP_SLO
    request_id, request = idp.create_logout_request(
        destination,
        support.SP_ENTITY_ID,
        name_id=name_id or support.alice_name_id(),
        session_indexes=[session.session_index],
        reason=REASON,
        sign=sign and binding != BINDING_HTTP_REDIRECT,
        sign_alg=C.RSA_SHA256,
        digest_alg=C.SHA256,
    )
    if binding == BINDING_SOAP:
        return request_id, make_soap_enveloped_saml_thingy(str(request))
    http = idp.apply_binding(
        binding, str(request), destination, relay_state, sign=sign and binding == BINDING_HTTP_REDIRECT, sigalg=C.RSA_SHA256
    )
    if binding == BINDING_HTTP_REDIRECT:
        return request_id, dict(http["headers"])["Location"]
    from tests.test_slo_runtime_idp import form_fields

    return request_id, form_fields(http["data"])


def status_codes(xml):
    return [code.get("Value").rsplit(":", 1)[-1] for code in parse_xml(xml).iter(f"{{{C.NS_SAMLP}}}StatusCode")]


# --- the IdP logs the user out of our SP -----------------------------------------------------------------------------


def test_pysaml2_idp_logs_out_our_sp_by_redirect(client, world, idp):
    session = signed_on(client, idp)
    request_id, url = idp_logout_request(idp, session, BINDING_HTTP_REDIRECT)
    answer = client.get(support.path_of(url))
    assert answer.status_code == 302 and answer["Location"].startswith(support.PEER_IDP_SLO), answer.content[:500]
    assert not SpSession.objects.exists()
    assert client.cookies[sp_runtime.SESSION_COOKIE].value == ""  # the browser's SP cookie is deleted
    values = support.query(answer["Location"])
    assert values["RelayState"] == "idp-relay" and "Signature" in values
    assert verify_redirect_signature(values, RSACrypto(None), cert=sp_support.keys()[1].cert_base64)
    response = idp.parse_logout_request_response(values["SAMLResponse"], BINDING_HTTP_REDIRECT)
    assert response.in_response_to == request_id and response.status_ok()
    assert support.trace("SLOSAML2_LOCAL_LOGOUT", "at the IdP's request")


def test_pysaml2_idp_logs_out_our_sp_by_post(client, world, idp):
    session = signed_on(client, idp)
    request_id, fields = idp_logout_request(idp, session, BINDING_HTTP_POST)
    answer = client.post(support.SLO_PATH, fields)
    action, response_fields = sp_support_form(answer)
    assert action == support.PEER_IDP_SLO
    response = idp.parse_logout_request_response(response_fields["SAMLResponse"], BINDING_HTTP_POST)
    assert response.in_response_to == request_id and response.status_ok()
    assert not SpSession.objects.exists()


def sp_support_form(response):
    from tests.idp_runtime_support import form_of

    assert response.status_code == 200, response.content[:500]
    return form_of(response)


def test_pysaml2_idp_logs_out_our_sp_over_soap(client, world, idp):
    session = signed_on(client, idp)
    request_id, envelope = idp_logout_request(idp, session, BINDING_SOAP)
    answer = client.post(support.SLO_SOAP_PATH, envelope, content_type="text/xml")
    assert answer.status_code == 200, answer.content[:500]
    response = idp.parse_logout_request_response(answer.content.decode(), BINDING_SOAP)
    assert response.in_response_to == request_id and response.status_ok()
    assert not SpSession.objects.exists()
    assert support.trace("SLOSAML2_REQUEST_READ", "by SOAP (signed)")


def test_unsigned_logout_request_from_the_idp_is_refused(client, world, idp):
    session = signed_on(client, idp)
    _, envelope = idp_logout_request(idp, session, BINDING_SOAP, sign=False)
    answer = client.post(support.SLO_SOAP_PATH, envelope, content_type="text/xml")
    assert answer.status_code == 200 and status_codes(answer.content) == ["Requester", "RequestDenied"]
    assert SpSession.objects.count() == 1
    assert support.trace("SLOSAML2_SIGNATURE_REQUIRED")


def test_logout_request_for_an_unknown_session_is_answered(client, world, idp):
    session = signed_on(client, idp)
    from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID

    _, url = idp_logout_request(idp, session, BINDING_HTTP_REDIRECT, name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text="bob"))
    answer = client.get(support.path_of(url))
    assert answer.status_code == 302 and answer["Location"].startswith(support.PEER_IDP_SLO)
    assert status_codes(inflate_decode(support.query(answer["Location"])["SAMLResponse"])) == ["Requester", "UnknownPrincipal"]
    assert SpSession.objects.count() == 1  # alice's session is not bob's


# --- our SP starts the logout ----------------------------------------------------------------------------------------


def idp_answers(idp, location, *, status=None):
    """The pysaml2 IdP reads our Redirect LogoutRequest (checking its query signature) and answers on Redirect."""
    values = support.query(location)
    request = idp.parse_logout_request(
        values["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        relay_state=values.get("RelayState"),
        sigalg=values["SigAlg"],
        signature=values["Signature"],
    )
    assert request.message.name_id.text == "alice"
    response = idp.create_logout_response(request.message, [BINDING_HTTP_REDIRECT], status=status)
    http = idp.apply_binding(
        BINDING_HTTP_REDIRECT, response, support.SP_SLO, values.get("RelayState"), response=True, sign=True, sigalg=C.RSA_SHA256
    )
    return request, dict(http["headers"])["Location"]


def test_our_sp_starts_logout_at_the_pysaml2_idp(client, world, idp):
    session = signed_on(client, idp)
    to_idp = client.get(support.SLO_PATH, {"ProviderID": support.PEER_IDP_ENTITY_ID})
    assert to_idp.status_code == 302 and to_idp["Location"].startswith(support.PEER_IDP_SLO)
    assert not SpSession.objects.exists()  # the local session ends first
    assert client.cookies[sp_runtime.SESSION_COOKIE].value == ""
    request, back = idp_answers(idp, to_idp["Location"])
    assert [index.text for index in request.message.session_index] == [session.session_index]
    assert SloTransaction.objects.count() == 1
    done = client.get(support.path_of(back))
    assert done.status_code == 302 and done["Location"] == support.SP_CONFIRM
    assert not SloTransaction.objects.exists()
    assert support.trace("SLOSAML2_IDP_ANSWERED", "logged the user out")
    # The same answer again does not continue anything.
    again = client.get(support.path_of(back))
    assert again.status_code == 400 and b"already finished" in again.content


def test_relay_state_overrides_the_confirm_url_only_for_allowed_targets(client, keys, db, django_user_model, tmp_path):
    django_user_model.objects.create_user("alice", email="alice@example.org", password="not-used-here-1")
    support.make_sp_world(*keys, settings={"sso_slo": {"slo_relay_state_overrides_confirm": True}})
    idp = support.pysaml2_idp(tmp_path, *keys)
    signed_on(client, idp)
    to_idp = client.get(support.SLO_PATH, {"ProviderID": support.PEER_IDP_ENTITY_ID, "RelayState": "https://app.example.org/bye"})
    _, back = idp_answers(idp, to_idp["Location"])
    assert client.get(support.path_of(back))["Location"] == "https://app.example.org/bye"

    signed_on(client, idp)
    to_idp = client.get(support.SLO_PATH, {"providerid": support.PEER_IDP_ENTITY_ID, "relaystate": "https://evil.example/x"})
    _, back = idp_answers(idp, to_idp["Location"])
    assert client.get(support.path_of(back))["Location"] == support.SP_CONFIRM


def test_partial_logout_at_the_idp_still_lands_on_the_confirm_page(client, keys, db, django_user_model, tmp_path):
    from saml2.s_utils import error_status_factory
    from saml2.samlp import STATUS_PARTIAL_LOGOUT

    django_user_model.objects.create_user("alice", email="alice@example.org", password="not-used-here-1")
    support.make_sp_world(*keys, settings={"sso_slo": {"slo_confirm_url": ""}})
    idp = support.pysaml2_idp(tmp_path, *keys)
    signed_on(client, idp)
    to_idp = client.get(support.SLO_PATH)  # a bare link logs out the session the browser has
    status = error_status_factory((STATUS_PARTIAL_LOGOUT, "an SP was down"))  # Responder/PartialLogout
    _, back = idp_answers(idp, to_idp["Location"], status=status)
    page = client.get(support.path_of(back))
    assert page.status_code == 200 and b"not every site could be told" in page.content
    assert support.trace("SLOSAML2_IDP_ANSWERED", "PartialLogout")


def test_local_logout_ends_only_the_sp_session(client, world, idp):
    signed_on(client, idp)
    answer = client.get(support.SLO_PATH + "?locallogout=TRUE")
    assert answer.status_code == 302 and answer["Location"] == support.SP_CONFIRM  # no message to the IdP
    assert not SpSession.objects.exists() and not SloTransaction.objects.exists()
    assert client.cookies[sp_runtime.SESSION_COOKIE].value == ""
    assert support.trace("SLOSAML2_LOCAL_LOGOUT", "local logout")
    assert not support.trace("SLOSAML2_REQUEST_SENT")


def test_logout_link_without_a_session_shows_the_confirm_page(client, world):
    answer = client.get(support.SLO_PATH, {"ProviderID": support.PEER_IDP_ENTITY_ID})
    assert answer.status_code == 302 and answer["Location"] == support.SP_CONFIRM
    unknown = client.get(support.SLO_PATH, {"ProviderID": "https://nobody.example/idp"})
    assert unknown.status_code == 400 and b"Transaction ID" in unknown.content


class OwnCoreIdpSoap:
    """A SOAP single logout service on a loopback port, answered by our own protocol core: pysaml2 cannot check a
    signed SOAP message it did not make (it re-serialises the body), so SP-initiated logout over SOAP is checked
    against our core's parser here. Test stand-in for an IdP's back channel."""

    def __init__(self, sp_certificate):
        self.sp_certificate = sp_certificate
        self.requests = []
        self.server = make_server("127.0.0.1", 0, self.app, server_class=WSGIServer, handler_class=sp_support._QuietHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/slo/soap"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def app(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        request = parse_logout_request_soap(
            body,
            LogoutPolicy(
                partner_entity_id=support.SP_ENTITY_ID, verification_certificates=(self.sp_certificate,), require_signed=True
            ),
        )
        self.requests.append(request)
        answer = build_logout_response(issuer=support.PEER_IDP_ENTITY_ID, destination=None, in_response_to=request.id)
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
        return [encode_soap(answer.element)]


def test_our_sp_starts_logout_over_soap_when_that_is_the_only_binding(client, keys, db, django_user_model, tmp_path):
    django_user_model.objects.create_user("alice", email="alice@example.org", password="not-used-here-1")
    with OwnCoreIdpSoap(keys[1].certificate) as peer:
        support.make_sp_world(*keys, slo_bindings=("soap",), idp_soap_url=peer.url)
        idp = support.pysaml2_idp(tmp_path, *keys)
        signed_on(client, idp)
        done = client.get(support.SLO_PATH, {"ProviderID": support.PEER_IDP_ENTITY_ID})
    assert done.status_code == 302 and done["Location"] == support.SP_CONFIRM
    assert len(peer.requests) == 1 and peer.requests[0].signed and peer.requests[0].name_id.value == "alice"
    assert not SpSession.objects.exists() and not SloTransaction.objects.exists()


def test_post_binding_logout_request_needs_post(client, world, idp):
    session = signed_on(client, idp)
    _, fields = idp_logout_request(idp, session, BINDING_HTTP_POST)
    answer = client.put(support.SLO_PATH, fields)
    assert answer.status_code == 405 and b"Transaction ID" in answer.content
    assert base64.b64decode(fields["SAMLRequest"])  # the message itself was fine
    assert SpSession.objects.count() == 1
