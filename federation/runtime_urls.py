"""The federation runtime under /affwebservices/ (paths from federation.runtime_paths).

Runtime views are exempt from console CSRF (SAML messages are protected by signatures and
InResponseTo) and from the auditor rule; they never require a console login.

Routes are written as runtime_paths constants minus the mount point, so the URL a partner is
given (`local_service_urls`) and the URL served are the same string by construction.
"""

from django.urls import include, path

from federation import runtime_paths
from federation.views import runtime_metadata

MOUNT = runtime_paths.PREFIX + "/"  # federation/urls.py mounts this module at "affwebservices/"


def route(runtime_path):
    """A runtime_paths constant as a route of this URL conf."""
    if not runtime_path.startswith(MOUNT):
        raise ValueError(f"{runtime_path} is not under {MOUNT}")
    return runtime_path.removeprefix(MOUNT)


urlpatterns = [
    path(route(runtime_paths.SAML2_METADATA) + "<str:entity_name>", runtime_metadata.saml2_metadata, name="saml2_metadata"),
    path("", include("federation.sp_urls")),  # the SAML 2.0 SP runtime (federation/sp_urls.py)
    path("", include("federation.idp_urls")),  # the SAML 2.0 IdP runtime (federation/idp_urls.py)
    path("", include("federation.nid_urls")),  # name-ID management: SOAP endpoint and job API (federation/nid_urls.py)
    path("", include("federation.slo_urls")),  # SAML 2.0 single logout, both roles (federation/slo_urls.py)
]
