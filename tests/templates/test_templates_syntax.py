"""Every construct of the template language: variables, defaults, paths, statements, operators, functions."""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.templates import TemplateError, render

# -- printing and variables --------------------------------------------------------------------


def test_text_outside_tags_is_kept_verbatim() -> None:
    text = "  <style>a { color: red }</style>\n\tplain { text } 100% {not a tag}\n"
    assert render(text, {}) == text


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        ("Ana", "Ana"),
        (True, "true"),
        (False, "false"),
        (None, ""),
        (42, "42"),
        (-7, "-7"),
        (2.5, "2.5"),
        (5.0, "5"),
        (0.1, "0.1"),
        (1e20, "1e+20"),
    ],
)
def test_values_print_as_mailjet_does(value: Any, printed: str) -> None:
    assert render("{{var:x}}", {"x": value}) == printed


def test_spaces_inside_tags_do_not_matter() -> None:
    assert render("{{var:a}}|{{ var:a }}|{{   var:a   }}", {"a": 1}) == "1|1|1"


def test_data_namespace_reads_contact_properties() -> None:
    assert (
        render("{{data:firstname}} {{var:firstname}}", {"firstname": "V"}, data={"firstname": "D"}) == "D V"
    )
    with pytest.raises(TemplateError, match="Unknown identifier: data:firstname"):
        render("{{data:firstname}}", {"firstname": "V"})


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{var:x:"N/A"}}', "N/A"),
        ("{{var:x:'single'}}", "single"),
        ("{{var:x:12}}", "12"),
        ("{{var:x:-1.5}}", "-1.5"),
        ("{{var:x:true}}", "true"),
        ("{{var:x:customer}}", "customer"),
        ('{{var:x:""}}', ""),
        ('{{var:order.number:"none"}}', "none"),
        ('{{var:items[3]:"none"}}', "none"),
    ],
)
def test_default_values_of_every_kind(template: str, expected: str) -> None:
    assert render(template, {"items": [1]}) == expected


def test_default_is_used_for_null_and_not_for_falsy_values() -> None:
    assert render('{{var:x:"d"}}', {"x": None}) == "d"
    assert render('{{var:x:"d"}}|{{var:y:"d"}}|{{var:z:"d"}}', {"x": 0, "y": "", "z": False}) == "0||false"


def test_nested_access_by_key_dot_index_and_bracket() -> None:
    variables = {"order": {"items": [{"sku": "A1"}, {"sku": "B2"}], "meta": {"other-key": "k"}}, "i": 1}
    template = (
        "{{var:order.items.0.sku}} {{var:order.items[1].sku}} {{var:order.items[var:i].sku}} "
        "{{var:order.meta.other-key}}"
    )
    assert render(template, variables) == "A1 B2 B2 k"


def test_hyphens_join_names_unless_a_digit_follows() -> None:
    variables = {"count": 5, "other-key": "k", "n-2": "never"}
    assert render("{{ var:count-1 }} {{ var:other-key }}", variables) == "4 k"
    assert render("{% set yo-yo = 2 %}{% set yo = 10 %}{{ yo-yo }} {{ yo - 1 }} {{ yo-1 }}", {}) == "2 9 9"


def test_missing_nested_key_names_the_full_path() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{ var:order.items.9.sku }}", {"order": {"items": []}})
    assert info.value.message.startswith(
        "expression parsing error ## Unknown identifier: var:order.items.9.sku ##"
    )


def test_exact_name_wins_over_the_case_insensitive_fallback() -> None:
    assert render("{{var:day}}", {"day": "exact", "Day": "other"}) == "exact"
    assert render("{{var:DAY}}", {"Day": "only"}) == "only"
    with pytest.raises(TemplateError):  # ambiguous: two keys differ only by case
        render("{{var:DAY}}", {"Day": "a", "day": "b"})


# -- statements --------------------------------------------------------------------------------


def test_if_elseif_else_picks_the_first_true_branch() -> None:
    template = (
        "{% if var:n > 10 %}big{% elseif var:n > 5 %}medium{% elseif var:n > 5 %}never"
        "{% else %}small{% endif %}"
    )
    assert [render(template, {"n": n}) for n in (11, 6, 1)] == ["big", "medium", "small"]


def test_if_blocks_nest() -> None:
    template = "{% if var:a %}A{% if var:b %}B{% else %}!B{% endif %}{% else %}!A{% endif %}"
    assert render(template, {"a": 1, "b": 0}) == "A!B"
    assert render(template, {"a": 0, "b": 1}) == "!A"


def test_alternative_spellings_end_if_and_else_if() -> None:
    template = "{% if var:a %}a{% else if var:b %}b{% end if %}{% for x in var:l %}{{x}}{% end for %}"
    assert render(template, {"a": 0, "b": 1, "l": [1, 2]}) == "b12"


def test_unexecuted_branches_are_not_evaluated() -> None:
    assert render("{% if false %}{{var:missing}}{% endif %}ok", {}) == "ok"


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        (True, True),
        (False, False),
        (None, False),
        (0, False),
        (0.0, False),
        (3, True),
        ("", False),
        ("0", True),
        ("no", True),
        ([], False),
        ([0], True),
        ({}, False),
        ({"a": 1}, True),
    ],
)
def test_truthiness(value: Any, truthy: bool) -> None:
    assert render("{% if var:x %}Y{% else %}N{% endif %}", {"x": value}) == ("Y" if truthy else "N")


def test_loop_variable_supports_paths_and_defaults() -> None:
    items = [{"title": "A", "price": {"amount": 1}}, {"title": "B"}]
    template = '{% for item in var:items %}{{ item.title }}={{ item.price.amount:"?" }};{% endfor %}'
    assert render(template, {"items": items}) == "A=1;B=?;"


def test_loop_over_an_empty_array_renders_nothing() -> None:
    assert render("[{% for x in var:a %}{{x}}{% endfor %}]", {"a": []}) == "[]"


def test_loop_variable_does_not_outlive_its_loop() -> None:
    with pytest.raises(TemplateError, match="Unknown identifier: x"):
        render("{% for x in var:a %}{% endfor %}{{ x }}", {"a": [1]})


def test_set_is_template_wide_and_sees_loop_variables() -> None:
    template = "{% set total = 0 %}{% for x in var:a %}{% set total = total + x %}{% endfor %}{{ total }}"
    assert render(template, {"a": [1, 2, 3.5]}) == "6.5"


def test_set_accepts_every_kind_of_value() -> None:
    template = (
        '{% set s = "t" %}{% set i = 2 %}{% set f = 0.5 %}{% set b = false %}{% set v = var:x %}'
        "{% set d = data:y %}{{s}} {{i}} {{f}} {{b}} {{v}} {{d}}"
    )
    assert render(template, {"x": "X"}, data={"y": "Y"}) == "t 2 0.5 false X Y"


# -- operators ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2", "3"),
        ("7 - 10", "-3"),
        ("6 * 7", "42"),
        ("10 / 4", "2.5"),
        ("10 / 2", "5"),
        ("10 div 4", "2"),
        ("-7 div 2", "-3"),
        ("10 mod 4", "2"),
        ("-7 mod 3", "-1"),
        ("7.5 mod 2", "1.5"),
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("2 * 3 mod 4", "2"),
        ("-(2 + 3)", "-5"),
        ("+4", "4"),
        ("0.1 + 0.2", "0.30000000000000004"),
        ('"10" * 2', "20"),
        ('"2.5" - 1', "1.5"),
    ],
)
def test_arithmetic(expression: str, expected: str) -> None:
    assert render("{{ " + expression + " }}", {}) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('"Hello " + "world"', "Hello world"),
        ('"n=" + 5', "n=5"),
        ('5 + "a"', "5a"),
        ('"10" + 5', "105"),
        ('"ok: " + true', "ok: true"),
        ('var:first + " " + var:last', "Ana Lima"),
    ],
)
def test_string_concatenation(expression: str, expected: str) -> None:
    assert render("{{ " + expression + " }}", {"first": "Ana", "last": "Lima"}) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 > 1", True),
        ("1 > 1", False),
        ("1 < 2", True),
        ("2 >= 2", True),
        ("3 <= 2", False),
        ("1 = 1", True),
        ("1 == 1.0", True),
        ("1 === 2", False),
        ("1 != 2", True),
        ("1 <> 1", False),
        ('"abc" < "abd"', True),
        ('"10" > "9"', True),  # both numeric: compared as numbers
        ('"10" > 9', True),
        ('"46" = 46', True),
        ('"a" = "a"', True),
        ('"a" = "A"', False),
        ('"a" = 1', False),
        ("true = true", True),
        ('true = "true"', False),
        ("null = null", True),
        ("true and false", False),
        ("true or false", True),
        ("true xor true", False),
        ("true xor false", True),
        ("not false", True),
        ("!true", False),
        ("not 1 = 2", True),
        ("true or false and false", True),  # and binds tighter than or
        ("(true or false) and false", False),
        ("false xor true and true", True),
        ("TRUE AND NOT FALSE", True),
        ("1 < 2 and 3 > 2", True),
    ],
)
def test_comparison_and_logic(expression: str, expected: bool) -> None:
    assert render("{{ " + expression + " }}", {}) == ("true" if expected else "false")


def test_logic_short_circuits() -> None:
    assert render("{{ false and var:missing }} {{ true or var:missing }}", {}) == "false true"


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ("1 / 0", "division by zero"),
        ("1 div 0", "division by zero"),
        ("1 mod 0", "division by zero"),
        ('"a" * 2', "not a number"),
        ("true + 1", "not a number"),
        ('1 < "a"', "not a number"),
        ("var:l = var:l", "cannot compare an array or object"),
        ("var:l < 1", "cannot compare"),
        ('var:l + "x"', "cannot add an array or object"),
        ("var:l", "cannot print an array or object"),
    ],
)
def test_type_errors_are_template_errors(expression: str, detail: str) -> None:
    with pytest.raises(TemplateError, match=detail):
        render("{{ " + expression + " }}", {"l": [1]})


# -- functions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('Upper("straße")', "STRASSE"),
        ('Lower("MiXeD")', "mixed"),
        ('Capitalize("hello world")', "Hello world"),
        ('Capitalize("mcDonald")', "McDonald"),
        ('Capitalize("")', ""),
        ("Round(2.675, 2)", "2.68"),
        ("Round(2.5)", "3"),
        ("Round(-2.5)", "-3"),
        ("Round(1234.5678, -2)", "1200"),
        ("Round(3, 2)", "3"),
        ('Round("1.005", 2)', "1.01"),
        ("Int(9.99)", "9"),
        ("Int(-9.99)", "-9"),
        ('Int("42.7")', "42"),
        ('UrlEncode("a b&c=d/é")', "a%20b%26c%3Dd%2F%C3%A9"),
        ('Escape("<a href=\\"x\\">&</a>")', "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"),
        ("upper(var:name)", "ANA"),
        ("Upper(12)", "12"),
    ],
)
def test_functions(expression: str, expected: str) -> None:
    assert render("{{ " + expression + " }}", {"name": "Ana"}) == expected


def test_unknown_function_is_an_error_even_in_an_unexecuted_branch() -> None:
    with pytest.raises(TemplateError, match="Unknown function: Eval"):
        render('{% if false %}{{ Eval("1") }}{% endif %}', {})


def test_wrong_number_of_arguments() -> None:
    with pytest.raises(TemplateError, match="Wrong number of arguments for Upper"):
        render("{{ Upper() }}", {})
    with pytest.raises(TemplateError, match="Round precision"):
        render("{{ Round(1.5, 99) }}", {})


def test_contact_history_functions_are_refused_clearly() -> None:
    with pytest.raises(TemplateError, match="HasOpenedSince is not supported"):
        render("{% if !HasOpenedSince(30) %}sales{% endif %}", {})


# -- HTML escaping -----------------------------------------------------------------------------


def test_html_mode_escapes_printed_values_but_not_the_template() -> None:
    template = '<p title="{{var:t}}">{{var:name}} &amp; {{ "<b>" }}</p>'
    variables = {"name": "<script>alert(1)</script>", "t": "\"quoted\" & 'single'"}
    assert render(template, variables, html=True) == (
        '<p title="&quot;quoted&quot; &amp; &#x27;single&#x27;">'
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;</p>"
    )
    assert render(template, variables) == (
        '<p title=""quoted" & \'single\'"><script>alert(1)</script> &amp; <b></p>'
    )


def test_escape_function_is_not_escaped_twice_in_html_mode() -> None:
    assert render("{{ Escape(var:x) }}", {"x": "<i>"}, html=True) == "&lt;i&gt;"
    assert render('{{ Escape(var:x) + "<b>" }}', {"x": "<i>"}, html=True) == "&lt;i&gt;&lt;b&gt;"
    assert render("{{ Escape(var:x) }}", {"x": "<i>"}) == "&lt;i&gt;"


def test_values_set_from_variables_are_escaped_when_printed() -> None:
    assert render("{% set v = var:x %}{{ v }}", {"x": "<i>"}, html=True) == "&lt;i&gt;"


# -- syntax errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "start"),
    [
        ("{{ }}", "expression parsing error ## Empty expression"),
        ("{{ var:a", "not valid template ## near ## {{ var:a ##"),
        ("{{ 1 + }}", "expression parsing error ## Unexpected token: '}}'"),
        ("{{ 1 2 }}", "expression parsing error ## Unexpected token: '2'"),
        ('{{ "open }}', "expression parsing error ## Unterminated string"),
        ("{{ a # b }}", "expression parsing error ## Unexpected character: '#'"),
        ("{% endif %}", "not valid template ## near ## {% endif ##"),
        ("{% else %}", "not valid template"),
        ("{% while true %}{% endwhile %}", "not valid template"),
        ("{% if true %}{% else %}{% else %}{% endif %}", "not valid template"),
        ("{% for in var:a %}{% endfor %}", "expression parsing error ## Expected a variable name"),
        ("{% for x of var:a %}{% endfor %}", "expression parsing error ## Unexpected token: 'of'"),
        ("{% set = 1 %}", "expression parsing error ## Expected a variable name"),
        ("{% set x 1 %}", "expression parsing error ## Unexpected token: '1'"),
        ("{% for x in var:a %}", "not valid template ## near ## n var:a %} ##"),  # the last 10 characters
        ("{{ 99999999999999999999 }}", "expression parsing error ## Number out of range"),
        ("{{ Upper(1):'x' }}", "expression parsing error ## Unexpected token: ':'"),
    ],
)
def test_syntax_errors(template: str, start: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(template, {"a": []})
    assert info.value.message.startswith(start)


def test_error_position_is_line_and_column() -> None:
    with pytest.raises(TemplateError) as info:
        render("line one\n  {% if var:ok %}\n    {{ var:nope }}\n  {% endif %}", {"ok": True})
    assert (info.value.line, info.value.column, info.value.offset) == (3, 8, 34)
    assert str(info.value).endswith("(line 3, column 8)")
