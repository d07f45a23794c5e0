"""Federation users rules (partnerships.federation_users) against the real slapd and the embedded directory.

Who is who in tests/ldap/directory.ldif (the entries these tests rely on):
  alice  ou=people   fed-admins, staff (nested: all-hands, everyone)
  bob    ou=people   fed-auditors, staff (nested: all-hands, everyone); departmentNumber sales
  carol  ou=people   staff (nested: all-hands, everyone); departmentNumber sales
  zoe    ou=people   no groups
  frank  ou=people   fed-admins
  dave   ou=london,ou=contractors   project-x, loop-a (nested: all-hands, everyone, loop-b); departmentNumber 789
  erin   ou=contractors             no groups; departmentNumber 123
"""

import logging

import ldap
import pytest
from django.contrib.auth.models import Group as DjangoGroup

from federation import directories
from federation.directories import DirectoryError, DirectoryUnavailable, DirectoryUser
from federation.models import UserAttribute, UserDirectory
from partnerships.federation_users import (
    Decision,
    FederationUserRule,
    FilterSyntaxError,
    RuleError,
    RuleKind,
    is_federation_user,
    kinds_for,
    parse_filter,
    validate_rules,
)
from tests.test_directories import make_ldap_directory

pytestmark = pytest.mark.django_db

BASE = "dc=example,dc=org"
GROUPS = f"ou=groups,{BASE}"
PEOPLE = f"ou=people,{BASE}"
CONTRACTORS = f"ou=contractors,{BASE}"
LONDON = f"ou=london,{CONTRACTORS}"
DN = {
    "alice": f"uid=alice,{PEOPLE}",
    "bob": f"uid=bob,{PEOPLE}",
    "carol": f"uid=carol,{PEOPLE}",
    "zoe": f"uid=zoe,{PEOPLE}",
    "frank": f"uid=frank,{PEOPLE}",
    "dave": f"uid=dave,{LONDON}",
    "erin": f"uid=erin,{CONTRACTORS}",
}
EVERYBODY = sorted(DN)


def include(kind, value, directory="corp"):
    return FederationUserRule(directory, kind, value)


def exclude(kind, value, directory="corp"):
    return FederationUserRule(directory, kind, value, exclude=True)


@pytest.fixture
def corp(slapd):
    return make_ldap_directory(slapd)


def ldap_user(directory, uid):
    """The user as the runtime gets it: found in the real directory."""
    user = directories.find_user(directory, "(uid=%s)", uid)
    assert user is not None and user.identifier == DN[uid]
    return user


def allowed_users(rules, directory):
    return [uid for uid in EVERYBODY if is_federation_user(rules, directory, ldap_user(directory, uid)).allowed]


# --- validation -----------------------------------------------------------------------------------

LDAP_DIRECTORY = UserDirectory(name="corp", kind=UserDirectory.Kind.LDAP)
EMBEDDED = UserDirectory(name="Embedded directory", kind=UserDirectory.Kind.EMBEDDED)
NO_OU = "The embedded directory has no organizational units; use a group or a filter on user properties instead."


@pytest.mark.parametrize(
    "kind, value, problems",
    [
        (RuleKind.USER, "uid=user1,ou=people,dc=example,dc=com", []),
        (RuleKind.USER, "alice", ["'alice' is not a DN (expected something like uid=user1,ou=people,dc=example,dc=com)."]),
        (
            RuleKind.GROUP,
            "cn=sales,,dc=example",
            ["'cn=sales,,dc=example' is not a DN (expected something like cn=sales,ou=groups,dc=example,dc=com)."],
        ),
        (RuleKind.OU, "people", ["'people' is not a DN (expected something like ou=people,dc=example,dc=com)."]),
        (RuleKind.GROUP, "  ", ["Enter a group DN."]),
        (RuleKind.USER, "", ["Enter a user DN."]),
        (RuleKind.OU, "", ["Enter the DN of an organizational unit."]),
        (RuleKind.USER_FILTER, "", ["Enter a filter."]),
        (RuleKind.USER_FILTER, "(|(mail=*@example.com)(memberof=cn=employees,ou=groups,dc=example,dc=com))", []),
        (RuleKind.GROUP_FILTER, "businesscategory=CA Support", []),
        (RuleKind.OU_FILTER, "(|(preferreddeliverymethod=*phone)(l=london))", []),
        (
            RuleKind.ANY_FILTER,
            "(&(memberof=cn=administrators,ou=groups,dc=example,dc=com)(|(departmentnumber=123)(departmentnumber=789)))",
            [],
        ),
        (RuleKind.USER_FILTER, "(cn=a", ["'(cn=a' is not a valid LDAP filter: Missing ')' to close the '(' at character 1."]),
        (
            RuleKind.ANY_FILTER,
            "(cn=a)(cn=b)",
            [
                "'(cn=a)(cn=b)' is not a valid LDAP filter: Text after the end of the filter; "
                "combine several filters with (&...) or (|...) (at character 7)."
            ],
        ),
        (
            RuleKind.OU_FILTER,
            "(l=(london))",
            ["'(l=(london))' is not a valid LDAP filter: A '(' in a value must be written \\28 (at character 4)."],
        ),
        (
            RuleKind.GROUP_FILTER,
            "cn=a\\zz",
            [
                "'cn=a\\zz' is not a valid LDAP filter: A backslash in a value must start a two-digit hex escape "
                "(\\2a for *, \\28 for (, \\29 for ), \\5c for \\) (at character 5)."
            ],
        ),
        (
            RuleKind.USER_FILTER,
            "(&)",
            [
                "'(&)' is not a valid LDAP filter: '&' needs at least one filter in parentheses, e.g. (&(cn=a)(cn=b)) (at character 3)."
            ],
        ),
        (
            RuleKind.USER_FILTER,
            "(de pt=1)",
            [
                "'(de pt=1)' is not a valid LDAP filter: 'de pt' is not an attribute name (letters, digits and hyphens, starting with a letter) (at character 2)."
            ],
        ),
    ],
)
def test_validate_an_ldap_row(kind, value, problems):
    assert FederationUserRule("corp", kind, value).validate([LDAP_DIRECTORY]) == problems
    assert FederationUserRule("corp", kind, value, exclude=True).validate([LDAP_DIRECTORY]) == problems


def test_a_row_for_a_directory_that_is_not_selected():
    rule = FederationUserRule("hr", RuleKind.GROUP, "cn=staff,ou=groups,dc=example,dc=org")
    assert rule.validate([LDAP_DIRECTORY]) == [
        "The directory 'hr' is not one of the partnership's selected directories; select it in step 1 or remove this row."
    ]
    assert rule.validate([LDAP_DIRECTORY, UserDirectory(name="hr", kind=UserDirectory.Kind.LDAP)]) == []


@pytest.mark.parametrize(
    "kind, value, problems",
    [
        (RuleKind.USER, "ann", []),
        (RuleKind.USER, "", ["Enter a username."]),
        (RuleKind.GROUP, "sales", []),
        (RuleKind.GROUP, "", ["Enter a group name."]),
        (RuleKind.GROUP, "x" * 151, ["A group name has at most 150 characters."]),
        (RuleKind.OU, "ou=people,dc=example,dc=org", [NO_OU]),
        (RuleKind.OU_FILTER, "(l=london)", [NO_OU]),
        (RuleKind.USER_FILTER, "(&(email=*@example.org)(!(memberOf=sales)))", []),
        (RuleKind.GROUP_FILTER, "cn=sa*", []),
        (
            RuleKind.USER_FILTER,
            "(employee_number>=10)",
            ["The embedded directory does not support '>='; use =, =* (present) and * wildcards, combined with &, | and !."],
        ),
        (
            RuleKind.ANY_FILTER,
            "(cn:caseExactMatch:=Ann)",
            [
                "The embedded directory does not support an extensible match (:=); use =, =* (present) and * wildcards, combined with &, | and !."
            ],
        ),
        (
            RuleKind.ANY_FILTER,
            "(email=a",
            ["'(email=a' is not a valid LDAP filter: Missing ')' to close the '(' at character 1."],
        ),
    ],
)
def test_validate_an_embedded_row(kind, value, problems):
    assert FederationUserRule(EMBEDDED.name, kind, value).validate([EMBEDDED]) == problems


def test_validate_rules_numbers_the_rows():
    rules = [
        include(RuleKind.GROUP, "cn=staff,ou=groups,dc=example,dc=org"),
        exclude(RuleKind.USER, "bob"),
        include(RuleKind.OU, "ou=people,dc=example,dc=org", directory="Embedded directory"),
    ]
    assert validate_rules(rules, [LDAP_DIRECTORY, EMBEDDED]) == [
        "Row 2: 'bob' is not a DN (expected something like uid=user1,ou=people,dc=example,dc=com).",
        f"Row 3: {NO_OU}",
    ]
    assert validate_rules(rules[:1], [LDAP_DIRECTORY]) == []


def test_kinds_offered_per_directory():
    assert kinds_for(LDAP_DIRECTORY) == list(RuleKind)
    assert kinds_for(EMBEDDED) == [
        RuleKind.USER,
        RuleKind.GROUP,
        RuleKind.USER_FILTER,
        RuleKind.GROUP_FILTER,
        RuleKind.ANY_FILTER,
    ]
    assert [kind.label for kind in RuleKind] == [
        "User",
        "Group",
        "Organizational Unit",
        "Filter on User Properties",
        "Filter on Group Properties",
        "Filter on OU Properties",
        "Filter on Any item",
    ]


def test_rows_as_data():
    rule = exclude(RuleKind.USER_FILTER, "(departmentNumber=sales)")
    data = rule.as_dict()
    assert data == {"directory": "corp", "kind": "user_filter", "value": "(departmentNumber=sales)", "exclude": True}
    assert FederationUserRule.from_dict(data) == rule
    assert FederationUserRule.from_dict({"directory": "corp", "kind": "ou", "value": "ou=x"}).exclude is False
    with pytest.raises(ValueError, match="^Unknown key 'negate' in a federation users row.$"):
        FederationUserRule.from_dict({**data, "negate": True})
    with pytest.raises(ValueError, match="^'exclude' of a federation users row must be true or false.$"):
        FederationUserRule.from_dict({**data, "exclude": "yes"})
    with pytest.raises(ValueError, match="^'value' of a federation users row must be text.$"):
        FederationUserRule.from_dict({"directory": "corp", "kind": "ou"})
    with pytest.raises(ValueError, match=r"^'people' is not a user class \(one of user, group, ou, user_filter, "):
        FederationUserRule("corp", "people", "x")


def test_filter_parser_tree_and_positions():
    tree = parse_filter("(&(mail=*@example.org)(!(cn=a*b*c))(employeeNumber>=1002))")
    assert repr(tree) == (
        "FilterAnd(parts=(FilterItem(attribute='mail', op='substring', value='', pieces=('', (), '@example.org')), "
        "FilterNot(part=FilterItem(attribute='cn', op='substring', value='', pieces=('a', ('b',), 'c'))), "
        "FilterItem(attribute='employeeNumber', op='>=', value='1002', pieces=())))"
    )
    assert parse_filter("businesscategory=CA Support") == parse_filter("(businesscategory=CA Support)")
    assert parse_filter("(cn=a\\2a\\28b\\29)").value == "a*(b)"
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter("  sn=x)")  # wrapped: positions still count in the text as typed
    assert (caught.value.position, caught.value.message) == (6, "A ')' that closes nothing (at character 7)")
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(" (sn=x) (cn=y)")
    assert (caught.value.position, caught.value.message) == (
        8,
        "Text after the end of the filter; combine several filters with (&...) or (|...) (at character 9)",
    )
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter("sn=x(")
    assert (caught.value.position, caught.value.message) == (4, "A '(' in a value must be written \\28 (at character 5)")


# Filters the test server accepts or refuses, and what the parser says. The parser is stricter in one
# documented place: (&) and (|) (RFC 4526 absolute true/false) are refused as mistakes in a rule.
SERVER_AGREES = [
    "(cn=a)",
    "( & (cn=a) (sn=b) )",
    "(cn=a\\2a)",
    "(cn~=x)",
    "(employeeNumber>=1002)",
    "(cn:caseExactMatch:=x)",
    "(cn:dn:=x)",
    "(:dn:2.5.13.5:=x)",
    "(cn;lang-en=x)",
    "(2.5.4.3=x)",
    "(!(cn=a))",
    "(cn= a)",
    "(cn=\\e9)",
    "cn=a",
    "(cn=a",
    "(cn=a))",
    "((cn=a))",
    "(=a)",
    "(cn=(x))",
    "(cn=a\\zz)",
    "(cn>=a*)",
    "(c n=x)",
    "(1cn=x)",
    "(!(cn=a)(cn=b))",
    "(cn=a*b**c)",
    "(cn =a)",
    "(!)",
    "(:=x)",
    "(cn=a\\)",
]


@pytest.mark.ldap
def test_the_parser_agrees_with_the_ldap_server(slapd):
    conn = ldap.initialize(slapd.uri)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 5)
    verdicts = []
    for text in SERVER_AGREES:
        try:
            conn.search_s(slapd.base_dn, ldap.SCOPE_BASE, text)
            server = True
        except ldap.FILTER_ERROR:
            server = False
        try:
            parse_filter(text)
            parser = True
        except FilterSyntaxError:
            parser = False
        verdicts.append((text, server, parser))
    conn.unbind_s()
    assert [v for v in verdicts if v[1] != v[2]] == []
    assert sum(1 for v in verdicts if v[1]) == 14  # both kinds are in the list


# --- LDAP: each user class, include and exclude ------------------------------------------------------


@pytest.mark.ldap
@pytest.mark.parametrize(
    "kind, value, members",
    [
        (RuleKind.USER, "UID=Alice, OU=People,DC=Example,DC=org", ["alice"]),
        (RuleKind.USER, f"uid=dave,{LONDON}", ["dave"]),
        (RuleKind.GROUP, f"cn=fed-admins,{GROUPS}", ["alice", "frank"]),
        (RuleKind.GROUP, f"CN=Project-X, {GROUPS}", ["dave"]),
        # nested: all-hands holds the groups staff and project-x; everyone holds all-hands
        (RuleKind.GROUP, f"cn=all-hands,{GROUPS}", ["alice", "bob", "carol", "dave"]),
        (RuleKind.GROUP, f"cn=everyone,{GROUPS}", ["alice", "bob", "carol", "dave"]),
        # loop-a and loop-b hold each other; dave is in loop-a
        (RuleKind.GROUP, f"cn=loop-b,{GROUPS}", ["dave"]),
        (RuleKind.OU, CONTRACTORS, ["dave", "erin"]),
        (RuleKind.OU, "OU=London,ou=contractors,dc=example,dc=org", ["dave"]),
        (RuleKind.OU, PEOPLE, ["alice", "bob", "carol", "frank", "zoe"]),
        (RuleKind.OU, BASE, EVERYBODY),
        (RuleKind.USER_FILTER, "departmentNumber=sales", ["bob", "carol"]),
        (RuleKind.USER_FILTER, "(|(mail=*@contractor.example.net)(title=Head of *))", ["carol", "dave", "erin"]),
        (RuleKind.USER_FILTER, "(!(mail=*@example.org))", ["dave", "erin"]),
        (RuleKind.GROUP_FILTER, "businessCategory=CA Support", ["dave"]),
        (
            RuleKind.GROUP_FILTER,
            "(|(description=*administrator*)(businesscategory=administration))",
            ["alice", "bob", "carol", "dave", "frank"],
        ),
        (RuleKind.GROUP_FILTER, "(cn=fed-*)", ["alice", "bob", "frank"]),
        (RuleKind.OU_FILTER, "postalcode=12345", ["dave"]),
        (RuleKind.OU_FILTER, "(|(preferreddeliverymethod=*phone)(l=london))", ["dave"]),
        (RuleKind.OU_FILTER, "(businessCategory=contracting)", ["dave", "erin"]),
        (RuleKind.OU_FILTER, "(ou=people)", ["alice", "bob", "carol", "frank", "zoe"]),
        # dc=example,dc=org matches but is an organization, not an OU: the OU object class is required
        (RuleKind.OU_FILTER, "(dc=example)", []),
        (RuleKind.ANY_FILTER, "(&(employeeType=contractor)(|(departmentNumber=123)(departmentNumber=789)))", ["dave", "erin"]),
        (RuleKind.ANY_FILTER, "(|(uid=zoe)(sn=Fischer))", ["frank", "zoe"]),
    ],
)
def test_each_ldap_class_includes_and_excludes(corp, kind, value, members):
    assert allowed_users([include(kind, value)], corp) == members
    assert allowed_users([exclude(kind, value)], corp) == [uid for uid in EVERYBODY if uid not in members]


@pytest.mark.ldap
def test_filter_on_any_item_only_finds_users_under_the_search_root(slapd):
    people_only = make_ldap_directory(slapd, name="people-only", search_root=PEOPLE)
    rules = [include(RuleKind.ANY_FILTER, "(departmentNumber=*)", directory="people-only")]
    dave = DirectoryUser(people_only, DN["dave"], "dave")  # matches the filter, but outside the search root
    assert is_federation_user(rules, people_only, dave).allowed is False
    assert is_federation_user(rules, people_only, ldap_user(people_only, "bob")).allowed is True
    # The same filter as a user filter does not look at the search root.
    user_rules = [include(RuleKind.USER_FILTER, "(departmentNumber=*)", directory="people-only")]
    assert is_federation_user(user_rules, people_only, dave).allowed is True


@pytest.mark.ldap
def test_group_membership_uses_the_directorys_group_filter(slapd):
    # With a group filter that no group satisfies, nobody is a member of anything.
    other = make_ldap_directory(slapd, name="unique", group_filter="(&(objectClass=groupOfUniqueNames)(uniqueMember=%s))")
    rules = [include(RuleKind.GROUP, f"cn=staff,{GROUPS}", directory="unique")]
    assert is_federation_user(rules, other, ldap_user(other, "alice")).allowed is False


@pytest.mark.ldap
def test_nested_groups_stop_at_cycles(corp):
    # level by level, each level sorted: direct groups, then their groups, then theirs
    assert directories.group_dns(corp, DN["dave"], nested=True) == [
        f"cn=loop-a,{GROUPS}",
        f"cn=project-x,{GROUPS}",
        f"cn=all-hands,{GROUPS}",
        f"cn=loop-b,{GROUPS}",
        f"cn=everyone,{GROUPS}",
    ]
    assert directories.group_dns(corp, DN["dave"]) == [f"cn=loop-a,{GROUPS}", f"cn=project-x,{GROUPS}"]
    assert directories.group_dns(corp, DN["dave"], nested=True, limit=2) == [
        f"cn=loop-a,{GROUPS}",
        f"cn=project-x,{GROUPS}",
        f"cn=all-hands,{GROUPS}",
        f"cn=loop-b,{GROUPS}",
    ]
    assert directories.group_dns(corp, DN["erin"], nested=True) == []


# --- LDAP: the decision -------------------------------------------------------------------------------


@pytest.mark.ldap
def test_exclusion_wins_whatever_the_order(corp):
    staff = include(RuleKind.GROUP, f"cn=staff,{GROUPS}")
    no_sales = exclude(RuleKind.USER_FILTER, "(departmentNumber=sales)")
    for rules, exclude_row in (([staff, no_sales], 2), ([no_sales, staff], 1)):
        decision = is_federation_user(rules, corp, ldap_user(corp, "carol"))
        assert decision == Decision(
            False,
            f"Refused by row {exclude_row} (exclude Filter on User Properties (departmentNumber=sales) (directory corp)): "
            "the user matches it, and an exclusion overrides any inclusion.",
            exclude_row,
            no_sales,
        )
        assert allowed_users(rules, corp) == ["alice"]


@pytest.mark.ldap
def test_the_reason_names_the_include_row_that_allowed(corp):
    rules = [
        include(RuleKind.USER, DN["bob"]),
        include(RuleKind.OU, CONTRACTORS),
        include(RuleKind.GROUP, f"cn=fed-admins,{GROUPS}"),
        exclude(RuleKind.USER, DN["erin"]),
    ]
    decision = is_federation_user(rules, corp, ldap_user(corp, "frank"))
    assert decision.allowed and decision.row == 3 and decision.rule == rules[2]
    assert decision.reason == (
        f"Allowed by row 3 (include Group cn=fed-admins,{GROUPS} (directory corp)): the user matches it and no exclude row matches."
    )
    refused = is_federation_user(rules, corp, ldap_user(corp, "zoe"))
    assert refused == Decision(False, "Refused: the user matches none of the include rows for directory corp (3 rows checked).")
    assert allowed_users(rules, corp) == ["alice", "bob", "dave", "frank"]


@pytest.mark.ldap
def test_without_include_rows_every_user_of_the_directory_is_included(corp):
    assert allowed_users([], corp) == EVERYBODY
    decision = is_federation_user([], corp, ldap_user(corp, "zoe"))
    assert decision == Decision(
        True, "Allowed: directory corp has no include rows, so all its users are federation users, and it has no exclude rows."
    )
    rules = [exclude(RuleKind.OU, CONTRACTORS)]
    assert allowed_users(rules, corp) == ["alice", "bob", "carol", "frank", "zoe"]
    assert is_federation_user(rules, corp, ldap_user(corp, "alice")).reason == (
        "Allowed: directory corp has no include rows, so all its users are federation users, "
        "and no exclude row matches (1 row checked)."
    )


@pytest.mark.ldap
def test_rows_of_other_directories_do_not_count(corp):
    rules = [
        include(RuleKind.USER, DN["bob"], directory="hr"),
        exclude(RuleKind.OU, BASE, directory="hr"),
        include(RuleKind.USER, DN["alice"]),
    ]
    assert allowed_users(rules, corp) == ["alice"]
    assert allowed_users(rules[:2], corp) == EVERYBODY


@pytest.mark.ldap
def test_a_user_of_another_directory_is_a_programming_error(corp, slapd):
    other = make_ldap_directory(slapd, name="other")
    with pytest.raises(ValueError, match="^The user alice comes from other, not from corp.$"):
        is_federation_user([], corp, ldap_user(other, "alice"))


@pytest.mark.ldap
def test_the_decision_is_logged(corp, caplog):
    caplog.set_level(logging.INFO, logger="partnerships.federation_users")
    is_federation_user([include(RuleKind.USER, DN["bob"])], corp, ldap_user(corp, "alice"))
    record = [r for r in caplog.records if r.name == "partnerships.federation_users"][-1]
    assert record.checkpoint == "FEDERATION_USER_REFUSED"
    assert record.getMessage() == (
        "federation user alice of corp: Refused: the user matches none of the include rows for directory corp (1 row checked)."
    )


# --- LDAP: errors are never an allow -------------------------------------------------------------------


@pytest.mark.ldap
@pytest.mark.parametrize(
    "rules",
    [
        [include(RuleKind.GROUP, f"cn=staff,{GROUPS}")],
        [exclude(RuleKind.USER_FILTER, "(departmentNumber=sales)")],
        [exclude(RuleKind.OU_FILTER, "(l=london)")],
        [exclude(RuleKind.ANY_FILTER, "(uid=nobody)")],
        [exclude(RuleKind.GROUP_FILTER, "(cn=nothing)")],
    ],
)
def test_directory_down_is_an_error_not_an_allow(corp, ldap_down, rules):
    alice = ldap_user(corp, "alice")
    corp.hosts, corp.port = ldap_down
    corp.save()
    with pytest.raises(DirectoryUnavailable) as caught:
        is_federation_user(rules, corp, DirectoryUser(corp, alice.identifier, "alice"))
    assert caught.value.message == f"Cannot reach LDAP server 127.0.0.1:{corp.port} (connection refused)"


@pytest.mark.ldap
def test_directory_not_answering_in_time_is_an_error(corp, ldap_blackhole):
    alice = ldap_user(corp, "alice")
    corp.hosts, corp.port = ldap_blackhole
    corp.operation_timeout = 1
    corp.save()
    with pytest.raises(DirectoryUnavailable) as caught:
        is_federation_user([exclude(RuleKind.USER_FILTER, "(cn=x)")], corp, DirectoryUser(corp, alice.identifier, "alice"))
    assert caught.value.message == f"LDAP server 127.0.0.1:{corp.port} did not answer within 1 s"


@pytest.mark.ldap
@pytest.mark.parametrize(
    "rule, message",
    [
        (
            exclude(RuleKind.GROUP, f"cn=gone,{GROUPS}"),
            f"The search base 'cn=gone,{GROUPS}' does not exist on the server (or cn=federation-svc,ou=services,{BASE} may not read it).",
        ),
        (
            exclude(RuleKind.OU, f"ou=gone,{BASE}"),
            f"The search base 'ou=gone,{BASE}' does not exist on the server (or cn=federation-svc,ou=services,{BASE} may not read it).",
        ),
        (
            exclude(RuleKind.USER_FILTER, "(cn=a"),
            "The federation users row 'exclude Filter on User Properties (cn=a (directory corp)' cannot be used: "
            "'(cn=a' is not a valid LDAP filter: Missing ')' to close the '(' at character 1.",
        ),
        (
            include(RuleKind.USER, "alice"),
            "The federation users row 'include User alice (directory corp)' cannot be used: "
            "'alice' is not a DN (expected something like uid=user1,ou=people,dc=example,dc=com).",
        ),
    ],
)
def test_a_row_that_cannot_be_evaluated_is_an_error(corp, rule, message):
    with pytest.raises(DirectoryError) as caught:
        is_federation_user([rule], corp, ldap_user(corp, "alice"))
    assert caught.value.message == message


@pytest.mark.ldap
def test_the_primitives(corp):
    assert directories.search_dns(corp, CONTRACTORS, "(objectClass=inetOrgPerson)") == [DN["dave"], DN["erin"]]
    assert directories.search_dns(corp, CONTRACTORS, "(objectClass=*)", scope="onelevel") == [LONDON, DN["erin"]]
    assert directories.search_dns(corp, CONTRACTORS, "(objectClass=*)", scope="base") == [CONTRACTORS]
    assert directories.entry_matches(corp, DN["bob"], "(departmentNumber=sales)") is True
    assert directories.entry_matches(corp, DN["alice"], "(departmentNumber=sales)") is False
    assert directories.entries_matching(corp, [LONDON, CONTRACTORS, BASE, "dc=org"], "(objectClass=organizationalUnit)") == [
        LONDON,
        CONTRACTORS,
    ]
    with pytest.raises(DirectoryError, match=r"^'\(cn=a' is not a valid LDAP filter\.$"):
        directories.entry_matches(corp, DN["bob"], "(cn=a")
    with pytest.raises(DirectoryError, match="^The search base 'uid=nobody,ou=people,dc=example,dc=org' does not exist"):
        directories.entry_matches(corp, f"uid=nobody,{PEOPLE}", "(objectClass=*)")


# --- embedded directory -------------------------------------------------------------------------------


@pytest.fixture
def embedded(django_user_model):
    directory = directories.get_embedded_directory()
    staff, sales = DjangoGroup.objects.create(name="staff"), DjangoGroup.objects.create(name="sales")
    DjangoGroup.objects.create(name="empty")
    ann = django_user_model.objects.create_user("ann", email="Ann@Example.org", first_name="Ann", last_name="Archer")
    ann.groups.add(staff, sales)
    UserAttribute.objects.create(user=ann, name="department", value="789")
    UserAttribute.objects.create(user=ann, name="Role", value="approver")
    UserAttribute.objects.create(user=ann, name="role", value="buyer")
    ben = django_user_model.objects.create_user("ben", email="ben@partner.example.net", first_name="Ben")
    ben.groups.add(staff)
    UserAttribute.objects.create(user=ben, name="department", value="123")
    django_user_model.objects.create_user("cat", email="cat@example.org")
    return directory


def embedded_allowed(rules, directory):
    return [
        name
        for name in ("ann", "ben", "cat")
        if is_federation_user(rules, directory, DirectoryUser(directory, name, name)).allowed
    ]


@pytest.mark.parametrize(
    "kind, value, members",
    [
        (RuleKind.USER, "ann", ["ann"]),
        (RuleKind.USER, "Ann", []),  # usernames are compared exactly, as Django stores them
        (RuleKind.GROUP, "staff", ["ann", "ben"]),
        (RuleKind.GROUP, "empty", []),
        (RuleKind.USER_FILTER, "(email=ANN@EXAMPLE.ORG)", ["ann"]),
        (RuleKind.USER_FILTER, "email=*@example.org", ["ann", "cat"]),
        (RuleKind.USER_FILTER, "(&(memberOf=staff)(!(memberOf=sales)))", ["ben"]),
        (RuleKind.USER_FILTER, "(|(department=123)(role=approver))", ["ann", "ben"]),
        (RuleKind.USER_FILTER, "(ROLE=buy*)", ["ann"]),
        (RuleKind.USER_FILTER, "(department=*)", ["ann", "ben"]),
        (RuleKind.USER_FILTER, "(first_name=*)", ["ann", "ben"]),
        (RuleKind.USER_FILTER, "(last_name=a*ch*r)", ["ann"]),
        (RuleKind.USER_FILTER, "(username=*n)", ["ann", "ben"]),
        (RuleKind.USER_FILTER, "(nickname=*)", []),
        (RuleKind.ANY_FILTER, "(&(department=789)(memberOf=sales))", ["ann"]),
        (RuleKind.GROUP_FILTER, "(cn=sa*)", ["ann"]),
        (RuleKind.GROUP_FILTER, "(|(name=staff)(cn=empty))", ["ann", "ben"]),
    ],
)
def test_each_embedded_class_includes_and_excludes(embedded, kind, value, members):
    assert embedded_allowed([include(kind, value, directory=embedded.name)], embedded) == members
    assert embedded_allowed([exclude(kind, value, directory=embedded.name)], embedded) == [
        name for name in ("ann", "ben", "cat") if name not in members
    ]


def test_embedded_exclusion_wins_and_reasons(embedded):
    name = embedded.name
    rules = [include(RuleKind.GROUP, "staff", directory=name), exclude(RuleKind.USER_FILTER, "(department=789)", directory=name)]
    assert embedded_allowed(rules, embedded) == ["ben"]
    assert is_federation_user(rules, embedded, DirectoryUser(embedded, "ann", "ann")).reason == (
        f"Refused by row 2 (exclude Filter on User Properties (department=789) (directory {name})): "
        "the user matches it, and an exclusion overrides any inclusion."
    )
    assert is_federation_user(rules, embedded, DirectoryUser(embedded, "ben", "ben")).reason == (
        f"Allowed by row 1 (include Group staff (directory {name})): the user matches it and no exclude row matches."
    )
    assert is_federation_user(rules, embedded, DirectoryUser(embedded, "cat", "cat")).reason == (
        f"Refused: the user matches none of the include rows for directory {name} (1 row checked)."
    )
    assert embedded_allowed(rules[1:], embedded) == ["ben", "cat"]


@pytest.mark.parametrize(
    "kind, value, message",
    [
        (RuleKind.GROUP, "nope", "The group 'nope' does not exist in the embedded directory."),
        (RuleKind.OU, "ou=people,dc=example,dc=org", f"cannot be used: {NO_OU}"),
        (RuleKind.USER_FILTER, "(department>=100)", "cannot be used: The embedded directory does not support '>='"),
    ],
)
def test_embedded_rows_that_cannot_be_evaluated(embedded, kind, value, message):
    with pytest.raises(DirectoryError) as caught:
        is_federation_user([exclude(kind, value, directory=embedded.name)], embedded, DirectoryUser(embedded, "ann", "ann"))
    assert message in caught.value.message
    assert isinstance(caught.value, RuleError) == (kind is not RuleKind.GROUP)
