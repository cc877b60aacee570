"""One parse per template, however many recipients; a request's total render work is bounded.

The cost of both, measured, is ``bench/bench_templates.py`` (``templates-1mb``).
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engagement_support import DOMAIN, Stack, make_stack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from mailstack.api._sendv31 import RequestError, parse_send_request
from mailstack.model import Address, MessageSpec
from mailstack.storage.schema import messages
from mailstack.templates import (
    DEFAULT_LIMITS,
    MAX_RENDER_WORK,
    PARSE_WEIGHT,
    PARSED_TEMPLATES,
    TemplateCache,
    TemplateError,
    TemplateFailure,
    render,
    render_message,
    render_work,
)

DENSE = "<p>Hi {{var:name}} {% if var:n > 1 %}x{% endif %}</p>\n"


@pytest.fixture
def stack(tmp_path: Path, sqlite_url: str) -> Iterator[Stack]:
    with make_stack(tmp_path, sqlite_url) as running:
        yield running


def send(stack: Stack, *messages: dict[str, Any], **root: Any) -> Any:
    return stack.client.post("/v3.1/send", json={"Messages": list(messages), **root}, auth=stack.auth)


def templated(html: str, recipients: int, **extra: Any) -> dict[str, Any]:
    return {
        "From": {"Email": f"news@{DOMAIN}"},
        "To": [{"Email": f"r{i}@example.net"} for i in range(recipients)],
        "Subject": "Hi {{var:name}}",
        "HTMLPart": html,
        "TemplateLanguage": True,
        "Variables": {"name": "Ana", "n": 2},
        **extra,
    }


def stored_messages(stack: Stack) -> int:
    with stack.runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(messages)).scalar_one())


# --- one parse per template -----------------------------------------------------------------------


def test_every_copy_of_a_message_renders_from_one_parse(stack: Stack) -> None:
    marker = uuid.uuid4().hex  # a template no other test has parsed in this process
    html = f"<p>{marker} {{{{var:name}}}} {{% if var:n > 1 %}}many{{% endif %}}</p>"
    text = f"{marker} text for {{{{var:name}}}}"
    response = send(
        stack,
        templated(
            html, 3, TextPart=text, Subject=f"{marker} {{{{var:name}}}}", Cc=[{"Email": "c@x.example"}]
        ),
    )
    assert response.status_code == 200, response.text
    ids = [r["MessageID"] for kind in ("To", "Cc") for r in response.json()["Messages"][0][kind]]
    parses = PARSED_TEMPLATES.parses
    assert stack.deliver() == 4
    assert PARSED_TEMPLATES.parses - parses == 3  # Subject, TextPart and HTMLPart: once each, not per copy
    for message_id in ids:
        copy = stack.outbox_message(message_id)
        assert copy["Subject"] == f"{marker} Ana"
        assert f"<p>{marker} Ana many</p>" in stack.html_of(message_id)


def test_a_broken_template_is_parsed_once_and_fails_every_copy_alike() -> None:
    spec = MessageSpec(
        sender=Address("news@example.com"),
        to=(Address("a@example.net"),),
        subject="s",
        html=f"<p>{uuid.uuid4().hex} {{{{ var:name",
        template_language=True,
    )
    parses = PARSED_TEMPLATES.parses
    failures = [render_message(spec) for _ in range(5)]
    assert PARSED_TEMPLATES.parses - parses == 2  # the subject and the broken HTMLPart
    assert all(isinstance(f, TemplateFailure) for f in failures)
    assert len({f.message for f in failures if isinstance(f, TemplateFailure)}) == 1


def test_the_cache_is_bounded_by_the_characters_it_holds() -> None:
    cache = TemplateCache(max_chars=1000, max_entries=100)
    for i in range(10):
        cache.parsed(f"{i:03d}" + "x" * 297, DEFAULT_LIMITS)  # 300 characters each: three fit
    assert cache.parses == 10
    cache.parsed("009" + "x" * 297, DEFAULT_LIMITS)  # the latest are still there
    assert cache.parses == 10
    cache.parsed("000" + "x" * 297, DEFAULT_LIMITS)  # the first one went
    assert cache.parses == 11


def test_threads_wanting_a_template_being_parsed_wait_for_that_one_parse() -> None:
    # The delivery workers of one serve process lease copies of the same message at the same time.
    cache = TemplateCache()
    template = DENSE * 3000  # ~130 KB: a parse long enough for the threads to meet
    start = threading.Barrier(4)
    trees: list[object] = []

    def worker() -> None:
        start.wait()
        trees.append(cache.parsed(template, DEFAULT_LIMITS))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert cache.parses == 1
    assert len(trees) == 4 and all(tree is trees[0] for tree in trees)


TEMPLATE_PIECES = st.one_of(
    st.text(max_size=5),
    st.sampled_from(
        [
            "{{var:name}}",
            "{{ var:missing }}",
            '{{var:missing:"d"}}',
            "{% if var:n > 1 %}",
            "{% else %}",
            "{% endif %}",
            "{% for i in var:items %}",
            "{% endfor %}",
            "{{ i }}",
            "{{",
            "}}",
            "{%",
            "%}",
            "{{ upper(var:name) + 1 }}",
            "{{ var:n / 0 }}",
            "{% set a = var:n * 2 %}{{a}}",
        ]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TEMPLATE_PIECES, max_size=12).map("".join), st.booleans())
def test_a_cached_template_renders_exactly_as_a_freshly_parsed_one(template: str, html: bool) -> None:
    variables = {"name": "<Ana>", "n": 3, "items": [1, "b", None]}

    def outcome() -> tuple[str, str | None, int | None]:
        try:
            return "ok", render(template, variables, html=html), None
        except TemplateError as exc:
            return "error", str(exc), exc.offset

    PARSED_TEMPLATES.clear()
    fresh = outcome()
    assert outcome() == fresh == outcome()  # from the cache, twice


# --- the budget of one request --------------------------------------------------------------------


def test_a_request_over_the_render_budget_is_refused_whole_in_mailjets_shape(stack: Stack) -> None:
    # Two distinct dense templates of ~1 MB, each to 50 recipients: ~150 M of estimated work.
    first = DENSE * (999_000 // len(DENSE))
    second = first.replace("Hi", "Ho")
    response = send(stack, templated(first, 50), templated(second, 50))
    assert response.status_code == 400
    body = response.json()
    assert set(body) >= {"ErrorIdentifier", "ErrorCode", "StatusCode", "ErrorMessage"}
    assert body["ErrorCode"] == "send-0901" and body["StatusCode"] == 400
    assert "fewer recipients" in body["ErrorMessage"] and body["ErrorRelatedTo"] == ["Messages"]
    assert stored_messages(stack) == 0  # nothing of it stored or queued
    # The same request validated only (SandboxMode) is refused the same way.
    sandboxed = send(stack, templated(first, 50), templated(second, 50), SandboxMode=True)
    assert sandboxed.status_code == 400 and sandboxed.json()["ErrorCode"] == "send-0901"


def test_a_large_template_to_a_full_message_of_recipients_fits(stack: Stack) -> None:
    # The bench's case, a dense 1 MB template to 50 recipients (~75 M), is accepted.
    response = send(stack, templated(DENSE * (999_000 // len(DENSE)), 50))
    assert response.status_code == 200, response.text[:300]
    assert stored_messages(stack) == 50


def estimated(messages: list[tuple[list[str], int]]) -> int:
    """The documented estimate, computed independently of mailstack's: copies x characters, plus
    PARSE_WEIGHT x characters once per distinct template text."""
    per_copy = sum(sum(len(part) for part in parts) * copies for parts, copies in messages)
    distinct = {part for parts, _ in messages for part in parts if part}
    return per_copy + PARSE_WEIGHT * sum(len(part) for part in distinct)


MESSAGE_SHAPES = st.lists(
    st.tuples(
        st.sampled_from(["{{var:a}}", "text", "{% if true %}x{% endif %}"]),  # template unit
        st.integers(0, 400),  # repetitions of it in HTMLPart
        st.integers(1, 6),  # recipients
        st.booleans(),  # TemplateLanguage
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(MESSAGE_SHAPES, st.integers(1, 60_000), st.booleans())
def test_requests_are_refused_exactly_when_their_estimated_work_is_over_the_budget(
    shapes: list[tuple[str, int, int, bool]], budget: int, shared_subject: bool
) -> None:
    body_messages = []
    counted: list[tuple[list[str], int]] = []
    for index, (unit, repeat, recipients, language) in enumerate(shapes):
        subject = "Hello" if shared_subject else f"Hello {index}"
        html = unit * repeat
        body_messages.append(
            {
                "From": {"Email": "news@example.com"},
                "To": [{"Email": f"r{i}@example.net"} for i in range(recipients)],
                "Subject": subject,
                "HTMLPart": html or "x",
                "TemplateLanguage": language,
            }
        )
        if language:
            counted.append(([subject, html or "x"], recipients))
    expected = estimated(counted)
    try:
        parsed = parse_send_request({"Messages": body_messages}, max_render_work=budget)
    except RequestError as refused:
        assert expected > budget
        assert refused.status_code == 400 and refused.payload["ErrorCode"] == "send-0901"
        assert str(expected) in refused.payload["ErrorMessage"]
    else:
        assert expected <= budget
        specs = [r.spec for r in parsed.results if hasattr(r, "spec")]
        assert render_work(specs) == expected


def test_the_default_budget_is_the_documented_one() -> None:
    assert MAX_RENDER_WORK == 100_000_000 and PARSE_WEIGHT == 25
    spec = MessageSpec(
        sender=Address("a@example.com"),
        to=(Address("b@example.net"),) * 2,
        subject="s",
        html="h" * 10,
        template_language=True,
    )
    assert render_work([spec]) == 2 * 11 + 25 * 11
    assert render_work([dataclasses.replace(spec, template_language=False)]) == 0
