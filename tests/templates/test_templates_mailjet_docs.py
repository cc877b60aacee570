"""Mailjet's documented examples and errors, with their documented outputs.

Sources (public repositories):
* ``mailjet/api-documentation`` ``guides/_template.md``, the "Transactional templating" reference of
  the older revision (sections "Variables", "Conditional Statements", "Set function", "Loop
  Statements", "Templates error management" / "Common templating errors", "Step by step guide");
* ``mailjet/mailjet-apiv3-templating-samples``: ``samples/zigzag_loop``, ``tutorials/receipt``,
  ``tutorials/welcome``.

Mailjet's documented HTML results collapse the template's indentation, so where a documented output
is shown that way the comparison ignores whitespace runs; exact outputs are checked elsewhere.
"""

from __future__ import annotations

from typing import Any

import pytest

from mailstack.templates import TemplateError, render


def squash(text: str) -> str:
    return " ".join(text.split())


# -- "Conditional Statements": the documented truth table ---------------------------------------

TRUTH_TABLE = [
    # template, output with test=true, with test=false, with test undefined (None = TEMPLATE ERROR)
    ("{% if var:test %}YES{% else %}NO{% endif %}", "YES", "NO", None),
    ("{% if var:test:true %}YES{% else %}NO{% endif %}", "YES", "NO", "YES"),
    ("{% if var:test:false %}YES{% else %}NO{% endif %}", "YES", "NO", "NO"),
    ('{{var:test:"N/A"}}', "true", "false", "N/A"),
    ("{{var:test}}", "true", "false", None),
]


@pytest.mark.parametrize(("template", "when_true", "when_false", "when_undefined"), TRUTH_TABLE)
def test_conditional_truth_table(
    template: str, when_true: str, when_false: str, when_undefined: str | None
) -> None:
    assert render(template, {"test": True}) == when_true
    assert render(template, {"test": False}) == when_false
    if when_undefined is None:
        with pytest.raises(TemplateError, match="Unknown identifier: var:test"):
            render(template, {})
    else:
        assert render(template, {}) == when_undefined


def test_conditional_statement_on_contact_data() -> None:
    # "Conditional Statements": {% if data:age > 45 %} prints the age for a 46-year-old, else nothing.
    template = (
        "<html><body>\n{% if data:age > 45 %}\n<ul>\n    <li>{{data:age}}</li>\n"
        "</ul>\n{% endif %}\n</body></html>"
    )
    assert (
        squash(render(template, {}, data={"age": 46})) == "<html><body> <ul> <li>46</li> </ul> </body></html>"
    )
    assert squash(render(template, {}, data={"age": 30})) == "<html><body> </body></html>"


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (25, "You can code, drink and vote!"),
        (19, "You can't drink but hey, you still can code and vote!"),
        (12, "A few more years to wait !!!"),
    ],
)
def test_multiple_branches_if_statement(age: int, expected: str) -> None:
    # "Conditional Statements", "Multiple branches if statement".
    template = (
        "{% if data:age >= 21 %}\n    You can code, drink and vote!\n"
        "{% elseif data:age >= 18 %}\n    You can't drink but hey, you still can code and vote!\n"
        "{% else %}\n    A few more years to wait !!!\n{% endif %}"
    )
    assert render(template, {}, data={"age": age}).strip() == expected


# -- "Variables" -------------------------------------------------------------------------------

PASSENGER = (
    'Dear passenger, welcome to Mailjet! On this {{var:day:"monday"}}, may the delivery force be '
    'with you! {{var:personalmessage:""}}'
)


def test_vars_with_default_values() -> None:
    # "Vars and Custom Vars": {{var:namevar:defaultvalue}}; the second passenger has no personal message.
    first = render(PASSENGER, {"day": "Tuesday", "personalmessage": "Happy birthday!"})
    assert first.endswith("On this Tuesday, may the delivery force be with you! Happy birthday!")
    second = render(PASSENGER, {"day": "Monday"})
    assert second.endswith("On this Monday, may the delivery force be with you! ")
    assert render(PASSENGER, {}).endswith("On this monday, may the delivery force be with you! ")


def test_vars_as_sent_by_the_java_and_php_samples_match_case_insensitively() -> None:
    # The same section's Java/PHP samples send "Day" and "Personalmessage" for var:day/var:personalmessage.
    out = render(PASSENGER, {"Day": "Tuesday", "Personalmessage": "Happy Birthday!"})
    assert out.endswith("On this Tuesday, may the delivery force be with you! Happy Birthday!")


def test_multidimensional_json_structure() -> None:
    # "Loop Statements" (end): {{ var:x.test }} {{ var:x.test2.test3 }} -> "2 Hello".
    variables = {"x": {"test": 2, "test2": {"test3": "Hello"}}}
    assert render("{{ var:x.test }} {{ var:x.test2.test3 }}", variables) == "2 Hello"


# -- "Set function" ----------------------------------------------------------------------------


def test_set_function_printing_value() -> None:
    out = render('Hello {% set yo-yo = "Benjamin" %} {{ yo-yo }} !', {})
    assert out == "Hello  Benjamin !"  # documented as "Hello Benjamin!" (whitespace collapsed)
    assert out.replace(" ", "") == "HelloBenjamin!"


def test_set_function_changes_value_anytime() -> None:
    template = 'Hello {% set yo-yo = "Benjamin" %} {{ yo-yo }}, how is {% set yo-yo = "Jane" %} {{ yo-yo }} ?'
    assert squash(render(template, {})) == "Hello Benjamin, how is Jane ?"


def test_set_function_in_conditional_statement() -> None:
    out = render("Hello {% set yo-yo = 1 %}{% if yo-yo >= 1 %} Benjamin {% endif %} !", {})
    assert out.replace(" ", "") == "HelloBenjamin!"


# -- "Loop Statements" -------------------------------------------------------------------------

LOOP_TEMPLATE = (
    "<html><body>\n<ul>\n{% for value in var:x %}\n    <li>{{value}}</li>\n"
    "{% endfor %}\n</ul>\n</body></html>"
)
LOOP_RESULT = "<html><body> <ul> <li>1</li> <li>true</li> <li>Pilot</li> </ul> </body></html>"


@pytest.mark.parametrize(
    "x",
    [[1, True, "Pilot"], {"test1": 1, "test2": True, "test3": "Pilot"}],
    ids=["array", "object"],
)
def test_loop_over_array_or_object(x: Any) -> None:
    assert squash(render(LOOP_TEMPLATE, {"x": x})) == LOOP_RESULT


def test_loop_over_multidimensional_array() -> None:
    variables = {
        "rows": [
            {"title": "title1", "bodies": ["1", "2", "3", "4"]},
            {"title": "title2", "bodies": ["5", "6"]},
        ]
    }
    template = (
        "Hello \n\t{% for row in var:rows %}loop1:{{ row.title }}\n"
        "\t\t{% for body in row.bodies %}loop2:{{ body }} {% endfor %}\n\t{% endfor %}"
    )
    expected = "Hello loop1:title1 loop2:1 loop2:2 loop2:3 loop2:4 loop1:title2 loop2:5 loop2:6"
    assert squash(render(template, variables)) == expected


def test_loop_over_multiple_arrays() -> None:
    variables = {"array1": ["1", "2"], "array2": ["3", "4"]}
    template = (
        "Hello \n{% for x3 in var:array1 %} loop1:{{ x3 }}\n"
        "\t{% for x4 in var:array2 %} loop2:{{ x4 }}{% endfor %}\n{% endfor %}"
    )
    assert squash(render(template, variables)) == "Hello loop1:1 loop2:3 loop2:4 loop1:2 loop2:3 loop2:4"


# -- "Step by step guide" ----------------------------------------------------------------------

STEP_TEMPLATE = (
    '{% if var:step == "confirmorder" %}Confirmation of purchase: {{ var:productname:"" }}\n'
    '{% elseif var:step == "unavailable" %}Sorry, {{ var:productname:""}} is out of stock :(\n'
    '{% elseif var:step == "refund" %}Refund of your purchase {{ var:productname:"" }} has been issued. '
    "The amount of {{var:totalprice}} will be returned.\n{% endif %}"
    '{% if var:step == "refund" or var:step == "confirmorder" %}{% for purchase in var:products %}'
    "[{{purchase.name}} x{{purchase.number}} {{purchase.totalprice}}]{% endfor %}{% endif %}"
)

GUIDE_VARS: dict[str, Any] = {
    "products": [
        {"name": "T-shirt", "number": 2, "price": "$20.00", "totalprice": "$40.00"},
        {"name": "T-shirt", "number": 1, "price": "$20.00", "totalprice": "$20.00"},
    ],
    "totalprice": "$72.00",
    "productname": "T-shirt",
}


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("confirmorder", "Confirmation of purchase: T-shirt\n[T-shirt x2 $40.00][T-shirt x1 $20.00]"),
        ("unavailable", "Sorry, T-shirt is out of stock :(\n"),
        (
            "refund",
            "Refund of your purchase T-shirt has been issued. The amount of $72.00 will be returned.\n"
            "[T-shirt x2 $40.00][T-shirt x1 $20.00]",
        ),
    ],
)
def test_step_by_step_guide_ecommerce_template(step: str, expected: str) -> None:
    assert render(STEP_TEMPLATE, {**GUIDE_VARS, "step": step}) == expected


def test_step_by_step_guide_default_with_data_namespace() -> None:
    assert render('Dear {{data:firstname:"customer"}}', {}) == "Dear customer"
    assert render('Dear {{data:firstname:"customer"}}', {}, data={"firstname": "Ana"}) == "Dear Ana"


# -- mailjet-apiv3-templating-samples ----------------------------------------------------------


def test_zigzag_loop_sample() -> None:
    # samples/zigzag_loop: image left for odd ids, right for even; background rotates with id mod 3.
    template = (
        "{% for product in var:products %}{% if (product.id mod 2) = 1 %}"
        '<tr><td><img src="{{product.img}}"></td><td style="background:{% if (product.id mod 3) = 1 %}'
        '#405260{% elseif (product.id mod 3) = 2 %}#ff5260{% else %}#4052ff{% endif %};">'
        "{{product.name}}<br>{{product.price}}</td></tr>{% else %}"
        '<tr><td style="background:{% if (product.id mod 3) = 1 %}#405260{% elseif (product.id mod 3) = 2 %}'
        '#ff5260{% else %}#4052ff{% endif %};">{{product.name}}<br>{{product.price}}</td>'
        '<td><img src="{{product.img}}"></td></tr>{% endif %}{% endfor %}'
    )
    products = [
        {"img": "a.jpg", "name": "MAVA PULLOVER", "price": "55€", "id": 1},
        {"img": "b.jpg", "name": "NEOS PURPLE SKIRT", "price": "45€", "id": 2},
        {"img": "c.jpg", "name": "JENSEN TOP", "price": "78€", "id": 3},
    ]
    out = render(template, {"products": products}, html=True)
    assert out == (
        '<tr><td><img src="a.jpg"></td><td style="background:#405260;">MAVA PULLOVER<br>55€</td></tr>'
        '<tr><td style="background:#ff5260;">NEOS PURPLE SKIRT<br>45€</td><td><img src="b.jpg"></td></tr>'
        '<tr><td><img src="c.jpg"></td><td style="background:#4052ff;">JENSEN TOP<br>78€</td></tr>'
    )


def test_receipt_tutorial_tax_with_round() -> None:
    # tutorials/receipt: 134.97 * 0.0825 = 11.135025, shown with Round(…, 2).
    order = {"total": {"currency": "$", "amount": 134.97}, "sales_taxes_percentage": 0.0825}
    template = (
        "Tax: {{ var:order.total.currency }}"
        "{{ Round(var:order.total.amount * var:order.sales_taxes_percentage, 2) }}"
    )
    assert render(template, {"order": order}) == "Tax: $11.14"


@pytest.mark.parametrize(
    ("gender", "hero"), [("male", "mj-tpl-tuto-hero"), ("female", "mj-tpl-tuto-hero-girl")]
)
def test_welcome_tutorial_set_if_and_upper(gender: str, hero: str) -> None:
    # tutorials/welcome: set inside a hidden block, reassigned inside an if, used later; Upper().
    template = (
        '{% set gender = var:user.gender %}{% set background-url = "http://bit.ly/mj-tpl-tuto-hero-girl" %}'
        '{% if gender == "male" %}{% set background-url = "http://bit.ly/mj-tpl-tuto-hero" %}{% endif %}'
        'background-url="{{ background-url }}" HELLO {{ Upper(var:user.name) }}, THANKS FOR JOINING CLOTHES!'
    )
    out = render(template, {"user": {"name": "Matthew", "gender": gender}})
    assert out == f'background-url="http://bit.ly/{hero}" HELLO MATTHEW, THANKS FOR JOINING CLOTHES!'


# -- "Common templating errors" ----------------------------------------------------------------


def test_documented_error_undefined_var() -> None:
    with pytest.raises(TemplateError) as info:
        render("<p>Today is {{var:day}}</p>", {})
    assert (
        info.value.message
        == "expression parsing error ## Unknown identifier: var:day ## near ## {{var:day ##"
    )
    assert (info.value.line, info.value.column) == (1, 15)


def test_documented_error_identifier_without_namespace() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{day}}", {"day": "Monday"})
    assert info.value.message == "expression parsing error ## Unknown identifier: day ## near ## {{day ##"


def test_documented_error_statement_not_finished() -> None:
    with pytest.raises(TemplateError) as info:
        render("<html>{% if var:x %}{{var:day}}</html>", {"x": True, "day": "Monday"})
    assert info.value.message == "not valid template ## near ## y}}</html> ##"


def test_documented_error_loop_on_non_array() -> None:
    with pytest.raises(TemplateError) as info:
        render("{% for x in var:day %}{{x}}{% endfor %}", {"day": "Monday"})
    assert info.value.message == '"var:day" is not an array value'
    assert info.value.column == 13
