"""URLs of the authentication context template pages, included under /partnerships/authn-contexts/ in the
`partnerships` namespace."""

from django.urls import path

from partnerships import authn_context_views as views

urlpatterns = [
    path("", views.template_list, name="authn_context_list"),
    path("new/", views.template_create, name="authn_context_create"),
    path("<int:pk>/", views.template_detail, name="authn_context_detail"),
    path("<int:pk>/edit/", views.template_edit, name="authn_context_edit"),
    path("<int:pk>/delete/", views.template_delete, name="authn_context_delete"),
]
