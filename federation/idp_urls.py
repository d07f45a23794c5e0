"""Routes of the SAML 2.0 IdP runtime (docs/idp-runtime.md), included by federation/runtime_urls.py.

Written as runtime_paths constants, like the rest of the runtime, so the URL a partner is given and the URL served
are the same string."""

from django.urls import path

from federation import runtime_paths
from federation.runtime_urls import route
from federation.views import idp

urlpatterns = [
    path(route(runtime_paths.SAML2_SSO), idp.saml2sso, name="saml2sso"),
    path(route(runtime_paths.SAML2_ARTIFACT_RESOLUTION), idp.saml2artifactresolution, name="saml2artifactresolution"),
    path(route(runtime_paths.IDP_LOGIN), idp.login, name="idp_login"),
    path(route(runtime_paths.IDP_CONSENT), idp.consent, name="idp_consent"),
]
