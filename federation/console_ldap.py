"""Console sign-in against LDAP (django-auth-ldap), switched on by FEDERATION_CONSOLE_LDAP_URI.

settings.py calls `configure_console_ldap(globals(), env)`; this fills in the AUTH_LDAP_* settings
from the FEDERATION_CONSOLE_LDAP_* variables and appends django-auth-ldap's LDAPBackend to
AUTHENTICATION_BACKENDS (after Django's own users, so local accounts keep working when LDAP is down).

Roles come from LDAP group membership at every sign-in: a member of the group named by
FEDERATION_CONSOLE_LDAP_ADMIN_GROUP (a DN) gets the Django group `administrators`, a member of
FEDERATION_CONSOLE_LDAP_AUDITOR_GROUP gets `auditors`; someone no longer in the LDAP group loses the
role at the next sign-in. Other Django groups of the user are left alone. A user in neither group
can sign in but has no console role (403 on every console page).

| variable (FEDERATION_CONSOLE_LDAP_…) | meaning |
|---|---|
| URI | ldap://host:389 or ldaps://host:636 (several, space-separated, are tried in order) |
| BIND_DN, BIND_PASSWORD | service account for user and group searches (empty: anonymous) |
| USER_DN_TEMPLATE | e.g. uid=%(user)s,ou=people,dc=example,dc=org (binds directly as the user) |
| USER_SEARCH_BASE, USER_FILTER | else: search under the base with the filter, default (uid=%(user)s); %s works too |
| GROUP_SEARCH_BASE | base of group searches (default: the parent of ADMIN_GROUP) |
| GROUP_TYPE | groupOfNames (default), groupOfUniqueNames, posixGroup, nestedGroupOfNames |
| ADMIN_GROUP, AUDITOR_GROUP | DNs of the LDAP groups that make administrators and auditors |
| START_TLS, VERIFY_TLS, CA_FILE | StartTLS on an ldap:// URI; verify the certificate (default true); CA bundle |
| CONNECT_TIMEOUT, TIMEOUT | seconds (defaults 5 and 10): a dead server must not hang the login page |
| ATTR_FIRST_NAME, ATTR_LAST_NAME, ATTR_EMAIL | LDAP attributes copied to the user (givenName, sn, mail) |
"""

import ldap
from django.core.exceptions import ImproperlyConfigured
from django_auth_ldap.config import (
    GroupOfNamesType,
    GroupOfUniqueNamesType,
    LDAPGroupType,
    LDAPSearch,
    NestedGroupOfNamesType,
    PosixGroupType,
)

BACKEND = "django_auth_ldap.backend.LDAPBackend"
ADMINISTRATORS = "administrators"  # the names in federation.roles (not imported: settings load first)
AUDITORS = "auditors"
GROUP_TYPES = {
    "groupofnames": (GroupOfNamesType, "(objectClass=groupOfNames)"),
    "groupofuniquenames": (GroupOfUniqueNamesType, "(objectClass=groupOfUniqueNames)"),
    "posixgroup": (PosixGroupType, "(objectClass=posixGroup)"),
    "nestedgroupofnames": (NestedGroupOfNamesType, "(objectClass=groupOfNames)"),
}


def normalize_dn(dn):
    """A DN in a form that compares equal however it is spelled (case, spaces after commas)."""
    try:
        parts = ldap.dn.str2dn(dn)
    except ldap.DECODING_ERROR:
        return dn.strip().lower()
    return ldap.dn.dn2str([[(name.lower(), value.lower(), kind) for name, value, kind in rdn] for rdn in parts])


class RoleGroupType(LDAPGroupType):
    """Finds a user's groups like `inner`, and names the admin and auditor groups after the console
    roles; every other group gets a name that can never be a role (it is ignored)."""

    def __init__(self, inner, roles_by_dn):
        super().__init__(getattr(inner, "name_attr", "cn"))
        self.inner = inner
        self.roles_by_dn = {normalize_dn(dn): role for dn, role in roles_by_dn.items() if dn}

    def user_groups(self, ldap_user, group_search):
        return self.inner.user_groups(ldap_user, group_search)

    def is_member(self, ldap_user, group_dn):
        return self.inner.is_member(ldap_user, group_dn)

    def group_name_from_info(self, group_info):
        return self.roles_by_dn.get(normalize_dn(group_info[0]), f"ldap:{group_info[0]}")


def _bool(value, default):
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _seconds(env, name, default):
    raw = env(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"FEDERATION_{name} must be a number of seconds, not {raw!r}.") from None
    if value <= 0:
        raise ImproperlyConfigured(f"FEDERATION_{name} must be more than 0 seconds.")
    return value


def _parent_dn(dn):
    parts = ldap.dn.str2dn(dn)
    return ldap.dn.dn2str(parts[1:]) if len(parts) > 1 else ""


def _check_dn(name, value):
    if value and not ldap.dn.is_dn(value):
        raise ImproperlyConfigured(f"FEDERATION_{name} is not a valid DN: {value!r}.")
    return value


def configure_console_ldap(settings_globals, env):
    """Set django-auth-ldap's settings in `settings_globals` from FEDERATION_CONSOLE_LDAP_* (read with `env`)."""
    g = settings_globals
    uri = (env("CONSOLE_LDAP_URI") or "").strip()
    if not uri:
        return
    g["AUTH_LDAP_SERVER_URI"] = uri
    g["AUTH_LDAP_BIND_DN"] = _check_dn("CONSOLE_LDAP_BIND_DN", env("CONSOLE_LDAP_BIND_DN", "") or "")
    g["AUTH_LDAP_BIND_PASSWORD"] = env("CONSOLE_LDAP_BIND_PASSWORD", "") or ""

    template = (env("CONSOLE_LDAP_USER_DN_TEMPLATE") or "").strip()
    search_base = _check_dn("CONSOLE_LDAP_USER_SEARCH_BASE", (env("CONSOLE_LDAP_USER_SEARCH_BASE") or "").strip())
    user_filter = (env("CONSOLE_LDAP_USER_FILTER") or "(uid=%(user)s)").strip().replace("%s", "%(user)s")
    if template:
        if "%(user)s" not in template.replace("%s", "%(user)s"):
            raise ImproperlyConfigured("FEDERATION_CONSOLE_LDAP_USER_DN_TEMPLATE must contain %(user)s.")
        g["AUTH_LDAP_USER_DN_TEMPLATE"] = template.replace("%s", "%(user)s")
    elif search_base:
        if "%(user)s" not in user_filter:
            raise ImproperlyConfigured("FEDERATION_CONSOLE_LDAP_USER_FILTER must contain %(user)s.")
        g["AUTH_LDAP_USER_SEARCH"] = LDAPSearch(search_base, ldap.SCOPE_SUBTREE, user_filter)
    else:
        raise ImproperlyConfigured(
            "Console LDAP sign-in needs FEDERATION_CONSOLE_LDAP_USER_DN_TEMPLATE or FEDERATION_CONSOLE_LDAP_USER_SEARCH_BASE."
        )

    admin_group = _check_dn("CONSOLE_LDAP_ADMIN_GROUP", (env("CONSOLE_LDAP_ADMIN_GROUP") or "").strip())
    auditor_group = _check_dn("CONSOLE_LDAP_AUDITOR_GROUP", (env("CONSOLE_LDAP_AUDITOR_GROUP") or "").strip())
    group_base = _check_dn(
        "CONSOLE_LDAP_GROUP_SEARCH_BASE",
        (env("CONSOLE_LDAP_GROUP_SEARCH_BASE") or "").strip() or _parent_dn(admin_group or auditor_group),
    )
    type_name = (env("CONSOLE_LDAP_GROUP_TYPE") or "groupOfNames").strip().lower()
    if type_name not in GROUP_TYPES:
        raise ImproperlyConfigured(
            f"FEDERATION_CONSOLE_LDAP_GROUP_TYPE must be one of groupOfNames, groupOfUniqueNames, posixGroup, "
            f"nestedGroupOfNames, not {type_name!r}."
        )
    if admin_group or auditor_group:
        if not group_base:
            raise ImproperlyConfigured("FEDERATION_CONSOLE_LDAP_GROUP_SEARCH_BASE is needed to find role groups.")
        group_type, group_filter = GROUP_TYPES[type_name]
        g["AUTH_LDAP_GROUP_SEARCH"] = LDAPSearch(group_base, ldap.SCOPE_SUBTREE, group_filter)
        g["AUTH_LDAP_GROUP_TYPE"] = RoleGroupType(group_type(), {admin_group: ADMINISTRATORS, auditor_group: AUDITORS})
        # Only the two role groups are managed; other Django groups of the user are kept.
        g["AUTH_LDAP_MIRROR_GROUPS"] = [ADMINISTRATORS, AUDITORS]

    g["AUTH_LDAP_USER_ATTR_MAP"] = {
        "first_name": env("CONSOLE_LDAP_ATTR_FIRST_NAME", "givenName") or "givenName",
        "last_name": env("CONSOLE_LDAP_ATTR_LAST_NAME", "sn") or "sn",
        "email": env("CONSOLE_LDAP_ATTR_EMAIL", "mail") or "mail",
    }
    g["AUTH_LDAP_ALWAYS_UPDATE_USER"] = True

    options = {
        ldap.OPT_NETWORK_TIMEOUT: _seconds(env, "CONSOLE_LDAP_CONNECT_TIMEOUT", 5),
        ldap.OPT_TIMEOUT: _seconds(env, "CONSOLE_LDAP_TIMEOUT", 10),
        ldap.OPT_REFERRALS: 0,
    }
    start_tls = _bool(env("CONSOLE_LDAP_START_TLS"), False)
    if start_tls or uri.lower().startswith("ldaps://"):
        verify = _bool(env("CONSOLE_LDAP_VERIFY_TLS"), True)
        options[ldap.OPT_X_TLS_REQUIRE_CERT] = ldap.OPT_X_TLS_DEMAND if verify else ldap.OPT_X_TLS_NEVER
        ca_file = (env("CONSOLE_LDAP_CA_FILE") or "").strip()
        if ca_file:
            options[ldap.OPT_X_TLS_CACERTFILE] = ca_file
        options[ldap.OPT_X_TLS_NEWCTX] = 0  # last: applies the TLS options above to this connection
    g["AUTH_LDAP_CONNECTION_OPTIONS"] = options
    g["AUTH_LDAP_START_TLS"] = start_tls

    backends = list(g.get("AUTHENTICATION_BACKENDS") or ["django.contrib.auth.backends.ModelBackend"])
    if BACKEND not in backends:
        backends.append(BACKEND)
    g["AUTHENTICATION_BACKENDS"] = backends
