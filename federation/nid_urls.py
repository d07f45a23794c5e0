"""Name-ID management URLs (docs/name-id-management.md).

`urlpatterns` are runtime routes, included from federation/runtime_urls.py (mounted at /affwebservices/):
the SOAP endpoint partners call and the job API. `console_urlpatterns` are the console pages, mounted by the
project URL conf under the namespace "nameid" (`path("name-id/", include(nid_urls.console))`).
"""

from django.urls import path, re_path

from federation import runtime_paths
from federation.runtime_urls import route
from federation.views import nid

JOBS = route(runtime_paths.SAML2_NAME_ID_JOBS)  # "saml2nidws/"

urlpatterns = [
    path(route(runtime_paths.SAML2_MANAGE_NAME_ID_SOAP), nid.manage_name_id_soap, name="saml2_nid_soap"),
    path(JOBS + "jobs", nid.jobs, name="saml2_nid_jobs"),
    path(JOBS + "jobs/<uuid:job_id>", nid.job, name="saml2_nid_job"),
    # The reference's OData-style collections: the operation comes from the URL.
    path(JOBS + "Terminate", nid.jobs, {"operation": "terminate"}, name="saml2_nid_terminate"),
    path(JOBS + "Change", nid.jobs, {"operation": "change"}, name="saml2_nid_change"),
    re_path(r"^" + JOBS + r"(?P<rest>.*)$", nid.unknown),
]

console_urlpatterns = [
    path("", nid.console_jobs, name="list"),
    path("new/", nid.console_submit, name="new"),
    path("<uuid:job_id>/", nid.console_job, name="detail"),
]

console = (console_urlpatterns, "nameid")
