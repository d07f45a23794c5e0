"""The runtime's short way through the middleware stack.

Partners and browsers call the runtime (/affwebservices/…) far more often than anyone uses the console, and the
runtime needs little of what the console's middleware does: it has no console login, no Django session, no flash
messages and no auditor rule, and its views are exempt from CSRF (SAML messages are protected by signatures and
InResponseTo). So a view marked with `runtime_view` is called straight from `RuntimeViewMiddleware`, which keeps what
every response must still have (host validation, the security and framing headers, Content-Length) and skips the
rest: 0.24 → 0.07 ms for a view that does nothing, a sixth of a sign-on's own cost (bench/README.md, IdP
runtime end to end).

Everything else, including an unknown /affwebservices/ path (the 404 page) and any view that is not marked, goes
through the whole stack as before.
"""

from functools import lru_cache

from django.core.handlers.exception import response_for_exception
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, get_urlconf, resolve
from django.views.decorators.csrf import csrf_exempt

from federation import runtime_paths

_RUNTIME_PREFIX = runtime_paths.PREFIX + "/"


def runtime_view(view):
    """Marks a runtime view: exempt from CSRF and served by `RuntimeViewMiddleware` without the console's
    middleware. Only for views that use no Django session, no request.user and no messages."""
    view = csrf_exempt(view)
    view.runtime_view = True
    return view


@lru_cache(maxsize=512)
def _runtime_match(path, urlconf):
    """The ResolverMatch of a `runtime_view` at `path`, or None. Kept per path: the runtime serves a few fixed paths
    (and the metadata URL per entity), and resolving them through the nested URL confs on every request cost more
    than the rest of this middleware. The bounded cache only costs a miss for a flood of other paths."""
    try:
        match = resolve(path, urlconf)
    except Resolver404:
        return None
    return match if getattr(match.func, "runtime_view", False) else None


@receiver(setting_changed)
def _forget_matches(setting, **kwargs):
    if setting == "ROOT_URLCONF":
        _runtime_match.cache_clear()


class RuntimeViewMiddleware:
    """Serves `runtime_view` views directly; placed right after the transaction middleware in settings.MIDDLEWARE, so
    runtime responses still carry the transaction ID and exceptions still reach Django's error handling."""

    def __init__(self, get_response):
        self.get_response = get_response
        # The parts of the skipped stack that runtime responses keep, called as the stack would call them.
        self._kept = (SecurityMiddleware(get_response), CommonMiddleware(get_response), XFrameOptionsMiddleware(get_response))

    def __call__(self, request):
        if not request.path_info.startswith(_RUNTIME_PREFIX):
            return self.get_response(request)
        match = _runtime_match(request.path_info, get_urlconf())
        if match is None:
            return self.get_response(request)
        # As the stack would: process_request outside in, and the response back out through those that were entered.
        entered = 0
        response = None
        try:
            for middleware in self._kept:
                entered += 1
                early = getattr(middleware, "process_request", None)
                response = early(request) if early else None
                if response is not None:
                    break
            if response is None:
                request.resolver_match = match
                response = match.func(request, *match.args, **match.kwargs)
        except Exception as error:  # noqa: BLE001 - Django's own conversion (400 for a bad Host, the 500 page, …)
            # What the stack's per-middleware wrapper would do, so the error page still gets the headers below.
            response = response_for_exception(request, error)
        for middleware in reversed(self._kept[:entered]):
            response = middleware.process_response(request, response)
        return response
