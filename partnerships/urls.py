from django.urls import include, path

from partnerships import views

app_name = "partnerships"
urlpatterns = [
    path("", views.partnership_list, name="list"),
    path("authn-contexts/", include("partnerships.authn_context_urls")),
]
