"""The project's URLs plus a view that fails, to test the 500 page."""

from django.urls import path

from federation.urls import handler400, handler403, handler404, handler500, urlpatterns  # noqa: F401


def failing_view(request):
    raise RuntimeError("database exploded: secret detail that must not reach the page")


urlpatterns = [*urlpatterns, path("boom/", failing_view)]
