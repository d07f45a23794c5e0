from django.urls import path

from entities import metadata_views, metadata_views_export, views

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
    # Metadata import, bulk import and the refreshed sources.
    path("metadata/import/", metadata_views.metadata_import, name="metadata_import"),
    path("metadata/import/<str:token>/<slug:step>/", metadata_views.metadata_import_step, name="metadata_import_step"),
    path("metadata/upload/", metadata_views.metadata_upload, name="metadata_upload"),
    path("metadata/bulk/", metadata_views.metadata_bulk, name="metadata_bulk"),
    path("metadata/jobs/<uuid:pk>/", metadata_views.metadata_job, name="metadata_job"),
    path("metadata/jobs/<uuid:pk>/status.json", metadata_views.metadata_job_status, name="metadata_job_status"),
    path("metadata/sources/", metadata_views.metadata_sources, name="metadata_sources"),
    path("metadata/sources/<int:pk>/", metadata_views.metadata_source, name="metadata_source"),
]
