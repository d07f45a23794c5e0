"""The name-ID management job API at /affwebservices/saml2nidws/ (status codes and bodies as docs/name-id-management.md
shows them), the console pages and `manage.py nameid`. Jobs are only stored here (the test transaction never
commits, so nothing is queued); processing is in test_name_id_jobs.py and test_name_id_workers.py."""

import base64
import json
import uuid

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import include, path

from federation import nid_urls
from federation.roles import ADMINISTRATORS
from federation.urls import urlpatterns as project_urlpatterns
from partnerships import name_id_jobs
from partnerships.models import NameIdJob
from tests.conftest import PASSWORD
from tests.name_id_partner import OUR_IDP_ID, PARTNER_SP_ID, clear_runtime_caches, closed_port_url, link, make_idp_side
from tests.saml.credentials import make_credential

JOBS = "/affwebservices/saml2nidws/jobs"

# The console pages are mounted by the project URL conf as name-id/ (see docs/name-id-management.md); here too.
urlpatterns = [*project_urlpatterns, path("name-id/", include(nid_urls.console))]


@pytest.fixture(autouse=True)
def quick_passwords(settings):
    # Every API call checks a password; the default hasher's million rounds would dominate these tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    clear_runtime_caches()
    yield
    clear_runtime_caches()


@pytest.fixture
def partner(db):
    credential = make_credential("rsa", PARTNER_SP_ID)
    partnership, _ = make_idp_side(closed_port_url(), credential.cert_pem)
    link(OUR_IDP_ID, PARTNER_SP_ID, "alice", "alice-pid-1")
    return partnership


def basic(user, password=PASSWORD):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def post(client, body, user="alice-admin", url=JOBS, content_type="application/json", **headers):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(url, data, content_type=content_type, **basic(user), **headers)


TERMINATE = {"UserDN": "alice", "OperationType": "sp", "ProviderID": PARTNER_SP_ID}


def test_submit_then_poll(admin_user, partner):
    client = Client(enforce_csrf_checks=True)  # a machine API: Basic authentication, no CSRF token
    response = post(client, TERMINATE)
    assert response.status_code == 201
    body = response.json()
    job = NameIdJob.objects.get()
    assert response["Location"] == f"http://testserver/affwebservices/saml2nidws/jobs/{job.uuid}" == body["url"]
    assert body["JobID"] == str(job.uuid) and body["State"] == "PENDING" and body["Operation"] == "terminate"
    assert body["Attempts"] == 0 and body["MaxAttempts"] == 3 and body["LastError"] is None and body["Partnership"] == "idp-to-sp"
    assert job.created_by == "api:alice-admin"

    polled = client.get(response["Location"], **basic("alice-admin"))
    assert polled.status_code == 200 and polled.json()["State"] == "PENDING"
    NameIdJob.objects.filter(pk=job.pk).update(state="FAILED", attempts=3, last_error="the partner is down")
    polled = client.get(response["Location"], **basic("alice-admin")).json()
    assert (polled["State"], polled["Attempts"], polled["LastError"]) == ("FAILED", 3, "the partner is down")


def test_bulk_and_the_reference_urls(client, admin_user, partner):
    link(OUR_IDP_ID, PARTNER_SP_ID, "bob", "bob-pid-1")
    response = post(client, [TERMINATE, {**TERMINATE, "UserDN": "bob"}])
    assert response.status_code == 201 and [job["UserDN"] for job in response.json()["jobs"]] == ["alice", "bob"]
    assert NameIdJob.objects.count() == 2

    response = post(client, TERMINATE, url="/affwebservices/saml2nidws/Terminate")
    assert response.status_code == 201 and response.json()["Operation"] == "terminate"
    response = post(client, {**TERMINATE, "NewID": "new-alice"}, url="/affwebservices/saml2nidws/Change")
    assert response.status_code == 201 and response.json()["Operation"] == "change" and response.json()["NewID"] == "new-alice"
    response = post(client, {**TERMINATE, "Operation": "change"}, url="/affwebservices/saml2nidws/Terminate")
    assert response.status_code == 400 and response.json()["field"] == "Operation"


def test_atompub_entry_as_the_reference_sends_it(client, admin_user, partner):
    entry = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<entry xmlns="http://www.w3.org/2005/Atom" xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices" '
        'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">'
        '<title type="text"></title><author><name></name></author>'
        '<category term="nameidproducer.terminate" scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"/>'
        '<content type="application/xml"><m:properties>'
        f"<d:userdn>alice</d:userdn><d:providerid>{PARTNER_SP_ID}</d:providerid><d:operationtype>sp</d:operationtype>"
        "</m:properties></content></entry>"
    )
    response = post(client, entry, content_type="application/atom+xml")
    assert response.status_code == 201, response.content
    assert response.json()["UserDN"] == "alice" and response.json()["Operation"] == "terminate"


@pytest.mark.parametrize(
    "body, status, field, message",
    [
        (
            '{"UserDN": "alice", ',
            400,
            None,
            "The body is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 21.",
        ),
        ({"UserDN": "alice", "OperationType": "sp"}, 400, "ProviderID", "ProviderID is required: the partner's entity ID."),
        ({**TERMINATE, "OperationType": "both"}, 400, "OperationType", "OperationType must be sp or idp, not 'both'."),
        ({"OperationType": "sp", "ProviderID": PARTNER_SP_ID}, 400, "UserDN", "neither."),
        ({**TERMINATE, "UserName": "alice"}, 400, "UserDN", "not both."),
        ({**TERMINATE, "Colour": "blue"}, 400, "Colour", "Unknown field 'Colour'"),
        ({**TERMINATE, "NewID": "x"}, 400, "NewID", "NewID belongs to change jobs only."),
        ({**TERMINATE, "UserDN": 7}, 400, "UserDN", "UserDN must be a string."),
        (
            {**TERMINATE, "ProviderID": "https://nobody.example/"},
            400,
            "ProviderID",
            "There is no active SAML2 IdP → SP partnership with the partner 'https://nobody.example/'.",
        ),
        ({**TERMINATE, "OperationType": "idp"}, 400, "ProviderID", "There is no active SAML2 SP → IdP partnership"),
        ({**TERMINATE, "Directory": "LDAP"}, 400, "Directory", "Directory 'LDAP' is not one of the partnership's directories"),
        ([TERMINATE, {**TERMINATE, "OperationType": None}], 400, "[1].OperationType", "OperationType is required"),
        ([], 400, None, "The list holds no jobs."),
        ("[1]", 400, "[0]", "Each job must be a JSON object"),
    ],
)
def test_bad_bodies_name_the_field(client, admin_user, partner, body, status, field, message):
    response = post(client, body)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert response.json().get("field") == field
    assert NameIdJob.objects.count() == 0  # a bulk call is all or nothing


def test_other_media_types_are_415(client, admin_user, partner):
    response = post(client, "UserDN=alice", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["error"].startswith("Send the job as application/json")


def test_manage_name_id_must_be_on_in_the_partnership(client, admin_user, db):
    credential = make_credential("rsa", PARTNER_SP_ID)
    notification_only = {
        "mni_delete_name_id": False,
        "mni_notification": True,
        "mni_notification_url": "https://hr.example/notify",
    }
    make_idp_side("https://sp.partner-nid.example/mni", credential.cert_pem, mni=notification_only)
    response = post(client, TERMINATE)
    assert response.status_code == 400 and response.json()["field"] == "ProviderID"
    assert response.json()["error"] == "Delete Name ID is off in the partnership idp-to-sp, so it does not end federations."


def test_unknown_jobs_and_paths_are_404(client, admin_user, partner):
    response = client.get(f"{JOBS}/{uuid.uuid4()}", **basic("alice-admin"))
    assert response.status_code == 404 and response.json()["error"].startswith("There is no name-ID job")
    assert client.get("/affwebservices/saml2nidws/nothing-here", **basic("alice-admin")).status_code == 404
    assert client.put(JOBS, **basic("alice-admin")).status_code == 405


def test_credentials_and_permission(client, admin_user, auditor_user, django_user_model, partner):
    response = client.post(JOBS, json.dumps(TERMINATE), content_type="application/json")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith('Basic realm="federation name-ID management"')
    assert post(client, TERMINATE, user="alice-admin", **{}).status_code == 201
    wrong = client.post(JOBS, json.dumps(TERMINATE), content_type="application/json", **basic("alice-admin", "guess"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "Wrong user name or password."
    garbled = client.get(JOBS, HTTP_AUTHORIZATION="Basic !!!")
    assert garbled.status_code == 401
    # Auditors (and anyone else without the permission) are refused.
    refused = post(client, TERMINATE, user="eve-auditor")
    assert refused.status_code == 403 and "partnerships.use_name_id_api" in refused.json()["error"]
    # The administrators group holds the permission (the migration grants it); so does a superuser.
    assert Group.objects.get(name=ADMINISTRATORS).permissions.filter(codename="use_name_id_api").exists()
    django_user_model.objects.create_superuser("root-admin", password=PASSWORD)
    assert post(client, {**TERMINATE, "UserDN": "alice"}, user="root-admin").status_code == 201
    # ... and a plain user can be given just this permission.
    from django.contrib.auth.models import Permission

    robot = django_user_model.objects.create_user("hr-robot", password=PASSWORD)
    robot.user_permissions.add(Permission.objects.get(codename="use_name_id_api"))
    assert post(client, TERMINATE, user="hr-robot").status_code == 201


def test_idempotency_key(client, admin_user, partner):
    first = post(client, TERMINATE, HTTP_IDEMPOTENCY_KEY="hr-ticket-4711")
    again = post(client, TERMINATE, HTTP_IDEMPOTENCY_KEY="hr-ticket-4711")
    assert first.status_code == 201 and again.status_code == 200 and again["Location"] == first["Location"]
    assert NameIdJob.objects.count() == 1
    conflict = post(client, {**TERMINATE, "UserDN": "bob"}, HTTP_IDEMPOTENCY_KEY="hr-ticket-4711")
    assert conflict.status_code == 409 and conflict.json()["field"] == "IdempotencyKey"
    bulk = post(client, [{**TERMINATE, "IdempotencyKey": "hr-ticket-4711"}, {**TERMINATE, "IdempotencyKey": "hr-4712"}])
    assert bulk.status_code == 201 and bulk.json()["jobs"][0]["JobID"] == first.json()["JobID"]


def test_list_with_filters(client, admin_user, partner):
    post(client, TERMINATE)
    post(client, {**TERMINATE, "UserDN": "bob"})
    NameIdJob.objects.filter(user_dn="bob").update(state="COMPLETED")
    listed = client.get(JOBS + "?State=COMPLETED", **basic("alice-admin")).json()
    assert listed["count"] == 1 and listed["jobs"][0]["UserDN"] == "bob"
    assert client.get(JOBS + "?State=DONE", **basic("alice-admin")).status_code == 400


# --- The console -----------------------------------------------------------------------------------------------------


@pytest.mark.urls(__name__)
def test_console_end_federation_and_follow_the_job(admin_client, partner):
    form = admin_client.get("/name-id/new/?user=alice")
    assert form.status_code == 200 and b"idp-to-sp (https://sp.partner-nid.example/)" in form.content
    refused = admin_client.post(
        "/name-id/new/", {"partner": f"sp {PARTNER_SP_ID}", "operation": "terminate", "user_dn": "alice", "user_name": "alice"}
    )
    assert refused.status_code == 200 and "not both." in refused.content.decode()
    done = admin_client.post("/name-id/new/", {"partner": f"sp {PARTNER_SP_ID}", "operation": "terminate", "user_dn": "alice"})
    job = NameIdJob.objects.get()
    assert done.status_code == 302 and done["Location"] == f"/name-id/{job.uuid}/"
    assert job.created_by == "alice-admin"
    page = admin_client.get(done["Location"]).content.decode()
    assert "PENDING" in page and "Nothing has been sent yet." in page and PARTNER_SP_ID in page
    listing = admin_client.get("/name-id/?state=PENDING&user=ali").content.decode()
    assert f"/name-id/{job.uuid}/" in listing
    assert f"/name-id/{job.uuid}/" not in admin_client.get("/name-id/?state=FAILED").content.decode()


@pytest.mark.urls(__name__)
def test_console_auditors_see_but_do_not_submit(auditor_client, partner):
    assert auditor_client.get("/name-id/").status_code == 200
    assert auditor_client.get("/name-id/new/").status_code == 403
    assert auditor_client.post("/name-id/new/", {"partner": f"sp {PARTNER_SP_ID}", "user_dn": "alice"}).status_code == 403
    assert NameIdJob.objects.count() == 0


# --- The command line ------------------------------------------------------------------------------------------------


def test_cli_terminate_status_list(partner, capsys):
    call_command("nameid", "terminate", "--type", "sp", "--provider", PARTNER_SP_ID, "--user-dn", "alice")
    job = NameIdJob.objects.get()
    out = capsys.readouterr().out
    assert f"queued job {job.uuid}" in out and "PENDING  terminate alice with" in out
    call_command("nameid", "status", str(job.uuid), "--json")
    assert json.loads(capsys.readouterr().out)["State"] == "PENDING"
    call_command("nameid", "change", "--type", "sp", "--provider", PARTNER_SP_ID, "--user", "alice", "--new-id", "n-1")
    capsys.readouterr()
    call_command("nameid", "list", "--state", "PENDING")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "change" in lines[0] and "terminate" in lines[1]
    with pytest.raises(CommandError, match="ProviderID: There is no active SAML2 SP → IdP partnership"):
        call_command("nameid", "terminate", "--type", "idp", "--provider", PARTNER_SP_ID, "--user-dn", "alice")
    with pytest.raises(CommandError, match="there is no name-ID job nope"):
        call_command("nameid", "status", "nope")


def test_cli_run_one_attempt_in_process(partner, capsys, settings):
    settings.NAME_ID_RETRY_INTERVAL_SECONDS = 900
    call_command("nameid", "terminate", "--type", "sp", "--provider", PARTNER_SP_ID, "--user-dn", "alice")
    job = NameIdJob.objects.get()
    call_command("nameid", "run", str(job.uuid))  # nobody listens at the partner's URL: one failed attempt
    job.refresh_from_db()
    assert job.attempts == 1 and job.state == "PENDING" and "Connection refused" in job.last_error
    call_command("nameid", "run", str(job.uuid))  # "now" means now, not after the 15-minute interval
    job.refresh_from_db()
    assert job.attempts == 2
    assert name_id_jobs.resume_jobs() == 0
