"""The interpreter is a sandbox: no way to Python internals, bounded loops, output, nesting and work."""

from __future__ import annotations

import html
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailstack.templates import DEFAULT_LIMITS, Limits, TemplateError, render

# -- no escape to Python -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        '{{ "".__class__.__mro__[1].__subclasses__() }}',
        "{{ ''.__class__.__base__ }}",
        "{{ var:s.__class__ }}",
        "{{ var:s.upper }}",
        "{{ var:l.pop }}",
        "{{ var:l.__len__ }}",
        "{{ var:d.keys }}",
        "{{ var:d.__class__.__init__.__globals__ }}",
        "{{ var:d['__class__'] }}",
        "{{ (1).__class__ }}",
        "{{ true.real }}",
        "{{ __import__('os').system('id') }}",
        "{{ eval('1') }}",
        "{{ getattr(var:s, '__class__') }}",
        "{{ var:s.format }}",
        "{% for x in var:d.items %}{{x}}{% endfor %}",
        "{% set __builtins__ = 1 %}{{ __builtins__.open }}",
        "{{ var:l[-1] }}",
        "{{ lipsum.__globals__ }}",
        "{{ self }}",
        "{{ config }}",
    ],
)
def test_python_internals_are_unreachable(template: str) -> None:
    with pytest.raises(TemplateError):
        render(template, {"s": "text", "l": [1, 2], "d": {"a": 1}})


def test_keys_named_like_dunders_are_just_data() -> None:
    assert render("{{ var:d.__class__ }}", {"d": {"__class__": "plain data"}}) == "plain data"


class Sneaky:
    """An object a careless caller might put in Variables: its attributes must stay invisible."""

    secret = "attribute value"

    def __str__(self) -> str:
        return "str() was called"


def test_foreign_objects_are_refused_not_introspected() -> None:
    with pytest.raises(TemplateError, match="unsupported value of type Sneaky"):
        render("{{ var:obj }}", {"obj": Sneaky()})
    with pytest.raises(TemplateError, match=r"Unknown identifier: var:obj\.secret"):
        render("{{ var:obj.secret }}", {"obj": Sneaky()})


def test_template_text_from_a_variable_is_not_evaluated() -> None:
    out = render("{{ var:x }}", {"x": "{{ var:secret }}{% for a in var:l %}{% endfor %}", "secret": "S"})
    assert out == "{{ var:secret }}{% for a in var:l %}{% endfor %}"


# -- bounded resources -------------------------------------------------------------------------


def test_nested_loops_are_bounded_in_total_iterations() -> None:
    items = list(range(100))
    template = (
        "{% for x in var:a %}{% for y in var:a %}{% for z in var:a %}.{% endfor %}{% endfor %}{% endfor %}"
    )
    with pytest.raises(TemplateError, match="more than 10000 loop iterations"):
        render(template, {"a": items})
    # The same loops under the bound render fine.
    assert render(template, {"a": list(range(21))}) == "." * 21**3


def test_output_size_is_bounded() -> None:
    with pytest.raises(TemplateError, match="output larger than 1000000 bytes"):
        render("{% for x in var:a %}{{ var:big }}{% endfor %}", {"a": list(range(20)), "big": "x" * 100_000})


def test_output_bound_counts_utf8_bytes_and_html_escaping() -> None:
    limits = Limits(max_output_bytes=10)
    assert render("{{ var:x }}", {"x": "éééé"}, limits=limits) == "éééé"  # 8 bytes
    with pytest.raises(TemplateError, match="output larger than 10 bytes"):
        render("{{ var:x }}", {"x": "éééééé"}, limits=limits)  # 6 characters, 12 bytes
    with pytest.raises(TemplateError, match="output larger than 10 bytes"):
        render("{{ var:x }}", {"x": "<<<"}, html=True, limits=limits)  # 12 bytes once escaped


def test_string_growth_without_loops_is_bounded() -> None:
    template = '{% set s = "xxxxxxxxxxxxxxxx" %}' + "{% set s = s + s %}" * 40 + "{{ Lower(s) }}"
    with pytest.raises(TemplateError, match="string longer than 1000000 characters"):
        render(template, {})


def test_total_string_work_is_bounded() -> None:
    # Each Upper() copies 100 000 characters; 400 of them is 40 M characters of work and no output.
    template = "{% for x in var:a %}{% set u = Upper(var:big) %}{% endfor %}"
    with pytest.raises(TemplateError, match="characters of string work"):
        render(template, {"a": list(range(400)), "big": "x" * 100_000})


def test_evaluation_steps_are_bounded() -> None:
    template = "{% for x in var:a %}{% set n = 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 %}{% endfor %}"
    with pytest.raises(TemplateError, match="more than 1000 evaluation steps"):
        render(template, {"a": list(range(200))}, limits=Limits(max_steps=1000))


def test_block_nesting_is_bounded() -> None:
    ok = "{% if true %}" * 20 + "deep" + "{% endif %}" * 20
    assert render(ok, {}) == "deep"
    too_deep = "{% if true %}" * 21 + "deep" + "{% endif %}" * 21
    with pytest.raises(TemplateError, match="blocks nested deeper than 20"):
        render(too_deep, {})
    loops = "{% for x in var:a %}" * 5000 + "{% endfor %}" * 5000
    with pytest.raises(TemplateError, match="blocks nested deeper than 20"):
        render(loops, {"a": [1]})


@pytest.mark.parametrize(
    "expression",
    [
        "(" * 5000 + "1" + ")" * 5000,
        "-" * 5000 + "1",
        "not " * 5000 + "true",
        "!" * 5000 + "true",
        "Upper(" * 5000 + "1" + ")" * 5000,
        "var:a[" * 5000 + "0" + "]" * 5000,
    ],
)
def test_expression_nesting_is_bounded_not_a_recursion_error(expression: str) -> None:
    with pytest.raises(TemplateError, match="expression nested deeper than 20"):
        render("{{ " + expression + " }}", {"a": [1]})


def test_long_flat_expressions_are_fine() -> None:
    assert render("{{ " + " + ".join(["1"] * 5000) + " }}", {}) == "5000"
    nested: Any = "deep"
    for _ in range(5000):
        nested = [nested]
    assert render("{{ var:a" + "[0]" * 5000 + " }}", {"a": nested}) == "deep"
    assert render("{{ " + " and ".join(["true"] * 5000) + " }}", {}) == "true"


def test_template_size_is_bounded() -> None:
    with pytest.raises(TemplateError, match="template longer than 100 characters"):
        render("x" * 101, {}, limits=Limits(max_template_chars=100))


@pytest.mark.parametrize(
    ("template", "variables"),
    [
        ("{{ 9223372036854775807 * 9223372036854775807 }}", {}),
        ("{{ var:n * 2 }}", {"n": 10**30}),
        ("{{ var:f * 10 }}", {"f": 1e308}),
        ("{{ var:f }}", {"f": float("inf")}),
        ("{{ Int(var:f) }}", {"f": float("nan")}),
        ("{{ Round(var:f, 2) }}", {"f": 1e308 * 10}),
    ],
)
def test_numbers_stay_in_range(template: str, variables: dict[str, Any]) -> None:
    with pytest.raises(TemplateError):
        render(template, variables)


def test_default_limits_are_the_documented_ones() -> None:
    assert DEFAULT_LIMITS.max_loop_iterations == 10_000
    assert DEFAULT_LIMITS.max_output_bytes == 1_000_000
    assert DEFAULT_LIMITS.max_depth == 20


# -- properties --------------------------------------------------------------------------------

# Lexer-level noise: delimiters, operators and words glued together at random.
FRAGMENTS = [
    "{{",
    "}}",
    "{%",
    "%}",
    " ",
    "var:",
    "data:",
    "mj:",
    "x",
    "l",
    "d",
    "n",
    "s",
    ".",
    "[",
    "]",
    "(",
    ")",
    ":",
    '"',
    "'",
    "0",
    "1",
    "-1",
    "2.5",
    "+",
    "-",
    "*",
    "/",
    " div ",
    " mod ",
    "=",
    "==",
    "!=",
    "<>",
    "<",
    ">=",
    "!",
    " and ",
    " or ",
    " xor ",
    " not ",
    "if ",
    "elseif ",
    "else",
    "endif",
    "for ",
    " in ",
    "endfor",
    "set ",
    "end ",
    "true",
    "false",
    "null",
    "Upper(",
    "Round(",
    "Int(",
    "Escape(",
    "UrlEncode(",
    ",",
    "\\",
    "\n",
    "<p>",
    "é",
    "__class__",
    "yo-yo",
]
# Grammar-level noise: well-formed expressions and balanced blocks (so evaluation is reached),
# mixed with random token soups.
ATOMS = st.sampled_from(
    [
        "var:x",
        "var:l",
        "var:d",
        "var:n",
        "var:s",
        'var:x:"d"',
        "var:l[0]",
        "var:d.a",
        "var:nope",
        "data:x",
        "item",
        "v",
        "1",
        "0",
        "-1",
        "2.5",
        '"s"',
        "'<q>'",
        "true",
        "false",
        "null",
        "''.__class__",
    ]
)
BINARY = st.sampled_from(["+", "-", "*", "/", "div", "mod", "=", "!=", "<", ">=", "and", "or", "xor"])
FUNCTIONS = st.sampled_from(["Upper", "Lower", "Capitalize", "Round", "Int", "Escape", "UrlEncode"])
WELL_FORMED = st.recursive(
    ATOMS,
    lambda inner: st.one_of(
        st.tuples(inner, BINARY, inner).map(" ".join),
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"-{e}"),
        st.tuples(FUNCTIONS, inner).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"Round({t[0]}, {t[1]})"),
    ),
    max_leaves=6,
)
SOUP = st.lists(
    st.sampled_from(
        ["var:x", "1", '"s"', "(", ")", "[", "]", ".", ":", ",", "+", "not", "!", "Upper(", "=="]
    ),
    min_size=1,
    max_size=6,
).map(" ".join)
EXPRESSIONS = st.one_of(WELL_FORMED, WELL_FORMED, SOUP)
PIECES = st.one_of(
    st.text(max_size=4),
    EXPRESSIONS.map(lambda e: "{{ " + e + " }}"),
    EXPRESSIONS.map(lambda e: "{% set v = " + e + " %}"),
    st.sampled_from(["{% else %}", "{% endif %}", "{% endfor %}", "{% if true %}"]),  # stray statements
)
BLOCKS = st.recursive(
    PIECES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map("".join),
        st.tuples(EXPRESSIONS, inner, inner).map(
            lambda t: "{% if " + t[0] + " %}" + t[1] + "{% else %}" + t[2] + "{% endif %}"
        ),
        st.tuples(EXPRESSIONS, inner, inner).map(
            lambda t: "{% if " + t[0] + " %}" + t[1] + "{% elseif " + t[0] + " %}" + t[2] + "{% endif %}"
        ),
        st.tuples(EXPRESSIONS, inner).map(lambda t: "{% for item in " + t[0] + " %}" + t[1] + "{% endfor %}"),
    ),
    max_leaves=10,
)
TEMPLATES = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=40).map("".join),
    BLOCKS,
    BLOCKS,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)
SMALL_LIMITS = Limits(max_output_bytes=20_000, max_loop_iterations=500, max_steps=20_000)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    template=TEMPLATES,
    variables=st.fixed_dictionaries(
        {
            "x": JSON_VALUES,
            "l": st.lists(JSON_VALUES, max_size=5),
            "d": st.dictionaries(st.text(max_size=3), JSON_VALUES),
            "n": st.integers() | st.floats(),
            "s": st.text(max_size=5),
        }
    ),
    html_mode=st.booleans(),
)
def test_arbitrary_templates_only_ever_raise_template_error(
    template: str, variables: dict[str, Any], html_mode: bool
) -> None:
    try:
        out = render(template, variables, data={"x": 1}, html=html_mode, limits=SMALL_LIMITS)
    except TemplateError as exc:
        assert exc.message
    else:
        assert isinstance(out, str)


@given(st.text().filter(lambda t: "{{" not in t and "{%" not in t))
def test_text_without_tags_renders_to_itself(text: str) -> None:
    assert render(text, {}) == text


@given(st.text())
def test_html_mode_escapes_any_value(value: str) -> None:
    assert render("{{ var:v }}", {"v": value}, html=True) == html.escape(value, quote=True)
    assert render("{{ var:v }}", {"v": value}) == value
