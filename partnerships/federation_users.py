"""Federation users: which directory users an asserting-party partnership makes assertions for.

The "Federation Users" wizard step (reference F7.1) holds rows; each row names one of the
partnership's selected directories, a user class (`RuleKind`), a value and an Exclude checkbox:

    rules = [
        FederationUserRule("corp", RuleKind.GROUP, "cn=staff,ou=groups,dc=example,dc=org"),
        FederationUserRule("corp", RuleKind.USER_FILTER, "(departmentNumber=sales)", exclude=True),
    ]
    problems = validate_rules(rules, selected_directories)   # ["Row 2: ...", ...], empty when fine
    decision = is_federation_user(rules, directory, user)    # Decision(allowed, reason, row, rule)

The decision, for the directory the user came from (rows of other directories are ignored):

* an exclude row that matches refuses the user, whatever the include rows say (exclusion wins);
* otherwise, when the directory has include rows, the user is allowed only if one of them matches;
* when the directory has no include rows, every user of the directory is a federation user (the
  reference's default: "all users in the directory are included"), unless an exclude row matches.

`Decision.reason` names the row that decided, for the trace log and the console's "test against
user X" preview. A directory that cannot be reached raises `DirectoryUnavailable` and a rule that
cannot be evaluated (a group or OU that no longer exists, a filter the server refuses) raises
`DirectoryError`: the caller refuses the assertion, it is never allowed by default.

LDAP values are DNs (User, Group, Organizational Unit) or LDAP filters in RFC 4515 syntax (the
four filter classes); a filter may leave out its outer parentheses, as the reference's examples
do (`businesscategory=CA Support`). For the embedded directory a User row holds a username, a
Group row a group name, and the filter classes use the same filter syntax evaluated here against
the user's fields, extra attributes and group names (see docs/federation-users.md); it has no
organizational units. The semantics of every class are in docs/federation-users.md.

The rows are plain data (`as_dict` / `from_dict`): the partnership stores them in its own model.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from enum import StrEnum

import ldap
import ldap.dn

from federation import directories
from federation.directories import DirectoryError

log = logging.getLogger("partnerships.federation_users")

__all__ = [
    "Decision",
    "FederationUserRule",
    "FilterSyntaxError",
    "RuleError",
    "RuleKind",
    "is_federation_user",
    "kinds_for",
    "parse_filter",
    "validate_rules",
]

MAX_FILTER_LENGTH = 4096
OU_OBJECT_CLASS = "organizationalUnit"
# Attribute names of the embedded directory's users that filters may use besides extra attributes.
EMBEDDED_USER_ATTRIBUTES = ("username", "email", "first_name", "last_name", "memberOf")
# Attribute names of the embedded directory's groups (both hold the group name).
EMBEDDED_GROUP_ATTRIBUTES = ("cn", "name")


class RuleKind(StrEnum):
    """The user classes of the wizard (reference F7.1), with the labels the console shows."""

    USER = "user", "User"
    GROUP = "group", "Group"
    OU = "ou", "Organizational Unit"
    USER_FILTER = "user_filter", "Filter on User Properties"
    GROUP_FILTER = "group_filter", "Filter on Group Properties"
    OU_FILTER = "ou_filter", "Filter on OU Properties"
    ANY_FILTER = "any_filter", "Filter on Any item"

    def __new__(cls, value, label):
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member

    @property
    def is_filter(self):
        return self in (RuleKind.USER_FILTER, RuleKind.GROUP_FILTER, RuleKind.OU_FILTER, RuleKind.ANY_FILTER)


def kinds_for(directory):
    """The user classes a row for `directory` may use (no OU classes for the embedded directory)."""
    if directory.is_embedded:
        return [kind for kind in RuleKind if kind not in (RuleKind.OU, RuleKind.OU_FILTER)]
    return list(RuleKind)


class RuleError(DirectoryError):
    """A row that cannot be evaluated as written (normally caught earlier by validate_rules)."""


# --- the rows ---------------------------------------------------------------------------------------


_EXAMPLES = {
    RuleKind.USER: "uid=user1,ou=people,dc=example,dc=com",
    RuleKind.GROUP: "cn=sales,ou=groups,dc=example,dc=com",
    RuleKind.OU: "ou=people,dc=example,dc=com",
}
_NO_OU = "The embedded directory has no organizational units; use a group or a filter on user properties instead."


@dataclass(frozen=True)
class FederationUserRule:
    """One row of the Federation Users step. `directory` is the directory's name (how partnerships
    refer to directories); `value` is a DN, a filter, a username or a group name depending on
    `kind` and on the directory; `exclude` is the Exclude checkbox."""

    directory: str
    kind: RuleKind
    value: str
    exclude: bool = False

    def __post_init__(self):
        try:
            object.__setattr__(self, "kind", RuleKind(self.kind))
        except ValueError:
            choices = ", ".join(kind.value for kind in RuleKind)
            raise ValueError(f"'{self.kind}' is not a user class (one of {choices}).") from None

    def describe(self):
        """'exclude Group cn=staff,ou=groups,dc=example,dc=org (directory corp)'."""
        return f"{'exclude' if self.exclude else 'include'} {self.kind.label} {self.value.strip()} (directory {self.directory})"

    def as_dict(self):
        return {"directory": self.directory, "kind": self.kind.value, "value": self.value, "exclude": self.exclude}

    @classmethod
    def from_dict(cls, data):
        """A row from `as_dict` output; ValueError naming an unknown or missing key or a wrong type."""
        if not isinstance(data, dict):
            raise ValueError("A federation users row must be a mapping.")
        unknown = sorted(set(data) - {"directory", "kind", "value", "exclude"})
        if unknown:
            raise ValueError(f"Unknown key '{unknown[0]}' in a federation users row.")
        for key in ("directory", "kind", "value"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"'{key}' of a federation users row must be text.")
        if not isinstance(data.get("exclude", False), bool):
            raise ValueError("'exclude' of a federation users row must be true or false.")
        return cls(data["directory"], data["kind"], data["value"], data.get("exclude", False))

    def validate(self, selected_directories):
        """Plain messages about this row (empty when it is fine). `selected_directories` are the
        UserDirectory objects chosen in step 1 of the partnership."""
        by_name = {directory.name: directory for directory in selected_directories}
        directory = by_name.get(self.directory)
        problems = []
        if directory is None:
            problems.append(
                f"The directory '{self.directory}' is not one of the partnership's selected directories; "
                "select it in step 1 or remove this row."
            )
        value = self.value.strip()
        if not value:
            what = _value_name(self.kind, directory)
            problems.append(f"Enter {what}.")
            return problems
        if directory is not None and directory.is_embedded:
            problems.extend(self._embedded_problems(value))
        elif self.kind.is_filter:
            problems.extend(_filter_problems(value))
        else:
            try:
                parts = ldap.dn.str2dn(value)
            except ldap.DECODING_ERROR:
                parts = []
            if not parts:
                problems.append(f"'{value}' is not a DN (expected something like {_EXAMPLES[self.kind]}).")
        return problems

    def _embedded_problems(self, value):
        if self.kind in (RuleKind.OU, RuleKind.OU_FILTER):
            return [_NO_OU]
        if self.kind.is_filter:
            problems = _filter_problems(value, embedded=True)
            if not problems:
                problems = _embedded_filter_problems(parse_filter(value, embedded=True))
            return problems
        if len(value) > 150:
            return [f"A {'username' if self.kind is RuleKind.USER else 'group name'} has at most 150 characters."]
        return []


def _value_name(kind, directory):
    if directory is not None and directory.is_embedded and kind is RuleKind.USER:
        return "a username"
    if directory is not None and directory.is_embedded and kind is RuleKind.GROUP:
        return "a group name"
    return {
        RuleKind.USER: "a user DN",
        RuleKind.GROUP: "a group DN",
        RuleKind.OU: "the DN of an organizational unit",
    }.get(kind, "a filter")


def validate_rules(rules, selected_directories):
    """Every problem of every row, as 'Row N: message' (rows counted from 1)."""
    selected_directories = list(selected_directories)
    return [f"Row {row}: {problem}" for row, rule in enumerate(rules, 1) for problem in rule.validate(selected_directories)]


# --- LDAP filters (RFC 4515): a parser, for validation and for the embedded directory -------------------


class FilterSyntaxError(ValueError):
    """A filter that does not parse; `position` is the 0-based character index in the text as typed."""

    def __init__(self, message, position):
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True)
class FilterAnd:
    parts: tuple


@dataclass(frozen=True)
class FilterOr:
    parts: tuple


@dataclass(frozen=True)
class FilterNot:
    part: object


@dataclass(frozen=True)
class FilterItem:
    """attribute OP value. op is '=', '~=', '>=', '<=', 'present', 'substring' or 'extensible';
    for 'substring' the pieces are (initial, (any, ...), final) with '' for a missing end."""

    attribute: str
    op: str
    value: str = ""
    pieces: tuple = field(default=())


_ATTRIBUTE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*")
# The embedded directory's names also have underscores and dots (first_name, extra attribute names).
_EMBEDDED_ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_EXTENSIBLE = re.compile(r"(?P<attr>[^:]*?)(?P<dn>:dn)?(?::(?P<rule>[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+))?", re.IGNORECASE)


def parse_filter(text, embedded=False):
    """The filter's tree; FilterSyntaxError (with the position in `text`) when it is not an LDAP
    filter. Outer parentheses may be left out: 'mail=*@example.org' reads as '(mail=*@example.org)'.
    With `embedded`, attribute names are those of the embedded directory (underscores and dots allowed)."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterSyntaxError(f"A filter has at most {MAX_FILTER_LENGTH} characters.", MAX_FILTER_LENGTH)
    stripped = text.strip()
    lead = len(text) - len(text.lstrip())
    if not stripped:
        raise FilterSyntaxError("The filter is empty.", 0)
    if stripped.startswith("("):
        return _Parser(stripped, lead, embedded).parse()
    # Positions past the typed text (the ')' added here) are reported at its last character.
    return _Parser(f"({stripped})", lead - 1, embedded, last=len(text.rstrip()) - 1).parse()


class _Parser:
    def __init__(self, text, offset, embedded=False, last=None):
        self.text, self.offset, self.pos, self.depth, self.last = text, offset, 0, 0, last
        self.attribute_pattern = _EMBEDDED_ATTRIBUTE if embedded else _ATTRIBUTE
        self.attribute_help = "letters, digits, underscores, dots and hyphens" if embedded else "letters, digits and hyphens"

    def fail(self, message, pos=None, show_position=True):
        where = max(0, (self.pos if pos is None else pos) + self.offset)
        if self.last is not None:
            where = min(where, self.last)
        raise FilterSyntaxError(f"{message} (at character {where + 1})" if show_position else message, where)

    def parse(self):
        node = self.filter()
        self.skip_spaces()
        if self.pos < len(self.text):
            if self.text[self.pos] == ")":
                self.fail("A ')' that closes nothing")
            self.fail("Text after the end of the filter; combine several filters with (&...) or (|...)")
        return node

    def skip_spaces(self):
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def filter(self):
        if self.pos >= len(self.text) or self.text[self.pos] != "(":
            self.fail("Expected '(' to start a filter")
        self.depth += 1
        if self.depth > 50:
            self.fail("The filter is nested too deeply")
        start = self.pos
        self.pos += 1
        self.skip_spaces()
        char = self.text[self.pos] if self.pos < len(self.text) else ""
        if char in ("&", "|"):
            self.pos += 1
            parts = self.filter_list(char)
            node = FilterAnd(parts) if char == "&" else FilterOr(parts)
        elif char == "!":
            self.pos += 1
            self.skip_spaces()
            node = FilterNot(self.filter())
            self.skip_spaces()
        else:
            node = self.item()
        if self.pos >= len(self.text):
            self.fail(f"Missing ')' to close the '(' at character {max(0, start + self.offset) + 1}", show_position=False)
        if self.text[self.pos] != ")":
            self.fail("Expected ')'")
        self.pos += 1
        self.depth -= 1
        return node

    def filter_list(self, operator):
        parts = []
        self.skip_spaces()
        while self.pos < len(self.text) and self.text[self.pos] == "(":
            parts.append(self.filter())
            self.skip_spaces()
        if not parts:
            self.fail(f"'{operator}' needs at least one filter in parentheses, e.g. ({operator}(cn=a)(cn=b))")
        return tuple(parts)

    def item(self):
        start = self.pos
        end = self.text.find(")", start)
        end = len(self.text) if end < 0 else end
        body = self.text[start:end]
        equals = body.find("=")
        if equals < 0:
            self.fail("Expected attribute=value", start)
        if equals > 0 and body[equals - 1] == ":":
            return self.extensible(start, body[: equals - 1], body[equals + 1 :], end)
        op = "="
        name_end = equals
        if equals > 0 and body[equals - 1] in "~<>":
            op = body[equals - 1] + "="
            name_end = equals - 1
        attribute = body[:name_end]
        if not attribute:
            self.fail("An attribute name is missing before the '='", start)
        if attribute.startswith("("):
            self.fail("A '(' must follow &, | or ! (a filter cannot hold a filter without one)", start)
        if not self.attribute_pattern.fullmatch(attribute):
            self.fail(f"'{attribute}' is not an attribute name ({self.attribute_help}, starting with a letter)", start)
        raw = body[equals + 1 :]
        value_start = start + equals + 1
        self.pos = end
        if op != "=":
            return FilterItem(attribute, op, self.value(raw, value_start))
        if raw == "*":
            return FilterItem(attribute, "present")
        if "*" in raw:
            if "**" in raw:
                self.fail("Two '*' in a row in a value; one is enough", value_start + raw.index("**") + 1)
            pieces, offset = [], value_start
            for piece in raw.split("*"):
                pieces.append(self.value(piece, offset))
                offset += len(piece) + 1
            return FilterItem(attribute, "substring", pieces=(pieces[0], tuple(p for p in pieces[1:-1] if p), pieces[-1]))
        return FilterItem(attribute, "=", self.value(raw, value_start))

    def extensible(self, start, head, raw, end):
        match = _EXTENSIBLE.fullmatch(head)
        attribute = match.group("attr") if match else ""
        if not match or (attribute and not _ATTRIBUTE.fullmatch(attribute)) or not (attribute or match.group("rule")):
            self.fail(f"'{head}:=' is not an extensible match (attribute[:dn][:rule]:=value)", start)
        self.pos = end
        return FilterItem(head, "extensible", self.value(raw, start + len(head) + 2))

    def value(self, raw, start):
        """The assertion value with its \\XX escapes decoded."""
        data = bytearray()
        index = 0
        while index < len(raw):
            char = raw[index]
            if char == "\\":
                pair = raw[index + 1 : index + 3]
                if not re.fullmatch(r"[0-9A-Fa-f]{2}", pair):
                    self.fail(
                        "A backslash in a value must start a two-digit hex escape (\\2a for *, \\28 for (, \\29 for ), \\5c for \\)",
                        start + index,
                    )
                data.append(int(pair, 16))
                index += 3
                continue
            if char == "(":
                self.fail("A '(' in a value must be written \\28", start + index)
            if char == "*":
                self.fail("A '*' is only allowed with '=' (write \\2a for a literal star)", start + index)
            data.extend(char.encode("utf-8"))
            index += 1
        return data.decode("utf-8", errors="surrogateescape")  # LDAP values may be binary octets


def _filter_problems(value, embedded=False):
    try:
        parse_filter(value, embedded)
    except FilterSyntaxError as exc:
        return [f"'{value}' is not a valid LDAP filter: {exc.message}."]
    return []


def ldap_filter_text(value):
    """The filter as sent to the server: outer parentheses added when the row leaves them out."""
    value = value.strip()
    return value if value.startswith("(") else f"({value})"


def _items(node):
    if isinstance(node, FilterAnd | FilterOr):
        for part in node.parts:
            yield from _items(part)
    elif isinstance(node, FilterNot):
        yield from _items(node.part)
    else:
        yield node


def _embedded_filter_problems(node):
    for item in _items(node):
        if item.op not in ("=", "present", "substring"):
            shown = "an extensible match (:=)" if item.op == "extensible" else f"'{item.op}'"
            return [
                f"The embedded directory does not support {shown}; use =, =* (present) and * wildcards, combined with &, | and !."
            ]
    return []


def _embedded_match(node, values):
    """Does the filter match an entry with these {lower-case attribute: [values]}? Comparisons
    ignore case, like LDAP's caseIgnoreMatch."""
    if isinstance(node, FilterAnd):
        return all(_embedded_match(part, values) for part in node.parts)
    if isinstance(node, FilterOr):
        return any(_embedded_match(part, values) for part in node.parts)
    if isinstance(node, FilterNot):
        return not _embedded_match(node.part, values)
    found = [value.casefold() for value in values.get(node.attribute.casefold(), [])]
    if node.op == "present":
        return bool(found)
    if node.op == "=":
        return node.value.casefold() in found
    if node.op == "substring":
        initial, final = node.pieces[0].casefold(), node.pieces[2].casefold()
        middle = [piece.casefold() for piece in node.pieces[1]]
        return any(_substring_match(value, initial, middle, final) for value in found)
    raise RuleError(_embedded_filter_problems(node)[0])


def _substring_match(value, initial, middle, final):
    if not value.startswith(initial) or len(value) < len(initial) + len(final):
        return False
    position, end = len(initial), len(value) - len(final)
    for piece in middle:
        found = value.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return value.endswith(final)


# --- the decision ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    row: int | None = None  # the row (from 1) that decided, None for the no-include-rows default
    rule: FederationUserRule | None = None


def _dn_key(dn):
    """The RDNs of a DN, spelled so that equal DNs compare equal (case, spaces, escapes)."""
    try:
        parts = ldap.dn.str2dn(dn)
    except ldap.DECODING_ERROR:
        raise RuleError(f"'{dn}' is not a DN.") from None
    return tuple(tuple(sorted((name.lower(), value.lower()) for name, value, _kind in rdn)) for rdn in parts)


def _is_under(dn, base):
    """True when `dn` is strictly below `base` in the tree."""
    inner, outer = _dn_key(dn), _dn_key(base)
    return len(inner) > len(outer) and inner[len(inner) - len(outer) :] == outer


class _Subject:
    """The user being decided on, with what several rows need looked up once."""

    def __init__(self, directory, user):
        self.directory, self.user = directory, user
        self._groups = None

    def ldap_groups(self):
        """The keys of the DNs of the user's groups, nested membership included."""
        if self._groups is None:
            self._groups = {_dn_key(dn): dn for dn in directories.group_dns(self.directory, self.user.identifier, nested=True)}
        return self._groups

    def embedded_account(self):
        from django.contrib.auth import get_user_model

        account = get_user_model().objects.filter(username=self.user.identifier).first()
        if account is None:
            raise DirectoryError(f"The user {self.user.identifier} no longer exists in the embedded directory.")
        return account


def _require_valid(rule, directory):
    problems = rule.validate([directory])
    if problems:
        raise RuleError(f"The federation users row '{rule.describe()}' cannot be used: {problems[0]}")


def _matches(rule, subject):
    directory = subject.directory
    _require_valid(rule, directory)
    if directory.is_embedded:
        return _embedded_rule_matches(rule, subject)
    value = rule.value.strip()
    user_dn = subject.user.identifier
    if rule.kind is RuleKind.USER:
        return _dn_key(user_dn) == _dn_key(value)
    if rule.kind is RuleKind.GROUP:
        if _dn_key(value) in subject.ldap_groups():
            return True
        directories.search_dns(directory, value, "(objectClass=*)", scope="base")  # a group that is gone is an error
        return False
    if rule.kind is RuleKind.OU:
        if _is_under(user_dn, value):
            return True
        directories.search_dns(directory, value, "(objectClass=*)", scope="base")  # an OU that is gone is an error
        return False
    filterstr = ldap_filter_text(value)
    if rule.kind is RuleKind.USER_FILTER:
        return directories.entry_matches(directory, user_dn, filterstr)
    if rule.kind is RuleKind.GROUP_FILTER:
        groups = subject.ldap_groups()
        return bool(groups) and bool(directories.entries_matching(directory, list(groups.values()), filterstr))
    if rule.kind is RuleKind.OU_FILTER:
        parts = ldap.dn.str2dn(user_dn)
        ancestors = [ldap.dn.dn2str(parts[index:]) for index in range(1, len(parts))]
        return bool(directories.entries_matching(directory, ancestors, f"(&(objectClass={OU_OBJECT_CLASS}){filterstr})"))
    # ANY_FILTER: a subtree search from the search root finds the user exactly when the user is in
    # that subtree and the user's entry matches; checking that directly cannot be cut short by a
    # server size limit the way a search of the whole directory can.
    root = directories.user_search_root(directory)
    if root and _dn_key(user_dn) != _dn_key(root) and not _is_under(user_dn, root):
        return False
    return directories.entry_matches(directory, user_dn, filterstr)


def _embedded_rule_matches(rule, subject):
    from django.contrib.auth.models import Group

    value = rule.value.strip()
    if rule.kind is RuleKind.USER:
        return subject.user.identifier == value
    account = subject.embedded_account()
    if rule.kind is RuleKind.GROUP:
        if account.groups.filter(name=value).exists():
            return True
        if not Group.objects.filter(name=value).exists():
            raise DirectoryError(f"The group '{value}' does not exist in the embedded directory.")
        return False
    node = parse_filter(value, embedded=True)
    if rule.kind is RuleKind.GROUP_FILTER:
        names = account.groups.order_by("name").values_list("name", flat=True)
        return any(_embedded_match(node, {"cn": [name], "name": [name]}) for name in names)
    # USER_FILTER and ANY_FILTER: the embedded directory is flat, so both test the user's own entry.
    return _embedded_match(node, _embedded_values(subject, node))


def _embedded_values(subject, node):
    """{lower-case attribute: [values]} for the attributes the filter mentions."""
    names = {item.attribute.split(";")[0] for item in _items(node)}
    fields = {name.lower(): name for name in directories.EMBEDDED_FIELDS}
    values = {}
    wanted = []
    for name in names:
        if name.lower() == "memberof":
            values["memberof"] = [group.name for group in directories.groups(subject.directory, subject.user)]
        else:
            wanted.append(fields.get(name.lower(), name))
    for name, found in directories.attributes(subject.directory, subject.user, wanted).items():
        values[name.casefold()] = found
    return values


def _rows(count):
    return f"{count} {'row' if count == 1 else 'rows'}"


def is_federation_user(rules, directory, user):
    """Decide whether `user` (a DirectoryUser of `directory`) is a federation user under `rules`
    (the rows of every directory; only those of `directory` count). Exclude rows are checked first,
    and a match refuses the user whatever the include rows say. DirectoryUnavailable and
    DirectoryError propagate: the caller refuses the assertion."""
    if user.directory.pk != directory.pk:
        raise ValueError(f"The user {user.login} comes from {user.directory.name}, not from {directory.name}.")
    mine = [(row, rule) for row, rule in enumerate(rules, 1) if rule.directory == directory.name]
    excludes = [(row, rule) for row, rule in mine if rule.exclude]
    includes = [(row, rule) for row, rule in mine if not rule.exclude]
    subject = _Subject(directory, user)
    decision = None
    for row, rule in excludes:
        if _matches(rule, subject):
            decision = Decision(
                False,
                f"Refused by row {row} ({rule.describe()}): the user matches it, and an exclusion overrides any inclusion.",
                row,
                rule,
            )
            break
    if decision is None and not includes:
        decision = Decision(
            True,
            f"Allowed: directory {directory.name} has no include rows, so all its users are federation users, "
            + (f"and no exclude row matches ({_rows(len(excludes))} checked)." if excludes else "and it has no exclude rows."),
        )
    if decision is None:
        for row, rule in includes:
            if _matches(rule, subject):
                decision = Decision(
                    True, f"Allowed by row {row} ({rule.describe()}): the user matches it and no exclude row matches.", row, rule
                )
                break
    if decision is None:
        decision = Decision(
            False,
            f"Refused: the user matches none of the include rows for directory {directory.name} ({_rows(len(includes))} checked).",
        )
    log.info(
        "federation user %s of %s: %s",
        user.login,
        directory.name,
        decision.reason,
        extra={"checkpoint": "FEDERATION_USER_ALLOWED" if decision.allowed else "FEDERATION_USER_REFUSED"},
    )
    return decision
