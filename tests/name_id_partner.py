"""A loopback partner for name-ID management tests and the benchmark: a small HTTP server in a thread that answers
ManageNameIDRequests as a partner SP or IdP and receives notifications, and counts everything it receives.

Two engines answer the SOAP calls:
- "pysaml2" (tests): pysaml2's SP or IdP verifies our signature (over the exact bytes inside the SOAP envelope, see
  tests/saml/test_manage_name_id.py), reads the request, decrypts an EncryptedID, and signs its answer.
- "core" (benchmark): our own protocol core does the same in about a millisecond, so the partner's 5 ms answer time
  is the configured delay and not pysaml2's xmlsec1 subprocesses.

Like a careful real partner, it remembers request IDs: a request re-sent under the same ID gets the recorded answer
and is not acted on twice. `receipts` counts every request that arrived (by ID), `acted` the ones it acted on.
"""

import base64
import json
import os
import socket
import threading
import time
import warnings
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning
from lxml import etree

from federation.saml import constants as C
from federation.saml.common import SigningKey, encode_soap, unwrap_soap
from federation.saml.manage_name_id import (
    ManageNameIDPolicy,
    build_manage_name_id_response,
    parse_manage_name_id_request_soap,
)
from federation.saml.xml import to_bytes

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from saml2 import BINDING_HTTP_POST, BINDING_SOAP
    from saml2.client import Saml2Client
    from saml2.config import IdPConfig, SPConfig
    from saml2.pack import make_soap_enveloped_saml_thingy
    from saml2.s_utils import error_status_factory
    from saml2.server import Server

XMLSEC1 = "/usr/bin/xmlsec1"
MNI_PATH = "/mni"
NOTIFY_PATH = "/notify"


def _cert_body(certificate):
    return "".join(
        line for line in certificate.public_bytes(serialization.Encoding.PEM).decode().splitlines() if "-----" not in line
    )


def _metadata(entity_id, role, certificate, mni_url):
    """Metadata of one entity as the pysaml2 peer needs it: a signing key and a SOAP Manage NameID service."""
    key_info = (
        f"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{_cert_body(certificate)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
    )
    descriptor = "IDPSSODescriptor" if role == "idp" else "SPSSODescriptor"
    service = (
        f'<md:SingleSignOnService Binding="{C.BINDING_HTTP_REDIRECT}" Location="{mni_url}/sso"/>'
        if role == "idp"
        else f'<md:AssertionConsumerService Binding="{C.BINDING_HTTP_POST}" Location="{mni_url}/acs" index="0"/>'
    )
    return (
        f'<md:EntityDescriptor xmlns:md="{C.NS_MD}" xmlns:ds="{C.NS_DS}" entityID="{entity_id}">'
        f'<md:{descriptor} protocolSupportEnumeration="{C.NS_SAMLP}">'
        f'<md:KeyDescriptor use="signing">{key_info}</md:KeyDescriptor>'
        f'<md:KeyDescriptor use="encryption">{key_info}</md:KeyDescriptor>'
        f'<md:ManageNameIDService Binding="{C.BINDING_SOAP}" Location="{mni_url}"/>'
        f"<md:NameIDFormat>{C.NAMEID_PERSISTENT}</md:NameIDFormat>"
        f"{service}"
        f"</md:{descriptor}></md:EntityDescriptor>"
    )


def pysaml2_peer(directory, role, entity_id, key, certificate, our_entity_id, our_certificate, url):
    """A pysaml2 SP (role "sp") or IdP (role "idp") with `key`, trusting our entity and its certificate."""
    os.makedirs(directory, exist_ok=True)
    key_file = f"{directory}/peer-{role}.key"
    cert_file = f"{directory}/peer-{role}.crt"
    with open(key_file, "wb") as handle:
        handle.write(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    with open(cert_file, "wb") as handle:
        handle.write(certificate.public_bytes(serialization.Encoding.PEM))
    ours = _metadata(our_entity_id, "sp" if role == "idp" else "idp", our_certificate, "https://ours.invalid/mni")
    endpoints = {"manage_name_id_service": [(url, BINDING_SOAP)]}
    if role == "idp":
        endpoints["single_sign_on_service"] = [(url + "/sso", C.BINDING_HTTP_REDIRECT)]
        config = IdPConfig()
    else:
        endpoints["assertion_consumer_service"] = [(url + "/acs", BINDING_HTTP_POST)]
        config = SPConfig()
    config.load(
        {
            "entityid": entity_id,
            "xmlsec_binary": XMLSEC1,
            "crypto_backend": "xmlsec1",
            "key_file": key_file,
            "cert_file": cert_file,
            "encryption_keypairs": [{"key_file": key_file, "cert_file": cert_file}],
            "metadata": {"inline": [ours]},
            "service": {role: {"endpoints": endpoints, "name_id_format": [C.NAMEID_PERSISTENT]}},
            "accepted_time_diff": 60,
        }
    )
    return Server(config=config) if role == "idp" else Saml2Client(config=config)


class LoopbackPartner:
    """The partner. `links` holds the Name ID values it knows (value -> user); start() serves on 127.0.0.1."""

    def __init__(
        self,
        *,
        role,
        entity_id,
        key,
        certificate,
        our_entity_id,
        our_certificate=None,
        engine="pysaml2",
        directory=None,
        answer_delay=0.0,
    ):
        self.role = role
        self.entity_id = entity_id
        self.key = key
        self.certificate = certificate
        self.our_entity_id = our_entity_id
        self.our_certificate = our_certificate
        self.engine = engine
        self.directory = directory
        self.answer_delay = answer_delay
        self.links = {}
        self.lock = threading.Lock()
        self.receipts = Counter()  # request ID -> how many times it arrived
        self.acted = Counter()  # request ID -> how many times it was acted on (never more than 1)
        self.answers = {}  # request ID -> the SOAP answer given
        self.requests = []  # (request ID, operation, Name ID value, new ID) in arrival order, first arrival only
        self.failures = []  # planned failures left: ("http500" | "responder" | "requester" | "delay:<s>")
        self.fail_first_for = set()  # Name ID values whose first request fails with HTTP 503 (the benchmark's 10 %)
        self.failed_values = set()
        self.delays = {}  # Name ID value -> seconds to wait before answering its first request
        self.notifications = []  # (headers, payload)
        self.notification_failures = 0
        self.notification_auth = None  # (user, password) the notification URL requires
        self.server = None
        self.peer = None
        self.stopped = False
        self.client_certificates = []  # what TLS clients presented (https only)
        self.authorizations = []  # the Authorization header of each SOAP call

    # --- running -------------------------------------------------------------------------------------------------

    def start(self, tls=None):
        """Serve on 127.0.0.1 (an ssl.SSLContext in `tls` makes it https, e.g. one that requires client certificates)."""
        partner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait for a delayed ACK

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if tls is not None:
                    partner.client_certificates.append(self.connection.getpeercert())
                if partner.stopped:  # a kept-alive connection outlived stop(): end it
                    self.close_connection = True
                    return
                if self.path == NOTIFY_PATH:
                    status, answer, content_type = partner._notify(dict(self.headers), body)
                else:
                    partner.authorizations.append(self.headers.get("Authorization"))
                    status, answer, content_type = partner._answer(body)
                if status is None:  # drop the connection without an answer
                    self.close_connection = True
                    return
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):  # the caller gave up waiting (a timeout test)
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        if self.our_certificate is not None:
            self.trust(self.our_certificate)
        return self

    def trust(self, our_certificate):
        """Trust our signing certificate (known once our side exists, which needs this partner's URL first)."""
        self.our_certificate = our_certificate
        if self.engine == "pysaml2":
            self.peer = pysaml2_peer(
                self.directory,
                self.role,
                self.entity_id,
                self.key,
                self.certificate,
                self.our_entity_id,
                our_certificate,
                self.url,
            )
        return self

    def stop(self):
        self.stopped = True
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def base_url(self):
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self):
        return self.base_url + MNI_PATH

    @property
    def notify_url(self):
        return self.base_url + NOTIFY_PATH

    # --- ManageNameID --------------------------------------------------------------------------------------------

    def _answer(self, body):
        try:
            request_id, operation, value, new_id, message = self._read(body)
        except Exception as error:  # noqa: BLE001 - a partner answers a bad request with a fault
            fault = f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{C.NS_SOAP11}"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>{type(error).__name__}: {error}</faultstring></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>'
            return 500, fault.encode(), "text/xml"
        with self.lock:
            self.receipts[request_id] += 1
            if request_id in self.answers:  # the same request again: the same answer, no second effect
                return 200, self.answers[request_id], "text/xml"
            first = self.receipts[request_id] == 1 and not any(r[0] == request_id for r in self.requests)
            if first:
                self.requests.append((request_id, operation, value, new_id))
            planned = self.failures.pop(0) if self.failures else None
            if planned is None and value in self.fail_first_for and value not in self.failed_values:
                self.failed_values.add(value)
                planned = "http503"
            delay = self.delays.pop(value, 0)
        if delay:
            time.sleep(delay)
        if self.answer_delay:
            time.sleep(self.answer_delay)
        if planned in ("http500", "http503"):
            return int(planned[4:]), b"<html><body>Service unavailable</body></html>", "text/html"
        if planned == "drop":
            return None, b"", ""
        if planned and planned.startswith("delay:"):
            time.sleep(float(planned[6:]))
            planned = None
        with self.lock:
            if planned == "responder":
                status = (C.STATUS_RESPONDER, None, "temporarily unable to process")
            elif planned == "requester":
                status = (C.STATUS_REQUESTER, C.STATUS_REQUEST_DENIED, "we do not accept this request")
            elif value not in self.links:
                status = (C.STATUS_REQUESTER, C.STATUS_UNKNOWN_PRINCIPAL, "no such user")
            else:
                user = self.links.pop(value)
                if new_id is not None:
                    self.links[new_id] = user
                self.acted[request_id] += 1
                status = (C.STATUS_SUCCESS, None, None)
            answer = self._response(message, request_id, *status)
            self.answers[request_id] = answer
        return 200, answer, "text/xml"

    def _read(self, body):
        """(request ID, operation, Name ID value, NewID or None, the parsed message) of a SOAP request."""
        if self.engine == "core":
            policy = ManageNameIDPolicy(
                partner_entity_id=self.our_entity_id,
                verification_certificates=(self.our_certificate,),
                require_signed=True,
                decryption_key=self.key,
            )
            request = parse_manage_name_id_request_soap(body, policy)
            return request.id, request.operation, request.name_id.value, request.new_id, request
        inner = to_bytes(unwrap_soap(body))
        received = self.peer.parse_manage_name_id_request(base64.b64encode(inner).decode(), BINDING_HTTP_POST)
        message = received.message
        if message.name_id is not None:
            value = message.name_id.text
        else:  # EncryptedID: pysaml2's xmlsec1 decrypts it
            encrypted = etree.fromstring(inner).find(f"{{{C.NS_SAML}}}EncryptedID")
            plain = self.peer.sec.decrypt(to_bytes(encrypted).decode(), key_file=self.peer.config.key_file)
            value = etree.fromstring(plain.encode()).find(f".//{{{C.NS_SAML}}}NameID").text
        new_id = None
        if message.new_id is not None:
            new_id = message.new_id.text
        elif message.new_encrypted_id is not None:
            encrypted = etree.fromstring(inner).find(f"{{{C.NS_SAMLP}}}NewEncryptedID")
            plain = self.peer.sec.decrypt(to_bytes(encrypted).decode(), key_file=self.peer.config.key_file)
            new_id = etree.fromstring(plain.encode()).find(f".//{{{C.NS_SAMLP}}}NewID").text
        operation = "terminate" if new_id is None else "change"
        return message.id, operation, value, new_id, message

    def _response(self, message, request_id, status, sub_status, text):
        if self.engine == "core":
            issued = build_manage_name_id_response(
                issuer=self.entity_id,
                destination=None,
                in_response_to=request_id,
                status=status,
                sub_status=sub_status,
                message=text,
            )
            return encode_soap(issued.element, signing=SigningKey(self.key, self.certificate))
        pysaml2_status = None
        if status != C.STATUS_SUCCESS:
            pysaml2_status = error_status_factory((sub_status or status, text))
            pysaml2_status.status_code.value = status
            if sub_status is None:
                pysaml2_status.status_code.status_code = None
        answer = self.peer.create_manage_name_id_response(
            message,
            [BINDING_SOAP],
            issuer=self.peer._issuer(),
            status=pysaml2_status,
            sign=True,
            sign_alg=C.RSA_SHA256,
            digest_alg=C.SHA256,
        )
        return make_soap_enveloped_saml_thingy(answer).encode()

    # --- notifications -------------------------------------------------------------------------------------------

    def _notify(self, headers, body):
        with self.lock:
            if self.notification_auth is not None:
                expected = "Basic " + base64.b64encode(":".join(self.notification_auth).encode()).decode()
                if headers.get("Authorization") != expected:
                    return 401, b"who are you?", "text/plain"
            if self.notification_failures:
                self.notification_failures -= 1
                return 500, b"notification store is down", "text/plain"
            self.notifications.append((headers, json.loads(body)))
        return 204, b"", "text/plain"

    # --- what the tests read -------------------------------------------------------------------------------------

    def requests_for(self, value):
        return [r for r in self.requests if r[2] == value]


# --- Our side: entities, keys and an active partnership with Manage Name ID on ----------------------------------------

OUR_IDP_ID = "https://idp.nid.example/"
OUR_SP_ID = "https://sp.nid.example/"
PARTNER_SP_ID = "https://sp.partner-nid.example/"
PARTNER_IDP_ID = "https://idp.partner-nid.example/"
ACS_URL = "https://sp.partner-nid.example/acs"
SSO_URL = "https://idp.partner-nid.example/sso"


def closed_port_url(path="/mni"):
    """A loopback URL where nothing listens (the port was free a moment ago): a partner that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}{path}"


def clear_runtime_caches():
    """Tests roll the database back, so a snapshot's primary key comes again with other data: forget what the
    runtime cached by key."""
    from partnerships import name_id_jobs
    from partnerships.runtime import load_snapshot

    load_snapshot.cache_clear()
    name_id_jobs._key_pair_for.cache_clear()
    name_id_jobs._client_certificate_session.cache_clear()


def mni_settings(**overrides):
    """The Manage Name ID section (sso_slo step) with short retries for tests."""
    values = {
        "mni_enabled": True,
        "mni_delete_name_id": True,
        "mni_soap_timeout_seconds": 5,
        "mni_retries": 2,
        "mni_retry_interval_minutes": 1,
    }
    values.update(overrides)
    return values


def _partnership(name, kind, local, remote, settings):
    """Like tests.partnership_fixtures.make_partnership (catalog defaults + what the wizard pre-fills), activated."""
    from federation.directories import get_embedded_directory
    from partnerships import catalog, prefill, services

    directory = get_embedded_directory()
    facts = {"local": services.entity_facts(local), "remote": services.entity_facts(remote)}
    merged = catalog.defaults(kind)
    for step in catalog.steps_for(kind):
        merged[step.key].update(prefill.step_values(kind, step.key, directories=[(directory.name, directory.kind)], **facts))
    if "assertion" in merged and not merged["assertion"].get("name_id_value"):
        merged["assertion"]["name_id_value"] = "uid"
    if "application" in merged and not merged["application"].get("target"):
        merged["application"]["target"] = "https://app.example/welcome"
    for step, values in settings.items():
        merged.setdefault(step, {}).update(values)
    partnership = services.save_partnership(
        kind=kind, name=name, local_entity=local, remote_entity=remote, directories=[directory.name], settings=merged
    )
    assert partnership.state == "defined", services.stored_problems(partnership)
    services.activate(partnership)
    return partnership


def make_idp_side(partner_url, partner_certificate_pem, *, name="idp-to-sp", mni=None, signature=None, prefix="nid"):
    """Our IdP with a signing key, the partner SP (its certificate, a SOAP Manage NameID service at `partner_url`) and an
    active IdP → SP partnership. Returns (partnership, our signing certificate)."""
    from entities import services as keystore
    from entities.models import Binding, EndpointKind, EntityType, Location
    from tests.partnership_fixtures import endpoint, entity

    signing = keystore.generate_key_pair(f"{prefix}-idp-signing", "rsa2048", "CN=idp.nid.example", 365, [])
    keystore.import_trusted_certificate(f"{prefix}-sp-partner", partner_certificate_pem)
    local = entity(
        f"{prefix}-idp", Location.LOCAL, EntityType.SAML2_IDP, entity_id=OUR_IDP_ID, signing_key=f"{prefix}-idp-signing"
    )
    remote = entity(
        f"{prefix}-sp-partner",
        Location.REMOTE,
        EntityType.SAML2_SP,
        [
            endpoint(EndpointKind.ACS, Binding.HTTP_POST, ACS_URL, index=0, is_default=True),
            endpoint(EndpointKind.MANAGE_NAME_ID, Binding.SOAP, partner_url),
        ],
        entity_id=PARTNER_SP_ID,
        verification_certificate=f"{prefix}-sp-partner",
        encryption_certificate=f"{prefix}-sp-partner",
        name_id_formats=[C.NAMEID_PERSISTENT],
    )
    settings = {"sso_slo": mni_settings(**(mni or {}))}
    if signature:
        settings["signature"] = signature
    partnership = _partnership(name, "saml2_idp_sp", local, remote, settings)
    return partnership, signing.certificate()


def make_sp_side(partner_url, partner_certificate_pem, *, name="sp-to-idp", mni=None, signature=None, prefix="nid"):
    """Our SP with a signing key, the partner IdP (its certificate, SSO, a SOAP Manage NameID service at `partner_url`)
    and an active SP → IdP partnership. Returns (partnership, our signing certificate)."""
    from entities import services as keystore
    from entities.models import Binding, EndpointKind, EntityType, Location
    from tests.partnership_fixtures import endpoint, entity

    signing = keystore.generate_key_pair(f"{prefix}-sp-signing", "rsa2048", "CN=sp.nid.example", 365, [])
    keystore.import_trusted_certificate(f"{prefix}-idp-partner", partner_certificate_pem)
    local = entity(
        f"{prefix}-sp",
        Location.LOCAL,
        EntityType.SAML2_SP,
        entity_id=OUR_SP_ID,
        signing_key=f"{prefix}-sp-signing",
        decryption_key=f"{prefix}-sp-signing",
    )
    remote = entity(
        f"{prefix}-idp-partner",
        Location.REMOTE,
        EntityType.SAML2_IDP,
        [
            endpoint(EndpointKind.SSO, Binding.HTTP_REDIRECT, SSO_URL),
            endpoint(EndpointKind.SSO, Binding.HTTP_POST, SSO_URL),
            endpoint(EndpointKind.MANAGE_NAME_ID, Binding.SOAP, partner_url),
        ],
        entity_id=PARTNER_IDP_ID,
        verification_certificate=f"{prefix}-idp-partner",
        name_id_formats=[C.NAMEID_PERSISTENT],
    )
    settings = {"sso_slo": mni_settings(**(mni or {})), "signature": {"signing_key": f"{prefix}-sp-signing", **(signature or {})}}
    partnership = _partnership(name, "saml2_sp_idp", local, remote, settings)
    return partnership, signing.certificate()


def link(local_entity_id, remote_entity_id, user, value, directory=None):
    """A persistent identifier linking `user` (of the embedded directory by default) with the partner."""
    from federation.directories import get_embedded_directory
    from federation.models import PersistentIdentifier

    directory = directory or get_embedded_directory().name
    return PersistentIdentifier.objects.create(
        local_entity_id=local_entity_id, remote_entity_id=remote_entity_id, user_key=f"{directory}:{user}", value=value
    )


# --- Driving a separate installation (real worker processes, the benchmark) ------------------------------------------


def setup_installation(partner_url, partner_certificate_path, users, mni=None):
    """Run inside `manage.py shell` of the installation under test: our IdP side with the partner and one persistent
    identifier per user (user{n} -> pid-{n}). Prints our signing certificate (PEM) for the partner to trust."""
    from cryptography.hazmat.primitives import serialization

    from federation.models import PersistentIdentifier

    with open(partner_certificate_path, "rb") as handle:
        _, ours = make_idp_side(partner_url, handle.read(), mni=mni)
    directory = "Embedded directory"
    PersistentIdentifier.objects.bulk_create(
        PersistentIdentifier(
            local_entity_id=OUR_IDP_ID, remote_entity_id=PARTNER_SP_ID, user_key=f"{directory}:user{n}", value=f"pid-{n}"
        )
        for n in range(users)
    )
    print(ours.public_bytes(serialization.Encoding.PEM).decode(), end="")


def submit_installation_jobs(first, count, duplicates=0, batch=500):
    """Run inside `manage.py shell`: terminate jobs for user{first}..user{first+count-1}, queued after each batch's
    commit; `duplicates` extra messages per job stand for redelivered or duplicated broker messages."""
    from partnerships import name_id_jobs

    for start in range(first, first + count, batch):
        items = [
            name_id_jobs.parse_job_request({"UserDN": f"user{n}", "OperationType": "sp", "ProviderID": PARTNER_SP_ID})
            for n in range(start, min(start + batch, first + count))
        ]
        jobs = name_id_jobs.submit_jobs(items, actor="test")
        for job, _ in jobs:
            for _ in range(duplicates):
                name_id_jobs.enqueue(job.pk)
