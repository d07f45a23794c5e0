"""Console sign-in against the real slapd through django-auth-ldap, configured by console_ldap.py."""

import time

import ldap
import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from federation.console_ldap import BACKEND, RoleGroupType, configure_console_ldap, normalize_dn
from federation.roles import ADMINISTRATORS, AUDITORS

pytestmark = pytest.mark.django_db
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
CONSOLE_PAGE = "/directories/"


def configured(values, backends=(MODEL_BACKEND,)):
    """What configure_console_ldap puts into settings for these FEDERATION_* values."""
    settings_globals = {"AUTHENTICATION_BACKENDS": list(backends)}
    configure_console_ldap(settings_globals, lambda name, default=None: values.get(name, default))
    return settings_globals


def env_for(slapd, **extra):
    values = {
        "CONSOLE_LDAP_URI": slapd.uri,
        "CONSOLE_LDAP_BIND_DN": slapd.service_dn,
        "CONSOLE_LDAP_BIND_PASSWORD": slapd.service_password,
        "CONSOLE_LDAP_USER_SEARCH_BASE": slapd.people_dn,
        "CONSOLE_LDAP_USER_FILTER": "(uid=%(user)s)",
        "CONSOLE_LDAP_GROUP_SEARCH_BASE": slapd.groups_dn,
        "CONSOLE_LDAP_ADMIN_GROUP": slapd.group_dn("fed-admins"),
        "CONSOLE_LDAP_AUDITOR_GROUP": slapd.group_dn("fed-auditors"),
        "CONSOLE_LDAP_CONNECT_TIMEOUT": "2",
        "CONSOLE_LDAP_TIMEOUT": "2",
    }
    values.update(extra)
    return values


def apply(settings, values):
    for name, value in configured(values, settings.AUTHENTICATION_BACKENDS).items():
        setattr(settings, name, value)


@pytest.fixture
def console_ldap(settings, slapd):
    apply(settings, env_for(slapd))
    return slapd


def sign_in(username, password):
    client = Client()
    response = client.post("/accounts/login/", {"username": username, "password": password})
    return client, response


def roles(django_user_model, username):
    return set(django_user_model.objects.get(username=username).groups.values_list("name", flat=True))


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.ldap
def test_configuration_from_environment_values(slapd):
    result = configured(env_for(slapd, CONSOLE_LDAP_USER_FILTER="(&(objectClass=inetOrgPerson)(uid=%s))"))
    assert result["AUTHENTICATION_BACKENDS"] == [MODEL_BACKEND, BACKEND]
    assert result["AUTH_LDAP_SERVER_URI"] == slapd.uri
    assert result["AUTH_LDAP_BIND_DN"] == slapd.service_dn
    assert result["AUTH_LDAP_USER_SEARCH"].filterstr == "(&(objectClass=inetOrgPerson)(uid=%(user)s))"
    assert result["AUTH_LDAP_MIRROR_GROUPS"] == [ADMINISTRATORS, AUDITORS]
    assert result["AUTH_LDAP_CONNECTION_OPTIONS"][ldap.OPT_NETWORK_TIMEOUT] == 2.0
    assert result["AUTH_LDAP_CONNECTION_OPTIONS"][ldap.OPT_TIMEOUT] == 2.0
    assert result["AUTH_LDAP_USER_ATTR_MAP"] == {"first_name": "givenName", "last_name": "sn", "email": "mail"}
    assert configured(env_for(slapd), backends=[MODEL_BACKEND, BACKEND])["AUTHENTICATION_BACKENDS"] == [MODEL_BACKEND, BACKEND]


@pytest.mark.ldap
def test_group_search_base_defaults_to_the_admin_groups_parent(slapd):
    values = env_for(slapd)
    del values["CONSOLE_LDAP_GROUP_SEARCH_BASE"]
    assert configured(values)["AUTH_LDAP_GROUP_SEARCH"].base_dn == slapd.groups_dn


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"CONSOLE_LDAP_USER_SEARCH_BASE": ""}, "USER_DN_TEMPLATE or FEDERATION_CONSOLE_LDAP_USER_SEARCH_BASE"),
        ({"CONSOLE_LDAP_USER_FILTER": "(uid=alice)"}, "must contain %(user)s"),
        ({"CONSOLE_LDAP_GROUP_TYPE": "activeDirectory"}, "GROUP_TYPE must be one of"),
        ({"CONSOLE_LDAP_ADMIN_GROUP": "fed-admins"}, "ADMIN_GROUP is not a valid DN"),
        ({"CONSOLE_LDAP_TIMEOUT": "soon"}, "must be a number of seconds"),
    ],
)
@pytest.mark.ldap
def test_configuration_mistakes_are_explained(slapd, extra, message):
    with pytest.raises(ImproperlyConfigured, match=message.replace("(", r"\(").replace(")", r"\)")):
        configured(env_for(slapd, **extra))


def test_nothing_happens_without_a_uri():
    assert configured({}) == {"AUTHENTICATION_BACKENDS": [MODEL_BACKEND]}


def test_role_groups_match_dns_however_spelled():
    group_type = RoleGroupType(object(), {"cn=Fed-Admins, ou=groups,dc=example,dc=org": ADMINISTRATORS})
    assert group_type.group_name_from_info(("CN=fed-admins,OU=Groups,DC=example,DC=org", {})) == ADMINISTRATORS
    assert group_type.group_name_from_info(("cn=administrators,ou=groups,dc=example,dc=org", {})).startswith("ldap:")
    assert normalize_dn("uid=a,  ou=People") == normalize_dn("UID=A,ou=people")


# --- signing in against the real slapd ---------------------------------------------------------------


@pytest.mark.ldap
def test_ldap_administrator_signs_in_and_can_change_things(console_ldap, django_user_model):
    client, response = sign_in("alice", console_ldap.user("alice").password)
    assert response.status_code == 302 and response["Location"] == "/"
    user = django_user_model.objects.get(username="alice")
    assert (user.first_name, user.last_name, user.email) == ("Alice", "Anderson", "alice@example.org")
    assert roles(django_user_model, "alice") == {ADMINISTRATORS}
    page = client.get(CONSOLE_PAGE)
    assert page.status_code == 200 and "administrator" in page.content.decode()
    from federation.directories import get_embedded_directory

    embedded = get_embedded_directory()
    response = client.post(
        f"/directories/{embedded.pk}/users/new/",
        {
            "username": "made-by-alice",
            "is_active": "on",
            "password1": "Made-By-Alice-1",
            "password2": "Made-By-Alice-1",
            "attr-TOTAL_FORMS": "0",
            "attr-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    assert django_user_model.objects.filter(username="made-by-alice").exists()


@pytest.mark.ldap
def test_ldap_auditor_signs_in_read_only(console_ldap, django_user_model):
    client, response = sign_in("bob", console_ldap.user("bob").password)
    assert response.status_code == 302
    assert roles(django_user_model, "bob") == {AUDITORS}
    page = client.get(CONSOLE_PAGE)
    assert page.status_code == 200 and "auditor (read-only)" in page.content.decode()
    from federation.directories import get_embedded_directory

    response = client.post(
        f"/directories/{get_embedded_directory().pk}/users/new/",
        {"username": "made-by-bob", "password1": "Made-By-Bob-12", "password2": "Made-By-Bob-12"},
    )
    assert response.status_code == 403 and "read-only" in response.content.decode()
    assert not django_user_model.objects.filter(username="made-by-bob").exists()


@pytest.mark.ldap
def test_ldap_user_in_neither_group_signs_in_but_gets_403(console_ldap, django_user_model):
    client, response = sign_in("carol", console_ldap.user("carol").password)
    assert response.status_code == 302
    assert roles(django_user_model, "carol") == set()
    page = client.get(CONSOLE_PAGE)
    assert page.status_code == 403 and "no console role" in page.content.decode()


@pytest.mark.ldap
def test_wrong_or_empty_password_fails_with_the_normal_message(console_ldap, django_user_model):
    for password in ("wrong-password", console_ldap.user("bob").password, ""):
        client, response = sign_in("alice", password)
        assert response.status_code == 200
        assert "did not match" in response.content.decode()
        assert "_auth_user_id" not in client.session
    assert not django_user_model.objects.filter(username="alice").exists()


@pytest.mark.ldap
def test_non_ascii_password(console_ldap):
    _, response = sign_in("zoe", "zoë-Sécret-4")
    assert response.status_code == 302


@pytest.mark.ldap
def test_removal_from_the_ldap_group_removes_the_role_at_next_sign_in(console_ldap, django_user_model):
    admin_group = console_ldap.group_dn("fed-admins")
    frank = console_ldap.user("frank")
    client, _ = sign_in("frank", frank.password)
    assert roles(django_user_model, "frank") == {ADMINISTRATORS}
    assert client.get(CONSOLE_PAGE).status_code == 200
    # A Django group given in the console is not an LDAP role and survives the sync.
    django_user_model.objects.get(username="frank").groups.add(Group.objects.create(name="helpdesk"))
    conn = console_ldap.admin_connection()
    conn.modify_s(admin_group, [(ldap.MOD_DELETE, "member", [frank.dn.encode()])])
    try:
        client, response = sign_in("frank", frank.password)
        assert response.status_code == 302
        assert roles(django_user_model, "frank") == {"helpdesk"}
        assert client.get(CONSOLE_PAGE).status_code == 403
    finally:
        conn.modify_s(admin_group, [(ldap.MOD_ADD, "member", [frank.dn.encode()])])
        conn.unbind_s()
    sign_in("frank", frank.password)
    assert roles(django_user_model, "frank") == {ADMINISTRATORS, "helpdesk"}


@pytest.mark.ldap
def test_user_dn_template(settings, slapd, django_user_model):
    values = env_for(slapd, CONSOLE_LDAP_USER_DN_TEMPLATE=f"uid=%(user)s,{slapd.people_dn}")
    del values["CONSOLE_LDAP_USER_SEARCH_BASE"]
    apply(settings, values)
    assert "AUTH_LDAP_USER_SEARCH" not in configured(values)
    client, response = sign_in("bob", slapd.user("bob").password)
    assert response.status_code == 302 and roles(django_user_model, "bob") == {AUDITORS}
    _, response = sign_in("bob", "wrong-password")
    assert response.status_code == 200


@pytest.mark.ldap
def test_starttls_with_the_ca_file(settings, slapd):
    apply(settings, env_for(slapd, CONSOLE_LDAP_START_TLS="true", CONSOLE_LDAP_CA_FILE=slapd.ca_file))
    _, response = sign_in("alice", slapd.user("alice").password)
    assert response.status_code == 302


@pytest.mark.ldap
def test_ldaps_with_an_untrusted_certificate_fails_cleanly(settings, slapd, admin_user):
    apply(settings, env_for(slapd, CONSOLE_LDAP_URI=slapd.ldaps_uri, CONSOLE_LDAP_CA_FILE=""))
    _, response = sign_in("alice", slapd.user("alice").password)
    assert response.status_code == 200 and "did not match" in response.content.decode()
    apply(settings, env_for(slapd, CONSOLE_LDAP_URI=slapd.ldaps_uri, CONSOLE_LDAP_CA_FILE=slapd.ca_file))
    _, response = sign_in("alice", slapd.user("alice").password)
    assert response.status_code == 302


@pytest.mark.ldap
def test_ldap_down_fails_cleanly_and_django_users_still_sign_in(settings, slapd, ldap_down, admin_user):
    host, port = ldap_down
    apply(settings, env_for(slapd, CONSOLE_LDAP_URI=f"ldap://{host}:{port}"))
    client, response = sign_in("alice", slapd.user("alice").password)
    assert response.status_code == 200 and "did not match" in response.content.decode()
    client, response = sign_in(admin_user.username, "correct-horse-battery")
    assert response.status_code == 302
    assert client.get(CONSOLE_PAGE).status_code == 200


@pytest.mark.ldap
@pytest.mark.timeout(60)
def test_silent_ldap_server_does_not_hang_the_login_page(settings, slapd, ldap_blackhole, admin_user):
    host, port = ldap_blackhole
    apply(settings, env_for(slapd, CONSOLE_LDAP_URI=f"ldap://{host}:{port}", CONSOLE_LDAP_TIMEOUT="1"))
    started = time.monotonic()
    _, response = sign_in("alice", slapd.user("alice").password)
    assert time.monotonic() - started < 10
    assert response.status_code == 200 and "did not match" in response.content.decode()
    _, response = sign_in(admin_user.username, "correct-horse-battery")
    assert response.status_code == 302
