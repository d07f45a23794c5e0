"""Metadata export in the console (the entity page's "Export metadata" dialog: download, audit,
errors at their fields, roles) and the public live endpoint
/affwebservices/public/saml2metadata/<local entity name> (signed document, cache headers, no login,
404/503 pages with the transaction ID)."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from entities import entity_services as es
from entities import metadata_export as me
from entities.models import Binding, EndpointKind, EntityType, Location, SamlTokenType
from federation import runtime_paths
from federation.models import AuditEvent
from federation.saml import constants as c
from federation.saml import signing
from federation.saml.keys import certificate_base64
from federation.saml.xml import parse_xml
from tests.test_metadata_export import (
    NS,
    ec_key_pair,
    expired_key_pair,
    key_descriptor_certs,
    local_entity,
    local_idp,
    one,
    rsa_key_pair,
    validate,
)

pytestmark = pytest.mark.django_db


def export_url(entity):
    return reverse("entities:export_metadata", args=[entity.pk])


def live_path(name):
    return runtime_paths.saml2_metadata_path(name)


def post_form(entity, **values):
    data = {"partnership_name": "idp1-apm", "valid_days": "0", "sign": "on", "sign_with": "idp-signing", "algorithm": ""}
    data.update({key: value for key, value in values.items() if value is not None})
    for key in [key for key, value in values.items() if value is None]:
        data.pop(key, None)
    return data


def field_errors(response, field):
    form = response.context["form"]
    return form.errors.get(field, [])


# ---------------------------------------------------------------- the export dialog


def test_entity_page_offers_export_to_administrators_only(admin_client, auditor_user):
    rsa_key_pair("idp-signing")
    idp = local_idp()
    detail = reverse("entities:detail", args=[idp.pk])
    page = admin_client.get(detail).content.decode()
    assert f'href="{export_url(idp)}"' in page
    assert "<code>/affwebservices/public/saml2metadata/idp1</code>" in page
    auditor = Client()
    auditor.force_login(auditor_user)
    page = auditor.get(detail).content.decode()
    assert export_url(idp) not in page
    assert "<code>/affwebservices/public/saml2metadata/idp1</code>" in page  # the public URL is for everyone


def test_dialog_defaults_to_signing_with_the_entity_key(admin_client):
    rsa_key_pair("idp-signing")
    rsa_key_pair("other-key")
    idp = local_idp()
    response = admin_client.get(export_url(idp))
    assert response.status_code == 200
    form = response.context["form"]
    assert form["sign"].initial is True and form["sign_with"].initial == "idp-signing"
    assert [value for value, _label in form.fields["sign_with"].choices] == ["", "idp-signing", "other-key"]
    assert "want_authn_requests_signed" in form.fields and "authn_requests_signed" not in form.fields
    text = response.content.decode()
    assert "https://idp.example.org/affwebservices/public/saml2metadata/idp1" in text
    assert 'name="partnership_name"' in text and "Export" in text


def test_export_downloads_signed_metadata_and_audits(admin_client):
    entry = rsa_key_pair("idp-signing")
    rsa_key_pair("idp-signing-next")
    idp = local_idp(next_signing_key="idp-signing-next")
    before = datetime.now(UTC)
    response = admin_client.post(export_url(idp), post_form(idp, valid_days="30", cache_hours="6"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/samlmetadata+xml"
    assert response["Content-Disposition"] == 'attachment; filename="idp1-apm-metadata.xml"'
    assert response["Cache-Control"] == "no-store"
    root = validate(parse_xml(response.content))
    signing.verify(root, root, [entry.certificate()])
    valid_until = datetime.strptime(root.get("validUntil"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(days=30) - timedelta(seconds=1) <= valid_until <= datetime.now(UTC) + timedelta(days=30)
    assert root.get("cacheDuration") == "PT6H"
    assert len(key_descriptor_certs(one(root, "md:IDPSSODescriptor"), "signing")) == 2
    event = AuditEvent.objects.get(action="other", object_repr="idp1")
    assert event.actor == "alice-admin"
    assert event.summary.startswith("metadata exported (console); entityID https://idp1.example.org/; signed with idp-signing")
    assert event.changes["file"] == [None, "idp1-apm-metadata.xml"]


def test_export_unsigned_with_entity_id_override_and_flags(admin_client):
    rsa_key_pair("sp-signing")
    sp = local_entity(EntityType.SAML2_SP, "sp1", signing_key="sp-signing")
    response = admin_client.get(export_url(sp))
    assert response.context["form"]["want_assertions_signed"].initial == "true"
    response = admin_client.post(
        export_url(sp),
        {
            "partnership_name": "sp1-partner",
            "entity_id": "urn:sp1:for-partner",
            "authn_requests_signed": "true",
            "want_assertions_signed": "",
        },
    )
    assert response["Content-Disposition"] == 'attachment; filename="sp1-partner-metadata.xml"'
    root = validate(response.content)
    assert root.get("entityID") == "urn:sp1:for-partner"
    assert not root.findall("ds:Signature", NS)
    descriptor = one(root, "md:SPSSODescriptor")
    assert descriptor.get("AuthnRequestsSigned") == "true" and "WantAssertionsSigned" not in descriptor.attrib
    assert "unsigned" in AuditEvent.objects.get(action="other").summary


@pytest.mark.parametrize(
    "values, field, message",
    [
        ({"partnership_name": ""}, "partnership_name", "This field is required."),
        (
            {"partnership_name": "with space"},
            "partnership_name",
            "Use only letters, digits, '_', '-' and '.' in a partnership name (at most 100, no spaces).",
        ),
        ({"sign_with": ""}, "sign_with", "Choose the key pair to sign the metadata with, or untick 'Sign the metadata'."),
        ({"valid_days": "4000"}, "valid_days", "Ensure this value is less than or equal to 3650."),
        ({"entity_id": "urn:a b"}, "entity_id", "An entity ID has no spaces or line breaks and at most 1024 characters."),
        (
            {"sign_with": "ec-signer", "algorithm": "rsa-sha256"},
            "algorithm",
            "RSA-SHA256 needs an RSA key, but the chosen key is an EC key; choose ecdsa-sha256.",
        ),
    ],
)
def test_export_errors_are_shown_at_the_field_and_nothing_is_downloaded(admin_client, values, field, message):
    rsa_key_pair("idp-signing")
    ec_key_pair("ec-signer")
    idp = local_idp()
    response = admin_client.post(export_url(idp), post_form(idp, **values))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert field_errors(response, field) == [message]
    assert message.replace("'", "&#x27;") in response.content.decode()
    assert not AuditEvent.objects.filter(action="other").exists()


def test_entity_key_problems_are_shown_above_the_form(admin_client):
    expired_key_pair("old")
    rsa_key_pair("fresh")
    idp = local_idp(signing_key="old")
    response = admin_client.post(export_url(idp), post_form(idp, sign_with="fresh"))
    errors = response.context["form"].non_field_errors()
    assert len(errors) == 1 and errors[0].startswith("The signing key 'old' has a certificate that expired on")


def test_expired_chosen_key_is_shown_at_the_key_field(admin_client):
    rsa_key_pair("idp-signing")
    expired_key_pair("old")
    idp = local_idp()
    response = admin_client.post(export_url(idp), post_form(idp, sign_with="old"))
    assert field_errors(response, "sign_with")[0].startswith("The key pair 'old' chosen to sign the metadata has a certificate")


def test_remote_entity_is_reemitted_without_partnership_name(admin_client):
    sp = es.create_entity(
        {"location": Location.REMOTE, "entity_type": EntityType.SAML2_SP, "entity_id": "urn:partner", "name": "partner-sp"},
        [
            {
                "kind": EndpointKind.ACS,
                "binding": Binding.HTTP_POST,
                "index": 0,
                "is_default": True,
                "location": "https://partner.example.com/acs",
            }
        ],
    )
    form = admin_client.get(export_url(sp)).context["form"]
    assert "partnership_name" not in form.fields and "entity_id" not in form.fields
    assert form["sign"].initial is False
    response = admin_client.post(export_url(sp), {"valid_days": ""})
    assert response["Content-Disposition"] == 'attachment; filename="partner-sp-metadata.xml"'
    assert one(validate(response.content), "md:SPSSODescriptor/md:AssertionConsumerService").get("Location") == (
        "https://partner.example.com/acs"
    )


def test_auditors_and_anonymous_cannot_export(client, auditor_client):
    rsa_key_pair("idp-signing")
    idp = local_idp()
    assert auditor_client.get(export_url(idp)).status_code == 403
    assert auditor_client.post(export_url(idp), post_form(idp)).status_code == 403
    assert not AuditEvent.objects.filter(action="other").exists()
    client.logout()
    response = client.get(export_url(idp))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_export_post_needs_the_csrf_token(admin_user):
    rsa_key_pair("idp-signing")
    idp = local_idp()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(export_url(idp), post_form(idp)).status_code == 403


# ---------------------------------------------------------------- the live endpoint


def test_live_url_is_the_runtime_path_and_the_url_shown_to_partners():
    rsa_key_pair("idp-signing")
    idp = local_idp()
    assert reverse("saml2_metadata", args=["idp1"]) == live_path("idp1") == "/affwebservices/public/saml2metadata/idp1"
    shown = [item.url for item in idp.runtime_urls() if item.label == "Metadata"]
    assert shown == ["https://idp.example.org" + live_path("idp1")]


def test_live_metadata_is_public_signed_and_cacheable(client):
    entry = rsa_key_pair("idp-signing")
    rsa_key_pair("idp-signing-next")
    idp = local_idp(next_signing_key="idp-signing-next")
    client.logout()
    response = client.get(urlsplit(idp.runtime_urls()[-1].url).path)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/samlmetadata+xml"
    assert response["Cache-Control"] == f"public, max-age={me.LIVE_CACHE_SECONDS}"
    assert response["Content-Disposition"] == 'inline; filename="idp1-metadata.xml"'
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Transaction-ID"])
    root = validate(parse_xml(response.content))
    verified = signing.verify(root, root, [entry.certificate()])
    assert verified.get("entityID") == idp.entity_id
    assert root.get("cacheDuration") == "PT6H"
    valid_until = datetime.strptime(root.get("validUntil"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(days=6, hours=23) < valid_until - datetime.now(UTC) <= timedelta(days=me.LIVE_VALID_DAYS)
    assert key_descriptor_certs(one(verified, "md:IDPSSODescriptor"), "signing") == [
        certificate_base64(entry.certificate()),
        certificate_base64(idp.next_signing_key.certificate()),
    ]
    assert not AuditEvent.objects.filter(action="other").exists()  # partners' fetches are not configuration changes


def test_live_metadata_settings_and_head(client, settings):
    rsa_key_pair("idp-signing")
    local_idp()
    settings.FEDERATION_METADATA_CACHE_SECONDS = 600
    settings.FEDERATION_METADATA_VALID_DAYS = 2
    response = client.get(live_path("IDP1"))  # entity names are case-insensitive
    assert response["Cache-Control"] == "public, max-age=600"
    root = parse_xml(response.content)
    assert root.get("cacheDuration") == "PT10M"
    valid_until = datetime.strptime(root.get("validUntil"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert valid_until - datetime.now(UTC) <= timedelta(days=2)
    assert client.head(live_path("idp1")).status_code == 200
    assert client.post(live_path("idp1")).status_code == 405


def test_live_metadata_of_a_local_sp_without_key_is_unsigned(client):
    sp = local_entity(EntityType.SAML2_SP, "sp1")
    response = client.get(live_path("sp1"))
    assert response.status_code == 200
    root = validate(response.content)
    assert not root.findall("ds:Signature", NS)
    assert one(root, "md:SPSSODescriptor").get("WantAssertionsSigned") == "true"
    assert root.get("entityID") == sp.entity_id


def test_live_metadata_of_a_saml11_consumer(client):
    local_entity(EntityType.SAML11_CONSUMER, "consumer1")
    response = client.get(live_path("consumer1"))
    assert response.status_code == 200
    assert one(validate(response.content), "md:SPSSODescriptor").get("protocolSupportEnumeration") == c.PROTOCOL_SAML11


@pytest.mark.parametrize("name", ["nobody", "partner-idp", "ip1"])
def test_live_metadata_404_for_unknown_remote_and_wsfed_entities(client, name):
    es.create_entity(
        {
            "location": Location.REMOTE,
            "entity_type": EntityType.SAML2_IDP,
            "entity_id": "urn:partner-idp",
            "name": "partner-idp",
        },
        [{"kind": EndpointKind.SSO, "binding": Binding.HTTP_REDIRECT, "location": "https://partner.example.com/sso"}],
    )
    rsa_key_pair("ip-signing")
    local_entity(EntityType.WSFED_IP, "ip1", signing_key="ip-signing", saml_token_type=SamlTokenType.SAML11)
    response = client.get(live_path(name))
    assert response.status_code == 404
    text = response.content.decode()
    assert "Metadata not found" in text and "This site has no local SAML entity with this name." in text
    assert f'<code class="transaction-id">{response["X-Transaction-ID"]}</code>' in text
    assert "Traceback" not in text and "urn:partner-idp" not in text
    assert 'href="/entities/' not in text  # a public page: no console navigation


def test_live_metadata_503_when_the_key_has_expired(client, caplog):
    expired_key_pair("old")
    local_idp(signing_key="old")
    response = client.get(live_path("idp1"))
    assert response.status_code == 503
    text = response.content.decode()
    assert "This entity&#x27;s metadata cannot be published right now." in text
    assert response["X-Transaction-ID"] in text
    assert "expired" not in text and "Traceback" not in text  # the reason is for the administrator's log
    assert any(
        "signing key 'old' has a certificate that expired" in record.getMessage()
        and getattr(record, "checkpoint", "") == "METADATA_LIVE_FAILED"
        for record in caplog.records
    )
