"""The directory service (federation.directories) against the real slapd and the embedded directory."""

import logging
import time

import ldap
import pytest
from django.contrib.auth.models import Group as DjangoGroup

from federation import directories
from federation.models import UserAttribute, UserDirectory
from federation.secretbox import seal_text

pytestmark = pytest.mark.django_db

ALICE_MAILS = ["alice@example.org", "alice.anderson@example.org"]


def make_ldap_directory(slapd, name="corp", password=None, **extra):
    values = dict(
        name=name,
        kind=UserDirectory.Kind.LDAP,
        hosts=slapd.host,
        port=slapd.port,
        bind_dn=slapd.service_dn,
        bind_password=seal_text(slapd.service_password if password is None else password),
        search_root=slapd.base_dn,
        user_filter="(&(objectClass=inetOrgPerson)(uid=%s))",
        group_search_root=slapd.groups_dn,
        group_filter="(&(objectClass=groupOfNames)(member=%s))",
        connect_timeout=2,
        operation_timeout=2,
    )
    values.update(extra)
    directory = UserDirectory(**values)
    directory.full_clean()
    directory.save()
    return directory


@pytest.fixture
def corp(slapd):
    """Users found by a search with the service account."""
    return make_ldap_directory(slapd)


@pytest.fixture
def corp_dn_lookup(slapd):
    """Users found by DN lookup (start + login + end), as in the reference walkthrough."""
    return make_ldap_directory(slapd, name="corp-dn", search_root="", user_dn_start="uid=", user_dn_end=f",{slapd.people_dn}")


@pytest.fixture(params=["search", "dn_lookup"])
def any_ldap(request, slapd):
    return request.getfixturevalue("corp" if request.param == "search" else "corp_dn_lookup")


# --- LDAP: authenticate -------------------------------------------------------------------------


@pytest.mark.ldap
def test_authenticate_returns_the_users_dn(any_ldap, slapd):
    user = directories.authenticate(any_ldap, "alice", slapd.user("alice").password)
    assert user == directories.DirectoryUser(any_ldap, slapd.user("alice").dn, "alice")


@pytest.mark.ldap
def test_authenticate_with_a_non_ascii_password(any_ldap, slapd):
    user = directories.authenticate(any_ldap, "zoe", "zoë-Sécret-4")
    assert user is not None and user.identifier == slapd.user("zoe").dn


@pytest.mark.ldap
def test_wrong_password_is_refused(any_ldap, slapd):
    assert directories.authenticate(any_ldap, "alice", slapd.user("bob").password) is None
    assert directories.authenticate(any_ldap, "alice", slapd.user("alice").password + "x") is None


@pytest.mark.ldap
def test_unknown_user_is_refused(any_ldap, slapd):
    assert directories.authenticate(any_ldap, "mallory", "whatever-password") is None


@pytest.mark.ldap
def test_empty_password_never_authenticates(any_ldap, slapd):
    # The test server, like many real ones, lets a DN with an empty password bind anonymously...
    raw = ldap.initialize(slapd.uri)
    assert raw.simple_bind_s(slapd.user("alice").dn, "")[0] == ldap.RES_BIND
    assert raw.whoami_s() == ""
    raw.unbind_s()
    # ...so the service must refuse an empty password itself.
    assert directories.authenticate(any_ldap, "alice", "") is None
    assert directories.authenticate(any_ldap, "alice", None) is None
    assert directories.authenticate(any_ldap, "", slapd.user("alice").password) is None


@pytest.mark.ldap
@pytest.mark.parametrize("login", ["*", "alice)(uid=*", "al*", "alice,ou=people"])
def test_login_cannot_inject_filter_or_dn_syntax(any_ldap, slapd, login):
    assert directories.authenticate(any_ldap, login, slapd.user("alice").password) is None


@pytest.mark.ldap
def test_a_wrong_service_password_is_a_clear_configuration_error(slapd):
    directory = make_ldap_directory(slapd, password="not-the-password")
    with pytest.raises(directories.DirectoryError) as caught:
        directories.authenticate(directory, "alice", slapd.user("alice").password)
    assert caught.value.message == "The bind DN or password is wrong (invalid credentials)"
    assert caught.value.field == "bind_password"
    assert not isinstance(caught.value, directories.DirectoryUnavailable)


@pytest.mark.ldap
def test_a_bind_dn_without_a_password_does_not_bind_anonymously(slapd):
    directory = make_ldap_directory(slapd, password="")
    with pytest.raises(directories.DirectoryError) as caught:
        directories.find_user(directory, "(uid=%s)", "alice")
    assert caught.value.field == "bind_password" and "no bind password" in caught.value.message


# --- LDAP: find_user -----------------------------------------------------------------------------


@pytest.mark.ldap
@pytest.mark.parametrize("spec", ["(mail=%s)", "mail=%s"])
def test_find_user_by_mail(corp, slapd, spec):
    user = directories.find_user(corp, spec, "alice.anderson@example.org")
    assert user.identifier == slapd.user("alice").dn and user.login == "alice"


@pytest.mark.ldap
def test_find_user_in_a_dn_lookup_directory_reports_the_login(corp_dn_lookup, slapd):
    user = directories.find_user(corp_dn_lookup, "(employeeNumber=%s)", "1002")
    assert user.identifier == slapd.user("bob").dn and user.login == "bob"


@pytest.mark.ldap
def test_find_user_nobody(corp):
    assert directories.find_user(corp, "(mail=%s)", "nobody@example.org") is None


@pytest.mark.ldap
@pytest.mark.parametrize("value", ["*", "*)(uid=alice", "sales)(|(uid=*"])
def test_find_user_escapes_the_value(corp, value):
    # Unescaped, '*' would match every person (an ambiguity error) and the others would rewrite the filter.
    assert directories.find_user(corp, "(mail=%s)", value) is None


@pytest.mark.ldap
def test_find_user_with_several_matches_is_an_error_not_a_random_pick(corp):
    with pytest.raises(directories.AmbiguousUser) as caught:
        directories.find_user(corp, "(departmentNumber=%s)", "sales")
    assert "more than one entry" in caught.value.message
    assert "uid=bob" in caught.value.message or "uid=carol" in caught.value.message


@pytest.mark.ldap
def test_find_user_with_a_broken_spec_says_so(corp):
    with pytest.raises(directories.DirectoryError) as caught:
        directories.find_user(corp, "(mail=%s", "alice@example.org")
    assert "not a valid LDAP filter" in caught.value.message
    with pytest.raises(directories.DirectoryError):
        directories.find_user(corp, "(mail=alice@example.org)", "x")


# --- LDAP: attributes and groups ------------------------------------------------------------------


@pytest.mark.ldap
def test_attributes_are_multi_valued_and_dn_valued(any_ldap, slapd):
    alice = directories.authenticate(any_ldap, "alice", slapd.user("alice").password)
    values = directories.attributes(any_ldap, alice, ["mail", "manager", "employeeNumber", "dn", "telephoneNumber", "CN"])
    assert sorted(values["mail"]) == sorted(ALICE_MAILS)
    assert values["manager"] == [slapd.user("carol").dn]
    assert values["employeeNumber"] == ["1001"]
    assert values["dn"] == [slapd.user("alice").dn]
    assert values["telephoneNumber"] == []
    assert values["CN"] == ["Alice Anderson"]


@pytest.mark.ldap
def test_attributes_decode_utf8(corp):
    zoe = directories.find_user(corp, "(uid=%s)", "zoe")
    assert directories.attributes(corp, zoe, ["cn", "givenName"]) == {"cn": ["Zoë Zürcher"], "givenName": ["Zoë"]}


@pytest.mark.ldap
def test_attributes_of_a_vanished_entry_is_an_error(corp, slapd):
    ghost = directories.DirectoryUser(corp, f"uid=ghost,{slapd.people_dn}", "ghost")
    with pytest.raises(directories.DirectoryError) as caught:
        directories.attributes(corp, ghost, ["mail"])
    assert "no longer exists" in caught.value.message


@pytest.mark.ldap
def test_groups(any_ldap, slapd):
    alice = directories.authenticate(any_ldap, "alice", slapd.user("alice").password)
    assert directories.groups(any_ldap, alice) == [
        directories.Group(slapd.group_dn("fed-admins"), "fed-admins"),
        directories.Group(slapd.group_dn("staff"), "staff"),
    ]
    zoe = directories.find_user(any_ldap, "(uid=%s)", "zoe")
    assert directories.groups(any_ldap, zoe) == []


@pytest.mark.ldap
def test_groups_with_the_default_filter_and_search_root(slapd):
    directory = make_ldap_directory(slapd, name="defaults", group_search_root="", group_filter="(|(member=%s)(uniqueMember=%s))")
    bob = directories.find_user(directory, "(uid=%s)", "bob")
    assert [g.name for g in directories.groups(directory, bob)] == ["fed-auditors", "staff"]


# --- LDAP: test_connection ------------------------------------------------------------------------


@pytest.mark.ldap
def test_connection_lists_a_few_entries(corp, slapd):
    report = directories.test_connection(corp)
    assert report.ok, report.message
    assert report.server == f"127.0.0.1:{slapd.port}"
    assert f"bound as {slapd.service_dn}" in report.message
    assert "first 10 entries" in report.message
    dns = [dn for dn, _ in report.entries]
    assert len(dns) == 10 and dns[0] == slapd.base_dn and f"uid=alice,{slapd.people_dn}" in dns
    alice = dict(report.entries)[f"uid=alice,{slapd.people_dn}"]
    assert sorted(alice["mail"]) == sorted(ALICE_MAILS) and "userPassword" not in alice


@pytest.mark.ldap
def test_connection_with_a_wrong_bind_password(slapd):
    report = directories.test_connection(make_ldap_directory(slapd, password="wrong-password"))
    assert not report.ok and report.entries == []
    assert report.message == "The bind DN or password is wrong (invalid credentials)"
    assert report.field == "bind_password"


@pytest.mark.ldap
def test_connection_with_a_missing_search_root(slapd):
    report = directories.test_connection(make_ldap_directory(slapd, search_root=f"ou=nowhere,{slapd.base_dn}"))
    assert not report.ok and report.field == "search_root"
    assert report.message == (
        f"The search base 'ou=nowhere,{slapd.base_dn}' does not exist on the server (or {slapd.service_dn} may not read it)."
    )


@pytest.mark.ldap
def test_connection_with_a_broken_user_filter(slapd):
    report = directories.test_connection(make_ldap_directory(slapd, user_filter="(uid=%s"))
    assert not report.ok and report.field == "user_filter" and "not a valid LDAP filter" in report.message


# --- LDAP: outages, timeouts, fail-over, TLS ------------------------------------------------------


@pytest.mark.ldap
def test_server_down_is_a_clear_error(slapd, ldap_down):
    host, port = ldap_down
    directory = make_ldap_directory(slapd, hosts=host, port=port)
    with pytest.raises(directories.DirectoryUnavailable) as caught:
        directories.authenticate(directory, "alice", slapd.user("alice").password)
    assert caught.value.message == f"Cannot reach LDAP server 127.0.0.1:{port} (connection refused)"
    assert caught.value.field == "hosts"
    report = directories.test_connection(directory)
    assert not report.ok and report.message == f"Cannot reach LDAP server 127.0.0.1:{port} (connection refused)"


@pytest.mark.ldap
def test_server_down_in_a_dn_lookup_directory_is_not_a_wrong_password(slapd, ldap_down):
    host, port = ldap_down
    directory = make_ldap_directory(
        slapd, hosts=host, port=port, search_root="", user_dn_start="uid=", user_dn_end=f",{slapd.people_dn}"
    )
    with pytest.raises(directories.DirectoryUnavailable):
        directories.authenticate(directory, "alice", slapd.user("alice").password)


@pytest.mark.ldap
@pytest.mark.timeout(30)
def test_a_server_that_never_answers_times_out(slapd, ldap_blackhole):
    host, port = ldap_blackhole
    directory = make_ldap_directory(slapd, hosts=host, port=port, connect_timeout=1, operation_timeout=1)
    for call in (
        lambda: directories.authenticate(directory, "alice", slapd.user("alice").password),
        lambda: directories.find_user(directory, "(mail=%s)", "alice@example.org"),
    ):
        started = time.monotonic()
        with pytest.raises(directories.DirectoryUnavailable) as caught:
            call()
        assert time.monotonic() - started < 5
        assert caught.value.message == f"LDAP server 127.0.0.1:{port} did not answer within 1 s"
    report = directories.test_connection(directory)
    assert not report.ok and report.message == f"LDAP server 127.0.0.1:{port} did not answer within 1 s"


@pytest.mark.ldap
@pytest.mark.timeout(30)
def test_starttls_to_a_server_that_never_answers_times_out(slapd, ldap_blackhole):
    host, port = ldap_blackhole
    directory = make_ldap_directory(slapd, hosts=host, port=port, security="starttls", connect_timeout=1, operation_timeout=1)
    started = time.monotonic()
    report = directories.test_connection(directory)
    assert time.monotonic() - started < 5
    assert not report.ok and "did not answer within 1 s" in report.message


@pytest.mark.ldap
@pytest.mark.timeout(30)
def test_a_host_that_drops_connections_fails_over_after_the_connect_timeout(slapd, ldap_unreachable):
    host, port = ldap_unreachable
    directory = make_ldap_directory(slapd, hosts=f"{host}:{port}", port=1, connect_timeout=1, operation_timeout=5)
    started = time.monotonic()
    report = directories.test_connection(directory)
    assert time.monotonic() - started < 3
    assert not report.ok and report.message == f"Cannot reach LDAP server 127.0.0.1:{port} (no connection within 1 s)"
    directory.hosts = f"{host}:{port}, {slapd.host}:{slapd.port}"
    assert directories.authenticate(directory, "carol", slapd.user("carol").password).identifier == slapd.user("carol").dn


@pytest.mark.ldap
def test_hosts_are_tried_in_order(slapd, ldap_down):
    host, down_port = ldap_down
    directory = make_ldap_directory(slapd, hosts=f"{host}:{down_port}, {slapd.host}:{slapd.port}", port=1)
    user = directories.authenticate(directory, "bob", slapd.user("bob").password)
    assert user.identifier == slapd.user("bob").dn
    report = directories.test_connection(directory)
    assert report.ok and report.server == f"127.0.0.1:{slapd.port}"


@pytest.mark.ldap
def test_every_host_down_lists_each_reason(slapd, ldap_down):
    host, port = ldap_down
    directory = make_ldap_directory(slapd, hosts=f"{host}:{port}, {host}:{port}", port=389)
    with pytest.raises(directories.DirectoryUnavailable) as caught:
        directories.groups(directory, directories.DirectoryUser(directory, slapd.user("alice").dn, "alice"))
    assert caught.value.message.count("(connection refused)") == 2


@pytest.mark.ldap
@pytest.mark.parametrize("security", ["starttls", "ldaps"])
def test_tls_with_the_configured_ca(slapd, settings, security):
    settings.DIRECTORY_TLS_CA_FILE = slapd.ca_file
    port = slapd.tls_port if security == "ldaps" else slapd.port
    directory = make_ldap_directory(slapd, port=port, security=security)
    assert directories.authenticate(directory, "alice", slapd.user("alice").password).identifier == slapd.user("alice").dn
    assert directories.test_connection(directory).ok


@pytest.mark.ldap
@pytest.mark.parametrize("security", ["starttls", "ldaps"])
def test_tls_with_an_untrusted_certificate_is_refused_in_plain_words(slapd, settings, security):
    settings.DIRECTORY_TLS_CA_FILE = ""
    port = slapd.tls_port if security == "ldaps" else slapd.port
    directory = make_ldap_directory(slapd, port=port, security=security)
    with pytest.raises(directories.DirectoryUnavailable) as caught:
        directories.authenticate(directory, "alice", slapd.user("alice").password)
    assert caught.value.field == "security"
    assert caught.value.message.startswith(
        f"TLS with LDAP server 127.0.0.1:{port} failed: the server certificate was not accepted ("
    )
    # Switching verification off (a test setting) lets the same server through.
    directory.verify_tls = False
    assert directories.authenticate(directory, "alice", slapd.user("alice").password) is not None


@pytest.mark.ldap
def test_logs_carry_checkpoints_and_never_the_passwords(corp, slapd, caplog):
    caplog.set_level(logging.DEBUG, logger="federation.directories")
    directories.authenticate(corp, "alice", slapd.user("alice").password)
    directories.authenticate(corp, "alice", "wrong-Password-77")
    directories.test_connection(make_ldap_directory(slapd, name="bad", password="wrong-Bind-88"))
    checkpoints = [getattr(r, "checkpoint", "") for r in caplog.records]
    assert "DIRECTORY_AUTH_OK" in checkpoints and "DIRECTORY_AUTH_FAILED" in checkpoints
    assert "DIRECTORY_SERVICE_BIND_FAILED" in checkpoints
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (slapd.user("alice").password, "wrong-Password-77", "wrong-Bind-88", slapd.service_password):
        assert secret not in text


# --- embedded directory ---------------------------------------------------------------------------


@pytest.fixture
def embedded(django_user_model):
    directory = directories.get_embedded_directory()
    staff = DjangoGroup.objects.create(name="staff")
    sales = DjangoGroup.objects.create(name="sales")
    ann = django_user_model.objects.create_user(
        "ann", email="Ann@Example.org", password="ann-Secret-1", first_name="Ann", last_name="Archer"
    )
    ann.groups.add(staff, sales)
    UserAttribute.objects.create(user=ann, name="employeeNumber", value="2001")
    UserAttribute.objects.create(user=ann, name="mailAlias", value="ann@example.org")
    UserAttribute.objects.create(user=ann, name="mailAlias", value="a.archer@example.org")
    ben = django_user_model.objects.create_user("ben", email="ben@example.org", password="ben-Secret-2")
    ben.groups.add(staff)
    UserAttribute.objects.create(user=ben, name="department", value="sales")
    UserAttribute.objects.create(user=ann, name="department", value="sales")
    django_user_model.objects.create_user("gone", email="gone@example.org", password="gone-Secret-3", is_active=False)
    return directory


def test_the_data_migration_makes_exactly_one_embedded_directory():
    from importlib import import_module

    from django.apps import apps

    migration = import_module("federation.migrations.0003_embedded_directory")
    UserDirectory.objects.filter(kind=UserDirectory.Kind.EMBEDDED).delete()
    migration.create_embedded_directory(apps, None)
    migration.create_embedded_directory(apps, None)
    directory = UserDirectory.objects.get(kind=UserDirectory.Kind.EMBEDDED)
    assert directory.name == "Embedded directory"
    assert directories.get_embedded_directory() == directory


def test_get_embedded_directory_remakes_a_deleted_one():
    UserDirectory.objects.filter(kind=UserDirectory.Kind.EMBEDDED).delete()
    directory = directories.get_embedded_directory()
    assert directory.kind == UserDirectory.Kind.EMBEDDED and directory.name == "Embedded directory"
    assert directories.get_embedded_directory() == directory


def test_there_can_be_only_one_embedded_directory():
    from django.core.exceptions import ValidationError

    directories.get_embedded_directory()
    with pytest.raises(ValidationError, match="already an embedded directory"):
        UserDirectory(name="second", kind=UserDirectory.Kind.EMBEDDED).full_clean()


def test_embedded_authenticate(embedded):
    assert directories.authenticate(embedded, "ann", "ann-Secret-1") == directories.DirectoryUser(embedded, "ann", "ann")
    assert directories.authenticate(embedded, "ann", "ben-Secret-2") is None
    assert directories.authenticate(embedded, "nobody", "ann-Secret-1") is None
    assert directories.authenticate(embedded, "ann", "") is None


def test_embedded_inactive_users_cannot_authenticate(embedded):
    assert directories.authenticate(embedded, "gone", "gone-Secret-3") is None


def test_embedded_find_user(embedded):
    assert directories.find_user(embedded, "username=%s", "ben").identifier == "ben"
    assert directories.find_user(embedded, "email=%s", "ann@example.org").identifier == "ann"
    assert directories.find_user(embedded, "(employeeNumber=%s)", "2001").identifier == "ann"
    assert directories.find_user(embedded, "mailAlias=%s", "a.archer@example.org").identifier == "ann"
    assert directories.find_user(embedded, "last_name=%s", "Archer").identifier == "ann"
    assert directories.find_user(embedded, "email=%s", "nobody@example.org") is None
    assert directories.find_user(embedded, "email=%s", "gone@example.org") is None  # inactive
    assert directories.find_user(embedded, "username=%s", "%") is None


def test_embedded_find_user_ambiguous_and_bad_specs(embedded):
    with pytest.raises(directories.AmbiguousUser) as caught:
        directories.find_user(embedded, "department=%s", "sales")
    assert "ann" in caught.value.message and "ben" in caught.value.message
    with pytest.raises(directories.DirectoryError):
        directories.find_user(embedded, "(|(email=%s)(username=%s))", "ann")
    with pytest.raises(directories.DirectoryError):
        directories.find_user(embedded, "email=ann@example.org", "ann")


def test_embedded_attributes_and_groups(embedded):
    ann = directories.find_user(embedded, "username=%s", "ann")
    values = directories.attributes(embedded, ann, ["email", "first_name", "mailAlias", "employeenumber", "dn", "missing"])
    assert values == {
        "email": ["Ann@example.org"],  # create_user lower-cases the domain
        "first_name": ["Ann"],
        "mailAlias": ["ann@example.org", "a.archer@example.org"],
        "employeenumber": ["2001"],
        "dn": ["ann"],
        "missing": [],
    }
    assert directories.groups(embedded, ann) == [directories.Group("sales", "sales"), directories.Group("staff", "staff")]


def test_embedded_attributes_of_a_user_without_extra_attributes_and_of_a_deleted_user(embedded):
    from django.contrib.auth import get_user_model

    plain = get_user_model().objects.create_user("plain", email="", first_name="Pat")
    user = directories.DirectoryUser(embedded, "plain", "plain")
    assert directories.attributes(embedded, user, ["email", "first_name", "mailAlias", "dn"]) == {
        "email": [],
        "first_name": ["Pat"],
        "mailAlias": [],
        "dn": ["plain"],
    }
    plain.delete()
    with pytest.raises(directories.DirectoryError, match="no longer exists in the embedded directory"):
        directories.attributes(embedded, user, ["email"])


def test_embedded_test_connection_lists_users(embedded):
    report = directories.test_connection(embedded)
    assert report.ok and report.message == "The embedded directory holds 3 users (2 active)."
    shown = dict(report.entries)
    assert shown["ann"]["groups"] == ["sales", "staff"] and shown["gone"]["active"] == ["no"]


# --- CLI ------------------------------------------------------------------------------------------


@pytest.mark.ldap
def test_cli_lists_tests_and_finds(corp, slapd):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("directory", "list", stdout=out)
    assert f"corp\tldap\t127.0.0.1:{slapd.port}" in out.getvalue() and "Embedded directory\tembedded\t-" in out.getvalue()
    out = StringIO()
    call_command("directory", "test", "corp", stdout=out)
    assert f"  uid=alice,{slapd.people_dn}" in out.getvalue()
    out = StringIO()
    call_command(
        "directory", "find", "corp", "(mail=%s)", "alice@example.org", "-a", "mail", "-a", "manager", "--groups", stdout=out
    )
    text = out.getvalue()
    assert f"uid=alice,{slapd.people_dn}\t(login alice)" in text
    assert "mail: alice@example.org | alice.anderson@example.org" in text
    assert f"manager: uid=carol,{slapd.people_dn}" in text and "group: fed-admins" in text
    with pytest.raises(CommandError, match="No user of corp matches"):
        call_command("directory", "find", "corp", "(mail=%s)", "nobody@example.org", stdout=StringIO())
    with pytest.raises(CommandError, match="more than one entry"):
        call_command("directory", "find", "corp", "(departmentNumber=%s)", "sales", stdout=StringIO())
    corp.bind_password = seal_text("wrong")
    corp.save()
    with pytest.raises(CommandError, match=r"The bind DN or password is wrong \(invalid credentials\)"):
        call_command("directory", "test", "corp", stdout=StringIO())
    with pytest.raises(CommandError, match="No directory named 'nope'"):
        call_command("directory", "test", "nope", stdout=StringIO())


@pytest.mark.ldap
@pytest.mark.parametrize("security", ["starttls", "ldaps"])
def test_tls_trusts_a_ca_from_the_keystore(slapd, settings, security):
    from pathlib import Path

    from entities import services as keystore

    settings.DIRECTORY_TLS_CA_FILE = ""
    keystore.import_trusted_ca_chain("ldap-test-ca", Path(slapd.ca_file).read_bytes())
    port = slapd.tls_port if security == "ldaps" else slapd.port
    directory = make_ldap_directory(slapd, port=port, security=security, tls_ca_alias="ldap-test-ca")
    assert directories.authenticate(directory, "alice", slapd.user("alice").password).identifier == slapd.user("alice").dn
    assert directories.test_connection(directory).ok


@pytest.mark.ldap
def test_tls_ca_alias_missing_from_the_keystore_is_a_clear_error(slapd, settings):
    settings.DIRECTORY_TLS_CA_FILE = slapd.ca_file  # would work: the alias must win, and it is missing
    directory = make_ldap_directory(slapd, port=slapd.tls_port, security="ldaps", tls_ca_alias="no-such-ca")
    report = directories.test_connection(directory)
    assert not report.ok and report.field == "tls_ca_alias"
    assert report.message == "The TLS CA 'no-such-ca' is not a trusted certificate or CA in the keystore."
