"""Wizard routes (create, edit): included by partnerships.urls before the lifecycle action route."""

urlpatterns = []
