"""Authentication context templates and decisions (partnerships.authn_context); reference ch15-20 part B."""

import pytest
from lxml import etree

from federation.saml.constants import (
    AC_PASSWORD,
    AC_UNSPECIFIED,
    AC_X509,
    NS_SAML,
    NS_SAMLP,
    STATUS_NO_AUTHN_CONTEXT,
    STATUS_REQUEST_UNSUPPORTED,
    STATUS_RESPONDER,
    STATUS_SUCCESS,
)
from partnerships.authn_context import (
    AC_CLASSES_PREFIX,
    AC_INTERNET_PROTOCOL,
    AC_KERBEROS,
    AC_MOBILE_TWO_FACTOR_CONTRACT,
    AC_PREVIOUS_SESSION,
    DEFAULT_CLASS_URIS,
    Comparison,
    Outcome,
    RequestedAuthnContext,
    TemplateError,
    build_requested_context,
    build_template,
    decide_idp_context,
    default_rows,
    detect_session_class,
    satisfies,
    short_name,
    validate_assertion_context,
    validate_entries,
)


def rows(*specs):
    """("X509", None), ("Password", 5, "grouped") → raw rows."""
    out = []
    for spec in specs:
        name, level, *flags = spec
        out.append({"uri": AC_CLASSES_PREFIX + name, "max_level": level, "grouped": "grouped" in flags})
    return out


# B4, ungrouped: X509 (—), MobileTwoFactorContract 15, InternetProtocol 10, Password 5.
B4 = rows(("X509", None), ("MobileTwoFactorContract", 15), ("InternetProtocol", 10), ("Password", 5))
# B4, grouped: X509 + MobileTwoFactorContract share one strength, InternetProtocol + Password another.
B4_GROUPED = rows(
    ("X509", None), ("MobileTwoFactorContract", 15, "grouped"), ("InternetProtocol", 10), ("Password", 5, "grouped")
)
# B6's examples assume a template in which Password ranks above InternetProtocol.
B6_TEMPLATE = build_template(rows(("Password", None), ("InternetProtocol", None)))


def messages(problems):
    return [(p.row, p.field, p.message) for p in problems]


# --- default URIs ---------------------------------------------------------------------------


def test_default_uris_are_the_25_saml2_classes_in_the_reference_order():
    assert len(DEFAULT_CLASS_URIS) == 25 == len(set(DEFAULT_CLASS_URIS))
    assert all(uri.startswith("urn:oasis:names:tc:SAML:2.0:ac:classes:") for uri in DEFAULT_CLASS_URIS)
    assert DEFAULT_CLASS_URIS[0] == AC_INTERNET_PROTOCOL
    assert DEFAULT_CLASS_URIS[-1] == AC_UNSPECIFIED
    names = [short_name(u) for u in DEFAULT_CLASS_URIS]
    for expected in (
        "Password",
        "PasswordProtectedTransport",
        "X509",
        "Kerberos",
        "TLSClient",
        "Smartcard",
        "SmartcardPKI",
        "SoftwarePKI",
        "TimeSyncToken",
        "MobileTwoFactorContract",
        "MobileTwoFactorUnregistered",
        "InternetProtocol",
        "PreviousSession",
        "SecureRemotePassword",
        "AuthenticatedTelephony",
    ):
        assert expected in names


def test_default_rows_make_a_valid_template_without_levels_each_its_own_strength():
    template = build_template(default_rows())
    assert template.uris == DEFAULT_CLASS_URIS
    assert [r.strength for r in template.rows] == list(range(25, 0, -1))


# --- B4 worked example ----------------------------------------------------------------------


def test_b4_ungrouped_ranges_and_strengths():
    """B4: X509 16–1000 strength 4; MobileTwoFactorContract 11–15 strength 3; InternetProtocol 6–10 strength 2;
    Password 1–5 strength 1."""
    template = build_template(B4, protection_levels=True)
    assert [(r.short_name, r.strength, r.min_level, r.max_level) for r in template.rows] == [
        ("X509", 4, 16, 1000),
        ("MobileTwoFactorContract", 3, 11, 15),
        ("InternetProtocol", 2, 6, 10),
        ("Password", 1, 1, 5),
    ]
    assert [r.range_label for r in template.rows] == ["16–1000", "11–15", "6–10", "1–5"]
    assert template.group_count == 4


def test_b4_coverage_rule_an_x509_scheme_at_level_20_falls_in_a_range():
    """B4: "an X.509 scheme at level 20 → some URI range must include 20"."""
    template = build_template(B4, protection_levels=True)
    assert template.class_for_level(20) == AC_X509
    assert template.class_for_level(1000) == AC_X509
    assert template.class_for_level(16) == AC_X509
    assert template.class_for_level(15) == AC_MOBILE_TWO_FACTOR_CONTRACT
    assert template.class_for_level(11) == AC_MOBILE_TWO_FACTOR_CONTRACT
    assert template.class_for_level(10) == AC_INTERNET_PROTOCOL
    assert template.class_for_level(6) == AC_INTERNET_PROTOCOL
    assert template.class_for_level(5) == AC_PASSWORD
    assert template.class_for_level(1) == AC_PASSWORD
    assert template.class_for_level(0) is None
    assert template.class_for_level(1001) is None


def test_every_level_from_1_to_1000_maps_to_exactly_one_uri():
    template = build_template(B4, protection_levels=True)
    for level in range(1, 1001):
        assert sum(1 for r in template.rows if r.min_level <= level <= r.max_level) == 1


def test_b4_grouped_two_strengths_but_each_uri_keeps_its_range():
    """B4: grouping lets URIs with different protection levels share one URI strength; 2 groups → strengths 1–2."""
    template = build_template(B4_GROUPED, protection_levels=True)
    assert [(r.short_name, r.strength, r.range_label) for r in template.rows] == [
        ("X509", 2, "16–1000"),
        ("MobileTwoFactorContract", 2, "11–15"),
        ("InternetProtocol", 1, "6–10"),
        ("Password", 1, "1–5"),
    ]
    assert template.group_count == 2
    assert [(s, [r.short_name for r in g]) for s, g in template.groups()] == [
        (2, ["X509", "MobileTwoFactorContract"]),
        (1, ["InternetProtocol", "Password"]),
    ]


def test_three_groups_give_strengths_1_to_3():
    """B4: "3 groups → strengths 1–3"."""
    template = build_template(rows(("X509", None), ("Kerberos", None, "grouped"), ("Password", None), ("InternetProtocol", None)))
    assert sorted({r.strength for r in template.rows}) == [1, 2, 3]


def test_top_level_may_be_typed_as_1000():
    template = build_template(rows(("X509", 1000), ("Password", 999)), protection_levels=True)
    assert [r.range_label for r in template.rows] == ["1000–1000", "1–999"]


def test_single_uri_covers_everything():
    template = build_template(rows(("Password", None)), protection_levels=True)
    assert template.rows[0].range_label == "1–1000"


def test_levels_are_dropped_when_protection_levels_are_off():
    template = build_template(B4)
    assert all(r.min_level is None and r.max_level is None for r in template.rows)
    assert template.class_for_level(20) is None
    assert template.as_data()[1] == {"uri": AC_MOBILE_TWO_FACTOR_CONTRACT, "grouped": False, "max_level": None}


# --- validation messages --------------------------------------------------------------------


def test_empty_template_is_refused():
    _, problems = validate_entries([], False)
    assert messages(problems) == [(None, None, "Add at least one class URI (type one and click Add URI, or Load default URIs).")]


@pytest.mark.parametrize(
    ("level", "message"),
    [
        (0, "0 is out of range: protection levels run from 1 to 1000."),
        (1001, "1001 is out of range: protection levels run from 1 to 1000."),
        ("-3", "-3 is out of range: protection levels run from 1 to 1000."),
        ("ten", "“ten” is not a whole number; enter a protection level from 1 to 1000."),
        ("2.5", "“2.5” is not a whole number; enter a protection level from 1 to 1000."),
        ("", "Enter this URI's maximum protection level (1–1000)."),
    ],
)
def test_bad_levels_are_reported_at_the_row(level, message):
    _, problems = validate_entries(rows(("X509", None), ("Password", level)), True)
    assert messages(problems) == [(1, "max_level", message)]


def test_top_row_must_reach_1000():
    _, problems = validate_entries(rows(("X509", 900), ("Password", 5)), True)
    assert messages(problems) == [
        (0, "max_level", "The strongest URI's range must reach 1000 (no gap at the top); leave its maximum blank or enter 1000.")
    ]


def test_levels_must_fall_strictly_down_the_list_overlap():
    _, problems = validate_entries(rows(("X509", None), ("Kerberos", 10), ("Password", 10)), True)
    assert messages(problems) == [
        (
            2,
            "max_level",
            "Must be lower than 10, the maximum of the URI above: levels fall strictly from the strongest URI to the "
            "weakest, otherwise the ranges would overlap.",
        )
    ]
    _, problems = validate_entries(rows(("X509", None), ("Kerberos", 5), ("Password", 10)), True)
    assert [p.row for p in problems] == [2]
    _, problems = validate_entries(rows(("X509", None), ("Password", 1000)), True)
    assert [p.message.startswith("Must be lower than 1000") for p in problems] == [True]


def test_a_bad_row_does_not_cascade_into_the_next():
    _, problems = validate_entries(rows(("X509", None), ("Kerberos", "x"), ("Password", 500)), True)
    assert [(p.row, p.field) for p in problems] == [(1, "max_level")]


def test_duplicate_uri_names_the_first_row():
    _, problems = validate_entries(rows(("X509", None), ("Password", None), ("X509", None)), False)
    assert messages(problems) == [(2, "uri", "X509 is already in row 1; each URI may appear once.")]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "Enter a class URI, or remove this row."),
        ("Password", "This is not a URI; class URIs look like urn:oasis:names:tc:SAML:2.0:ac:classes:Password."),
        ("urn:a b", "A class URI cannot contain spaces."),
        ("urn:" + "x" * 1100, "This URI is 1104 characters long; at most 1024 are allowed."),
    ],
)
def test_bad_uris(uri, message):
    _, problems = validate_entries([{"uri": uri}], False)
    assert messages(problems) == [(0, "uri", message)]


def test_custom_uris_are_allowed():
    template = build_template([{"uri": "https://refeds.org/profile/mfa"}, {"uri": AC_PASSWORD}])
    assert template.rows[0].short_name == "https://refeds.org/profile/mfa"


def test_first_row_cannot_be_grouped():
    _, problems = validate_entries(rows(("X509", None, "grouped")), False)
    assert messages(problems) == [(0, "grouped", "The first URI cannot share the strength of a URI above it: there is none.")]


def test_too_many_rows():
    _, problems = validate_entries([{"uri": f"urn:x:{i}"} for i in range(201)], False)
    assert messages(problems) == [(None, None, "A template holds at most 200 URIs; this one has 201.")]


def test_build_template_raises_with_every_problem():
    with pytest.raises(TemplateError) as caught:
        build_template(rows(("X509", 5), ("X509", 0)), protection_levels=True)
    assert [(p.row, p.field) for p in caught.value.problems] == [(0, "max_level"), (1, "uri"), (1, "max_level")]
    assert "row 2: X509 is already in row 1" in str(caught.value)


# --- comparison -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "comparison", "idp", "status"),
    [
        ("Password", "exact", "InternetProtocol", "NoAuthnContext"),
        ("Password", "minimum", "InternetProtocol", "NoAuthnContext"),
        ("Password", "better", "InternetProtocol", "NoAuthnContext"),
        ("InternetProtocol", "exact", "InternetProtocol", "Success"),
        ("InternetProtocol", "minimum", "InternetProtocol", "Success"),
        ("InternetProtocol", "maximum", "InternetProtocol", "Success"),
        ("InternetProtocol", "maximum", "Password", "NoAuthnContext"),
        ("InternetProtocol", "better", "Password", "Success"),
    ],
)
def test_b6_examples_at_the_idp(requested, comparison, idp, status):
    """B6 table (template: Password ranks above InternetProtocol). The session was authenticated with `idp`."""
    decision = decide_idp_context(
        mode="auto_detect",
        template=B6_TEMPLATE,
        requested=RequestedAuthnContext([AC_CLASSES_PREFIX + requested], comparison),
        session_class=AC_CLASSES_PREFIX + idp,
    )
    if status == "Success":
        assert decision.outcome is Outcome.SUCCESS
        assert decision.class_ref == AC_CLASSES_PREFIX + idp
        assert decision.status == (STATUS_SUCCESS, None)
    else:
        assert decision.outcome is Outcome.NO_AUTHN_CONTEXT
        assert decision.class_ref is None
        assert decision.status == (STATUS_RESPONDER, STATUS_NO_AUTHN_CONTEXT)


@pytest.mark.parametrize(
    ("requested", "comparison", "idp", "status"),
    [
        ("Password", "exact", "InternetProtocol", False),
        ("InternetProtocol", "maximum", "Password", False),
        ("InternetProtocol", "better", "Password", True),
        ("InternetProtocol", "minimum", "InternetProtocol", True),
    ],
)
def test_b6_examples_at_the_sp(requested, comparison, idp, status):
    """B6 step 5: the SP validates the assertion's class against what it requested, by the same rules."""
    result = validate_assertion_context(
        B6_TEMPLATE, RequestedAuthnContext([AC_CLASSES_PREFIX + requested], comparison), AC_CLASSES_PREFIX + idp
    )
    assert result.ok is status


def test_grouped_uris_share_strength_for_minimum_maximum_better_but_not_exact():
    template = build_template(B4_GROUPED, protection_levels=True)
    assert satisfies(template, AC_MOBILE_TWO_FACTOR_CONTRACT, AC_X509, Comparison.MINIMUM)
    assert satisfies(template, AC_X509, AC_MOBILE_TWO_FACTOR_CONTRACT, Comparison.MAXIMUM)
    assert not satisfies(template, AC_X509, AC_MOBILE_TWO_FACTOR_CONTRACT, Comparison.BETTER)
    assert satisfies(template, AC_X509, AC_PASSWORD, Comparison.BETTER)
    assert not satisfies(template, AC_MOBILE_TWO_FACTOR_CONTRACT, AC_X509, Comparison.EXACT)
    assert satisfies(template, AC_X509, AC_X509, Comparison.EXACT)


def test_classes_outside_the_template_only_match_exactly():
    template = build_template(B4)
    assert satisfies(template, AC_KERBEROS, AC_KERBEROS, "exact")
    assert not satisfies(template, AC_KERBEROS, AC_PASSWORD, "minimum")
    assert not satisfies(template, AC_X509, AC_KERBEROS, "maximum")


def test_several_requested_classes_are_tried_in_order_first_match_wins():
    """B6: multiple requested URIs are compared one at a time, in order; the first match decides."""
    template = build_template(B4, protection_levels=True)
    requested = RequestedAuthnContext([AC_X509, AC_INTERNET_PROTOCOL, AC_PASSWORD], "minimum")
    decision = decide_idp_context(mode="auto_detect", template=template, requested=requested, protection_level=12)
    assert decision.ok and decision.class_ref == AC_MOBILE_TWO_FACTOR_CONTRACT
    assert decision.matched == AC_INTERNET_PROTOCOL


# --- IdP: B5 decision table -----------------------------------------------------------------

REQUEST = RequestedAuthnContext([AC_X509], "minimum")


@pytest.mark.parametrize(
    ("ignore", "request_", "outcome", "class_ref"),
    [
        (True, REQUEST, Outcome.SUCCESS, AC_PASSWORD),  # ignore the request; the configured URI
        (True, None, Outcome.SUCCESS, AC_PASSWORD),
        (False, REQUEST, Outcome.REQUEST_UNSUPPORTED, None),  # transaction fails: error to the SP
        (False, None, Outcome.SUCCESS, AC_PASSWORD),
    ],
)
def test_b5_predefined_rows(ignore, request_, outcome, class_ref):
    decision = decide_idp_context(mode="predefined", predefined_class=AC_PASSWORD, ignore_requested=ignore, requested=request_)
    assert (decision.outcome, decision.class_ref) == (outcome, class_ref)
    if outcome is Outcome.REQUEST_UNSUPPORTED:
        assert decision.status == (STATUS_RESPONDER, STATUS_REQUEST_UNSUPPORTED)


@pytest.mark.parametrize(
    ("ignore", "request_", "level", "outcome", "class_ref"),
    [
        # Auto-detect, ignore on, SP requests X509 minimum: the level decides, the request is ignored.
        (True, REQUEST, 8, Outcome.SUCCESS, AC_INTERNET_PROTOCOL),
        (True, None, 8, Outcome.SUCCESS, AC_INTERNET_PROTOCOL),
        # Auto-detect, ignore off, SP requests: the level's class must satisfy the request.
        (False, REQUEST, 8, Outcome.NO_AUTHN_CONTEXT, None),
        (False, REQUEST, 20, Outcome.SUCCESS, AC_X509),
        # Auto-detect, ignore off, no request: the level's class.
        (False, None, 3, Outcome.SUCCESS, AC_PASSWORD),
    ],
)
def test_b5_auto_detect_rows(ignore, request_, level, outcome, class_ref):
    template = build_template(B4, protection_levels=True)
    decision = decide_idp_context(
        mode="auto_detect", template=template, ignore_requested=ignore, requested=request_, protection_level=level
    )
    assert (decision.outcome, decision.class_ref) == (outcome, class_ref)


def test_auto_detect_reason_names_the_range():
    template = build_template(B4, protection_levels=True)
    decision = decide_idp_context(mode="auto_detect", template=template, protection_level=20)
    assert decision.reason == "protection level 20 is in X509's range 16–1000"
    failed = decide_idp_context(mode="auto_detect", template=template, protection_level=8, requested=REQUEST)
    assert failed.reason == (
        "protection level 8 is in InternetProtocol's range 6–10; InternetProtocol does not satisfy comparison minimum against X509"
    )


def test_idp_initiated_auto_detect_from_the_session_level():
    """B6 IdP-initiated: the session records the scheme's level; the template maps it to a URI."""
    template = build_template(B4_GROUPED, protection_levels=True)
    assert (
        decide_idp_context(mode="auto_detect", template=template, protection_level=11).class_ref == AC_MOBILE_TWO_FACTOR_CONTRACT
    )


def test_auto_detect_without_a_usable_level_or_class_is_no_authn_context():
    with_levels = build_template(B4, protection_levels=True)
    assert detect_session_class(with_levels, protection_level=0)[0] is None
    assert decide_idp_context(mode="auto_detect", template=with_levels, protection_level=1001).outcome is Outcome.NO_AUTHN_CONTEXT
    without = build_template(B4)
    found, why = detect_session_class(without, protection_level=20)
    assert found is None and "no protection levels" in why
    assert detect_session_class(without, protection_level=20, session_class=AC_X509)[0] == AC_X509
    assert detect_session_class(without, session_class=AC_PREVIOUS_SESSION) == (
        None,
        "the session's class PreviousSession is not in the template",
    )
    assert decide_idp_context(mode="auto_detect", template=without).outcome is Outcome.NO_AUTHN_CONTEXT


def test_level_wins_over_the_recorded_class_when_the_template_has_levels():
    template = build_template(B4, protection_levels=True)
    assert detect_session_class(template, protection_level=3, session_class=AC_X509)[0] == AC_PASSWORD


def test_misconfigured_partnerships_are_programming_errors():
    with pytest.raises(ValueError):
        decide_idp_context(mode="predefined")
    with pytest.raises(ValueError):
        decide_idp_context(mode="auto_detect")
    with pytest.raises(ValueError):
        decide_idp_context(mode="guess", predefined_class=AC_PASSWORD)


# --- SP: requested context (B7) ---------------------------------------------------------------


def test_sp_request_keeps_the_template_order_and_comparison():
    template = build_template(B4, protection_levels=True)
    requested = build_requested_context(template, [AC_PASSWORD, AC_X509], "minimum")
    assert requested.class_refs == (AC_X509, AC_PASSWORD)
    assert requested.comparison is Comparison.MINIMUM
    assert build_requested_context(template, None, "exact").class_refs == template.uris


def test_sp_request_refuses_unknown_uris_empty_selection_and_bad_comparison():
    template = build_template(B4)
    with pytest.raises(TemplateError) as caught:
        build_requested_context(template, [AC_KERBEROS], "exact")
    assert caught.value.problems[0].message == "Not in the template: Kerberos. Choose URIs the template lists."
    with pytest.raises(TemplateError) as caught:
        build_requested_context(template, [], "exact")
    assert caught.value.problems[0].message == "Select at least one URI to request."
    with pytest.raises(TemplateError) as caught:
        build_requested_context(template, [AC_PASSWORD], "atleast")
    assert caught.value.problems[0].field == "comparison"


def test_better_than_the_strongest_group_can_never_be_met():
    template = build_template(B4_GROUPED)
    with pytest.raises(TemplateError) as caught:
        build_requested_context(template, [AC_X509, AC_MOBILE_TWO_FACTOR_CONTRACT], "better")
    assert "nothing stronger" in caught.value.problems[0].message
    assert build_requested_context(template, [AC_PASSWORD], "better").class_refs == (AC_PASSWORD,)


def test_sp_validation_of_the_assertion():
    template = build_template(B4)
    requested = build_requested_context(template, [AC_INTERNET_PROTOCOL], "minimum")
    assert validate_assertion_context(template, requested, AC_X509).ok
    assert validate_assertion_context(template, requested, AC_INTERNET_PROTOCOL).matched == AC_INTERNET_PROTOCOL
    refused = validate_assertion_context(template, requested, AC_PASSWORD)
    assert not refused.ok and refused.reason == "Password does not satisfy comparison minimum against InternetProtocol"
    assert validate_assertion_context(template, requested, "").reason == "the assertion has no AuthnContextClassRef"
    assert not validate_assertion_context(template, requested, AC_KERBEROS).ok


def test_requested_context_xml_round_trip():
    requested = RequestedAuthnContext([AC_X509, AC_PASSWORD], "better")
    element = requested.to_element()
    assert etree.QName(element).namespace == NS_SAMLP and element.get("Comparison") == "better"
    assert [c.text for c in element] == [AC_X509, AC_PASSWORD]
    assert all(etree.QName(c).namespace == NS_SAML for c in element)
    parsed = RequestedAuthnContext.from_element(etree.fromstring(etree.tostring(element)))
    assert parsed == requested


def test_requested_context_xml_defaults_and_errors():
    xml = f'<samlp:RequestedAuthnContext xmlns:samlp="{NS_SAMLP}" xmlns:saml="{NS_SAML}"><saml:AuthnContextClassRef> {AC_PASSWORD} </saml:AuthnContextClassRef></samlp:RequestedAuthnContext>'
    assert RequestedAuthnContext.from_element(etree.fromstring(xml)) == RequestedAuthnContext([AC_PASSWORD], "exact")
    with pytest.raises(ValueError, match="Unknown Comparison “atleast”"):
        RequestedAuthnContext.from_element(etree.fromstring(xml.replace("Context ", 'Context Comparison="atleast" ', 1)))
    empty = f'<samlp:RequestedAuthnContext xmlns:samlp="{NS_SAMLP}" Comparison="exact"/>'
    with pytest.raises(ValueError, match="no AuthnContextClassRef"):
        RequestedAuthnContext.from_element(etree.fromstring(empty))
