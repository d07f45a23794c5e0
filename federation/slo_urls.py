"""Routes of SAML 2.0 single logout, both roles (docs/single-logout.md), included by federation/runtime_urls.py.

Written as runtime_paths constants, like the rest of the runtime, so the URL a partner is given and the URL served
are the same string."""

from django.urls import path

from federation import runtime_paths
from federation.runtime_urls import route
from federation.views import slo

urlpatterns = [
    path(route(runtime_paths.SAML2_SLO), slo.saml2slo, name="saml2slo"),
    path(route(runtime_paths.SAML2_SLO_SOAP), slo.saml2slosoap, name="saml2slosoap"),
]
