"""Partnership console pages: the list (filters, search, states with colour, constant query count), the detail
page, and the lifecycle actions, each confirmed on its own page. The wizard has its own tests."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from entities import entity_services
from entities.models import Binding, EndpointKind
from partnerships import services
from partnerships.models import Partnership, PartnershipState
from tests.partnership_fixtures import SP_ACS, endpoint, entity

pytestmark = pytest.mark.django_db
IDP_SP = "saml2_idp_sp"


@pytest.fixture
def defined(make_partnership, saml2_idp_sp):
    partnership = make_partnership("idp-to-sp", IDP_SP, *saml2_idp_sp)
    assert partnership.state == PartnershipState.DEFINED, services.stored_problems(partnership)
    return partnership


def names(client, **query):
    response = client.get(reverse("partnerships:list"), query)
    assert response.status_code == 200
    return [p.name for p in response.context["page"]]


def test_list_filters_by_state_type_entity_and_search(admin_client, make_partnership, saml2_idp_sp, saml2_sp_idp):
    local_idp, remote_sp = saml2_idp_sp
    local_sp, remote_idp = saml2_sp_idp
    active = make_partnership("alpha", IDP_SP, local_idp, remote_sp)
    services.activate(active)
    make_partnership("bravo", IDP_SP, local_idp, None)
    make_partnership("charlie", "saml2_sp_idp", local_sp, remote_idp)
    assert names(admin_client) == ["alpha", "bravo", "charlie"]
    assert names(admin_client, state="active") == ["alpha"]
    assert names(admin_client, state="incomplete") == ["bravo"]
    assert names(admin_client, kind="saml2_sp_idp") == ["charlie"]
    assert names(admin_client, entity="sp-partner") == ["alpha"]
    assert names(admin_client, entity="idp-local") == ["alpha", "bravo"]
    assert names(admin_client, q="idp-partner.example") == ["charlie"]
    text = admin_client.get(reverse("partnerships:list")).content.decode()
    assert '<span class="state state-active">Active</span>' in text
    assert '<span class="state state-incomplete">Incomplete</span>' in text
    assert "not chosen yet" in text


def test_list_query_count_does_not_grow_with_rows(admin_client, make_partnership, saml2_idp_sp):
    local, remote = saml2_idp_sp
    make_partnership("p0", IDP_SP, local, remote)

    def count():
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(reverse("partnerships:list")).status_code == 200
        return len(queries)

    few = count()
    for n in range(1, 25):
        other = entity(f"sp-{n}", "remote", "saml2_sp", [endpoint(EndpointKind.ACS, Binding.HTTP_POST, SP_ACS, 0, True)])
        make_partnership(f"p{n}", IDP_SP, local, other)
    assert count() == few


def test_list_flags_partnerships_whose_entity_changed(admin_client, defined):
    assert "entity updated" not in admin_client.get(reverse("partnerships:list")).content.decode()
    entity_services.update_entity(defined.remote_entity, {"name_id_formats": []})
    assert "entity updated" in admin_client.get(reverse("partnerships:list")).content.decode()


def test_detail_shows_one_box_per_step_and_the_copied_entities(admin_client, defined):
    response = admin_client.get(reverse("partnerships:detail", args=[defined.pk]))
    text = response.content.decode()
    assert response.status_code == 200
    assert [box["key"] for box in response.context["boxes"]][0] == "configure"
    assert "https://sp-partner.example/" in text and "Activate…" in text
    assert "none: the runtime does not serve this partnership" in text


def test_activate_asks_first_then_activates(admin_client, defined):
    url = reverse("partnerships:action", args=[defined.pk, "activate"])
    confirm = admin_client.get(url).content.decode()
    assert "Yes, activate" in confirm
    assert Partnership.objects.get(pk=defined.pk).state == PartnershipState.DEFINED
    response = admin_client.post(url)
    assert response.status_code == 302 and response["Location"] == defined.get_absolute_url()
    assert Partnership.objects.get(pk=defined.pk).state == PartnershipState.ACTIVE
    text = admin_client.get(defined.get_absolute_url()).content.decode()
    assert "Deactivate and edit…" in text and "version 1" in text and "Delete…" not in text


def test_activate_an_incomplete_partnership_lists_why(admin_client, make_partnership, saml2_idp_sp):
    partnership = make_partnership("later", IDP_SP, saml2_idp_sp[0], None)
    url = reverse("partnerships:action", args=[partnership.pk, "activate"])
    text = admin_client.get(url).content.decode()
    assert "Choose the remote entity (it was put off)." in text and "Yes, activate" not in text
    response = admin_client.post(url)
    assert response.status_code == 409
    assert "only a Defined or Inactive partnership can be activated" in response.content.decode()


def test_deactivate_and_delete(admin_client, defined):
    services.activate(defined)
    delete_url = reverse("partnerships:delete", args=[defined.pk])
    assert "An active partnership cannot be deleted" in admin_client.get(delete_url).content.decode()
    assert admin_client.post(delete_url).status_code == 409
    admin_client.post(reverse("partnerships:action", args=[defined.pk, "deactivate"]))
    assert Partnership.objects.get(pk=defined.pk).state == PartnershipState.INACTIVE
    response = admin_client.post(delete_url)
    assert response.status_code == 302 and not Partnership.objects.exists()


def test_get_updates_page_lists_the_changes(admin_client, defined):
    entity_services.update_entity(defined.remote_entity, {"name_id_formats": []})
    url = reverse("partnerships:action", args=[defined.pk, "get-updates"])
    assert "remote entity: name_id_formats" in admin_client.get(url).content.decode()
    admin_client.post(url)
    assert services.entity_changes(Partnership.objects.get(pk=defined.pk)) == []


def test_auditor_sees_but_cannot_act(auditor_client, defined):
    text = auditor_client.get(defined.get_absolute_url()).content.decode()
    assert "Activate…" not in text
    response = auditor_client.post(reverse("partnerships:action", args=[defined.pk, "activate"]))
    assert response.status_code == 403
    assert Partnership.objects.get(pk=defined.pk).state == PartnershipState.DEFINED
