"""Name-ID management views (docs/name-id-management.md), thin over partnerships.name_id_jobs:

- POST /affwebservices/public/saml2nidsoap: partners' ManageNameIDRequests over SOAP (SAML signatures protect it;
  back-channel Basic authentication when the partnership asks for it).
- /affwebservices/saml2nidws/…: the asynchronous job API, HTTP Basic against console users who hold the permission
  partnerships.use_name_id_api (administrators have it). JSON in and out; AtomPub entries as the reference sends them
  are read too.
- The console pages: the job list with filters, one job with its attempt log, and "end federation with a partner".
"""

import base64
import binascii
import json
import logging

from django import forms
from django.contrib import messages
from django.contrib.auth import authenticate
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from federation.roles import admin_view, console_view
from federation.runtime_middleware import runtime_view
from federation.saml.constants import MAX_MESSAGE_BYTES
from federation.saml.errors import SAMLError
from federation.saml.xml import parse_xml
from partnerships import name_id_jobs
from partnerships.models import NameIdJob, PartnershipSnapshot
from partnerships.runtime import load_snapshot

log = logging.getLogger("federation.runtime.nameid")

API_PERMISSION = "partnerships.use_name_id_api"
API_REALM = "federation name-ID management"
MAX_API_BODY_BYTES = 4 * 1024 * 1024
JSON_TYPES = ("application/json",)
ATOM_TYPES = ("application/atom+xml", "application/xml", "text/xml")
PAGE_SIZE = 50


# --- The SOAP endpoint -----------------------------------------------------------------------------------------------


@runtime_view
def manage_name_id_soap(request):
    if request.method != "POST":
        response = HttpResponse("This is a SOAP endpoint for ManageNameIDRequest messages: POST them.\n", status=405)
        response["Allow"] = "POST"
        return response
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_MESSAGE_BYTES:
        return HttpResponse(f"The request is larger than {MAX_MESSAGE_BYTES} bytes.\n", status=413)
    answer = name_id_jobs.answer_request(
        request.body,
        request_url=request.build_absolute_uri(request.path),
        authorization=request.headers.get("Authorization", ""),
        headers=request.headers,
        remote_addr=request.META.get("REMOTE_ADDR", ""),
    )
    response = HttpResponse(answer.body, status=answer.status, content_type="text/xml; charset=utf-8")
    for name, value in answer.headers.items():
        response[name] = value
    response["Cache-Control"] = "no-store"
    return response


# --- The job API -----------------------------------------------------------------------------------------------------


def _problem(status, message, field="", headers=None):
    body = {"error": message}
    if field:
        body["field"] = field
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _api_user(request):
    """(user, None) for a user with the API permission, else (None, the 401/403 response)."""
    challenge = {"WWW-Authenticate": f'Basic realm="{API_REALM}", charset="UTF-8"'}
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None, _problem(
            401, "Sign in with HTTP Basic authentication (a console user with the name-ID API permission).", headers=challenge
        )
    try:
        username, separator, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        separator = ""
    if not separator:
        return None, _problem(401, "The Basic credentials are not base64 of user:password.", headers=challenge)
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_active:
        log.warning("name-ID API: wrong user name or password for %r", username, extra={"checkpoint": "NAMEID_API_AUTH"})
        return None, _problem(401, "Wrong user name or password.", headers=challenge)
    if not user.has_perm(API_PERMISSION):
        return None, _problem(403, f"{username} may not use the name-ID management API (permission {API_PERMISSION}).")
    return user, None


def _job_url(request, job):
    return request.build_absolute_uri(reverse("saml2_nid_job", args=[job.uuid]))


def _media_type(request):
    return (request.content_type or "").split(";", 1)[0].strip().lower()


def _atom_entries(body):
    """Job items from an AtomPub entry (or feed of entries) as the reference's client sends them:
    <category term="nameidproducer.terminate"/> and <m:properties> with <d:userdn>, <d:providerid>,
    <d:operationtype> (and our <d:username>, <d:directory>, <d:newid>)."""
    root = parse_xml(body, max_bytes=MAX_API_BODY_BYTES)
    entries = [root] if root.tag.rsplit("}", 1)[-1] == "entry" else [e for e in root if str(e.tag).rsplit("}", 1)[-1] == "entry"]
    if not entries:
        raise ValueError("the XML holds no Atom <entry>")
    items = []
    for entry in entries:
        item = {}
        for element in entry.iter():
            name = str(element.tag).rsplit("}", 1)[-1]
            if name == "category" and (element.get("term") or "").lower().endswith(".change"):
                item["Operation"] = "change"
            elif name == "properties":
                for prop in element:
                    item[str(prop.tag).rsplit("}", 1)[-1]] = (prop.text or "").strip()
        items.append(item)
    return items if len(items) > 1 else items[0]


def _read_body(request):
    """The parsed body (a dict or a list), or an error response (400, 415)."""
    media_type = _media_type(request)
    if media_type not in JSON_TYPES + ATOM_TYPES:
        return None, _problem(
            415,
            f"Send the job as application/json (or an AtomPub entry as application/atom+xml), not {media_type or 'no media type'}.",
        )
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_API_BODY_BYTES:
        return None, _problem(413, f"The body is larger than {MAX_API_BODY_BYTES} bytes.")
    if media_type in ATOM_TYPES:
        try:
            return _atom_entries(request.body), None
        except (SAMLError, ValueError) as error:
            return None, _problem(400, f"The AtomPub entry could not be read: {error}")
    try:
        return json.loads(request.body.decode("utf-8")), None
    except UnicodeDecodeError:
        return None, _problem(400, "The body is not UTF-8 text.")
    except json.JSONDecodeError as error:
        return None, _problem(400, f"The body is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}.")


@csrf_exempt
def jobs(request, operation=None):
    """POST: submit one job (a JSON object) or several (a JSON list). GET: the latest jobs, with filters."""
    if request.method not in ("GET", "HEAD", "POST") or (request.method != "POST" and operation):
        return _problem(405, "Use POST to submit jobs here.", headers={"Allow": "POST" if operation else "GET, POST"})
    user, refusal = _api_user(request)
    if refusal:
        return refusal
    if request.method != "POST":
        return _job_list(request)
    data, refusal = _read_body(request)
    if refusal:
        return refusal
    bulk = isinstance(data, list)
    items = data if bulk else [data]
    limit = name_id_jobs.setting("NAME_ID_BULK_LIMIT")
    if bulk and not items:
        return _problem(400, "The list holds no jobs.")
    if len(items) > limit:
        return _problem(400, f"At most {limit} jobs can be submitted in one call; this list holds {len(items)}.")
    header_key = request.headers.get("Idempotency-Key", "").strip()
    try:
        parsed = [
            name_id_jobs.parse_job_request(item, operation=operation, where=f"[{n}]." if bulk else "")
            for n, item in enumerate(items)
        ]
        if header_key and not bulk and not parsed[0].idempotency_key:
            if len(header_key) > 128:
                return _problem(400, "The Idempotency-Key header is longer than 128 characters.", "Idempotency-Key")
            parsed[0].idempotency_key = header_key
        results = name_id_jobs.submit_jobs(parsed, actor=f"api:{user.get_username()}")
    except name_id_jobs.IdempotencyConflict as error:
        return _problem(409, str(error), error.field)
    except name_id_jobs.JobError as error:
        return _problem(400, str(error), error.field)
    status = 201 if any(created for _, created in results) else 200
    if bulk:
        return JsonResponse(
            {"jobs": [name_id_jobs.job_document(job, _job_url(request, job)) for job, _ in results]}, status=status
        )
    job = results[0][0]
    response = JsonResponse(name_id_jobs.job_document(job, _job_url(request, job)), status=status)
    response["Location"] = _job_url(request, job)
    return response


def _job_list(request):
    state = request.GET.get("State", request.GET.get("state", ""))
    if state and state.upper() not in NameIdJob.State.values:
        return _problem(400, f"State must be one of {', '.join(NameIdJob.State.values)}.", "State")
    try:
        limit = min(max(int(request.GET.get("Limit", request.GET.get("limit", "100"))), 1), 1000)
    except ValueError:
        return _problem(400, "Limit must be a number from 1 to 1000.", "Limit")
    rows = name_id_jobs.job_queryset(state=state, provider=request.GET.get("ProviderID", ""), user=request.GET.get("User", ""))
    found = list(rows[:limit])
    return JsonResponse({"count": len(found), "jobs": [name_id_jobs.job_document(job, _job_url(request, job)) for job in found]})


@csrf_exempt
def job(request, job_id):
    """GET one job: its state (PENDING, COMPLETED, FAILED), attempts and last error."""
    if request.method not in ("GET", "HEAD"):
        return _problem(405, "Jobs are read with GET; submit new ones to the jobs URL.", headers={"Allow": "GET"})
    user, refusal = _api_user(request)
    if refusal:
        return refusal
    found = NameIdJob.objects.filter(uuid=job_id).first()
    if found is None:
        return _problem(404, f"There is no name-ID job {job_id}.")
    return JsonResponse(name_id_jobs.job_document(found, _job_url(request, found)))


@csrf_exempt
def unknown(request, rest):
    """Anything else under /affwebservices/saml2nidws/ (a JSON 404 rather than an HTML page)."""
    return _problem(404, f"There is nothing at saml2nidws/{rest}; jobs are submitted to saml2nidws/jobs.")


# --- The console -----------------------------------------------------------------------------------------------------


def _partner_choices():
    """(value, label) of the active SAML 2.0 partnerships with Manage Name ID on: value = "<sp|idp> <ProviderID>"."""
    choices = []
    snapshots = PartnershipSnapshot.objects.filter(current=True, kind__in=name_id_jobs.OPERATION_TYPE_FOR_KIND)
    for pk in snapshots.order_by("remote_entity_id").values_list("pk", flat=True):
        config = name_id_jobs.partner_config(load_snapshot(pk))
        if config.enabled:
            choices.append((f"{config.operation_type} {config.remote_entity_id}", f"{config.name} ({config.remote_entity_id})"))
    return choices


class NameIdJobForm(forms.Form):
    partner = forms.ChoiceField(
        label="Partner",
        help_text="An active SAML 2.0 partnership with Manage Name ID enabled.",
    )
    operation = forms.ChoiceField(
        choices=NameIdJob.Operation.choices,
        initial=NameIdJob.Operation.TERMINATE,
        help_text="Terminate ends the user's federation with the partner; change gives the link a new identifier.",
    )
    user_dn = forms.CharField(
        label="User DN", required=False, max_length=1024, help_text="The LDAP DN, or the user name in the embedded directory."
    )
    user_name = forms.CharField(
        label="or user name", required=False, max_length=255, help_text="Looked up in the partnership's directories."
    )
    directory = forms.CharField(required=False, max_length=100, help_text="Optional: only this directory of the partnership.")
    new_id = forms.CharField(
        label="New ID", required=False, max_length=256, help_text="Change only; empty makes a new random identifier."
    )

    FIELD_FOR = {
        "UserDN": "user_dn",
        "UserName": "user_name",
        "Directory": "directory",
        "NewID": "new_id",
        "ProviderID": "partner",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["partner"].choices = [("", "Choose a partner")] + _partner_choices()

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        operation_type, _, provider_id = data["partner"].partition(" ")
        item = {
            "Operation": data["operation"],
            "OperationType": operation_type,
            "ProviderID": provider_id,
            "UserDN": data["user_dn"] or None,
            "UserName": data["user_name"] or None,
            "Directory": data["directory"] or None,
            "NewID": data["new_id"] or None,
        }
        try:
            data["request"] = name_id_jobs.parse_job_request(item)
        except name_id_jobs.JobError as error:
            self.add_error(self.FIELD_FOR.get(error.field) or None, str(error))
        return data


@console_view
def console_jobs(request):
    filters = {key: request.GET.get(key, "").strip() for key in ("state", "provider", "partnership", "user", "operation")}
    if filters["state"] and filters["state"] not in NameIdJob.State.values:
        filters["state"] = ""
    rows = name_id_jobs.job_queryset(**filters)
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "partnerships/nameid_list.html",
        {
            "page": page,
            "query": params.urlencode(),
            "filters": filters,
            "states": NameIdJob.State.values,
            "operations": NameIdJob.Operation.choices,
            "counts": name_id_jobs.counts(),
        },
    )


@console_view
def console_job(request, job_id):
    found = get_object_or_404(NameIdJob, uuid=job_id)
    return render(
        request,
        "partnerships/nameid_detail.html",
        {"job": found, "attempts": found.attempt_log.all(), "api_url": _job_url(request, found)},
    )


@admin_view
def console_submit(request):
    form = NameIdJobForm(request.POST or None, initial={"user_dn": request.GET.get("user", "")})
    if request.method == "POST" and form.is_valid():
        job, _ = name_id_jobs.submit_jobs([form.cleaned_data["request"]], actor=request.user.get_username())[0]
        messages.success(
            request, f"The job is queued: {job.get_operation_display().lower()} for {job.user_label} with {job.provider_id}."
        )
        return redirect("nameid:detail", job.uuid)
    return render(
        request, "partnerships/nameid_form.html", {"form": form, "has_partners": len(form.fields["partner"].choices) > 1}
    )
