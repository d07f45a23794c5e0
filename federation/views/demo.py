"""The demo application page (/demo/): where the demo SP partnership sends users after SSO, showing what the SP
runtime delivered. It stands in for a customer's application; it needs no console login."""

from urllib.parse import urlencode

from django.shortcuts import render
from django.views.decorators.http import require_GET

from federation import demo, runtime_paths, sp_runtime
from partnerships.models import Partnership


@require_GET
def landing(request):
    session = sp_runtime.session_for_cookie(request.COOKIES.get(sp_runtime.SESSION_COOKIE, ""))
    idp_to_sp = Partnership.objects.filter(name=demo.IDP_TO_SP).select_related("remote_entity").first()
    test_sso = ""
    if idp_to_sp is not None and idp_to_sp.remote_entity is not None:
        test_sso = runtime_paths.SAML2_SSO + "?" + urlencode({"SPID": idp_to_sp.remote_entity.entity_id})
    return render(
        request,
        "demo/landing.html",
        {
            "session": session,
            "attributes": sorted((session.attributes or {}).items()) if session else [],
            "test_sso": test_sso,
            "logout": runtime_paths.SAML2_SLO + "?" + urlencode({"LocalLogout": "true"}),
        },
    )
