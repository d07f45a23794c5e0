"""Wizard routes (create, edit, their detours, the live previews and the expression test): included by
partnerships.urls before the lifecycle action route ``<int:pk>/<slug:action>/``."""

from django.urls import path

from partnerships import wizard_views as views

urlpatterns = [
    path("create/", views.partnership_create, name="create"),
    path("create/<str:token>/<slug:step>/", views.partnership_create_step, name="create_step"),
    path("<int:pk>/edit/", views.partnership_edit, name="edit"),
    path("<int:pk>/edit/get-updates/", views.edit_get_updates, name="wizard_get_updates"),
    path("<int:pk>/edit/<str:token>/<slug:step>/", views.partnership_edit_step, name="edit_step"),
    path("wizard/entity/", views.entity_create, name="wizard_entity_create"),
    path("wizard/entity/<str:token>/<slug:step>/", views.entity_create_step, name="wizard_entity_create_step"),
    path("wizard/metadata/", views.metadata_import, name="wizard_metadata_import"),
    path("wizard/metadata/<str:token>/<slug:step>/", views.metadata_import_step, name="wizard_metadata_import_step"),
    path("wizard/preview/", views.window_preview_view, name="wizard_preview"),
    path("wizard/expression-test/", views.expression_test, name="expression_test"),
]
