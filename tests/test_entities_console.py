"""Entity console pages: list (filters, search, pagination, constant query count), view, delete,
roles, and the keystore pages' view of entities that use an alias."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from entities import entity_services as es
from entities.models import Binding, EndpointKind, Entity, EntityType, KeystoreEntry, Location
from federation.models import AuditEvent
from tests.wizard_helpers import page_form

pytestmark = pytest.mark.django_db

ACS = "https://sp1.example.com/affwebservices/public/saml2assertionconsumer"


def local_idp(name, **extra):
    return es.create_entity(
        {
            "location": Location.LOCAL,
            "entity_type": EntityType.SAML2_IDP,
            "entity_id": f"https://{name}.example.com/",
            "name": name,
            "base_url": f"https://{name}.example.com",
            **extra,
        }
    )


def remote_sp(name, **extra):
    return es.create_entity(
        {"location": Location.REMOTE, "entity_type": EntityType.SAML2_SP, "entity_id": f"urn:{name}", "name": name, **extra},
        [{"kind": EndpointKind.ACS, "binding": Binding.HTTP_POST, "index": 0, "is_default": True, "location": ACS}],
    )


# ---------------------------------------------------------------- list


def test_empty_list_explains_and_offers_create(admin_client):
    text = admin_client.get(reverse("entities:list")).content.decode()
    assert "No entities are defined yet." in text
    assert f'href="{reverse("entities:create")}"' in text


def test_list_filters_by_type_location_and_search(admin_client, make_key_pair):
    make_key_pair("idp-key")
    local_idp("corp-idp", signing_key="idp-key")
    remote_sp("partner-sp")
    remote_sp("other-sp")
    url = reverse("entities:list")

    def names(query):
        response = admin_client.get(url, query)
        return [entity.name for entity in response.context["page"]]

    assert names({}) == ["corp-idp", "other-sp", "partner-sp"]
    assert names({"location": "remote"}) == ["other-sp", "partner-sp"]
    assert names({"entity_type": EntityType.SAML2_IDP}) == ["corp-idp"]
    assert names({"q": "PARTNER"}) == ["partner-sp"]
    assert names({"q": "urn:other"}) == ["other-sp"]  # entity ID
    assert names({"q": "nothing"}) == []
    text = admin_client.get(url, {"q": "nothing"}).content.decode()
    assert "No entities match these filters." in text
    text = admin_client.get(url).content.decode()
    assert "idp-key" in text and "https://corp-idp.example.com" in text and "1 endpoint" in text


def test_list_paginates(admin_client):
    for number in range(55):
        Entity.objects.create(
            location=Location.REMOTE, entity_type=EntityType.SAML2_SP, entity_id=f"urn:sp{number:02}", name=f"sp{number:02}"
        )
    first = admin_client.get(reverse("entities:list"))
    assert len(first.context["page"].object_list) == 50
    assert "Page 1 of 2 (55 in all)" in first.content.decode()
    second = admin_client.get(reverse("entities:list"), {"page": 2, "location": "remote"})
    assert [e.name for e in second.context["page"]] == [f"sp{n}" for n in range(50, 55)]
    assert "location=remote&amp;page=1" in second.content.decode()


def _make_entities(count, start, key):
    for number in range(start, start + count):
        if number % 2:
            local_idp(f"idp{number:03}", signing_key=key)
        else:
            remote_sp(f"sp{number:03}", verification_certificate=key)


def test_list_query_count_does_not_grow_with_rows(admin_client, make_key_pair):
    key = make_key_pair("shared-key")
    _make_entities(5, 0, key)
    with CaptureQueriesContext(connection) as five:
        assert admin_client.get(reverse("entities:list")).status_code == 200
    _make_entities(45, 5, key)
    with CaptureQueriesContext(connection) as fifty:
        response = admin_client.get(reverse("entities:list"))
    assert len(response.context["page"].object_list) == 50
    assert len(fifty.captured_queries) == len(five.captured_queries)


# ---------------------------------------------------------------- view


def test_detail_shows_fields_keys_and_runtime_urls(admin_client, make_key_pair):
    make_key_pair("idp-signing")
    entity = local_idp(
        "idp1",
        signing_key="idp-signing",
        name_id_formats=["urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"],
        description="Our IdP",
    )
    es.update_entity(entity, {}, attributes=[{"name": "groups", "value_type": "user", "value": "memberOf"}])
    text = admin_client.get(reverse("entities:detail", args=[entity.pk])).content.decode()
    assert "Local SAML2 IdP" in text and "https://idp1.example.com/" in text and "Persistent" in text and "Our IdP" in text
    assert f'href="{reverse("keystore:detail", args=["idp-signing"])}"' in text
    assert "https://idp1.example.com/affwebservices/public/saml2sso" in text
    assert "https://idp1.example.com/affwebservices/public/saml2metadata/idp1" in text
    assert "groups" in text and "memberOf" in text
    assert f'href="{reverse("entities:edit", args=[entity.pk])}"' in text


def test_detail_of_a_remote_entity_shows_its_endpoints(admin_client):
    entity = remote_sp("sp1")
    text = admin_client.get(reverse("entities:detail", args=[entity.pk])).content.decode()
    assert "Remote SAML2 SP" in text and ACS in text and "HTTP-POST" in text
    assert "affwebservices/public/saml2sso" not in text
    assert "No keys or certificates are set." in text


def test_detail_of_a_missing_entity_is_404(admin_client):
    assert admin_client.get(reverse("entities:detail", args=[999])).status_code == 404


# ---------------------------------------------------------------- delete


def test_delete_asks_first_then_deletes_and_audits(admin_client):
    entity = remote_sp("sp1")
    url = reverse("entities:delete", args=[entity.pk])
    text = admin_client.get(url).content.decode()
    assert "Delete sp1?" in text and "1 endpoint" in text and "cannot be undone" in text
    assert Entity.objects.filter(pk=entity.pk).exists()
    response = admin_client.post(url)
    assert response.status_code == 302 and response["Location"] == reverse("entities:list")
    assert not Entity.objects.exists()
    event = AuditEvent.objects.get(action="delete", object_type="entities.Entity")
    assert (event.object_repr, event.actor) == ("sp1", "alice-admin")


def test_keystore_entry_in_use_cannot_be_deleted_and_the_pages_name_the_entity(admin_client, make_key_pair):
    make_key_pair("idp-signing")
    entity = local_idp("idp1", signing_key="idp-signing")
    detail = admin_client.get(reverse("keystore:detail", args=["idp-signing"])).content.decode()
    assert f'<a href="{reverse("entities:detail", args=[entity.pk])}">entity &#x27;idp1&#x27; (signing key)</a>' in detail

    url = reverse("keystore:delete", args=["idp-signing"])
    confirm = admin_client.get(url).content.decode()
    assert "cannot be deleted while it is in use by: entity &#x27;idp1&#x27; (signing key)" in confirm
    assert "Delete idp-signing</button>" not in confirm

    refused = admin_client.post(url)
    assert refused.status_code == 302 and refused["Location"] == reverse("keystore:detail", args=["idp-signing"])
    page = admin_client.get(refused["Location"]).content.decode()
    assert (
        "&#x27;idp-signing&#x27; cannot be deleted: it is used by entity &#x27;idp1&#x27; (signing key). "
        "Choose another key for them first." in page
    )
    assert KeystoreEntry.objects.filter(alias="idp-signing").exists()
    assert not AuditEvent.objects.filter(action="delete").exists()


# ---------------------------------------------------------------- roles


def test_auditor_reads_but_cannot_change(auditor_client):
    entity = remote_sp("sp1")
    assert auditor_client.get(reverse("entities:list")).status_code == 200
    detail = auditor_client.get(reverse("entities:detail", args=[entity.pk]))
    assert detail.status_code == 200
    text = detail.content.decode()
    assert reverse("entities:edit", args=[entity.pk]) not in text and reverse("entities:delete", args=[entity.pk]) not in text
    assert reverse("entities:create") not in auditor_client.get(reverse("entities:list")).content.decode()
    assert auditor_client.get(reverse("entities:delete", args=[entity.pk])).status_code == 403
    assert auditor_client.post(reverse("entities:delete", args=[entity.pk])).status_code == 403
    assert auditor_client.post(reverse("entities:create")).status_code == 403
    assert Entity.objects.filter(pk=entity.pk).exists()


def test_signed_out_users_are_sent_to_login(client):
    response = client.get(reverse("entities:list"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_keystore_form_keeps_next_through_a_failed_post(admin_client):
    next_url = "/entities/create/abc/configure/?wizard_return=signing_key-generate"
    page = admin_client.get(reverse("keystore:generate"), {"next": next_url})
    assert page_form(page)["next"] == [next_url]
    failed = admin_client.post(
        reverse("keystore:generate"),
        {"alias": "bad alias", "subject": "CN=x", "algorithm": "ec-p256", "days": "30", "next": next_url},
    )
    assert failed.status_code == 200 and page_form(failed)["next"] == [next_url]
    assert f'href="{next_url.replace("&", "&amp;")}"' in failed.content.decode()
