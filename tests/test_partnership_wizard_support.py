"""Helpers of the partnership wizard tests (no tests here): entities of every kind made through the services, and a
walk through the wizard's steps with the Django test client, posting what each page shows as a browser would."""

import re

from django.urls import reverse
from lxml import html

from entities import entity_services
from entities import services as keystore
from entities.models import Binding, EndpointKind, EntityType, Location
from tests.wizard_helpers import page_form, submit

SP_ACS = "https://sp.partner.example/affwebservices/public/saml2assertionconsumer"
IDP_SSO = "https://idp.partner.example/affwebservices/public/saml2sso"
SAML11_ACS = "https://consumer.partner.example/affwebservices/public/samlcc"
WSFED_RP_URL = "https://rp.partner.example/wsfed/"
WSFED_IP_URL = "https://ip.partner.example/wsfed/"

# What each kind needs typed beyond what the wizard prefills: {step: {input name: value}}.
REQUIRED_INPUT = {
    "saml2_idp_sp": {"assertion": {"name_id_value": "uid"}},
    "saml2_sp_idp": {"application": {"target": "https://app.sp.example/welcome"}},
    "saml11_producer_consumer": {"assertion": {"name_id_value": "uid"}},
    "saml11_consumer_producer": {"application": {"target": "https://app.consumer.example/"}},
    "wsfed_ip_rp": {"assertion": {"name_id_value": "mail"}},
    "wsfed_rp_ip": {"application": {"target": "https://app.rp.example/"}},
}


def make_entity(name, location, entity_type, endpoints=(), **values):
    base = {"location": location, "entity_type": entity_type, "name": name, "entity_id": f"https://{name}.example/"}
    if location == Location.LOCAL:
        base["base_url"] = f"https://{name}.example"
    base.update(values)
    return entity_services.create_entity(base, list(endpoints))


def acs(binding, url, index=0):
    return {"kind": EndpointKind.ACS, "binding": binding, "location": url, "index": index, "is_default": index == 0}


def sso(binding, url):
    return {"kind": EndpointKind.SSO, "binding": binding, "location": url}


def entities_for(kind):
    """(local, remote) entities of a partnership kind, with a local signing key and the partner's certificate."""
    keystore.generate_key_pair("local-signing", "rsa2048", "CN=local.example", 365, [])
    partner = keystore.generate_key_pair("partner-key", "rsa2048", "CN=partner.example", 365, [])
    keystore.import_trusted_certificate("partner-cert", partner.certificate_pem)
    if kind == "saml2_idp_sp":
        local = make_entity("idp-local", Location.LOCAL, EntityType.SAML2_IDP, signing_key="local-signing")
        remote = make_entity(
            "sp-partner",
            Location.REMOTE,
            EntityType.SAML2_SP,
            [acs(Binding.HTTP_POST, SP_ACS)],
            verification_certificate="partner-cert",
            encryption_certificate="partner-cert",
            name_id_formats=["urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"],
        )
    elif kind == "saml2_sp_idp":
        local = make_entity(
            "sp-local", Location.LOCAL, EntityType.SAML2_SP, signing_key="local-signing", decryption_key="local-signing"
        )
        remote = make_entity(
            "idp-partner",
            Location.REMOTE,
            EntityType.SAML2_IDP,
            [sso(Binding.HTTP_REDIRECT, IDP_SSO), sso(Binding.HTTP_POST, IDP_SSO)],
            verification_certificate="partner-cert",
        )
    elif kind == "saml11_producer_consumer":
        local = make_entity("producer-local", Location.LOCAL, EntityType.SAML11_PRODUCER, signing_key="local-signing")
        remote = make_entity(
            "consumer-partner",
            Location.REMOTE,
            EntityType.SAML11_CONSUMER,
            [acs(Binding.SAML11_POST, SAML11_ACS)],
            verification_certificate="partner-cert",
        )
    elif kind == "saml11_consumer_producer":
        local = make_entity("consumer-local", Location.LOCAL, EntityType.SAML11_CONSUMER, signing_key="local-signing")
        remote = make_entity(
            "producer-partner", Location.REMOTE, EntityType.SAML11_PRODUCER, verification_certificate="partner-cert"
        )
    elif kind == "wsfed_ip_rp":
        local = make_entity(
            "ip-local", Location.LOCAL, EntityType.WSFED_IP, signing_key="local-signing", saml_token_type="saml11"
        )
        remote = make_entity(
            "rp-partner",
            Location.REMOTE,
            EntityType.WSFED_RP,
            saml_token_type="saml11",
            wsfed_service_url=WSFED_RP_URL,
            verification_certificate="partner-cert",
        )
    else:
        local = make_entity(
            "rp-local", Location.LOCAL, EntityType.WSFED_RP, signing_key="local-signing", saml_token_type="saml11"
        )
        remote = make_entity(
            "ip-partner",
            Location.REMOTE,
            EntityType.WSFED_IP,
            saml_token_type="saml11",
            wsfed_service_url=WSFED_IP_URL,
            verification_certificate="partner-cert",
        )
    return local, remote


# --------------------------------------------------------------------------------------------------- walking the wizard


def step_of(url):
    return url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]


def start(client, kind):
    """Create partnership → choose the kind → the Configure page."""
    response = client.get(reverse("partnerships:create"))
    assert response.status_code == 302 and re.search(r"/partnerships/create/[\w-]+/type/$", response["Location"])
    page = client.get(response["Location"])
    assert page.status_code == 200
    response = submit(client, page, {"kind": kind})
    assert response.status_code == 302 and step_of(response["Location"]) == "configure", response.content[:500]
    return client.get(response["Location"])


def configure_values(name, local, remote, directories=("Embedded directory",), **extra):
    values = {"name": name, "local_entity": str(local.pk), "remote_entity": str(remote.pk) if remote else ""}
    values["directories-TOTAL_FORMS"] = str(len(directories))
    values["directories-INITIAL_FORMS"] = "0"
    for index, directory in enumerate(directories):
        values[f"directories-{index}-directory"] = directory
    values.update(extra)
    return values


def walk(client, page, changes=None, until="confirm"):
    """Press Next on every step from `page`, with {step: {input: value}} typed on the way, until the step `until` is
    shown; returns that page. A step that refuses Next fails the test with its messages."""
    changes = changes or {}
    while True:
        step = step_of(page.request["PATH_INFO"])
        if step == until:
            return page
        shown = page_form(page)
        wanted = {name: value for name, value in (changes.get(step) or {}).items()}
        response = submit(client, page, wanted)
        assert response.status_code == 302, (step, messages_on(response), {k: shown.get(k) for k in wanted})
        page = client.get(response["Location"])
        assert page.status_code == 200, page.content[:500]


def messages_on(response):
    """Every error and warning text on a page, as (where, text)."""
    document = html.fromstring(response.content.decode())
    found = []
    for element in document.xpath('//*[contains(@class, "errorlist") or contains(@class, "warninglist")]/li'):
        found.append((element.getparent().get("id") or "", element.text_content().strip()))
    return found


def warnings_at(response, field_id):
    document = html.fromstring(response.content.decode())
    found = document.get_element_by_id(f"{field_id}_warnings", None)
    return [item.text_content().strip() for item in found.iter("li")] if found is not None else []


def flash_messages(response):
    document = html.fromstring(response.content.decode())
    return [li.text_content().strip() for li in document.xpath('//ul[@class="messages"]/li')]
