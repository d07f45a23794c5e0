"""User directories: authenticate users, find them, read their attributes and groups.

This is the API the federation runtime calls (plain functions, no HTTP). A directory is a
`UserDirectory` row: either an LDAP server (python-ldap) or the embedded directory (Django's user
table, its groups, and `UserAttribute` rows for extra multi-valued attributes).

    user = authenticate(directory, "alice", password)          # DirectoryUser or None
    user = find_user(directory, "(mail=%s)", "alice@example.org")
    attributes(directory, user, ["mail", "manager", "dn"])      # {"mail": [...], ...}
    groups(directory, user)                                     # [Group(dn, name), ...]
    test_connection(directory)                                  # ConnectionReport for the console

Failures of the directory itself (server down, no answer in time, TLS refused) raise
`DirectoryUnavailable`; configuration problems (wrong service-account password, missing search
root, ambiguous search spec) raise `DirectoryError`. Both carry a message in plain words and the
configuration field it concerns. A wrong password or an unknown user is not an error: None.

Search specs contain `%s`, replaced by the value (escaped with `ldap.filter.escape_filter_chars`,
so a value can never change the filter). For the embedded directory a spec reads `name=%s` where
name is username, email, first_name, last_name or the name of an extra attribute.
"""

import base64
import errno
import hashlib
import logging
import os
import re
import socket
import ssl
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import ldap
import ldap.dn
import ldap.filter
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from federation.models import UserAttribute, UserDirectory
from federation.secretbox import SecretBoxError, unseal_text

log = logging.getLogger("federation.directories")

EMBEDDED_NAME = "Embedded directory"
# Fields of the Django user that search specs and attribute lookups of the embedded directory know.
EMBEDDED_FIELDS = ("username", "email", "first_name", "last_name")
CONTENTS_LIMIT = 10
CONTENTS_ATTRIBUTES = ["objectClass", "cn", "uid", "ou", "mail", "member"]
_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
# An LDAP ExtendedRequest for StartTLS (message ID 1), used only to explain a failed TLS handshake.
_STARTTLS_REQUEST = b"\x30\x1d\x02\x01\x01\x77\x18\x80\x16" + _STARTTLS_OID


class DirectoryError(Exception):
    """A directory cannot answer because of its configuration or its data. `field` names the
    directory setting the message is about (for the console form), or is empty."""

    def __init__(self, message, field=""):
        super().__init__(message)
        self.message = message
        self.field = field


class DirectoryUnavailable(DirectoryError):
    """The directory server cannot be reached: connection refused, no answer in time, TLS failure."""


class AmbiguousUser(DirectoryError):
    """A search spec matched more than one user; the runtime must not pick one at random."""


@dataclass(frozen=True)
class DirectoryUser:
    directory: UserDirectory
    identifier: str  # the entry DN (LDAP) or the username (embedded)
    login: str


@dataclass(frozen=True)
class Group:
    dn: str  # the group DN (LDAP) or the group name (embedded)
    name: str


@dataclass
class ConnectionReport:
    ok: bool
    message: str
    entries: list = field(default_factory=list)  # [(dn, {attribute: [values]})]
    field: str = ""  # the directory setting an error is about
    server: str = ""  # host:port that answered


def get_embedded_directory():
    """The embedded directory (made by a migration; made again here if someone deleted it)."""
    directory = UserDirectory.objects.filter(kind=UserDirectory.Kind.EMBEDDED).first()
    if directory is None:
        name = EMBEDDED_NAME if not UserDirectory.objects.filter(name=EMBEDDED_NAME).exists() else f"{EMBEDDED_NAME} (local)"
        directory = UserDirectory.objects.create(name=name, kind=UserDirectory.Kind.EMBEDDED)
    return directory


# --- public API -------------------------------------------------------------------------------


def authenticate(directory, login, password):
    """The user whose login and password match, else None. An empty password never matches."""
    if not login or not password:
        log.info(
            "authentication refused in %s: empty %s",
            directory.name,
            "password" if login else "login",
            extra={"checkpoint": "DIRECTORY_AUTH_EMPTY"},
        )
        return None
    if directory.is_embedded:
        return _embedded_authenticate(directory, login, password)
    return _ldap_authenticate(directory, login, password)


def find_user(directory, search_spec, value):
    """The one user that `search_spec` (with %s replaced by `value`) finds, None when nobody;
    AmbiguousUser when several match."""
    if "%s" not in (search_spec or ""):
        raise DirectoryError(f"The search spec '{search_spec}' has no %s for the value.", field="search_spec")
    value = "" if value is None else str(value)
    if directory.is_embedded:
        return _embedded_find_user(directory, search_spec, value)
    return _ldap_find_user(directory, search_spec, value)


def attributes(directory, user, names):
    """{name: [values]} for each requested name (missing attributes give []); DN-valued
    attributes come back as DN strings; the name `dn` gives the user's identifier."""
    names = list(dict.fromkeys(names))
    if directory.is_embedded:
        return _embedded_attributes(directory, user, names)
    return _ldap_attributes(directory, user, names)


def groups(directory, user):
    """The groups the user belongs to, sorted by name."""
    if directory.is_embedded:
        return [Group(name, name) for name in _embedded_user(user).groups.order_by("name").values_list("name", flat=True)]
    return _ldap_groups(directory, user)


def test_connection(directory):
    """Bind with the configured credentials and list a few entries (never raises)."""
    if directory.is_embedded:
        return _embedded_contents(directory)
    try:
        report = _ldap_contents(directory)
    except DirectoryError as exc:
        log.warning(
            "connection test of %s failed: %s", directory.name, exc.message, extra={"checkpoint": "DIRECTORY_TEST_FAILED"}
        )
        return ConnectionReport(False, exc.message, [], field=exc.field)
    log.info("connection test of %s: %s", directory.name, report.message, extra={"checkpoint": "DIRECTORY_TEST_OK"})
    return report


test_connection.__test__ = False  # not a pytest test, whatever its name


# --- embedded directory -------------------------------------------------------------------------


def _embedded_user(user):
    try:
        return get_user_model().objects.get(username=user.identifier)
    except get_user_model().DoesNotExist:
        raise DirectoryError(f"The user {user.identifier} no longer exists in the embedded directory.") from None


def _embedded_authenticate(directory, login, password):
    model = get_user_model()
    account = model.objects.filter(username=login).first()
    if account is None:
        model().set_password(password)  # spend the same time as for a real user (no user enumeration by timing)
        log.info("unknown user %s in %s", login, directory.name, extra={"checkpoint": "DIRECTORY_AUTH_UNKNOWN_USER"})
        return None
    if not account.check_password(password):
        log.info("wrong password for %s in %s", login, directory.name, extra={"checkpoint": "DIRECTORY_AUTH_FAILED"})
        return None
    if not account.is_active:
        log.info("inactive user %s refused in %s", login, directory.name, extra={"checkpoint": "DIRECTORY_AUTH_INACTIVE"})
        return None
    log.info("user %s authenticated in %s", login, directory.name, extra={"checkpoint": "DIRECTORY_AUTH_OK"})
    return DirectoryUser(directory, account.username, account.username)


_EMBEDDED_SPEC = re.compile(r"\(?\s*([A-Za-z_][\w.:-]*)\s*=\s*%s\s*\)?")


def _embedded_find_user(directory, search_spec, value):
    match = _EMBEDDED_SPEC.fullmatch(search_spec.strip())
    if not match:
        raise DirectoryError(
            f"The search spec '{search_spec}' does not fit the embedded directory: write name=%s, where name is "
            f"{', '.join(EMBEDDED_FIELDS)} or an extra attribute name.",
            field="search_spec",
        )
    name = match.group(1)
    users = get_user_model().objects.filter(is_active=True)
    if name in EMBEDDED_FIELDS:
        users = users.filter(**{f"{name}__iexact" if name == "email" else name: value})
    else:
        owners = UserAttribute.objects.filter(name__iexact=name, value=value).values("user_id")
        users = users.filter(pk__in=owners)
    found = list(users.order_by("username")[:2])
    if len(found) > 1:
        raise AmbiguousUser(
            f"'{search_spec.replace('%s', value)}' matches more than one user of {directory.name} "
            f"({found[0].username}, {found[1].username}, ...); use an attribute that is unique.",
            field="search_spec",
        )
    if not found:
        log.info("no user for %s in %s", search_spec, directory.name, extra={"checkpoint": "DIRECTORY_FIND_NONE"})
        return None
    log.info("found %s in %s", found[0].username, directory.name, extra={"checkpoint": "DIRECTORY_FIND_OK"})
    return DirectoryUser(directory, found[0].username, found[0].username)


@lru_cache(maxsize=2)
def _embedded_attributes_sql(vendor):
    """The user's fields with their extra attributes joined, written once: it runs on every sign-on whose assertion
    carries directory attributes, and building it with the ORM cost three times what running it does."""
    quote = connection.ops.quote_name
    user_model = get_user_model()
    users, attributes = user_model._meta.db_table, UserAttribute._meta.db_table
    columns = [f"u.{quote(user_model._meta.get_field(name).column)}" for name in EMBEDDED_FIELDS]
    return (
        f"SELECT {', '.join(columns)}, a.{quote('name')}, a.{quote('value')} FROM {quote(users)} u "
        f"LEFT OUTER JOIN {quote(attributes)} a ON a.{quote(UserAttribute._meta.get_field('user').column)} = u.{quote(user_model._meta.pk.column)} "
        f"WHERE u.{quote(user_model._meta.get_field('username').column)} = %s ORDER BY a.{quote('id')}"
    )


def _embedded_attributes(directory, user, names):
    with connection.cursor() as cursor:
        cursor.execute(_embedded_attributes_sql(connection.vendor), [user.identifier])
        rows = cursor.fetchall()
    if not rows:
        raise DirectoryError(f"The user {user.identifier} no longer exists in the embedded directory.")
    fields = dict(zip(EMBEDDED_FIELDS, rows[0][: len(EMBEDDED_FIELDS)], strict=True))
    extra = {}
    for *_, name, value in rows:
        if name is not None:
            extra.setdefault(name.lower(), []).append(value)
    result = {}
    for name in names:
        if name.lower() == "dn":
            result[name] = [fields["username"]]
        elif name in EMBEDDED_FIELDS:
            result[name] = [fields[name]] if fields[name] else []
        else:
            result[name] = list(extra.get(name.lower(), []))
    return result


def _embedded_contents(directory):
    users = get_user_model().objects.order_by("username")
    total, active = users.count(), users.filter(is_active=True).count()
    entries = []
    for account in users.prefetch_related("groups")[:CONTENTS_LIMIT]:
        shown = {"email": [account.email] if account.email else [], "groups": sorted(g.name for g in account.groups.all())}
        if not account.is_active:
            shown["active"] = ["no"]
        entries.append((account.username, shown))
    return ConnectionReport(
        True, f"The embedded directory holds {total} users ({active} active).", entries, server="this installation"
    )


# --- LDAP: connections ----------------------------------------------------------------------------


def _ca_file(directory):
    """CA certificates (PEM) for LDAPS/StartTLS: the keystore entry named by the directory's
    tls_ca_alias, else settings.DIRECTORY_TLS_CA_FILE / FEDERATION_DIRECTORY_TLS_CA_FILE; empty
    means the system's CA store (/etc/ldap/ldap.conf)."""
    if directory.tls_ca_alias:
        return _keystore_ca_file(directory.tls_ca_alias)
    return getattr(settings, "DIRECTORY_TLS_CA_FILE", "") or os.environ.get("FEDERATION_DIRECTORY_TLS_CA_FILE", "")


def _keystore_ca_file(alias):
    """libldap reads CA certificates from a file: write the keystore entry's certificate (and
    chain) to a file named by its content under var/, once, and return its path."""
    from entities.models import KeystoreEntry

    entry = KeystoreEntry.objects.filter(alias=alias).exclude(kind=KeystoreEntry.Kind.KEY_PAIR).first()
    if entry is None:
        raise DirectoryError(f"The TLS CA '{alias}' is not a trusted certificate or CA in the keystore.", field="tls_ca_alias")
    pem = (entry.certificate_pem.strip() + "\n" + (entry.chain_pem or "").strip()).strip() + "\n"
    folder = settings.VAR_DIR / "ldap-ca"
    folder.mkdir(exist_ok=True)
    path = folder / f"{hashlib.sha256(pem.encode()).hexdigest()[:24]}.pem"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(pem)
        partial.replace(path)
    return str(path)


def _label(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _initialize(directory, host, port):
    scheme = "ldaps" if directory.security == UserDirectory.Security.LDAPS else "ldap"
    conn = ldap.initialize(f"{scheme}://{_label(host, port)}")
    conn.protocol_version = ldap.VERSION3
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, float(directory.connect_timeout))
    conn.set_option(ldap.OPT_TIMEOUT, float(directory.operation_timeout))
    conn.timeout = directory.operation_timeout  # python-ldap's synchronous calls wait this long at most
    if directory.security != UserDirectory.Security.NONE:
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND if directory.verify_tls else ldap.OPT_X_TLS_NEVER)
        ca_file = _ca_file(directory)
        if ca_file:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, ca_file)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # must come last: applies the TLS options above
    return conn


def _close(conn):
    try:
        conn.unbind_s()
    except ldap.LDAPError:
        pass


def _describe(exc):
    """'Invalid credentials' / "Can't contact LDAP server: <detail>" from a python-ldap error."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    text = info.get("desc") or type(exc).__name__
    extra = info.get("info")
    if extra and extra != "(unknown error code)":
        text += f": {extra}"
    return text


def _tls_problem(directory, host, port):
    """Why a TLS handshake fails, in plain words, found by repeating it with Python's ssl module."""
    timeout = directory.connect_timeout
    context = ssl.create_default_context(cafile=_ca_file(directory) or None)
    if not directory.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            raw.settimeout(timeout)
            if directory.security == UserDirectory.Security.STARTTLS:
                raw.sendall(_STARTTLS_REQUEST)
                answer = raw.recv(4096)
                if b"\x0a\x01\x00" not in answer:
                    return "the server refused StartTLS (is TLS configured on it?)"
            with context.wrap_socket(raw, server_hostname=host):
                return ""
    except ssl.SSLCertVerificationError as exc:
        return f"the server certificate was not accepted ({exc.verify_message})"
    except (ssl.SSLEOFError, ConnectionResetError):
        return "the server closed the connection during the TLS handshake" + _PORT_HINT
    except ssl.SSLError as exc:
        if exc.reason in ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE"):
            return "the server does not speak TLS on this port" + _PORT_HINT
        return f"TLS error ({exc.reason or exc})"
    except TimeoutError:
        return f"no TLS answer within {timeout} s"
    except OSError as exc:
        return exc.strerror or str(exc)


_PORT_HINT = " (LDAPS usually listens on port 636; plain LDAP and StartTLS on 389)"


def _outage(directory, host, port, exc, elapsed):
    """(message, field) explaining why `host:port` could not be used."""
    label = _label(host, port)
    if isinstance(exc, ldap.TIMEOUT):
        return f"LDAP server {label} did not answer within {directory.operation_timeout} s", "hosts"
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    # libldap's errno can be stale; a connect timeout also took (about) the whole connect timeout.
    if info.get("errno") == errno.ETIMEDOUT and elapsed >= 0.9 * directory.connect_timeout:
        return f"Cannot reach LDAP server {label} (no connection within {directory.connect_timeout} s)", "hosts"
    # Ask the network directly what went wrong: libldap reports most failures as "Can't contact LDAP server".
    try:
        with socket.create_connection((host, port), timeout=directory.connect_timeout):
            pass
    except socket.gaierror:
        return f"Cannot reach LDAP server {label} (host name not found)", "hosts"
    except ConnectionRefusedError:
        return f"Cannot reach LDAP server {label} (connection refused)", "hosts"
    except TimeoutError:
        return f"Cannot reach LDAP server {label} (no connection within {directory.connect_timeout} s)", "hosts"
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno, str(exc))
        return f"Cannot reach LDAP server {label} ({reason.lower()})", "hosts"
    if directory.security != UserDirectory.Security.NONE:
        problem = _tls_problem(directory, host, port)
        return f"TLS with LDAP server {label} failed: {problem or _describe(exc)}", "security"
    return f"Cannot talk to LDAP server {label} ({_describe(exc)})", "hosts"


def _open(directory, bind_dn, password):
    """Connect to the first host that answers (StartTLS if configured) and bind. Returns
    (connection, 'host:port'). ldap.INVALID_CREDENTIALS and other answers of the server propagate;
    when no host answers, DirectoryUnavailable lists why for each."""
    failures = []
    try:
        servers = directory.servers()
    except ValueError as exc:
        raise DirectoryError(str(exc), field="hosts") from None
    if not servers:
        raise DirectoryError("No LDAP host is configured.", field="hosts")
    for host, port in servers:
        conn = _initialize(directory, host, port)
        started = time.monotonic()
        try:
            if directory.security == UserDirectory.Security.STARTTLS:
                try:
                    conn.start_tls_s()
                except (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR):
                    raise
                except ldap.LDAPError as exc:
                    raise DirectoryError(
                        f"LDAP server {_label(host, port)} refused StartTLS ({_describe(exc)})", field="security"
                    ) from None
            conn.simple_bind_s(bind_dn, password)
        except (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR) as exc:
            _close(conn)
            failures.append(_outage(directory, host, port, exc, time.monotonic() - started))
            log.warning(
                "LDAP server %s of %s unavailable: %s",
                _label(host, port),
                directory.name,
                failures[-1][0],
                extra={"checkpoint": "DIRECTORY_UNAVAILABLE"},
            )
            continue
        except BaseException:
            _close(conn)
            raise
        return conn, _label(host, port)
    raise DirectoryUnavailable("; ".join(message for message, _ in failures), field=failures[0][1])


def _bind_password(directory):
    try:
        return unseal_text(directory.bind_password)
    except SecretBoxError as exc:
        raise DirectoryError(
            f"The stored bind password cannot be decrypted ({exc}); enter it again.", field="bind_password"
        ) from None


@contextmanager
def _service(directory):
    """A connection bound with the directory's own credentials (the service account, or anonymous).
    Outages and timeouts inside the block become DirectoryUnavailable."""
    bind_dn = directory.bind_dn.strip()
    password = _bind_password(directory)
    if bind_dn and not password:
        raise DirectoryError(
            "A bind DN is set but no bind password is stored; enter the bind password "
            "(an empty password would bind anonymously).",
            field="bind_password",
        )
    try:
        conn, label = _open(directory, bind_dn, password)
    except ldap.INVALID_CREDENTIALS:
        log.warning(
            "service bind of %s as %s rejected: invalid credentials",
            directory.name,
            bind_dn or "anonymous",
            extra={"checkpoint": "DIRECTORY_SERVICE_BIND_FAILED"},
        )
        raise DirectoryError("The bind DN or password is wrong (invalid credentials)", field="bind_password") from None
    except ldap.INVALID_DN_SYNTAX:
        raise DirectoryError(f"The bind DN '{bind_dn}' is not a valid DN.", field="bind_dn") from None
    except ldap.CONFIDENTIALITY_REQUIRED:
        raise DirectoryError("The server requires a protected connection: choose StartTLS or LDAPS.", field="security") from None
    except ldap.LDAPError as exc:
        log.warning(
            "service bind of %s refused: %s",
            directory.name,
            _describe(exc),
            extra={"checkpoint": "DIRECTORY_SERVICE_BIND_FAILED"},
        )
        raise DirectoryError(
            f"The server refused the bind as {bind_dn or 'anonymous'} ({_describe(exc)}).", field="bind_dn"
        ) from None
    try:
        yield conn, label
    except ldap.TIMEOUT:
        raise DirectoryUnavailable(
            f"LDAP server {label} did not answer within {directory.operation_timeout} s", field="hosts"
        ) from None
    except ldap.SERVER_DOWN as exc:
        raise DirectoryUnavailable(f"Lost the connection to LDAP server {label} ({_describe(exc)})", field="hosts") from None
    except ldap.LDAPError as exc:
        raise DirectoryError(f"LDAP server {label} answered with an error: {_describe(exc)}") from None
    finally:
        _close(conn)


# --- LDAP: searches -------------------------------------------------------------------------------


_SCOPES = {UserDirectory.Scope.SUBTREE: ldap.SCOPE_SUBTREE, UserDirectory.Scope.ONELEVEL: ldap.SCOPE_ONELEVEL}


def _search(directory, conn, base, scope, filterstr, attrlist, sizelimit=0):
    """(entries, truncated): entries as (dn, {attribute: [bytes]}) without referrals."""
    msgid = conn.search_ext(base, scope, filterstr, attrlist=attrlist, sizelimit=sizelimit)
    entries, truncated = [], False
    try:
        while True:
            rtype, rdata, _, _ = conn.result3(msgid, all=0, timeout=directory.operation_timeout)
            if rtype == ldap.RES_SEARCH_ENTRY:
                entries.extend((dn, attrs) for dn, attrs in rdata if dn is not None)
            elif rtype == ldap.RES_SEARCH_RESULT:
                break
    except ldap.SIZELIMIT_EXCEEDED:
        truncated = True
    except ldap.TIMEOUT:
        try:
            conn.abandon(msgid)
        except ldap.LDAPError:
            pass
        raise
    return entries, truncated


def _checked_search(directory, conn, base, scope, filterstr, attrlist, sizelimit=0, base_field="search_root", filter_field=""):
    """_search with the two usual configuration mistakes explained: a base that does not exist and
    a filter that is not a filter."""
    try:
        return _search(directory, conn, base, scope, filterstr, attrlist, sizelimit)
    except ldap.NO_SUCH_OBJECT:
        who = directory.bind_dn.strip() or "an anonymous bind"
        raise DirectoryError(
            f"The search base '{base}' does not exist on the server (or {who} may not read it).", field=base_field
        ) from None
    except ldap.FILTER_ERROR:
        raise DirectoryError(f"'{filterstr}' is not a valid LDAP filter.", field=filter_field) from None
    except ldap.INVALID_DN_SYNTAX:
        raise DirectoryError(f"'{base}' is not a valid DN.", field=base_field) from None


def _fill(spec, value):
    """A filter from a spec with %s: the value escaped, parentheses added when the spec has none."""
    text = spec.strip().replace("%s", ldap.filter.escape_filter_chars(value))
    return text if text.startswith("(") else f"({text})"


def _text(value):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii")  # binary values (photos, certificates) as base64


def _user_base(directory):
    if directory.search_root.strip():
        return directory.search_root.strip()
    return directory.user_dn_end.strip().lstrip(",").strip()


def _group_base(directory):
    return directory.group_search_root.strip() or _user_base(directory)


def _login_attribute(directory):
    """The attribute that holds the login name: from 'uid=' in the DN lookup, else from '(uid=%s)'."""
    match = re.fullmatch(r"\s*([A-Za-z][\w-]*)\s*=\s*", directory.user_dn_start or "")
    if match:
        return match.group(1)
    match = re.search(r"\(\s*([A-Za-z][\w-]*)\s*=\s*%s\s*\)", directory.user_filter or "")
    return match.group(1) if match else ""


def _entry_value(attrs, name):
    for key, values in attrs.items():
        if key.lower() == name.lower() and values:
            return _text(values[0])
    return ""


def _one(directory, entries, truncated, description, field):
    if len(entries) > 1 or truncated:
        shown = ", ".join(dn for dn, _ in entries[:2])
        log.warning("%s matches several entries in %s", description, directory.name, extra={"checkpoint": "DIRECTORY_AMBIGUOUS"})
        raise AmbiguousUser(
            f"{description} matches more than one entry in {directory.name} ({shown}, ...); use an attribute that is unique.",
            field=field,
        )
    return entries[0] if entries else None


# --- LDAP: the operations ---------------------------------------------------------------------------


def _ldap_authenticate(directory, login, password):
    if directory.user_dn_start or directory.user_dn_end:
        dn = f"{directory.user_dn_start}{ldap.dn.escape_dn_chars(login)}{directory.user_dn_end}"
        if not ldap.dn.is_dn(dn):
            log.info("login %r makes no valid DN in %s", login, directory.name, extra={"checkpoint": "DIRECTORY_AUTH_FAILED"})
            return None
        try:
            conn, label = _open(directory, dn, password)
        except ldap.INVALID_CREDENTIALS:
            log.info("wrong password or unknown user %s in %s", dn, directory.name, extra={"checkpoint": "DIRECTORY_AUTH_FAILED"})
            return None
        except ldap.LDAPError as exc:
            log.warning("bind as %s refused: %s", dn, _describe(exc), extra={"checkpoint": "DIRECTORY_AUTH_FAILED"})
            return None
        try:
            # The entry's DN as the server spells it (the bound user may read its own entry).
            entries, _ = _search(directory, conn, dn, ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"])
            dn = entries[0][0] if entries else dn
        except ldap.TIMEOUT:
            raise DirectoryUnavailable(
                f"LDAP server {label} did not answer within {directory.operation_timeout} s", field="hosts"
            ) from None
        except ldap.LDAPError:
            pass
        finally:
            _close(conn)
    else:
        with _service(directory) as (conn, label):
            filterstr = _fill(directory.user_filter, login)
            entries, truncated = _checked_search(
                directory,
                conn,
                _user_base(directory),
                _SCOPES[directory.scope],
                filterstr,
                ["1.1"],
                2,
                filter_field="user_filter",
            )
            found = _one(directory, entries, truncated, f"The login {login!r}", "user_filter")
            if found is None:
                log.info("unknown user %s in %s", login, directory.name, extra={"checkpoint": "DIRECTORY_AUTH_UNKNOWN_USER"})
                return None
            dn = found[0]
            try:
                conn.simple_bind_s(dn, password)
            except ldap.INVALID_CREDENTIALS:
                log.info("wrong password for %s in %s", dn, directory.name, extra={"checkpoint": "DIRECTORY_AUTH_FAILED"})
                return None
            except (ldap.TIMEOUT, ldap.SERVER_DOWN):
                raise
            except ldap.LDAPError as exc:
                log.warning("bind as %s refused: %s", dn, _describe(exc), extra={"checkpoint": "DIRECTORY_AUTH_FAILED"})
                return None
    log.info("user %s authenticated in %s as %s", login, directory.name, dn, extra={"checkpoint": "DIRECTORY_AUTH_OK"})
    return DirectoryUser(directory, dn, login)


def _ldap_find_user(directory, search_spec, value):
    filterstr = _fill(search_spec, value)
    login_attribute = _login_attribute(directory)
    with _service(directory) as (conn, _label_):
        entries, truncated = _checked_search(
            directory,
            conn,
            _user_base(directory),
            _SCOPES[directory.scope],
            filterstr,
            [login_attribute] if login_attribute else ["1.1"],
            2,
            filter_field="search_spec",
        )
    found = _one(directory, entries, truncated, f"The search {filterstr}", "search_spec")
    if found is None:
        log.info("no entry for %s in %s", filterstr, directory.name, extra={"checkpoint": "DIRECTORY_FIND_NONE"})
        return None
    dn, attrs = found
    log.info("found %s for %s in %s", dn, filterstr, directory.name, extra={"checkpoint": "DIRECTORY_FIND_OK"})
    return DirectoryUser(directory, dn, _entry_value(attrs, login_attribute) if login_attribute else value)


def _ldap_attributes(directory, user, names):
    result = {name: ([user.identifier] if name.lower() == "dn" else []) for name in names}
    wanted = [name for name in names if name.lower() != "dn"]
    if not wanted:
        return result
    with _service(directory) as (conn, _label_):
        try:
            entries, _ = _search(directory, conn, user.identifier, ldap.SCOPE_BASE, "(objectClass=*)", wanted)
        except ldap.NO_SUCH_OBJECT:
            raise DirectoryError(f"The user entry {user.identifier} no longer exists in {directory.name}.") from None
    if entries:
        by_name = {key.lower(): values for key, values in entries[0][1].items()}
        for name in wanted:
            result[name] = [_text(value) for value in by_name.get(name.lower(), [])]
    return result


def _ldap_groups(directory, user):
    name_attribute = directory.group_name_attribute.strip() or "cn"
    with _service(directory) as (conn, _label_):
        entries, _ = _checked_search(
            directory,
            conn,
            _group_base(directory),
            ldap.SCOPE_SUBTREE,
            _fill(directory.group_filter, user.identifier),
            [name_attribute],
            base_field="group_search_root",
            filter_field="group_filter",
        )
    found = []
    for dn, attrs in entries:
        name = _entry_value(attrs, name_attribute) or ldap.dn.str2dn(dn)[0][0][1]
        found.append(Group(dn, name))
    return sorted(found, key=lambda group: group.name.lower())


def _ldap_contents(directory):
    base = _user_base(directory)
    with _service(directory) as (conn, label):
        entries, truncated = [], False
        if base:
            entries, truncated = _checked_search(
                directory,
                conn,
                base,
                ldap.SCOPE_SUBTREE,
                "(objectClass=*)",
                CONTENTS_ATTRIBUTES,
                CONTENTS_LIMIT,
                base_field="search_root" if directory.search_root.strip() else "user_dn_end",
            )
            if not (directory.user_dn_start or directory.user_dn_end):
                # A filter the server cannot parse would fail every login; find out now.
                _checked_search(
                    directory,
                    conn,
                    base,
                    _SCOPES[directory.scope],
                    _fill(directory.user_filter, "federation-connection-test"),
                    ["1.1"],
                    1,
                    filter_field="user_filter",
                )
        group_base = _group_base(directory)
        if group_base:
            _checked_search(
                directory,
                conn,
                group_base,
                ldap.SCOPE_SUBTREE,
                _fill(directory.group_filter, "cn=federation-connection-test"),
                ["1.1"],
                1,
                base_field="group_search_root",
                filter_field="group_filter",
            )
    shown = [
        (dn, {key: [_text(v) for v in values[:5]] for key, values in attrs.items()}) for dn, attrs in entries[:CONTENTS_LIMIT]
    ]
    who = directory.bind_dn.strip() or "anonymous"
    if not base:
        message = f"Connected to {label} and bound as {who}. No search root is set, so nothing is listed."
    elif truncated or len(entries) > CONTENTS_LIMIT:
        message = f"Connected to {label} and bound as {who}. The first {len(shown)} entries under {base}:"
    else:
        message = f"Connected to {label} and bound as {who}. {len(shown)} entries under {base}:"
    return ConnectionReport(True, message, shown, server=label)


# --- LDAP: primitives for rules (federation users) -------------------------------------------------

# How far nested group membership is followed (a group in a group in a group ...); cycles stop earlier.
GROUP_NESTING_LIMIT = 10
SEARCH_SCOPES = {"base": ldap.SCOPE_BASE, "onelevel": ldap.SCOPE_ONELEVEL, "subtree": ldap.SCOPE_SUBTREE}


def _ldap_only(directory, what):
    if directory.is_embedded:
        raise DirectoryError(f"{what} needs an LDAP directory; {directory.name} is the embedded directory.")


def user_search_root(directory):
    """The base DN of user searches: the search root, else the DN lookup end (',ou=people,...')."""
    return _user_base(directory)


def search_dns(directory, base, ldap_filter, scope="subtree"):
    """The DNs of the entries under `base` (scope "base", "onelevel" or "subtree") that match
    `ldap_filter`, as the server spells them and sorted, bound as the service account. DirectoryError when the
    base does not exist, the filter is not a filter, or the server returns only part of the answer
    (its size limit): a partial answer is never passed off as the whole one. DirectoryUnavailable
    when the server cannot be reached or does not answer in time."""
    _ldap_only(directory, "An LDAP search")
    with _service(directory) as (conn, label):
        entries, truncated = _checked_search(
            directory, conn, base, SEARCH_SCOPES[scope], ldap_filter, ["1.1"], base_field="", filter_field=""
        )
    if truncated:
        raise DirectoryError(
            f"The search {ldap_filter} under {base} found more entries than LDAP server {label} returns (its size limit)."
        )
    return sorted((dn for dn, _ in entries), key=str.lower)


def entry_matches(directory, dn, ldap_filter):
    """True when the entry `dn` matches `ldap_filter` (a search with base `dn`, scope base).
    DirectoryError when the entry does not exist (or the service account may not read it)."""
    _ldap_only(directory, "An LDAP search")
    with _service(directory) as (conn, _label_):
        entries, _ = _checked_search(directory, conn, dn, ldap.SCOPE_BASE, ldap_filter, ["1.1"], base_field="", filter_field="")
    return bool(entries)


def entries_matching(directory, dns, ldap_filter):
    """The DNs among `dns` whose entries match `ldap_filter`, checked on one connection; a DN without
    an entry (for example dc=org above the directory's suffix) is simply not a match."""
    _ldap_only(directory, "An LDAP search")
    found = []
    with _service(directory) as (conn, _label_):
        for dn in dns:
            try:
                entries, _ = _search(directory, conn, dn, ldap.SCOPE_BASE, ldap_filter, ["1.1"])
            except ldap.NO_SUCH_OBJECT:
                continue
            except ldap.FILTER_ERROR:
                raise DirectoryError(f"'{ldap_filter}' is not a valid LDAP filter.") from None
            except ldap.INVALID_DN_SYNTAX:
                raise DirectoryError(f"'{dn}' is not a valid DN.") from None
            if entries:
                found.append(dn)
    return found


def group_dns(directory, dn, nested=False, limit=GROUP_NESTING_LIMIT):
    """The DNs of the groups that `dn` is a member of: groups under the group search root whose
    membership filter (the directory's group filter with %s = the member's DN) names it. With
    `nested`, also the groups that contain those groups, level by level, at most `limit` levels
    deep; a membership cycle ends the walk instead of looping. Direct groups come first, then each
    further level, each level sorted by DN."""
    _ldap_only(directory, "Group membership")
    base = _group_base(directory)
    if not base:
        raise DirectoryError("Set a group search root (or a search root) to look up groups.", field="group_search_root")
    seen, order, members = set(), [], [dn]
    with _service(directory) as (conn, _label_):
        for _level in range(limit if nested else 1):
            filterstr = "(|" + "".join(_fill(directory.group_filter, member) for member in members) + ")"
            entries, truncated = _checked_search(
                directory,
                conn,
                base,
                ldap.SCOPE_SUBTREE,
                filterstr,
                ["1.1"],
                base_field="group_search_root",
                filter_field="group_filter",
            )
            if truncated:
                raise DirectoryError(f"The groups of {dn} are more than the LDAP server returns (its size limit).")
            members = []
            for group_dn, _ in sorted(entries, key=lambda entry: entry[0].lower()):
                key = group_dn.lower()
                if key not in seen:
                    seen.add(key)
                    order.append(group_dn)
                    members.append(group_dn)
            if not members:
                break
    return order
