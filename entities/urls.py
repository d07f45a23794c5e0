from django.urls import path

from entities import metadata_views_export, views

app_name = "entities"
urlpatterns = [
    path("", views.entity_list, name="list"),
    path("create/", views.entity_create, name="create"),
    path("create/<str:token>/<slug:step>/", views.entity_create_step, name="create_step"),
    path("<int:pk>/", views.entity_detail, name="detail"),
    path("<int:pk>/edit/", views.entity_edit, name="edit"),
    path("<int:pk>/edit/<str:token>/<slug:step>/", views.entity_edit_step, name="edit_step"),
    path("<int:pk>/delete/", views.entity_delete, name="delete"),
    path("<int:pk>/export-metadata/", metadata_views_export.export_metadata, name="export_metadata"),
]
