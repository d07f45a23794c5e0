"""Routes of the SAML 2.0 SP runtime (included by federation/runtime_urls.py, which is mounted at /affwebservices/).

Written as runtime_paths constants minus the mount point, like runtime_urls, so the URL a partner or an application
is given and the URL served are the same string.
"""

from django.urls import path

from federation import runtime_paths
from federation.views import sp

_MOUNT = runtime_paths.PREFIX + "/"


def _route(runtime_path):
    return runtime_path.removeprefix(_MOUNT)


urlpatterns = [
    path(_route(runtime_paths.SAML2_AUTHN_REQUEST), sp.authn_request, name="saml2_authn_request"),
    path(_route(runtime_paths.SAML2_ASSERTION_CONSUMER), sp.assertion_consumer, name="saml2_assertion_consumer"),
    path(_route(runtime_paths.SAML2_SP_SESSION_CHECK), sp.session_check, name="saml2_sp_session_check"),
    path(_route(runtime_paths.SAML2_SP_PROVISIONING_RETURN), sp.provisioning_return, name="saml2_sp_provisioning_return"),
    path(_route(runtime_paths.SAML2_SP_SITE_SELECTION), sp.site_selection, name="saml2_sp_site_selection"),
    path(_route(runtime_paths.SAML2_IDP_DISCOVERY), sp.idp_discovery, name="saml2_idp_discovery"),
    # The reference's sample link is …/saml2ipd/?IPDTarget=…: the same service with a trailing slash.
    path(_route(runtime_paths.SAML2_IDP_DISCOVERY) + "/", sp.idp_discovery),
]
