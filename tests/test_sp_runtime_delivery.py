"""After a valid assertion: user identification (Name ID, attribute, XPath) against the embedded directory and the
real slapd, remote provisioning round trips, the SP session and its lifetimes, and the delivery to the application
(the header check endpoint for nginx auth_request, the open-format cookie, persisted attributes, attribute mapping)."""

from datetime import timedelta

import pytest

from federation import opencookie, sp_runtime
from federation.models import SpRequestState, SpSession
from federation.saml.common import utc_now
from partnerships import services as partnership_services
from tests import sp_runtime_support as support
from tests.sp_runtime_support import (
    CHECK_PATH,
    TARGET,
    make_world,
    sso,
    trace_lines,
)
from tests.test_directories import make_ldap_directory

pytestmark = pytest.mark.django_db


@pytest.fixture
def idp_key():
    return support.keys()[0]


@pytest.fixture
def sp_key():
    return support.keys()[1]


@pytest.fixture
def world(db, django_user_model):
    return support.default_world(django_user_model)


@pytest.fixture
def idp(tmp_path):
    """The pysaml2 IdP of the partnership (it does not require signed AuthnRequests)."""
    return support.pysaml2_idp(tmp_path, *support.keys())


PROVISIONING = "https://accounts.example.org/signup"
COOKIE_PASSWORD = "application cookie password 7"


def check(client, **headers):
    return client.get(CHECK_PATH, **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()})


# --- User identification -----------------------------------------------------------------------------------------------


def test_user_identified_by_an_attribute(client, world, idp, django_user_model):
    django_user_model.objects.create_user("bob", email="bob@example.org")
    world.reactivate(
        user_identification={
            "identity_source": "attribute",
            "identity_attribute": "userEmail",
            "search_specs": [{"directory": "Embedded directory", "search_spec": "email=%s"}],
        }
    )
    response = sso(client, idp, name_id="opaque-7f3a", identity={"userEmail": ["bob@example.org"], "groups": ["staff"]})
    assert response.status_code == 302 and SpSession.objects.get().username == "bob"
    assert SpSession.objects.get().name_id == "opaque-7f3a"


def test_user_identified_by_an_xpath_query(client, world, idp, django_user_model):
    django_user_model.objects.create_user("carol")
    world.reactivate(
        user_identification={
            "identity_source": "xpath",
            "identity_xpath": "//saml:Attribute[@Name='principalName']/saml:AttributeValue/text()",
        }
    )
    response = sso(client, idp, name_id="opaque-1", identity={"principalName": ["carol"]})
    assert response.status_code == 302 and SpSession.objects.get().username == "carol"


def test_a_broken_xpath_query_is_a_configuration_error(client, world, idp):
    world.reactivate(user_identification={"identity_source": "xpath", "identity_xpath": "//saml:Attribute[@Name='x']"})
    # Valid XPath selecting nothing: the user is simply not found.
    assert sso(client, idp).status_code == 403
    assert trace_lines("SSOSAML2SP_USER_NOT_FOUND", "None")


@pytest.fixture
def corp(slapd, db):
    return make_ldap_directory(slapd)


def test_users_found_in_ldap_and_the_first_directory_that_knows_them_wins(
    client, db, idp, idp_key, sp_key, corp, django_user_model
):
    """Two directories: slapd first with uid=%s, then the embedded one. alice is in both: slapd wins; dora only in
    the embedded directory is found there."""
    django_user_model.objects.create_user("alice")
    django_user_model.objects.create_user("dora")
    make_world(
        idp_key,
        sp_key,
        directories=("corp", "Embedded directory"),
        settings={
            "user_identification": {
                "search_specs": [
                    {"directory": "corp", "search_spec": "(&(objectClass=inetOrgPerson)(uid=%s))"},
                    {"directory": "Embedded directory", "search_spec": "username=%s"},
                ]
            }
        },
    )
    assert sso(client, idp, name_id="alice").status_code == 302
    session = SpSession.objects.get()
    assert (session.directory, session.user_dn, session.username) == ("corp", "uid=alice,ou=people,dc=example,dc=org", "alice")
    assert sso(client, idp, name_id="dora").status_code == 302
    assert SpSession.objects.get().directory == "Embedded directory"  # one session per browser: alice's was ended
    # A value that would change the LDAP filter is escaped: nobody is found.
    assert sso(client, idp, name_id="*").status_code == 403


def test_users_found_in_ldap_by_an_attribute_and_by_xpath(client, db, idp, idp_key, sp_key, corp):
    world = make_world(
        idp_key,
        sp_key,
        directories=("corp",),
        settings={
            "user_identification": {
                "identity_source": "attribute",
                "identity_attribute": "userEmail",
                "search_specs": [{"directory": "corp", "search_spec": "(mail=%s)"}],
            }
        },
    )
    response = sso(client, idp, name_id="opaque-1", identity={"userEmail": ["alice.anderson@example.org"]})
    assert response.status_code == 302 and SpSession.objects.get().user_dn == "uid=alice,ou=people,dc=example,dc=org"
    world.reactivate(
        user_identification={
            "identity_source": "xpath",
            "identity_xpath": "string(//saml:Attribute[@Name='employee']/saml:AttributeValue)",
            "search_specs": [{"directory": "corp", "search_spec": "employeeNumber=%s"}],
        }
    )
    assert sso(client, idp, name_id="opaque-2", identity={"employee": ["1001"]}).status_code == 302
    assert SpSession.objects.get().username == "alice"


def test_a_directory_that_does_not_answer_stops_the_sign_in(
    client, db, idp, idp_key, sp_key, slapd, ldap_down, django_user_model
):
    django_user_model.objects.create_user("alice")
    host, port = ldap_down
    make_ldap_directory(slapd, name="down", hosts=host, port=port)
    make_world(
        idp_key,
        sp_key,
        directories=("down", "Embedded directory"),
        settings={
            "user_identification": {
                "search_specs": [
                    {"directory": "down", "search_spec": "uid=%s"},
                    {"directory": "Embedded directory", "search_spec": "username=%s"},
                ]
            }
        },
    )
    response = sso(client, idp)
    assert response.status_code == 500 and not SpSession.objects.exists()
    assert trace_lines("SSOSAML2SP_DIRECTORY_DOWN", "directory 'down'")


# --- Remote provisioning -----------------------------------------------------------------------------------------------


def provisioning_world(world, delivery, **application):
    return world.reactivate(
        application={
            "provisioning_type": "remote",
            "provisioning_url": PROVISIONING,
            "provisioning_delivery": delivery,
            "cookie_name": "FEDPROV",
            "cookie_domain": ".example.org",
            "cookie_password": COOKIE_PASSWORD,
            **application,
        }
    )


def test_provisioning_round_trip_with_an_open_format_cookie(client, world, idp, django_user_model):
    provisioning_world(world, "open_format_cookie")
    response = sso(client, idp, name_id="newcomer")
    assert response.status_code == 302 and response["Location"] == PROVISIONING
    assert not SpSession.objects.exists()
    state = response.cookies[sp_runtime.PROVISIONING_COOKIE]
    assert state["httponly"] and state["max-age"] == 15 * 60
    data = opencookie.decode(response.cookies["FEDPROV"].value, COOKIE_PASSWORD)
    assert data.properties["LoginID"] == "newcomer" and data.properties["NameID"] == "newcomer"
    assert data.attributes["groups"] == ["admins", "staff"]
    assert trace_lines("SSOSAML2SP_PROVISIONING_REDIRECT")
    # The provisioning application creates the account and sends the browser back to the ACS.
    django_user_model.objects.create_user("newcomer")
    back = client.get("/affwebservices/public/saml2assertionconsumer")
    assert back.status_code == 302 and back["Location"] == TARGET
    assert SpSession.objects.get().username == "newcomer"
    assert back.cookies[sp_runtime.PROVISIONING_COOKIE].value == "" and back.cookies["FEDPROV"].value == ""  # deleted
    assert not SpRequestState.objects.exists()
    assert trace_lines("SSOSAML2SP_PROVISIONING_RETURN")
    # The state is used once.
    client.cookies[sp_runtime.PROVISIONING_COOKIE] = state.value
    again = client.get("/affwebservices/public/saml2provisioningreturn")
    assert again.status_code == 400 and trace_lines("SSOSAML2SP_PROVISIONING_NO_STATE")


def test_provisioning_with_http_headers_and_a_user_still_missing(client, world, idp):
    provisioning_world(world, "http_headers", header_prefix="Fed-")
    assert sso(client, idp, name_id="newcomer")["Location"] == PROVISIONING
    # The provisioning application's location asks the check endpoint with ?provisioning=1.
    answer = client.get(CHECK_PATH, {"provisioning": "1"})
    assert answer.status_code == 200
    assert answer["Fed-LOGINID"] == "newcomer" and answer["Fed-NAMEID"] == "newcomer" and answer["Fed-groups"] == "admins,staff"
    # The application's own location (no ?provisioning) sees no session: a pending provisioning is not a sign-in.
    assert client.get(CHECK_PATH).status_code == 401
    back = client.get("/affwebservices/public/saml2provisioningreturn")
    assert back.status_code == 403 and b"Your account was not found" in back.content
    assert trace_lines("SSOSAML2SP_USER_NOT_FOUND", "after provisioning, still no user for 'newcomer'")


def test_provisioning_return_without_state(client, world):
    response = client.get("/affwebservices/public/saml2provisioningreturn")
    assert response.status_code == 400 and trace_lines("SSOSAML2SP_PROVISIONING_NO_STATE")


# --- The header check endpoint (nginx auth_request) ------------------------------------------------------------------


def headers_world(world, **application):
    return world.reactivate(application={"redirect_mode": "http_headers", "header_prefix": "Fed-", **application})


def test_session_check_answers_with_the_identity_headers(client, world, idp):
    headers_world(world)
    assert check(client).status_code == 401
    sso(client, idp, identity={"groups": ["admins", "staff"], "userEmail": ["alice@example.org"], "urn:oid:2.5.4.42": ["Alice"]})
    answer = check(client)
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    assert answer["Fed-NAMEID"] == "alice"
    assert answer["Fed-FORMAT"] == "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    assert answer["Fed-AUTHNCONTEXT"] == "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
    assert answer["Fed-groups"] == "admins,staff" and answer["Fed-userEmail"] == "alice@example.org"
    # An attribute name that cannot be a header name is left out (and traced), never mangled.
    assert not any("urn" in name for name in answer.headers)
    assert trace_lines("SSOSAML2SP_HEADER_SKIPPED", "urn:oid:2.5.4.42")
    as_json = client.get(CHECK_PATH, {"format": "json"}).json()
    assert as_json["name_id"] == "alice" and as_json["attributes"]["groups"] == ["admins", "staff"]
    # Any method: the proxy's subrequest takes the original request's.
    assert client.post(CHECK_PATH).status_code == 200


def test_session_check_refuses_a_request_carrying_forged_prefixed_headers(client, world, idp):
    headers_world(world)
    sso(client, idp)
    assert check(client, **{"Fed-NAMEID": "admin"}).status_code == 403
    assert check(client, **{"fed-role": "superuser"}).status_code == 403  # header names ignore case
    assert check(client, **{"X-Other": "fine"}).status_code == 200
    assert trace_lines("SSOSAML2SP_SESSIONCHECK_FORGED")


def test_attribute_mapping_gives_the_application_its_own_attributes(client, world, idp):
    headers_world(
        world,
        attribute_mapping_enabled=True,
        attribute_mappings=[
            {"name": "FullName", "expression": '#{attr["lastName"]}, #{attr["firstName"]}'},
            {"name": "Groups", "expression": '#{attr["groups"]}'},
            {"name": "Role", "expression": '#{attr["groups"] == "admins" ? "admin" : "user"}'},
        ],
    )
    sso(client, idp, identity={"lastName": ["Anderson"], "firstName": ["Alice"], "groups": ["admins", "staff"], "secret": ["x"]})
    answer = check(client)
    assert (answer["Fed-FullName"], answer["Fed-Groups"], answer["Fed-Role"]) == ("Anderson, Alice", "admins,staff", "admin")
    assert "Fed-secret" not in answer and "Fed-groups" in answer  # header names ignore case: Groups is groups
    assert SpSession.objects.get().attributes == {
        "FullName": ["Anderson, Alice"],
        "Groups": ["admins", "staff"],
        "Role": ["admin"],
    }


def test_values_with_line_breaks_cannot_split_a_header(client, world, idp):
    headers_world(world)
    sso(client, idp, identity={"note": ["line one\r\nFed-NAMEID: admin"]})
    answer = check(client)
    assert answer["Fed-note"] == "line one Fed-NAMEID: admin" and answer["Fed-NAMEID"] == "alice"


def test_no_data_mode_keeps_no_attributes(client, world, idp):
    sso(client, idp)
    assert SpSession.objects.get().attributes == {}
    answer = check(client)
    assert answer.status_code == 200 and answer["Fed-NAMEID"] == "alice" and "Fed-groups" not in answer


def test_persisted_attributes_are_kept_in_the_session(client, world, idp):
    world.reactivate(application={"redirect_mode": "persist_attributes"})
    sso(client, idp)
    assert SpSession.objects.get().attributes["groups"] == ["admins", "staff"]
    assert client.get(CHECK_PATH, {"format": "json"}).json()["attributes"]["userEmail"] == ["alice@example.org"]


# --- The open-format cookie to the target ----------------------------------------------------------------------------


def test_open_format_cookie_delivery(client, world, idp):
    world.reactivate(
        application={
            "redirect_mode": "open_format_cookie",
            "cookie_name": "FEDATTR",
            "cookie_domain": ".example.org",
            "cookie_password": COOKIE_PASSWORD,
            "cookie_algorithm": "aes128-gcm",
        }
    )
    response = sso(client, idp)
    assert response.status_code == 302 and response["Location"] == TARGET
    cookie = response.cookies["FEDATTR"]
    assert cookie["domain"] == ".example.org" and cookie["httponly"] and cookie["path"] == "/"
    data = opencookie.decode(cookie.value, COOKIE_PASSWORD)
    session = SpSession.objects.get()
    assert data.properties == {
        "NameID": "alice",
        "NameIDFormat": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        "SessionID": session.key,
        "AuthnContext": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
        "UserDN": "alice",
        "LoginID": "alice",
        "ExpiresOn": session.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert data.attributes == {"principalName": ["alice"], "groups": ["admins", "staff"], "userEmail": ["alice@example.org"]}
    with pytest.raises(opencookie.OpenCookieError):
        opencookie.decode(cookie.value, "not the password")


def test_open_format_cookie_too_large_for_a_browser_is_refused(client, world, idp):
    world.reactivate(application={"redirect_mode": "open_format_cookie", "cookie_password": COOKIE_PASSWORD})
    response = sso(client, idp, identity={"big": ["x" * 5000]})
    assert response.status_code == 500 and not SpSession.objects.exists()
    assert trace_lines("SSOSAML2SP_CONFIGURATION", "browsers drop cookies over 4096")


# --- The SP session --------------------------------------------------------------------------------------------------


def test_session_idle_and_maximum_lifetime(client, world, idp):
    world.reactivate(application={"session_idle_minutes": 10, "session_max_minutes": 30})
    sso(client, idp)
    cookie = client.cookies[sp_runtime.SESSION_COOKIE].value
    session = SpSession.objects.get()
    assert session.expires_at - session.created_at <= timedelta(minutes=30, seconds=1)
    now = utc_now()
    assert sp_runtime.session_check(cookie, now=now + timedelta(minutes=9)).status == 200  # touches the idle timer
    assert sp_runtime.session_check(cookie, now=now + timedelta(minutes=18)).status == 200
    assert sp_runtime.session_check(cookie, now=now + timedelta(minutes=29, seconds=50)).status == 401  # idle since 18
    SpSession.objects.update(idle_expires_at=now + timedelta(hours=1))
    assert sp_runtime.session_check(cookie, now=now + timedelta(minutes=31)).status == 401  # past the maximum


def test_session_of_a_deactivated_partnership_is_ended(client, world, idp):
    sso(client, idp)
    partnership_services.deactivate(world.partnership)
    assert check(client).status_code == 401 and not SpSession.objects.exists()


def test_a_new_sign_in_replaces_the_browsers_session(client, world, idp):
    sso(client, idp)
    first = SpSession.objects.get().pk
    sso(client, idp)
    assert list(SpSession.objects.values_list("pk", flat=True)) != [first] and SpSession.objects.count() == 1
    assert sp_runtime.end_session(client.cookies[sp_runtime.SESSION_COOKIE].value)
    assert check(client).status_code == 401
