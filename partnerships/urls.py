from django.urls import include, path

from partnerships import metadata_views, views

app_name = "partnerships"
urlpatterns = [
    path("", views.partnership_list, name="list"),
    path("", include("partnerships.wizard_urls")),
    path("<int:pk>/", views.partnership_detail, name="detail"),
    path("<int:pk>/delete/", views.partnership_delete, name="delete"),
    path("<int:pk>/export-metadata/", metadata_views.export_metadata, name="export_metadata"),
    path("<int:pk>/<slug:action>/", views.partnership_action, name="action"),
    path("authn-contexts/", include("partnerships.authn_context_urls")),
]
