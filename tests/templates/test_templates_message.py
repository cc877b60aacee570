"""render_message: a Send API message's Subject, TextPart and HTMLPart, or the failure to report."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mailstack.model import Address, MessageSpec
from mailstack.templates import RenderedMessage, TemplateError, TemplateFailure, render_message


def spec(**changes: Any) -> MessageSpec:
    base = MessageSpec(
        sender=Address("pilot@example.com", "Pilot"),
        to=(Address("ana@example.net"),),
        subject="Your order {{var:order.id}}",
        text="Hello {{var:name}}, {{var:count}} items: {% for i in var:items %}{{i}};{% endfor %}",
        html="<p>Hello {{var:name}}</p>",
        template_language=True,
        variables={"order": {"id": 42}, "name": "<Ana & Co>", "count": 2, "items": ["a<b", "c"]},
    )
    return dataclasses.replace(base, **changes)


def test_all_parts_are_rendered_and_html_is_escaped_only_in_htmlpart() -> None:
    result = render_message(spec())
    assert isinstance(result, RenderedMessage)
    assert result.spec.subject == "Your order 42"
    assert result.spec.text == "Hello <Ana & Co>, 2 items: a<b;c;"
    assert result.spec.html == "<p>Hello &lt;Ana &amp; Co&gt;</p>"
    # Rendered text must never be rendered again (a variable may hold "{{ … }}").
    assert result.spec.template_language is False
    # Everything else is the message as submitted.
    assert dataclasses.replace(result.spec, subject="", text=None, html=None, template_language=True) == (
        dataclasses.replace(spec(), subject="", text=None, html=None)
    )


def test_without_template_language_the_parts_are_sent_as_written() -> None:
    original = spec(template_language=False)
    result = render_message(original)
    assert isinstance(result, RenderedMessage)
    assert result.spec is original
    assert result.spec.subject == "Your order {{var:order.id}}"


def test_absent_parts_stay_absent() -> None:
    result = render_message(spec(text=None))
    assert isinstance(result, RenderedMessage)
    assert result.spec.text is None and result.spec.html == "<p>Hello &lt;Ana &amp; Co&gt;</p>"


def test_contact_data_reaches_data_variables() -> None:
    result = render_message(spec(html='<p>{{data:firstname:"customer"}}</p>'), data={"firstname": "Bo"})
    assert isinstance(result, RenderedMessage)
    assert result.spec.html == "<p>Bo</p>"


@pytest.mark.parametrize(
    ("changes", "part", "error"),
    [
        ({"subject": "Hi {{var:missing}}"}, "Subject", "Unknown identifier: var:missing"),
        ({"text": "{% if var:name %}no end"}, "TextPart", "not valid template ## near ## e %}no end ##"),
        ({"html": "{% for x in var:name %}{% endfor %}"}, "HTMLPart", '"var:name" is not an array value'),
    ],
)
def test_a_failing_part_gives_a_failure_with_mailjets_error_text(
    changes: dict[str, str], part: str, error: str
) -> None:
    original = spec(**changes)
    result = render_message(original)
    assert isinstance(result, TemplateFailure)
    assert result.part == part
    assert isinstance(result.error, TemplateError)
    assert error in result.error.message
    assert result.message.startswith(f"{part}: ") and error in result.message
    assert result.spec is original  # the unrendered message, for TemplateErrorDeliver


def test_first_failing_part_is_reported() -> None:
    result = render_message(spec(text="{{var:a}}", html="{{var:b}}"))
    assert isinstance(result, TemplateFailure)
    assert result.part == "TextPart" and "var:a" in result.message


@pytest.mark.parametrize("value", ["x\r\nBcc: victim@example.org", "x\nY", "x\x00", "x\u2028Y", "x\x85Y"])
def test_a_variable_cannot_inject_headers_through_the_subject(value: str) -> None:
    result = render_message(spec(subject="Hi {{var:name}}", variables={**spec().variables, "name": value}))
    assert isinstance(result, TemplateFailure)
    assert result.part == "Subject"
    assert "line break or control character" in result.message


def test_render_message_never_raises_on_hostile_templates() -> None:
    result = render_message(spec(html="{{ ''.__class__ }}" + "{% if true %}" * 500))
    assert isinstance(result, TemplateFailure)
    assert result.part == "HTMLPart"
