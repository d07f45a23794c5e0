"""Console pages for user directories, against the real slapd, and the embedded directory's users."""

import re

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from federation import directories
from federation.audit import MASK
from federation.models import AuditEvent, UserAttribute, UserDirectory
from federation.secretbox import seal_text, unseal_text

pytestmark = pytest.mark.django_db


def ldap_form(slapd, **extra):
    data = {
        "name": "corp",
        "description": "Staff directory",
        "hosts": slapd.host,
        "port": str(slapd.port),
        "security": "none",
        "verify_tls": "on",
        "bind_dn": slapd.service_dn,
        "bind_password": slapd.service_password,
        "search_root": slapd.base_dn,
        "scope": "subtree",
        "user_dn_start": "",
        "user_dn_end": "",
        "user_filter": "(uid=%s)",
        "group_search_root": slapd.groups_dn,
        "group_filter": "(member=%s)",
        "group_name_attribute": "cn",
        "connect_timeout": "2",
        "operation_timeout": "2",
        "action": "save",
    }
    data.update(extra)
    return data


@pytest.fixture
def corp(slapd):
    directory = UserDirectory(
        name="corp",
        kind="ldap",
        hosts=slapd.host,
        port=slapd.port,
        bind_dn=slapd.service_dn,
        bind_password=seal_text(slapd.service_password),
        search_root=slapd.base_dn,
        group_search_root=slapd.groups_dn,
        connect_timeout=2,
        operation_timeout=2,
    )
    directory.save()
    return directory


def raw_bind_password(pk):
    with connection.cursor() as cursor:
        cursor.execute("SELECT bind_password FROM federation_userdirectory WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def field_errors(response, name):
    return response.context["form"].errors.get(name, [])


# --- list, detail, contents ---------------------------------------------------------------------


@pytest.fixture
def embedded():
    return directories.get_embedded_directory()


@pytest.mark.ldap
def test_list_shows_directories_with_kind_hosts_and_test_action(admin_client, corp, embedded):
    page = admin_client.get("/directories/").content.decode()
    assert "Embedded directory" in page and "corp" in page
    assert f"<code>127.0.0.1:{corp.port}</code>" in page
    assert f'href="/directories/{corp.pk}/contents/">Test connection' in page
    assert f'href="/directories/{embedded.pk}/users/">Users' in page
    assert 'href="/directories/new/"' in page


@pytest.mark.ldap
def test_list_search_and_kind_filter(admin_client, corp, embedded):
    page = admin_client.get("/directories/", {"kind": "embedded"}).content.decode()
    assert "Embedded directory" in page and ">corp<" not in page
    page = admin_client.get("/directories/", {"q": "127.0.0"}).content.decode()
    assert ">corp<" in page and "Embedded directory" not in page


@pytest.mark.ldap
def test_auditor_sees_the_list_without_change_actions(auditor_client, corp):
    page = auditor_client.get("/directories/").content.decode()
    assert ">corp<" in page and "Test connection" in page
    assert 'href="/directories/new/"' not in page and f"/directories/{corp.pk}/edit/" not in page


@pytest.mark.ldap
def test_contents_page_shows_entries(auditor_client, corp, slapd):
    page = auditor_client.get(f"/directories/{corp.pk}/contents/").content.decode()
    assert "connected" in page and f"bound as {slapd.service_dn}" in page
    assert f"<code>uid=alice,{slapd.people_dn}</code>" in page and "alice.anderson@example.org" in page


@pytest.mark.ldap
def test_contents_page_shows_the_exact_error(admin_client, corp):
    corp.bind_password = seal_text("not-the-password")
    corp.save()
    page = admin_client.get(f"/directories/{corp.pk}/contents/").content.decode()
    assert "Connection test failed." in page and "The bind DN or password is wrong (invalid credentials)" in page


@pytest.mark.ldap
def test_contents_page_when_the_server_is_down(admin_client, corp, ldap_down):
    corp.hosts, corp.port = ldap_down
    corp.save()
    page = admin_client.get(f"/directories/{corp.pk}/contents/").content.decode()
    assert f"Cannot reach LDAP server 127.0.0.1:{corp.port} (connection refused)" in page


def test_embedded_contents_lists_users(admin_client, admin_user):
    embedded = directories.get_embedded_directory()
    page = admin_client.get(f"/directories/{embedded.pk}/contents/").content.decode()
    assert "The embedded directory holds 1 users (1 active)." in page and admin_user.username in page


# --- create / edit / delete ----------------------------------------------------------------------


@pytest.mark.ldap
def test_create_ldap_directory_verifies_then_saves_sealed(admin_client, slapd):
    response = admin_client.post("/directories/new/", ldap_form(slapd))
    assert response.status_code == 302
    directory = UserDirectory.objects.get(name="corp")
    assert response["Location"] == f"/directories/{directory.pk}/"
    assert directory.kind == "ldap" and directory.group_filter == "(member=%s)"
    stored = raw_bind_password(directory.pk)
    assert slapd.service_password not in stored and stored.startswith("sb1:")
    assert unseal_text(directory.bind_password) == slapd.service_password
    event = AuditEvent.objects.get(object_type="federation.UserDirectory", object_id=str(directory.pk))
    assert event.action == "create" and event.actor == "alice-admin"
    assert event.changes["bind_password"] == [None, MASK]
    assert slapd.service_password not in repr(event.changes)
    page = admin_client.get(response["Location"]).content.decode()
    assert "Connection test passed" in page and "set (stored encrypted, never shown)" in page


@pytest.mark.ldap
def test_create_with_the_server_down_shows_the_error_at_hosts_and_saves_nothing(admin_client, slapd, ldap_down):
    host, port = ldap_down
    before = AuditEvent.objects.count()
    response = admin_client.post("/directories/new/", ldap_form(slapd, hosts=host, port=str(port)))
    assert response.status_code == 200
    assert field_errors(response, "hosts") == [f"Cannot reach LDAP server 127.0.0.1:{port} (connection refused)"]
    assert f"Cannot reach LDAP server 127.0.0.1:{port} (connection refused)" in response.content.decode()
    assert not UserDirectory.objects.filter(name="corp").exists()
    assert AuditEvent.objects.count() == before


@pytest.mark.ldap
def test_create_with_a_wrong_bind_password_shows_the_error_at_the_password(admin_client, slapd):
    before = AuditEvent.objects.count()
    response = admin_client.post("/directories/new/", ldap_form(slapd, bind_password="Wrong-Bind-Secret"))
    assert response.status_code == 200
    assert field_errors(response, "bind_password") == ["The bind DN or password is wrong (invalid credentials)"]
    page = response.content.decode()
    assert "Wrong-Bind-Secret" not in page  # the typed password is not rendered back either
    assert not UserDirectory.objects.filter(name="corp").exists()
    assert AuditEvent.objects.count() == before


@pytest.mark.ldap
@pytest.mark.timeout(60)
def test_create_against_a_silent_server_fails_in_time(admin_client, slapd, ldap_blackhole):
    host, port = ldap_blackhole
    response = admin_client.post(
        "/directories/new/", ldap_form(slapd, hosts=host, port=str(port), connect_timeout="1", operation_timeout="1")
    )
    assert field_errors(response, "hosts") == [f"LDAP server 127.0.0.1:{port} did not answer within 1 s"]
    assert not UserDirectory.objects.filter(name="corp").exists()


@pytest.mark.ldap
def test_create_validates_fields_before_connecting(admin_client, slapd):
    response = admin_client.post(
        "/directories/new/",
        ldap_form(slapd, hosts="ldap://x.example.org", bind_dn="not a dn", user_filter="(uid=alice)", bind_password=""),
    )
    assert response.status_code == 200
    assert "Give host names, not URLs" in field_errors(response, "hosts")[0]
    assert "is not a valid DN" in field_errors(response, "bind_dn")[0]
    assert field_errors(response, "user_filter") == ["The user filter must contain %s (the login name)."]
    assert response.context["form"].report is None  # no connection attempted
    assert not UserDirectory.objects.filter(name="corp").exists()


@pytest.mark.ldap
def test_test_button_shows_contents_without_saving(admin_client, slapd):
    response = admin_client.post("/directories/new/", ldap_form(slapd, action="test"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "connected" in page and f"uid=bob,{slapd.people_dn}" in page
    assert not UserDirectory.objects.filter(name="corp").exists()
    assert slapd.service_password not in page


@pytest.mark.ldap
def test_every_field_has_help_text_and_the_password_is_never_rendered(admin_client, corp, slapd):
    response = admin_client.get(f"/directories/{corp.pk}/edit/")
    form = response.context["form"]
    assert all(field.help_text for field in form.fields.values())
    page = response.content.decode()
    assert "Leave empty to keep the stored password" in page
    assert re.search(r'<input type="password" name="bind_password"[^>]*>', page)
    assert not re.search(r'<input type="password" name="bind_password"[^>]*value=', page)
    for url in (
        "/directories/",
        f"/directories/{corp.pk}/",
        f"/directories/{corp.pk}/edit/",
        f"/directories/{corp.pk}/contents/",
        f"/directories/{corp.pk}/delete/",
        "/audit/",
    ):
        page = admin_client.get(url).content.decode()
        assert slapd.service_password not in page, url
        assert raw_bind_password(corp.pk) not in page, url


@pytest.mark.ldap
def test_edit_with_a_blank_password_keeps_the_stored_one(admin_client, corp, slapd):
    sealed = raw_bind_password(corp.pk)
    response = admin_client.post(
        f"/directories/{corp.pk}/edit/", ldap_form(slapd, bind_password="", description="Changed", operation_timeout="3")
    )
    assert response.status_code == 302
    corp.refresh_from_db()
    assert corp.description == "Changed" and corp.operation_timeout == 3
    assert raw_bind_password(corp.pk) == sealed
    event = AuditEvent.objects.filter(object_id=str(corp.pk), action="update").get()
    assert "bind_password" not in event.changes and event.changes["operation_timeout"] == ["2", "3"]


@pytest.mark.ldap
def test_edit_with_a_new_password_reseals_and_audits_it_masked(admin_client, corp, slapd):
    old = raw_bind_password(corp.pk)
    response = admin_client.post(f"/directories/{corp.pk}/edit/", ldap_form(slapd))
    assert response.status_code == 302
    assert raw_bind_password(corp.pk) != old
    event = AuditEvent.objects.filter(object_id=str(corp.pk), action="update").get()
    assert event.changes == {
        "bind_password": [MASK, "(changed)"],
        "description": ["", "Staff directory"],
        "group_filter": [
            "(|(member=%s)(uniqueMember=%s))",
            "(member=%s)",
        ],
    }


@pytest.mark.ldap
def test_edit_with_a_wrong_password_changes_nothing(admin_client, corp, slapd):
    sealed = raw_bind_password(corp.pk)
    before = AuditEvent.objects.count()
    response = admin_client.post(
        f"/directories/{corp.pk}/edit/", ldap_form(slapd, bind_password="Wrong-Again-1", description="Should not stick")
    )
    assert response.status_code == 200
    assert field_errors(response, "bind_password") == ["The bind DN or password is wrong (invalid credentials)"]
    corp.refresh_from_db()
    assert corp.description == "" and raw_bind_password(corp.pk) == sealed
    assert AuditEvent.objects.count() == before


@pytest.mark.ldap
def test_edit_pointing_at_a_dead_server_changes_nothing(admin_client, corp, slapd, ldap_down):
    host, port = ldap_down
    response = admin_client.post(f"/directories/{corp.pk}/edit/", ldap_form(slapd, hosts=host, port=str(port), bind_password=""))
    assert field_errors(response, "hosts") == [f"Cannot reach LDAP server 127.0.0.1:{port} (connection refused)"]
    corp.refresh_from_db()
    assert corp.port == slapd.port


@pytest.mark.ldap
def test_clearing_the_bind_dn_drops_the_password(admin_client, corp, slapd):
    # The test server lets anonymous binds read everything except passwords.
    response = admin_client.post(f"/directories/{corp.pk}/edit/", ldap_form(slapd, bind_dn="", bind_password=""))
    assert response.status_code == 302
    corp.refresh_from_db()
    assert corp.bind_dn == "" and raw_bind_password(corp.pk) == ""


def test_edit_embedded_directory_only_names_it(admin_client):
    embedded = directories.get_embedded_directory()
    response = admin_client.get(f"/directories/{embedded.pk}/edit/")
    assert set(response.context["form"].fields) == {"name", "description"}
    response = admin_client.post(f"/directories/{embedded.pk}/edit/", {"name": "Local users", "description": "ours"})
    assert response.status_code == 302
    embedded.refresh_from_db()
    assert embedded.name == "Local users" and embedded.kind == "embedded"


@pytest.mark.ldap
def test_delete_asks_first_then_deletes(admin_client, corp):
    page = admin_client.get(f"/directories/{corp.pk}/delete/").content.decode()
    assert "Delete corp?" in page and "cannot be undone" in page
    assert UserDirectory.objects.filter(pk=corp.pk).exists()
    response = admin_client.post(f"/directories/{corp.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/directories/"
    assert not UserDirectory.objects.filter(pk=corp.pk).exists()
    assert AuditEvent.objects.filter(object_id=str(corp.pk), action="delete").exists()


def test_the_embedded_directory_cannot_be_deleted(admin_client):
    embedded = directories.get_embedded_directory()
    response = admin_client.post(f"/directories/{embedded.pk}/delete/", follow=True)
    assert "cannot be deleted" in response.content.decode()
    assert UserDirectory.objects.filter(pk=embedded.pk).exists()


@pytest.mark.ldap
def test_auditors_get_403_on_every_change(auditor_client, corp, slapd, auditor_user):
    embedded = directories.get_embedded_directory()
    before = AuditEvent.objects.count()
    for url, data in [
        ("/directories/new/", ldap_form(slapd, name="sneaky")),
        (f"/directories/{corp.pk}/edit/", ldap_form(slapd, description="sneaky")),
        (f"/directories/{corp.pk}/delete/", {}),
        (f"/directories/{embedded.pk}/users/new/", {"username": "sneaky", "password1": "x" * 12, "password2": "x" * 12}),
        (f"/directories/{embedded.pk}/users/{auditor_user.pk}/", {"email": "x@example.org"}),
    ]:
        response = auditor_client.post(url, data)
        assert response.status_code == 403, url
        assert "read-only" in response.content.decode()
    assert auditor_client.get(f"/directories/{corp.pk}/edit/").status_code == 403
    assert auditor_client.get(f"/directories/{embedded.pk}/users/new/").status_code == 403
    corp.refresh_from_db()
    assert corp.description == "" and not UserDirectory.objects.filter(name="sneaky").exists()
    assert AuditEvent.objects.count() == before


# --- embedded directory users ----------------------------------------------------------------------


@pytest.mark.ldap
def test_users_page_is_only_for_the_embedded_directory(admin_client, corp):
    assert admin_client.get(f"/directories/{corp.pk}/users/").status_code == 404


def test_users_list_searches_and_paginates(admin_client, embedded, django_user_model):
    for n in range(30):
        django_user_model.objects.create_user(f"user{n:02d}", email=f"user{n:02d}@example.org")
    special = django_user_model.objects.create_user("zed", email="zed@example.org")
    UserAttribute.objects.create(user=special, name="employeeNumber", value="E-4242")
    page = admin_client.get(f"/directories/{embedded.pk}/users/").content.decode()
    assert "Page 1 of 2" in page and "alice-admin" in page and ">user23<" in page and ">user24<" not in page
    page = admin_client.get(f"/directories/{embedded.pk}/users/", {"page": 2}).content.decode()
    assert ">user24<" in page and ">zed<" in page and ">user23<" not in page
    page = admin_client.get(f"/directories/{embedded.pk}/users/", {"q": "E-4242"}).content.decode()
    assert ">zed<" in page and "user01" not in page
    page = admin_client.get(f"/directories/{embedded.pk}/users/", {"q": "user1"}).content.decode()
    assert "user15" in page and "user21" not in page and "Page 1 of" not in page


def test_create_user_with_password_and_groups(admin_client, embedded, django_user_model):
    Group.objects.get_or_create(name="staff")
    staff = Group.objects.get(name="staff")
    response = admin_client.post(
        f"/directories/{embedded.pk}/users/new/",
        {
            "username": "newbie",
            "first_name": "New",
            "last_name": "Bie",
            "email": "newbie@example.org",
            "is_active": "on",
            "groups": [staff.pk],
            "new_groups": "partners, sales",
            "password1": "Newbie-Secret-11",
            "password2": "Newbie-Secret-11",
            "attr-TOTAL_FORMS": "3",
            "attr-INITIAL_FORMS": "0",
            "attr-0-name": "employeeNumber",
            "attr-0-value": "3001",
            "attr-1-name": "mailAlias",
            "attr-1-value": "nb@example.org",
            "attr-2-name": "mailAlias",
            "attr-2-value": "new.bie@example.org",
        },
    )
    assert response.status_code == 302
    user = django_user_model.objects.get(username="newbie")
    assert sorted(user.groups.values_list("name", flat=True)) == ["partners", "sales", "staff"]
    found = directories.authenticate(embedded, "newbie", "Newbie-Secret-11")
    assert found == directories.DirectoryUser(embedded, "newbie", "newbie")
    assert directories.attributes(embedded, found, ["mailAlias", "employeeNumber"]) == {
        "mailAlias": ["nb@example.org", "new.bie@example.org"],
        "employeeNumber": ["3001"],
    }
    event = AuditEvent.objects.get(object_type="auth.User", object_repr="newbie")
    assert event.action == "create" and event.changes["password"] == [None, "(changed)"]
    assert "Newbie-Secret-11" not in repr(event.changes) and user.password not in repr(event.changes)


def test_create_user_refuses_weak_or_mismatched_passwords(admin_client, embedded, django_user_model):
    base = {"username": "weak", "attr-TOTAL_FORMS": "0", "attr-INITIAL_FORMS": "0"}
    response = admin_client.post(f"/directories/{embedded.pk}/users/new/", {**base, "password1": "short", "password2": "short"})
    assert "too short" in " ".join(response.context["form"].errors["password1"])
    response = admin_client.post(
        f"/directories/{embedded.pk}/users/new/", {**base, "password1": "Long-Enough-123", "password2": "Long-Enough-124"}
    )
    assert response.context["form"].errors["password2"] == ["The two passwords differ."]
    response = admin_client.post(f"/directories/{embedded.pk}/users/new/", base)
    assert response.context["form"].errors["password1"] == ["This field is required."]
    assert not django_user_model.objects.filter(username="weak").exists()


def test_edit_user_groups_and_attribute_rows(admin_client, embedded, django_user_model):
    user = django_user_model.objects.create_user("ed", password="Ed-Secret-1234", email="ed@example.org")
    old_hash = user.password
    staff = Group.objects.create(name="staff")
    sales = Group.objects.create(name="sales")
    user.groups.add(staff)
    keep = UserAttribute.objects.create(user=user, name="mailAlias", value="ed1@example.org")
    drop = UserAttribute.objects.create(user=user, name="mailAlias", value="ed2@example.org")
    page = admin_client.get(f"/directories/{embedded.pk}/users/{user.pk}/").content.decode()
    assert 'value="ed1@example.org"' in page and "Remove" in page
    response = admin_client.post(
        f"/directories/{embedded.pk}/users/{user.pk}/",
        {
            "first_name": "Ed",
            "last_name": "",
            "email": "ed@example.org",
            "is_active": "on",
            "groups": [sales.pk],
            "password1": "",
            "password2": "",
            "attr-TOTAL_FORMS": "5",
            "attr-INITIAL_FORMS": "2",
            "attr-0-id": str(keep.pk),
            "attr-0-name": "mailAlias",
            "attr-0-value": "ed1@example.org",
            "attr-1-id": str(drop.pk),
            "attr-1-name": "mailAlias",
            "attr-1-value": "ed2@example.org",
            "attr-1-DELETE": "on",
            "attr-2-name": "mailAlias",
            "attr-2-value": "ed3@example.org",
            "attr-3-name": "costCenter",
            "attr-3-value": "CC-7",
            "attr-4-name": "",
            "attr-4-value": "",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.password == old_hash  # blank new password keeps the old one
    assert list(user.groups.values_list("name", flat=True)) == ["sales"]
    rows = sorted(UserAttribute.objects.filter(user=user).values_list("name", "value"))
    assert rows == [("costCenter", "CC-7"), ("mailAlias", "ed1@example.org"), ("mailAlias", "ed3@example.org")]
    event = AuditEvent.objects.get(object_type="auth.User", object_repr="ed")
    assert event.changes["groups"] == ["staff", "sales"]
    assert event.changes["first_name"] == ["", "Ed"]
    assert "password" not in event.changes


def test_attribute_rows_are_validated(admin_client, embedded, django_user_model):
    user = django_user_model.objects.create_user("val", password="Val-Secret-1234")
    response = admin_client.post(
        f"/directories/{embedded.pk}/users/{user.pk}/",
        {
            "is_active": "on",
            "attr-TOTAL_FORMS": "2",
            "attr-INITIAL_FORMS": "0",
            "attr-0-name": "email",
            "attr-0-value": "x@example.org",
            "attr-1-name": "bad name",
            "attr-1-value": "x",
        },
    )
    assert response.status_code == 200
    errors = response.context["attribute_formset"].errors
    assert "built-in field" in errors[0]["name"][0] and "Start with a letter" in errors[1]["name"][0]
    assert not UserAttribute.objects.filter(user=user).exists()


def test_an_administrator_cannot_edit_a_superuser(admin_client, embedded, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="Root-Secret-123")
    response = admin_client.post(
        f"/directories/{embedded.pk}/users/{root.pk}/",
        {
            "is_active": "on",
            "password1": "Hijack-12345",
            "password2": "Hijack-12345",
            "attr-TOTAL_FORMS": "0",
            "attr-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 403
    root.refresh_from_db()
    assert root.check_password("Root-Secret-123")


def test_a_malformed_stored_host_list_is_shown_not_crashed_on(admin_client):
    directory = UserDirectory.objects.create(name="legacy", kind="ldap", hosts="ldap://old.example.org", search_root="dc=x")
    page = admin_client.get("/directories/").content.decode()
    assert "<code>ldap://old.example.org</code>" in page
    page = admin_client.get(f"/directories/{directory.pk}/contents/").content.decode()
    assert "Give host names, not URLs" in page


@pytest.mark.ldap
def test_ldaps_directory_trusting_a_keystore_ca_is_saved_from_the_console(admin_client, slapd, settings):
    from pathlib import Path

    from entities import services as keystore

    settings.DIRECTORY_TLS_CA_FILE = ""
    keystore.import_trusted_ca_chain("ldap-test-ca", Path(slapd.ca_file).read_bytes())
    form = ldap_form(slapd, port=str(slapd.tls_port), security="ldaps")
    page = admin_client.post("/directories/new/", form).content.decode()
    assert "server certificate was not accepted" in page and not UserDirectory.objects.filter(name="corp").exists()

    assert 'value="ldap-test-ca"' in admin_client.get("/directories/new/").content.decode()
    response = admin_client.post("/directories/new/", {**form, "tls_ca_alias": "ldap-test-ca"})
    assert response.status_code == 302
    assert UserDirectory.objects.get(name="corp").tls_ca_alias == "ldap-test-ca"
