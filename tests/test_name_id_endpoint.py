"""Our Manage NameID endpoint, POST /affwebservices/public/saml2nidsoap, answering pysaml2 partners: an SP ends or
changes a federation with our IdP, an IdP with our SP; the persistent identifier goes or changes, so the user's next
SSO reflects it; a request re-sent under the same ID gets the same answer and no second effect; refusals."""

import base64
import warnings

import pytest
from cryptography.utils import CryptographyDeprecationWarning
from django.test import Client

from federation import persistent_ids
from federation.models import PersistentIdentifier
from federation.runtime_paths import SAML2_MANAGE_NAME_ID_SOAP
from federation.saml import constants as C
from federation.saml.common import read_status, unwrap_soap
from federation.saml.xml import to_bytes
from partnerships.models import NameIdReceipt
from tests.name_id_partner import (
    OUR_IDP_ID,
    OUR_SP_ID,
    PARTNER_IDP_ID,
    PARTNER_SP_ID,
    clear_runtime_caches,
    link,
    make_idp_side,
    make_sp_side,
    pysaml2_peer,
)
from tests.saml.credentials import make_credential

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, samlp
    from saml2.pack import make_soap_enveloped_saml_thingy
    from saml2.response import StatusError
    from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID

EMBEDDED = "Embedded directory"
OUR_IDP_URL = "https://nid-idp.example" + SAML2_MANAGE_NAME_ID_SOAP
OUR_SP_URL = "https://nid-sp.example" + SAML2_MANAGE_NAME_ID_SOAP


@pytest.fixture(autouse=True)
def fresh_caches():
    clear_runtime_caches()
    yield
    clear_runtime_caches()


@pytest.fixture
def sp_peer(db, tmp_path):
    """pysaml2 as the partner SP of our active IdP → SP partnership; alice is federated as alice-pid-1."""
    credential = make_credential("rsa", PARTNER_SP_ID)
    _, ours = make_idp_side("https://sp.partner-nid.example/mni", credential.cert_pem)
    link(OUR_IDP_ID, PARTNER_SP_ID, "alice", "alice-pid-1")
    return pysaml2_peer(
        tmp_path,
        "sp",
        PARTNER_SP_ID,
        credential.key,
        credential.certificate,
        OUR_IDP_ID,
        ours,
        "https://sp.partner-nid.example/mni",
    )


@pytest.fixture
def idp_peer(db, tmp_path):
    """pysaml2 as the partner IdP of our active SP → IdP partnership; bob is federated as bob-idp-7."""
    credential = make_credential("rsa", PARTNER_IDP_ID)
    _, ours = make_sp_side("https://idp.partner-nid.example/mni", credential.cert_pem)
    link(OUR_SP_ID, PARTNER_IDP_ID, "bob", "bob-idp-7")
    return pysaml2_peer(
        tmp_path,
        "idp",
        PARTNER_IDP_ID,
        credential.key,
        credential.certificate,
        OUR_SP_ID,
        ours,
        "https://idp.partner-nid.example/mni",
    )


def request_from(peer, destination, value, *, new_id=None, idp=OUR_IDP_ID, sp=PARTNER_SP_ID, sign=True):
    name_id = NameID(format=NAMEID_FORMAT_PERSISTENT, text=value, name_qualifier=idp, sp_name_qualifier=sp)
    operation = {"new_id": samlp.NewID(text=new_id)} if new_id else {"terminate": samlp.Terminate()}
    request_id, request = peer.create_manage_name_id_request(
        destination, name_id=name_id, sign=sign, sign_alg=C.RSA_SHA256, digest_alg=C.SHA256, **operation
    )
    return request_id, make_soap_enveloped_saml_thingy(str(request)).encode()


def post(client, body, **headers):
    return client.post(SAML2_MANAGE_NAME_ID_SOAP, body, content_type="text/xml", **headers)


def read_answer(peer, response, request_id):
    """pysaml2 verifies our signed answer (over the exact bytes) and reads its status; for an error status it raises
    its StatusError after the signature check, and the status is read from the verified XML."""
    assert response.status_code == 200 and response["Content-Type"].startswith("text/xml")
    inner = base64.b64encode(to_bytes(unwrap_soap(response.content))).decode()
    try:
        answer = peer.parse_manage_name_id_request_response(inner, BINDING_HTTP_POST).response
    except StatusError:
        element = unwrap_soap(response.content)
        assert element.get("InResponseTo") == request_id
        status = read_status(element)
        return status.code, status.sub_code
    assert answer.in_response_to == request_id
    status = answer.status.status_code
    return status.value, status.status_code.value if status.status_code is not None else None


def test_an_sp_ends_alices_federation_with_our_idp(sp_peer):
    client = Client(enforce_csrf_checks=True)  # partners send no CSRF token: SAML signatures protect this endpoint
    request_id, body = request_from(sp_peer, OUR_IDP_URL, "alice-pid-1")
    response = post(client, body)
    assert read_answer(sp_peer, response, request_id) == (C.STATUS_SUCCESS, None)
    assert persistent_ids.find(OUR_IDP_ID, PARTNER_SP_ID, f"{EMBEDDED}:alice") is None  # the next SSO makes no use of it

    # The SP did not get our answer and sends the same request again: same answer, nothing more happens.
    again = post(client, body)
    assert again.content == response.content
    receipt = NameIdReceipt.objects.get()
    assert receipt.request_id == request_id and receipt.status == "Success" and receipt.operation == "terminate"

    # A new request for the same NameID finds nobody now.
    request_id, body = request_from(sp_peer, OUR_IDP_URL, "alice-pid-1")
    assert read_answer(sp_peer, post(client, body), request_id) == (C.STATUS_REQUESTER, C.STATUS_UNKNOWN_PRINCIPAL)


def test_an_sp_gives_alice_a_new_identifier_and_the_next_sso_uses_it(client, sp_peer):
    request_id, body = request_from(sp_peer, OUR_IDP_URL, "alice-pid-1", new_id="sp-chosen-42")
    assert read_answer(sp_peer, post(client, body), request_id) == (C.STATUS_SUCCESS, None)
    assert persistent_ids.find(OUR_IDP_ID, PARTNER_SP_ID, f"{EMBEDDED}:alice") == "sp-chosen-42"


def test_a_new_id_that_another_user_has_is_refused(client, sp_peer):
    link(OUR_IDP_ID, PARTNER_SP_ID, "carol", "carol-pid-1")
    request_id, body = request_from(sp_peer, OUR_IDP_URL, "alice-pid-1", new_id="carol-pid-1")
    assert read_answer(sp_peer, post(client, body), request_id) == (C.STATUS_REQUESTER, C.STATUS_REQUEST_DENIED)
    assert persistent_ids.find(OUR_IDP_ID, PARTNER_SP_ID, f"{EMBEDDED}:alice") == "alice-pid-1"


def test_an_idp_changes_and_ends_bobs_federation_with_our_sp(client, idp_peer):
    request_id, body = request_from(idp_peer, OUR_SP_URL, "bob-idp-7", new_id="bob-idp-8", idp=PARTNER_IDP_ID, sp=OUR_SP_ID)
    assert read_answer(idp_peer, post(client, body), request_id) == (C.STATUS_SUCCESS, None)
    assert PersistentIdentifier.objects.get(local_entity_id=OUR_SP_ID).value == "bob-idp-8"
    request_id, body = request_from(idp_peer, OUR_SP_URL, "bob-idp-8", idp=PARTNER_IDP_ID, sp=OUR_SP_ID)
    assert read_answer(idp_peer, post(client, body), request_id) == (C.STATUS_SUCCESS, None)
    assert not PersistentIdentifier.objects.filter(local_entity_id=OUR_SP_ID).exists()


def test_qualifiers_for_other_entities_name_nobody_here(client, sp_peer):
    request_id, body = request_from(sp_peer, OUR_IDP_URL, "alice-pid-1", sp="https://another-sp.example/")
    assert read_answer(sp_peer, post(client, body), request_id) == (C.STATUS_REQUESTER, C.STATUS_UNKNOWN_PRINCIPAL)
    assert persistent_ids.find(OUR_IDP_ID, PARTNER_SP_ID, f"{EMBEDDED}:alice") == "alice-pid-1"


def test_an_unsigned_request_is_refused_with_request_denied(client, sp_peer):
    request_id, body = request_from(sp_peer, OUR_IDP_URL, "alice-pid-1", sign=False)
    response = post(client, body)
    assert read_answer(sp_peer, response, request_id) == (C.STATUS_REQUESTER, C.STATUS_REQUEST_DENIED)
    assert b"requires signed ManageNameIDRequests" in response.content
    assert persistent_ids.find(OUR_IDP_ID, PARTNER_SP_ID, f"{EMBEDDED}:alice") == "alice-pid-1"


def test_a_forged_signature_is_refused(client, sp_peer, tmp_path):
    forger = make_credential("rsa", "forger")
    impostor = pysaml2_peer(
        tmp_path / "x", "sp", PARTNER_SP_ID, forger.key, forger.certificate, OUR_IDP_ID, forger.certificate, "https://x/mni"
    )
    request_id, body = request_from(impostor, OUR_IDP_URL, "alice-pid-1")
    response = post(client, body)
    assert read_answer(sp_peer, response, request_id) == (C.STATUS_REQUESTER, C.STATUS_REQUEST_DENIED)
    assert persistent_ids.find(OUR_IDP_ID, PARTNER_SP_ID, f"{EMBEDDED}:alice") == "alice-pid-1"


def test_faults_for_what_is_not_a_request_from_a_partner(client, sp_peer, tmp_path):
    stranger = make_credential("rsa", "stranger")
    unknown = pysaml2_peer(
        tmp_path / "s",
        "sp",
        "https://stranger.example/",
        stranger.key,
        stranger.certificate,
        OUR_IDP_ID,
        stranger.certificate,
        "https://s/mni",
    )
    _, body = request_from(unknown, OUR_IDP_URL, "alice-pid-1")
    response = post(client, body)
    assert response.status_code == 500 and b"<faultcode>SOAP-ENV:Client</faultcode>" in response.content
    assert b"There is no active SAML 2.0 partnership with https://stranger.example/." in response.content

    response = post(client, b"<not-soap/>")
    assert response.status_code == 500 and b"expected a SOAP 1.1 Envelope" in response.content
    response = post(client, b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    assert response.status_code == 500 and b"root:" not in response.content
    assert client.get(SAML2_MANAGE_NAME_ID_SOAP).status_code == 405


def test_back_channel_basic_authentication(client, db, tmp_path):
    credential = make_credential("rsa", PARTNER_SP_ID)
    _, ours = make_idp_side(
        "https://sp.partner-nid.example/mni",
        credential.cert_pem,
        mni={"backchannel_in_auth": "basic", "backchannel_in_password": "partner-pass-1"},
    )
    link(OUR_IDP_ID, PARTNER_SP_ID, "alice", "alice-pid-1")
    peer = pysaml2_peer(tmp_path, "sp", PARTNER_SP_ID, credential.key, credential.certificate, OUR_IDP_ID, ours, "https://sp/mni")
    request_id, body = request_from(peer, OUR_IDP_URL, "alice-pid-1")
    refused = post(client, body)
    assert refused.status_code == 401 and refused["WWW-Authenticate"] == 'Basic realm="idp-to-sp", charset="UTF-8"'
    assert b"<faultstring>Authentication required.</faultstring>" in refused.content
    wrong = post(client, body, HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"idp-to-sp:guess").decode())
    assert wrong.status_code == 401
    assert persistent_ids.find(OUR_IDP_ID, PARTNER_SP_ID, f"{EMBEDDED}:alice") == "alice-pid-1"
    good = post(client, body, HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"idp-to-sp:partner-pass-1").decode())
    assert read_answer(peer, good, request_id) == (C.STATUS_SUCCESS, None)


def test_back_channel_client_certificate_authentication(client, db, tmp_path, settings):
    """The certificate comes from the TLS-terminating proxy (REMOTE_ADDR is the proxy, the header carries nginx's
    $ssl_client_escaped_cert), as for artifact resolution and SOAP logout (federation/backchannel.py)."""
    from urllib.parse import quote

    from federation.models import TraceLine

    credential = make_credential("rsa", PARTNER_SP_ID)
    _, ours = make_idp_side("https://sp.partner-nid.example/mni", credential.cert_pem, mni={"backchannel_in_auth": "client_cert"})
    link(OUR_IDP_ID, PARTNER_SP_ID, "alice", "alice-pid-1")
    peer = pysaml2_peer(tmp_path, "sp", PARTNER_SP_ID, credential.key, credential.certificate, OUR_IDP_ID, ours, "https://sp/mni")
    good_cert = quote(make_credential("rsa", "idp-to-sp").cert_pem.decode())  # CN = the partnership's name
    other_cert = quote(make_credential("rsa", "someone-else").cert_pem.decode())

    def send(certificate, proxy="10.0.0.5"):
        request_id, body = request_from(peer, OUR_IDP_URL, "alice-pid-1")
        return request_id, post(client, body, REMOTE_ADDR=proxy, HTTP_X_SSL_CLIENT_CERT=certificate)

    assert send(good_cert)[1].status_code == 403  # no trusted proxy configured: the header is not believed
    settings.FEDERATION_CLIENT_CERT_TRUSTED_PROXIES = "10.0.0.5"
    assert send(good_cert, proxy="10.0.0.99")[1].status_code == 403  # not from the proxy
    refused = send(other_cert)[1]
    assert refused.status_code == 403 and b"The client certificate is not accepted." in refused.content
    assert persistent_ids.find(OUR_IDP_ID, PARTNER_SP_ID, f"{EMBEDDED}:alice") == "alice-pid-1"
    request_id, good = send(good_cert)
    assert read_answer(peer, good, request_id) == (C.STATUS_SUCCESS, None)
    assert persistent_ids.find(OUR_IDP_ID, PARTNER_SP_ID, f"{EMBEDDED}:alice") is None
    details = list(TraceLine.objects.filter(checkpoint="NAMEID_AUTH").values_list("message", flat=True))
    assert any("no trusted proxy" in d for d in details) and any("not from a trusted proxy" in d for d in details)
    assert any("is not the partnership name" in d for d in details)


def test_manage_name_id_off_is_request_unsupported(client, db, tmp_path):
    credential = make_credential("rsa", PARTNER_SP_ID)
    _, ours = make_idp_side("https://sp.partner-nid.example/mni", credential.cert_pem, mni={"mni_enabled": False})
    link(OUR_IDP_ID, PARTNER_SP_ID, "alice", "alice-pid-1")
    peer = pysaml2_peer(tmp_path, "sp", PARTNER_SP_ID, credential.key, credential.certificate, OUR_IDP_ID, ours, "https://sp/mni")
    request_id, body = request_from(peer, OUR_IDP_URL, "alice-pid-1")
    assert read_answer(peer, post(client, body), request_id) == (C.STATUS_REQUESTER, C.STATUS_REQUEST_UNSUPPORTED)
