"""Console roles: administrators change configuration; auditors see everything and change nothing.

A user is an administrator when they are a superuser or in the `administrators` group, an auditor
when in the `auditors` group (LDAP users get these groups from the directory, see console_ldap.py).
The read-only rule is enforced for every console URL by ReadOnlyAuditorMiddleware, so a view that
forgets a check still cannot be used by an auditor to change anything.
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

ADMINISTRATORS = "administrators"
AUDITORS = "auditors"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Paths that are not console configuration: signing in and out, the runtime, operations.
_NOT_CONSOLE = ("/accounts/", "/affwebservices/", "/healthz", "/metrics", "/static/")


def _group_names(user):
    if not hasattr(user, "_federation_groups"):
        user._federation_groups = set(user.groups.values_list("name", flat=True))
    return user._federation_groups


def is_administrator(user):
    return bool(user.is_authenticated and user.is_active and (user.is_superuser or ADMINISTRATORS in _group_names(user)))


def is_auditor(user):
    return bool(user.is_authenticated and user.is_active and AUDITORS in _group_names(user))


def can_view_console(user):
    return is_administrator(user) or is_auditor(user)


def console_view(view):
    """Signed-in administrators and auditors only."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not can_view_console(request.user):
            raise PermissionDenied("Your account has no console role (administrator or auditor).")
        return view(request, *args, **kwargs)

    return wrapped


def admin_view(view):
    """Signed-in administrators only (auditors get 403)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_administrator(request.user):
            raise PermissionDenied("Only administrators can do this; your account is read-only.")
        return view(request, *args, **kwargs)

    return wrapped


class ReadOnlyAuditorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            request.method not in SAFE_METHODS
            and not request.path.startswith(_NOT_CONSOLE)
            and request.user.is_authenticated
            and not is_administrator(request.user)
        ):
            raise PermissionDenied("Your account is read-only: auditors cannot change configuration.")
        return self.get_response(request)


def console_context(request):
    """Role flags and the navigation section for the base layout (safe on error pages too)."""
    match = getattr(request, "resolver_match", None)
    section = (match.namespace or match.url_name) if match else ""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"is_administrator": False, "is_auditor": False, "console_section": section}
    return {"is_administrator": is_administrator(user), "is_auditor": is_auditor(user), "console_section": section}
