"""The "Import metadata" wizard in a real Chromium: upload a federation aggregate (pysaml2 and
python3-saml members, one expired), search it, pick one SP, name its certificate, confirm the
"Selected Certificate Data", Finish, and land on the new entity."""

import pytest

from entities.models import Entity, EntityType, KeystoreEntry
from tests import metadata_fixtures as mf
from tests.saml.credentials import make_credential

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_import_an_aggregate_and_pick_one_sp(signed_in_page, live_server, tmp_path, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    document = mf.aggregate(
        mf.pysaml2_sp(tmp_path, make_credential("rsa", "sp.example.org"), encryption=make_credential("rsa", "sp encryption")),
        mf.python3saml_sp(make_credential("rsa", "shop.example.com"), "https://shop.example.com/saml", host="shop.example.com"),
        mf.pysaml2_idp(tmp_path, make_credential("rsa", "idp.example.org")),
        mf.entity_xml("https://retired.example.org/sp", valid_until=mf.in_hours(-24)),
    )
    path = tmp_path / "federation-metadata.xml"
    path.write_bytes(document)

    page = signed_in_page
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Entities").click()
    page.get_by_role("link", name="Import metadata").click()

    # Step 1: upload the file through the detour, then the operation and trust.
    assert page.get_by_role("heading", name="Step 1 of 4: Select metadata").is_visible()
    page.get_by_role("button", name="Upload a metadata file").click()
    assert page.get_by_role("heading", name="Upload metadata").is_visible()
    page.get_by_label("Metadata file").set_input_files(str(path))
    page.get_by_role("button", name="Upload", exact=True).click()
    assert page.get_by_role("heading", name="Step 1 of 4: Select metadata").is_visible()
    assert page.locator("#uploaded-file").inner_text().startswith("federation-metadata.xml")
    assert page.get_by_label("Create a new remote entity").is_checked()
    page.get_by_label("Allow unsigned metadata").check()
    page.get_by_role("button", name="Next", exact=True).click()

    # Step 2: three entities to choose from, the expired one listed apart; search, pick the shop.
    assert page.get_by_role("heading", name="Step 2 of 4: Select entity defined in file").is_visible()
    assert page.get_by_role("radio").count() == 3
    assert page.get_by_role("heading", name="Expired or unusable entries (1), for reference only").is_visible()
    page.get_by_label("Search entity ID or name").fill("shop")
    page.get_by_role("button", name="Search").click()
    assert page.get_by_role("radio").count() == 1
    page.get_by_role("radio", name="https://shop.example.com/saml").check()
    page.get_by_label("New entity name").fill("shop")
    page.get_by_role("button", name="Next", exact=True).click()

    # Step 3: the same certificate is listed for signing and for encryption; name the first.
    assert page.get_by_role("heading", name="Step 3 of 4: Certificate import").is_visible()
    page.get_by_label("Import certificate #1").check()
    page.get_by_label("Alias of certificate #1").fill("shop-cert")
    page.get_by_label("Import certificate #2").check()
    page.get_by_label("Alias of certificate #2").fill("shop-cert-2")
    page.get_by_role("button", name="Next", exact=True).click()

    # Step 4: one row, the first alias, "Signing and Encryption"; nothing stored yet.
    assert page.get_by_role("heading", name="Step 4 of 4: Confirm").is_visible()
    assert page.get_by_role("heading", name="Selected Certificate Data").is_visible()
    table = page.locator("table.selected-certificates")
    assert table.locator("thead th").all_inner_texts() == ["Alias", "Issued To", "Usage"]
    assert table.locator("tbody tr").count() == 1
    assert table.locator("tbody td").all_inner_texts() == ["shop-cert", "shop.example.com", "Signing and Encryption"]
    assert not Entity.objects.exists()
    page.get_by_role("button", name="Finish").click()

    assert page.get_by_role("heading", name="shop").is_visible()
    assert page.get_by_text("Entity 'shop' created from metadata.").is_visible()
    assert page.get_by_role("cell", name="https://shop.example.com/acs").is_visible()
    entity = Entity.objects.get()
    assert (entity.entity_type, entity.entity_id) == (EntityType.SAML2_SP, "https://shop.example.com/saml")
    assert entity.verification_certificate.alias == entity.encryption_certificate.alias == "shop-cert"
    assert list(KeystoreEntry.objects.values_list("alias", flat=True)) == ["shop-cert"]
    page.get_by_role("link", name="shop-cert").first.click()
    assert page.get_by_role("heading", name="shop-cert").is_visible()
