from django.contrib.auth import views as auth_views
from django.urls import include, path

from federation import nid_urls
from federation.views import console, demo, ops

urlpatterns = [
    # First: every runtime request (sign-on, logout, artifacts) is matched before the console's patterns are tried.
    path("affwebservices/", include("federation.runtime_urls")),
    path("", console.dashboard, name="dashboard"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("keystore/", include("entities.keystore_urls")),
    path("entities/", include("entities.urls")),
    path("partnerships/", include("partnerships.urls")),
    path("directories/", include("federation.directory_urls")),
    path("jobs/", console.jobs, name="jobs"),
    path("name-id/", include(nid_urls.console)),
    path("audit/", console.audit_log, name="audit"),
    path("trace/", console.trace, name="trace"),
    path("settings/", console.settings_page, name="settings"),
    path("demo/", demo.landing, name="demo_landing"),
    path("healthz", ops.healthz, name="healthz"),
    path("metrics", ops.metrics_view, name="metrics"),
]

handler400 = "federation.views.errors.bad_request"
handler403 = "federation.views.errors.permission_denied"
handler404 = "federation.views.errors.not_found"
handler500 = "federation.views.errors.server_error"
