"""The attribute expression language (partnerships/expressions.py).

The worked examples of the reference come first, quoted verbatim in each test's docstring:
ch09-10 A5 (claims transformation at the asserting party) and ch20-22 §1.5 (attribute mapping at the relying party).
"""

import random
import sys

import pytest

from partnerships.expressions import (
    DELETE,
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING_DEPTH,
    AttributeRef,
    Comparison,
    Conditional,
    Delete,
    EvaluationResult,
    Expression,
    ExpressionSyntaxError,
    Interpolation,
    Logical,
    Not,
    StringLiteral,
    Template,
    Text,
    compile_expression,
    evaluate_expression,
    unparse,
)


def values(text, attrs=None, session_attrs=None, **options):
    result = compile_expression(text).evaluate(attrs, session_attrs, **options)
    assert not result.deleted
    return result.values


def deleted(text, attrs=None, session_attrs=None, **options):
    return compile_expression(text).evaluate(attrs, session_attrs, **options).deleted


def syntax_error(text):
    with pytest.raises(ExpressionSyntaxError) as caught:
        compile_expression(text)
    return caught.value


# ---------------------------------------------------------------------------------------------------------------------
# ch09-10 A5: claims transformation at the asserting party


ROLE_EXPR = "#{attr[\"title\"] == 'manager' ? 'administrator' : attr[\"title\"]}"


def test_a5_example_1_role_from_title_manager_becomes_administrator():
    """A5 example 1: `role` = `#{attr["title"] == 'manager' ? 'administrator' : attr["title"]}`."""
    assert values(ROLE_EXPR, {"title": "manager"}) == ["administrator"]


def test_a5_example_1_role_from_title_other_titles_pass_through():
    """A5 example 1: otherwise the value of `title` is kept (transform an existing `role`, or add it)."""
    assert values(ROLE_EXPR, {"title": "engineer"}) == ["engineer"]
    assert values(ROLE_EXPR, {}) == [""]


def test_a5_example_1_as_printed_in_the_japanese_guide_without_space_before_question_mark():
    """The guide prints `#{attr["title"] == 'manager'? 'administrator' : attr["title"]}` (no space before `?`)."""
    expression = "#{attr[\"title\"] == 'manager'? 'administrator' : attr[\"title\"]}"
    assert values(expression, {"title": "manager"}) == ["administrator"]
    assert compile_expression(expression).template == compile_expression(ROLE_EXPR).template


TITLE_EXPR = '#{attr["role"] == "admin" ? attr["admintitle"] : attr["supertitle"]}'


def test_a5_example_2_transform_title_admin_gets_admintitle():
    """A5 transform example 1: `title` = `#{attr["role"] == "admin" ? attr["admintitle"] : attr["supertitle"]}`,
    role=admin, admintitle=SeniorAdmin, supertitle=SuperUser → `SeniorAdmin`."""
    user = {"role": "admin", "admintitle": "SeniorAdmin", "supertitle": "SuperUser"}
    assert values(TITLE_EXPR, user) == ["SeniorAdmin"]


def test_a5_example_2_transform_title_other_role_gets_supertitle():
    """A5 transform example 1: … or `SuperUser` when the role is not admin."""
    user = {"role": "user", "admintitle": "SeniorAdmin", "supertitle": "SuperUser"}
    assert values(TITLE_EXPR, user) == ["SuperUser"]


CONTACT_EXPR = '#{attr["homephone"] == \'\' ? attr["mobile"] : attr["homephone"]}'


def test_a5_example_3_contactno_empty_homephone_uses_mobile():
    """A5 transform example 2: `ContactNo` = `#{attr["homephone"] == '' ? attr["mobile"] : attr["homephone"]}`."""
    assert values(CONTACT_EXPR, {"homephone": "", "mobile": "+81 90 1234 5678"}) == ["+81 90 1234 5678"]


def test_a5_example_3_contactno_missing_homephone_is_blank_so_mobile_is_used():
    """A5: a missing attribute is a blank value, so it equals ''."""
    assert values(CONTACT_EXPR, {"mobile": "+81 90 1234 5678"}) == ["+81 90 1234 5678"]
    assert values(CONTACT_EXPR, {"homephone": [], "mobile": "m"}) == ["m"]


def test_a5_example_3_contactno_homephone_kept_when_present():
    """A5 transform example 2: otherwise keep homephone."""
    assert values(CONTACT_EXPR, {"homephone": "03-1234-5678", "mobile": "m"}) == ["03-1234-5678"]


def test_a5_example_3_as_extracted_from_the_guide_compares_with_a_single_space():
    """The extracted guide shows `#{attr["homephone"] == ' '? attr["mobile"] : attr["homephone"]}`. Taken literally,
    `' '` is one space and comparison is exact, so an empty homephone does not match it (see docs, doubtful examples)."""
    expression = '#{attr["homephone"] == \' \'? attr["mobile"] : attr["homephone"]}'
    assert values(expression, {"homephone": "", "mobile": "m"}) == [""]
    assert values(expression, {"homephone": " ", "mobile": "m"}) == ["m"]


SESSION_EXPR = '#{session_attr["att1"] == "admin" ? session_attr["attr2"] : attr["attr3"]}'


def test_a5_example_4_session_form_mixes_session_and_user_attributes():
    """A5 session form: `#{session_attr["att1"] == "admin" ? session_attr["attr2"] : attr["attr3"]}`."""
    user = {"attr3": "from-directory", "att1": "admin", "attr2": "user-store-attr2"}
    session = {"att1": "admin", "attr2": "from-session"}
    assert values(SESSION_EXPR, user, session) == ["from-session"]
    assert values(SESSION_EXPR, user, {"att1": "user", "attr2": "from-session"}) == ["from-directory"]


def test_a5_example_4_session_form_reads_only_the_session_store_for_session_attr():
    """`session_attr["att1"]` must not fall back to the user store."""
    assert values(SESSION_EXPR, {"att1": "admin", "attr2": "x", "attr3": "user"}, {}) == ["user"]


def test_a5_example_5_add_title_when_absent():
    """A5 add example 1: `title` is absent; the role expression adds it as `director` (admintitle) or
    `executive` (supertitle)."""
    directory = {"admintitle": "director", "supertitle": "executive"}
    assert values(TITLE_EXPR, {**directory, "role": "admin"}) == ["director"]
    assert values(TITLE_EXPR, {**directory, "role": "clerk"}) == ["executive"]


SMTITLE_EXPR = "#{attr[\"title\"] == 'manager' ? 'federation administrator' : attr[\"title\"]}"


def test_a5_example_6_add_smtitle_with_a_static_literal():
    """A5 add example 2: `smtitle` = `#{attr["title"] == 'manager' ? 'federation administrator' : attr["title"]}`."""
    assert values(SMTITLE_EXPR, {"title": "manager"}) == ["federation administrator"]
    assert values(SMTITLE_EXPR, {"title": "clerk"}) == ["clerk"]


ADMINTITLE_EXPR = '#{attr["role"] == "superuser" ? DELETE : attr["title"]}'
SUPERTITLE_EXPR = '#{attr["role"] == "admin" ? DELETE : attr["su"]}'
DELETE_USER = {"title": "administrator", "su": "superuser"}


def test_a5_example_7_delete_admintitle_for_superusers():
    """A5 delete example 1: `admintitle` = `#{attr["role"] == "superuser" ? DELETE : attr["title"]}`."""
    assert deleted(ADMINTITLE_EXPR, {**DELETE_USER, "role": "superuser"})
    assert values(ADMINTITLE_EXPR, {**DELETE_USER, "role": "admin"}) == ["administrator"]


def test_a5_example_7_delete_supertitle_for_admins():
    """A5 delete example 1: `supertitle` = `#{attr["role"] == "admin" ? DELETE : attr["su"]}`."""
    assert deleted(SUPERTITLE_EXPR, {**DELETE_USER, "role": "admin"})
    assert values(SUPERTITLE_EXPR, {**DELETE_USER, "role": "superuser"}) == ["superuser"]


MANAGERNAME_EXPR = "#{attr[\"title\"] != 'Manager' ? attr[\"manager\"] : 'DELETE'}"


def test_a5_example_8_managername_quoted_delete_removes_the_attribute():
    """A5 delete example 2: `ManagerName` = `#{attr["title"] != 'Manager' ? attr["manager"] : 'DELETE'}`;
    the quoted 'DELETE' is accepted like the bare keyword."""
    result = compile_expression(MANAGERNAME_EXPR).evaluate({"title": "Manager", "manager": "Sato"})
    assert result == EvaluationResult([], deleted=True)
    assert result.value is DELETE


def test_a5_example_8_managername_is_added_for_other_titles():
    """A5 delete example 2: for other titles the manager's name is added."""
    assert values(MANAGERNAME_EXPR, {"title": "engineer", "manager": "Sato"}) == ["Sato"]


def test_a5_example_8_comparison_is_case_sensitive_as_in_juel():
    """The source compares with 'Manager' while its prose says manager. We compare case-sensitively (JUEL), so a
    user whose title is `manager` keeps ManagerName; the console's preview makes this visible."""
    assert values(MANAGERNAME_EXPR, {"title": "manager", "manager": "Sato"}) == ["Sato"]


def test_a5_prefixes_must_be_lower_case():
    """A5: "The prefixes `attr` and `session_attr` must be lower case"."""
    assert str(syntax_error('#{Attr["title"]}')) == "`Attr` must be written in lower case: `attr` at position 2"
    assert str(syntax_error('#{SESSION_ATTR["x"]}')) == (
        "`SESSION_ATTR` must be written in lower case: `session_attr` at position 2"
    )


def test_a5_attribute_names_are_case_insensitive_at_the_asserting_party():
    """A5: "Attribute names are case-insensitive" (the default)."""
    assert values('#{attr["Title"]}', {"title": "manager"}) == ["manager"]
    assert values('#{session_attr["IssuerID"]}', None, {"issuerid": "CN=CA"}) == ["CN=CA"]


def test_a5_exact_name_wins_over_case_insensitive_match():
    assert values('#{attr["title"]}', {"TITLE": "upper", "title": "exact"}) == ["exact"]


def test_case_insensitive_lookup_merges_names_that_differ_only_by_case():
    assert values('#{attr["MAIL"]}', {"mail": "a@x", "Mail": ["b@x", "c@x"]}) == ["a@x", "b@x", "c@x"]


def test_a5_missing_attribute_is_blank_and_does_not_fail():
    """A5: "the system inserts a blank value for it. Assertion generation does not fail"."""
    assert values('#{attr["nosuch"]}') == [""]
    assert values('#{session_attr["nosuch"]}', {"nosuch": "user store only"}) == [""]
    assert values('#{attr["nosuch"] == "" ? "blank" : "set"}') == ["blank"]


# ---------------------------------------------------------------------------------------------------------------------
# ch20-22 §1.5: attribute mapping at the relying party

MAPPING_USER = {
    "name": "BobSmith",
    "firstname": "Bob",
    "lastname": "Smith",
    "month": "01",
    "dateofmonth": "05",
    "year": "2010",
    "monthsymbol": "Jan",
    "amount": "2.50",
    "currency": "EUR",
    "username": "user",
    "domainname": "domain",
    "acmeidkey": "key",
}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ('ID = #{attr["name"]}', "BobSmith"),
        ('FullName = #{attr["firstname"]},#{attr["lastname"]}', "Bob,Smith"),
        ('FullName = #{attr["lastname"]},#{attr["firstname"]}', "Smith,Bob"),
        ('FullName = #{attr["lastname"]}, #{attr["firstname"]}', "Smith, Bob"),
        ('Date = #{attr["month"]}/#{attr["dateofmonth"]}/#{attr["year"]}', "01/05/2010"),
        ('Date = #{attr["monthsymbol"]} #{attr["dateofmonth"]}, #{attr["year"]}', "Jan 05, 2010"),
        ('Price = #{attr["amount"]}#{attr["currency"]}', "2.50EUR"),
        ('Address = #{attr["username"]}@#{attr["domainname"]}', "user@domain"),
        ('Acme Address = #{attr["acmeidkey"]}@acme.com', "key@acme.com"),
    ],
)
def test_ch20_1_5_mapping_table(rule, expected):
    """Every row of the §1.5 worked-examples table, in its `application_attribute = expression` form. The
    `monthsymbol` row's Japanese result "2012/01/05" is a translation artefact; the rule gives month symbol, day,
    comma, year."""
    application_attribute, expression = rule.split(" = ", 1)
    assert values(expression, MAPPING_USER, case_sensitive_names=True) == [expected]


def test_ch20_1_5_space_counts_as_a_character():
    """§1.5: "a space counts as a special character, so it must be typed when wanted"."""
    assert values('#{attr["lastname"]},#{attr["firstname"]}', MAPPING_USER) == ["Smith,Bob"]
    assert values('#{attr["lastname"]}, #{attr["firstname"]}', MAPPING_USER) == ["Smith, Bob"]
    assert values(' #{attr["name"]} ', MAPPING_USER) == [" BobSmith "]


def test_ch20_1_5_rename_region_to_servicelocation():
    """§1.5 Rename: incoming `Region=US` becomes outgoing `ServiceLocation=US`."""
    assert values('#{attr["Region"]}', {"Region": "US"}, case_sensitive_names=True) == ["US"]


def test_ch20_1_5_combine_name_and_lastname_into_fullname():
    """§1.5 Combine: `Name=Bob` and `LastName=Smith` become `FullName=Bob Smith`."""
    assert values('#{attr["Name"]} #{attr["LastName"]}', {"Name": "Bob", "LastName": "Smith"}) == ["Bob Smith"]


def test_ch20_1_5_default_straight_mapping_passes_every_value():
    """§1.5: default rules are `#{attr["name"]}`, one per assertion attribute; values pass through unchanged."""
    assert values('#{attr["memberOf"]}', {"memberOf": ["staff", "vpn"]}) == ["staff", "vpn"]


def test_ch20_1_5_names_are_case_sensitive_at_the_relying_party():
    """§1.5: "Assertion attribute names in expressions are case-sensitive and must match exactly"."""
    assert values('#{attr["region"]}', {"Region": "US"}, case_sensitive_names=True) == [""]
    assert values('#{attr["region"]}', {"Region": "US"}) == ["US"]


def test_ch20_1_5_expression_builder_special_characters_are_plain_text():
    """§1.5: the builder's Special Characters list offers the comma and the percent sign."""
    assert values('#{attr["amount"]}%,#{attr["currency"]}', MAPPING_USER) == ["2.50%,EUR"]


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation details


def test_plain_text_without_expressions_is_a_constant():
    assert values("static value") == ["static value"]
    assert values("") == [""]
    assert values("DELETE") == ["DELETE"]  # text outside #{…} never deletes


def test_lone_hash_dollar_and_braces_in_text_are_literal():
    assert values("#1 {x} $5 }{ #") == ["#1 {x} $5 }{ #"]


def test_string_literals_single_and_double_quoted_with_escapes():
    assert values("#{'it\\'s'}") == ["it's"]
    assert values('#{"say \\"hi\\""}') == ['say "hi"']
    assert values("#{'back\\\\slash'}") == ["back\\slash"]
    assert values("#{\"mixed 'quotes'\"}") == ["mixed 'quotes'"]
    assert values("#{'\\\"'}") == ['"']
    assert values("#{''}") == [""]


def test_string_literals_keep_braces_and_hashes():
    assert values("#{'}'}") == ["}"]
    assert values("#{'#{'}x#{'${'}") == ["#{x${"]
    assert values("#{\"#{attr['x']}\"}", {"x": "no"}) == ["#{attr['x']}"]


def test_attribute_names_with_escapes_and_spaces():
    assert values('#{attr["a \\"b\\""]}', {'a "b"': "v"}) == ["v"]
    assert values("#{attr['Acme Address']}", {"Acme Address": "k@acme.com"}) == ["k@acme.com"]


def test_comparison_result_as_text():
    assert values("#{attr['a'] == 'x'}", {"a": "x"}) == ["true"]
    assert values("#{attr['a'] != 'x'}", {"a": "x"}) == ["false"]
    assert values("v=#{attr['a'] == 'x'}", {"a": "y"}) == ["v=false"]


def test_nested_conditionals_are_right_associative():
    expression = "#{attr['dept'] == 'eng' ? 'Engineering' : attr['dept'] == 'ops' ? 'Operations' : 'Other'}"
    assert values(expression, {"dept": "eng"}) == ["Engineering"]
    assert values(expression, {"dept": "ops"}) == ["Operations"]
    assert values(expression, {"dept": "hr"}) == ["Other"]
    node = compile_expression(expression).template.parts[0].expression
    assert isinstance(node, Conditional) and isinstance(node.if_false, Conditional)


def test_conditional_in_the_middle_branch():
    expression = "#{attr['a'] == 'x' ? attr['b'] == 'y' ? '1' : '2' : '3'}"
    assert values(expression, {"a": "x", "b": "y"}) == ["1"]
    assert values(expression, {"a": "x", "b": "n"}) == ["2"]
    assert values(expression, {"a": "n", "b": "y"}) == ["3"]


def test_delete_in_nested_branches():
    expression = "#{attr['a'] == 'x' ? (attr['b'] == 'y' ? DELETE : 'kept') : 'DELETE'}"
    assert deleted(expression, {"a": "x", "b": "y"})
    assert values(expression, {"a": "x", "b": "n"}) == ["kept"]
    assert deleted(expression, {"a": "n"})


def test_bare_and_quoted_delete_alone():
    assert evaluate_expression("#{DELETE}") == EvaluationResult([], deleted=True)
    assert evaluate_expression("#{'DELETE'}").deleted
    assert evaluate_expression('#{"DELETE"}').deleted
    assert evaluate_expression("#{ ( DELETE ) }").deleted


def test_quoted_delete_outside_the_result_is_just_text():
    assert values("#{attr['x'] == 'DELETE' ? 'was delete' : 'no'}", {"x": "DELETE"}) == ["was delete"]
    assert values("#{'DELETE'}!") == ["DELETE!"]
    assert values("#{'delete'}") == ["delete"]


def test_data_equal_to_delete_never_deletes():
    assert values("#{attr['x']}", {"x": "DELETE"}) == ["DELETE"]
    assert values("#{attr['y'] == 'a' ? attr['x'] : 'b'}", {"x": "DELETE", "y": "a"}) == ["DELETE"]


def test_logical_operators_and_parentheses():
    expression = "#{(attr['a'] == 'x' || attr['b'] == 'y') && !(attr['c'] == 'z') ? 'yes' : 'no'}"
    assert values(expression, {"a": "x", "c": "q"}) == ["yes"]
    assert values(expression, {"b": "y", "c": "z"}) == ["no"]
    assert values(expression, {"c": "q"}) == ["no"]


def test_and_binds_tighter_than_or():
    expression = "#{attr['a'] == '1' || attr['b'] == '1' && attr['c'] == '1'}"
    node = compile_expression(expression).template.parts[0].expression
    assert node.operator == "||" and node.operands[1].operator == "&&"
    assert values(expression, {"a": "1"}) == ["true"]
    assert values(expression, {"b": "1"}) == ["false"]


def test_string_used_as_condition_follows_juel_boolean_coercion():
    expression = "#{attr['enabled'] ? 'on' : 'off'}"
    assert values(expression, {"enabled": "TRUE"}) == ["on"]
    assert values(expression, {"enabled": "yes"}) == ["off"]
    assert values(expression, {}) == ["off"]
    assert values("#{!attr['enabled']}", {"enabled": "true"}) == ["false"]


def test_comparing_a_boolean_with_a_string_coerces_the_string():
    assert values("#{(attr['a'] == 'x') == 'TRUE'}", {"a": "x"}) == ["true"]
    assert values("#{(attr['a'] == 'x') == 'false'}", {"a": "x"}) == ["false"]


def test_evaluation_is_repeatable_and_thread_free():
    expression = compile_expression(TITLE_EXPR)
    first = expression.evaluate({"role": "admin", "admintitle": "A"})
    second = expression.evaluate({"role": "x", "supertitle": "S"})
    assert (first.values, second.values) == (["A"], ["S"])
    assert expression.evaluate({"role": "admin", "admintitle": "A"}) == first


def test_compile_is_cached_and_expression_keeps_its_source():
    assert compile_expression(ROLE_EXPR) is compile_expression(ROLE_EXPR)
    assert isinstance(compile_expression(ROLE_EXPR), Expression)
    assert compile_expression(ROLE_EXPR).source == ROLE_EXPR


def test_compile_rejects_non_strings():
    with pytest.raises(TypeError):
        compile_expression(None)


def test_result_value_view():
    assert evaluate_expression("#{attr['g']}", {"g": ["a", "b"]}).value == "a,b"
    assert evaluate_expression("#{DELETE}").value is DELETE
    assert repr(DELETE) == "DELETE"


def test_references_list_each_attribute_once_in_source_order():
    text = "#{session_attr['att1'] == 'admin' ? session_attr['attr2'] : attr['attr3']}-#{attr['attr3']}#{attr['ATTR3']}"
    expression = compile_expression(text)
    assert [(ref.store, ref.name) for ref in expression.references()] == [
        ("session_attr", "att1"),
        ("session_attr", "attr2"),
        ("attr", "attr3"),
        ("attr", "ATTR3"),
    ]
    assert [ref.position for ref in expression.references()] == [
        2,
        text.index("session_attr['attr2']"),
        text.index("attr['attr3']"),
        text.index("attr['ATTR3']"),
    ]
    assert text.index("attr['attr3']") == 60


def test_references_of_constant_expressions_are_empty():
    assert compile_expression("static").references() == ()
    assert compile_expression("#{'x' == 'y' ? DELETE : 'z'}").references() == ()


# ---------------------------------------------------------------------------------------------------------------------
# Multi-valued attributes

GROUPS = {"groups": ["staff", "vpn", "admins"], "mail": ["a@example.com", "b@example.com"]}


def test_multi_valued_single_reference_passes_all_values_through():
    assert values('#{attr["groups"]}', GROUPS) == ["staff", "vpn", "admins"]


def test_multi_valued_values_flow_through_conditional_branches():
    assert values("#{attr['mail'] == '' ? 'none' : attr['mail']}", GROUPS) == ["a@example.com", "b@example.com"]


def test_multi_valued_in_text_is_joined_with_commas():
    assert values('groups: #{attr["groups"]}', GROUPS) == ["groups: staff,vpn,admins"]
    assert values('#{attr["groups"]}#{attr["nosuch"]}', GROUPS) == ["staff,vpn,admins"]


def test_multi_valued_equality_is_true_when_any_value_matches():
    assert values("#{attr['groups'] == 'vpn' ? 'yes' : 'no'}", GROUPS) == ["yes"]
    assert values("#{'vpn' == attr['groups'] ? 'yes' : 'no'}", GROUPS) == ["yes"]
    assert values("#{attr['groups'] == 'hr' ? 'yes' : 'no'}", GROUPS) == ["no"]


def test_multi_valued_inequality_is_true_when_no_value_matches():
    assert values("#{attr['groups'] != 'vpn'}", GROUPS) == ["false"]
    assert values("#{attr['groups'] != 'hr'}", GROUPS) == ["true"]


def test_multi_valued_both_sides_compare_as_sets():
    attrs = {"a": ["1", "2"], "b": ["3", "2"], "c": ["4"]}
    assert values("#{attr['a'] == attr['b']}", attrs) == ["true"]
    assert values("#{attr['a'] == attr['c']}", attrs) == ["false"]


def test_empty_value_list_is_the_blank_value():
    assert values("#{attr['g']}", {"g": []}) == [""]
    assert values("#{attr['g'] == ''}", {"g": []}) == ["true"]
    assert values("#{attr['g'] == ''}", {"g": ["x", ""]}) == ["true"]
    assert values("[#{attr['g']}]", {"g": []}) == ["[]"]


def test_multi_valued_with_blank_values_kept_unchanged():
    assert values("#{attr['g']}", {"g": ["a", "", "b"]}) == ["a", "", "b"]


def test_value_types_are_normalised_without_failing():
    attrs = {"n": 5, "none": None, "b": b"caf\xc3\xa9", "t": ("x", None, 7), "set": frozenset({"only"})}
    assert values("#{attr['n']}", attrs) == ["5"]
    assert values("#{attr['none']}", attrs) == [""]
    assert values("#{attr['b']}", attrs) == ["café"]
    assert values("#{attr['t']}", attrs) == ["x", "7"]
    assert values("#{attr['set']}", attrs) == ["only"]


def test_misbehaving_mapping_is_a_missing_attribute():
    class Broken(dict):
        def __contains__(self, key):
            raise RuntimeError("directory down")

    assert values("#{attr['x']}|#{session_attr['y']}", Broken(), None) == ["|"]


# ---------------------------------------------------------------------------------------------------------------------
# Syntax errors: positions and messages


def test_error_missing_closing_bracket_matches_the_console_example():
    error = syntax_error('#{attr["title"}')
    assert str(error) == "Expected `]` after the attribute name at position 14"
    assert (error.position, error.line, error.column) == (14, 1, 15)
    assert error.message == "Expected `]` after the attribute name"


def test_error_hash_brace_without_closing_brace():
    error = syntax_error('Name: #{attr["title"]')
    assert str(error) == "Missing the closing `}` of the `#{` that starts at position 6"
    assert syntax_error("#{").position == 0
    assert syntax_error("abc #{ attr").position == 4


def test_error_unclosed_braces_followed_by_text_blames_the_braces():
    assert str(syntax_error('#{attr["last"], #{attr["first"]}')) == (
        "Missing the closing `}` of the `#{` that starts at position 0"
    )
    assert str(syntax_error('#{attr["last"]} #{attr["first"] x')) == (
        "Missing the closing `}` of the `#{` that starts at position 16"
    )
    assert str(syntax_error('#{attr["last"] #{attr["first"]}')) == (
        "`#{` cannot appear inside another expression at position 15. Close the previous `#{` with `}` first"
    )
    assert str(syntax_error('#{attr["last"], hello')) == "Missing the closing `}` of the `#{` that starts at position 0"


def test_error_unterminated_strings():
    assert str(syntax_error("#{attr['title'] == 'manager}")) == (
        "Missing the closing `'` of the string that starts at position 19"
    )
    assert str(syntax_error('#{attr["title]}')) == 'Missing the closing `"` of the string that starts at position 7'
    assert syntax_error("#{'abc\\").position == 2


def test_error_unknown_escape():
    error = syntax_error("#{'DOMAIN\\user'}")
    assert error.position == 9
    assert error.message == "Unknown escape `\\u` in a string"
    assert "write \\\\ for a backslash" in str(error)


def test_error_empty_braces():
    assert str(syntax_error("x #{  }")) == (
        'Empty `#{}` at position 2. Write an expression between the braces, such as #{attr["mail"]}'
    )


def test_error_dollar_brace_is_rejected_with_a_hint():
    error = syntax_error("${attr['x']}")
    assert error.position == 0
    assert error.message == "`${…}` is not supported; write expressions as `#{…}`"


def test_error_missing_colon():
    assert str(syntax_error("#{attr['a'] == 'x' ? 'y'}")) == (
        "Expected `:` to complete the `?` at position 19, found `}` at position 24. "
        "A conditional is written condition ? value : other value"
    )


def test_error_colon_without_question_mark():
    error = syntax_error("#{attr['a'] == 'b' : 'c'}")
    assert error.position == 19
    assert error.message == "Expected `}` to end the expression, found `:`"


def test_error_missing_value():
    assert str(syntax_error("#{attr['x'] == }")) == (
        'Expected a value (attr["…"], session_attr["…"], a quoted string or DELETE), found `}` at position 15'
    )
    assert syntax_error("#{attr['x'] == 'a' ? : 'b'}").position == 21


def test_error_two_values_side_by_side():
    error = syntax_error("#{attr['a'] 'b'}")
    assert error.message == "Expected `}` to end the expression, found `'b'`"
    assert error.position == 12


def test_error_missing_bracket_and_name():
    assert syntax_error("#{attr}").message == "Expected `[` after `attr`"
    assert syntax_error("#{session_attr('x')}").position == 14
    assert syntax_error("#{attr[]}").message == "Expected the attribute name in quotes after `attr[`"
    assert syntax_error("#{attr['']}").message == "The attribute name is empty"
    assert syntax_error("#{attr[mail]}").message == "Unknown name `mail`"


def test_error_unclosed_parenthesis():
    assert str(syntax_error("#{('x' == 'y'}")) == "Expected `)` to close the `(` at position 2, found `}` at position 13"


def test_error_chained_comparison():
    error = syntax_error("#{attr['a'] == 'b' == 'c'}")
    assert (error.message, error.position) == ("Comparisons cannot be chained", 19)


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("#{attr['a'] + 'b'}", "`+` is not supported", 12),
        ("#{attr['a'] = 'b'}", "Use `==` to compare, not `=`", 12),
        ("#{attr['a'] & attr['b']}", "Use `&&` for \u201cand\u201d, not `&`", 12),
        ("#{attr['a'] | attr['b']}", "Use `||` for \u201cor\u201d, not `|`", 12),
        ("#{attr['a'] < 'b'}", "Only `==` and `!=` comparisons are supported", 12),
        ("#{attr.mail}", "Write attribute references with brackets and quotes", 6),
        ("#{attr['a'] eq 'b'}", "`eq` is not supported; use `==`", 12),
        ("#{attr['a'] and attr['b']}", "`and` is not supported; use `&&`", 12),
        ("#{empty attr['a']}", "`empty` is not supported", 2),
        ("#{attr['a'] == 5}", "Numbers must be quoted", 15),
        ("#{delete}", "`delete` must be written in capitals: `DELETE`", 2),
        ("#{fn:upper(attr['a'])}", "Unknown name `fn`", 2),
        ("#{attr['a'] == 'x' ; 'y'}", "A semicolon cannot appear inside `#{…}`", 19),
        ("#{'a' \x00}", "Unexpected character U+0000", 6),
    ],
)
def test_error_unsupported_syntax_says_what_to_write(text, message, position):
    error = syntax_error(text)
    assert (error.message, error.position) == (message, position)


def test_error_delete_in_a_comparison():
    error = syntax_error("#{attr['x'] == DELETE ? 'a' : 'b'}")
    assert (error.message, error.position) == ("`DELETE` can only be the result of the expression or of a `? :` branch", 15)
    assert syntax_error("#{!DELETE}").position == 3
    assert syntax_error("#{DELETE ? 'a' : 'b'}").position == 2
    assert syntax_error("#{DELETE || 'a'}").position == 2


def test_error_delete_combined_with_text():
    error = syntax_error("#{attr['x'] == 'a' ? DELETE : 'b'} ")
    assert error.message == "`DELETE` removes the whole attribute, so it cannot be combined with text or other `#{…}` parts"
    assert error.position == 21
    assert syntax_error("#{DELETE}#{DELETE}").position == 2


def test_error_on_a_later_line_reports_line_and_column():
    error = syntax_error("first line\nsecond #{attr['a'] ==\n   }")
    assert (error.position, error.line, error.column) == (36, 3, 4)
    assert str(error).startswith('Expected a value (attr["…"], session_attr["…"], a quoted string or DELETE), found `}`')
    assert str(error).endswith("at position 36 (line 3, column 4)")


def test_error_line_counting_with_crlf():
    error = syntax_error("a\r\nb\r\n#{attr[}")
    assert (error.position, error.line, error.column) == (13, 3, 8)


def test_error_is_a_value_error():
    assert issubclass(ExpressionSyntaxError, ValueError)


# ---------------------------------------------------------------------------------------------------------------------
# Limits and adversarial input


def test_length_limit():
    compile_expression("x" * MAX_EXPRESSION_LENGTH)
    error = syntax_error("x" * (MAX_EXPRESSION_LENGTH + 1))
    assert str(error) == f"The expression is too long: {MAX_EXPRESSION_LENGTH + 1} characters, the limit is 4096 at position 4096"


def test_nesting_limit_parentheses():
    depth = MAX_NESTING_DEPTH
    assert values("#{" + "(" * depth + "'a'" + ")" * depth + "}") == ["a"]
    error = syntax_error("#{" + "(" * (depth + 1) + "'a'" + ")" * (depth + 1) + "}")
    assert error.message == "The expression is nested too deeply (more than 50 levels of parentheses, `!` or `? :`)"
    assert error.position == 2 + depth


def test_nesting_limit_negation():
    assert values("#{" + "!" * MAX_NESTING_DEPTH + "'true'}") == ["true"]
    assert syntax_error("#{" + "!" * (MAX_NESTING_DEPTH + 1) + "'true'}").position == 2 + MAX_NESTING_DEPTH


def test_nesting_limit_conditional_chain():
    def chain(n):
        return "#{" + "".join(f"attr['d'] == '{i}' ? 'v{i}' : " for i in range(n)) + "'other'}"

    assert values(chain(MAX_NESTING_DEPTH), {"d": "49"}) == ["v49"]
    assert values(chain(MAX_NESTING_DEPTH), {"d": "x"}) == ["other"]
    assert syntax_error(chain(MAX_NESTING_DEPTH + 1)).message.startswith("The expression is nested too deeply")


def test_deep_nesting_never_reaches_the_recursion_limit():
    text = "#{" + "(!" * 2000 + "}"
    assert len(text) <= MAX_EXPRESSION_LENGTH
    error = syntax_error(text)
    assert error.message.startswith("The expression is nested too deeply")
    assert error.position == 2 + MAX_NESTING_DEPTH
    assert sys.getrecursionlimit() >= 1000


def test_long_flat_chains_evaluate_without_recursion_problems():
    terms = " || ".join(f"attr['a'] == '{i}'" for i in range(150))
    text = "#{" + terms + "}"
    assert len(text) < MAX_EXPRESSION_LENGTH
    assert values(text, {"a": "149"}) == ["true"]
    node = compile_expression(text).template.parts[0].expression
    assert isinstance(node, Logical) and len(node.operands) == 150


def test_many_parts_within_the_length_limit():
    text = '#{attr["a"]},' * 300
    assert values(text, {"a": "x"}) == ["x," * 300]


def test_huge_string_literal_and_name_within_limit():
    literal = "y" * 4000
    assert values("#{'" + literal + "'}") == [literal]


@pytest.mark.parametrize(
    "text",
    [
        "#{",
        "#{'",
        '#{"',
        "#{attr[",
        "#{attr['x'",
        "#{attr['x']",
        "#{}",
        "#{ }",
        "#{#{}}",
        "#{'\\",
        "#{(",
        "#{)}",
        "#{?:}",
        "#{!}",
        "#{attr['a'] ?}",
        "#{attr['a'] ? 'b' :}",
        "#{'a' == }",
        "}#{",
    ],
)
def test_truncated_and_garbled_inputs_raise_syntax_errors(text):
    error = syntax_error(text)
    assert 0 <= error.position <= len(text)


def test_unicode_whitespace_and_text_are_fine():
    assert values("氏名: #{\u3000attr['姓']\u3000} 様", {"姓": "佐藤"}) == ["氏名: 佐藤 様"]


# ---------------------------------------------------------------------------------------------------------------------
# Printer: canonical text, and parse(print(ast)) == ast


def test_unparse_canonical_form():
    expression = compile_expression('#{ attr[\'a\']=="x"?"y" : (session_attr["b"]) }, #{!(attr["c"] != \'d\')}')
    assert expression.unparse() == "#{attr[\"a\"] == 'x' ? 'y' : session_attr[\"b\"]}, #{!(attr[\"c\"] != 'd')}"


def test_unparse_keeps_needed_parentheses():
    cases = {
        "#{(attr['a'] ? 'b' : 'c') ? 'd' : 'e'}": "#{(attr[\"a\"] ? 'b' : 'c') ? 'd' : 'e'}",
        "#{(attr['a'] || attr['b']) && attr['c']}": '#{(attr["a"] || attr["b"]) && attr["c"]}',
        "#{attr['a'] || (attr['b'] || attr['c'])}": '#{attr["a"] || (attr["b"] || attr["c"])}',
        "#{(attr['a'] == 'x') != 'true'}": "#{(attr[\"a\"] == 'x') != 'true'}",
        "#{!!attr['a']}": '#{!!attr["a"]}',
        "#{attr['a'] == 'x' ? 'y' : (attr['b'] == 'z' ? DELETE : 'w')}": (
            "#{attr[\"a\"] == 'x' ? 'y' : attr[\"b\"] == 'z' ? DELETE : 'w'}"
        ),
    }
    for text, canonical in cases.items():
        assert compile_expression(text).unparse() == canonical
        assert compile_expression(canonical).template == compile_expression(text).template


def test_unparse_quotes_and_escapes():
    expression = compile_expression("#{attr[\"it's \\\"x\\\"\\\\\"] == 'it\\'s'}")
    assert expression.unparse() == "#{attr[\"it's \\\"x\\\"\\\\\"] == 'it\\'s'}"


def test_unparse_quoted_delete_round_trips():
    assert compile_expression(MANAGERNAME_EXPR).unparse() == ("#{attr[\"title\"] != 'Manager' ? attr[\"manager\"] : 'DELETE'}")
    node = compile_expression(MANAGERNAME_EXPR).template.parts[0].expression
    assert node.if_false == Delete(quoted=True)


def test_unparse_text_that_looks_like_an_expression_is_printed_as_literals():
    template = Template((Text("a#{b"), Interpolation(StringLiteral("c")), Text("${d")))
    printed = unparse(template)
    assert printed == "a#{'#{'}b#{'c'}#{'${'}d"
    assert values(printed) == ["a#{bc${d"]


def test_ast_shape_of_a_worked_example():
    template = compile_expression(TITLE_EXPR).template
    assert template == Template(
        (
            Interpolation(
                Conditional(
                    Comparison("==", AttributeRef("attr", "role"), StringLiteral("admin")),
                    AttributeRef("attr", "admintitle"),
                    AttributeRef("attr", "supertitle"),
                )
            ),
        )
    )


ALL_EXAMPLES = [
    ROLE_EXPR,
    TITLE_EXPR,
    CONTACT_EXPR,
    SESSION_EXPR,
    SMTITLE_EXPR,
    ADMINTITLE_EXPR,
    SUPERTITLE_EXPR,
    MANAGERNAME_EXPR,
    '#{attr["name"]}',
    '#{attr["lastname"]}, #{attr["firstname"]}',
    '#{attr["monthsymbol"]} #{attr["dateofmonth"]}, #{attr["year"]}',
    '#{attr["acmeidkey"]}@acme.com',
]


@pytest.mark.parametrize("text", ALL_EXAMPLES)
def test_worked_examples_round_trip_through_the_printer(text):
    first = compile_expression(text)
    again = compile_expression(first.unparse())
    assert again.template == first.template
    assert again.unparse() == first.unparse()


def _random_name(rng):
    return rng.choice(["a", "title", "Role", "mail addr", "x'y", 'q"t', "back\\slash", "名前", "DELETE"])


def _random_string(rng):
    return rng.choice(["", "x", "manager", "DELETE", "it's", 'say "hi"', "\\", "}", "#{", "${", "a b", "\n", "true"])


def _random_node(rng, depth, result):
    """A random expression AST; `result` says whether DELETE may appear here (see _place_delete)."""
    leaves = ["ref", "string"] + (["delete"] if result else [])
    kinds = leaves if depth <= 0 else leaves + ["cmp", "not", "and", "or", "cond", "cond"]
    kind = rng.choice(kinds)
    if kind == "ref":
        return AttributeRef(rng.choice(["attr", "session_attr"]), _random_name(rng))
    if kind == "string":
        value = _random_string(rng)
        return Delete(quoted=True) if result and value == "DELETE" else StringLiteral(value)
    if kind == "delete":
        return Delete(quoted=rng.random() < 0.5)
    if kind == "cmp":
        return Comparison(rng.choice(["==", "!="]), _random_node(rng, depth - 1, False), _random_node(rng, depth - 1, False))
    if kind == "not":
        return Not(_random_node(rng, depth - 1, False))
    if kind in ("and", "or"):
        operands = tuple(_random_node(rng, depth - 1, False) for _ in range(rng.randint(2, 4)))
        return Logical("&&" if kind == "and" else "||", operands)
    return Conditional(
        _random_node(rng, depth - 1, False), _random_node(rng, depth - 1, result), _random_node(rng, depth - 1, result)
    )


def _random_template(rng):
    if rng.random() < 0.3:
        return Template((Interpolation(_random_node(rng, 4, True)),))
    parts = []
    for _ in range(rng.randint(0, 4)):
        if parts and isinstance(parts[-1], Text) or rng.random() < 0.5:
            parts.append(Interpolation(_random_node(rng, 3, False)))
        else:
            parts.append(Text(rng.choice([" ", ", ", "@acme.com", "/", "#", "$", "}", "x\ny", "日本"])))
    if len(parts) == 1 and isinstance(parts[0], Interpolation):
        parts.append(Text("!"))
    return Template(tuple(parts))


def test_property_parse_of_print_is_the_same_ast():
    rng = random.Random(20240601)
    attrs = {"a": ["x", "DELETE"], "title": "manager", "Role": "admin", "名前": "佐藤"}
    for _ in range(1500):
        template = _random_template(rng)
        printed = unparse(template)
        reparsed = compile_expression(printed)
        assert reparsed.template == template, printed
        assert reparsed.unparse() == printed
        result = reparsed.evaluate(attrs, {"a": "s"})
        assert result.deleted or result.values


def test_property_random_token_soup_either_compiles_or_raises_syntax_error():
    """Fuzz: any input either compiles (and then prints stably and evaluates) or raises ExpressionSyntaxError."""
    rng = random.Random(7)
    pieces = [
        "#{", "}", "attr", "session_attr", "[", "]", "('", "')", "'x'", '"y"', "DELETE", "'DELETE'", "==", "!=",
        "?", ":", "&&", "||", "!", "(", ")", " ", "text", "\\", "'", '"', "$", "#", "{", "\n", "=", "+", "5",
    ]  # fmt: skip
    compiled = 0
    for _ in range(4000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 25)))
        try:
            expression = compile_expression(text)
        except ExpressionSyntaxError as error:
            assert 0 <= error.position <= len(text)
            assert error.message
            continue
        compiled += 1
        again = compile_expression(expression.unparse())
        assert again.template == expression.template, text
        result = expression.evaluate({"x": ["1", "2"]}, {})
        assert isinstance(result, EvaluationResult)
    assert compiled > 100


def test_backslash_in_text_is_literal_for_windows_domain_names():
    assert values('EXAMPLE\\#{attr["uid"]}', {"uid": "jdoe"}) == ["EXAMPLE\\jdoe"]
    assert compile_expression('EXAMPLE\\#{attr["uid"]}').unparse() == 'EXAMPLE\\#{attr["uid"]}'
