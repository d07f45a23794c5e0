from django.urls import path

from federation.views import directories as views

app_name = "directories"
urlpatterns = [
    path("", views.directory_list, name="list"),
    path("new/", views.directory_create, name="create"),
    path("<int:pk>/", views.directory_detail, name="detail"),
    path("<int:pk>/edit/", views.directory_edit, name="edit"),
    path("<int:pk>/delete/", views.directory_delete, name="delete"),
    path("<int:pk>/contents/", views.directory_contents, name="contents"),
    path("<int:pk>/users/", views.user_list, name="users"),
    path("<int:pk>/users/new/", views.user_create, name="user_create"),
    path("<int:pk>/users/<int:user_id>/", views.user_edit, name="user_edit"),
]
