"""Automation: "when event E happens for campaign C, send template T to that recipient"."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from engagement_support import Stack, make_stack, pixel_in
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from mailstack.automation import AutomationEngine, create_rule, follow_up_message, recipient_properties
from mailstack.storage import PURPOSE_RECIPIENT
from mailstack.storage.schema import automation_runs, messages

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
FOLLOW_UP = {
    "From": {"Email": "news@example.com", "Name": "News"},
    "Subject": "Thanks for reading",
    "TextPart": "Here is 10% off.",
    "HTMLPart": "<p>Here is 10% off.</p>",
    "CustomCampaign": "welcome",  # the same campaign: a follow-up must still never trigger itself
}


@pytest.fixture
def stack(tmp_path: Path, db_url: str) -> Iterator[Stack]:
    # The background engine polls rarely here; the tests drive it by hand unless they say otherwise.
    with make_stack(tmp_path, db_url, {"automation": {"poll_seconds": 60}}) as running:
        yield running


def add_rule(stack: Stack, **overrides: Any) -> dict[str, Any]:
    body = {"Name": "thank openers", "EventType": "open", "CustomCampaign": "welcome", "Template": FOLLOW_UP}
    body.update(overrides)
    response = stack.client.post("/api/v1/automations", json=body, auth=stack.auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["Data"][0]
    return data


def open_message(stack: Stack, message_id: int, agent: str = BROWSER) -> None:
    pixel = pixel_in(stack.html_of(message_id))
    assert pixel is not None
    stack.client.get(pixel.removeprefix("https://track.example.com"), headers={"User-Agent": agent})
    stack.flush_tracking()


def engine_of(stack: Stack) -> AutomationEngine:
    engine: AutomationEngine = stack.node.automation
    return engine


def follow_ups(stack: Stack) -> list[Any]:
    with stack.runtime.engine.connect() as conn:
        sent = select(automation_runs.c.sent_message_id).where(automation_runs.c.sent_message_id.is_not(None))
        rows = conn.execute(
            select(messages.c.id, messages.c.recipient, messages.c.campaign).where(messages.c.id.in_(sent))
        ).all()
        return [
            SimpleNamespace(
                id=row.id,
                recipient=stack.runtime.vault.open(conn, row.recipient, purpose=PURPOSE_RECIPIENT).decode(),
                campaign=row.campaign,
            )
            for row in rows
        ]


def test_an_open_sends_the_template_to_that_recipient_once(stack: Stack) -> None:
    add_rule(stack)
    ana, bo = stack.send(
        To=[{"Email": "ana@gmail.com", "Name": "Ana"}, {"Email": "bo@outlook.com"}],
        CustomCampaign="welcome",
        HTMLPart="<p>Welcome</p>",
    )
    (other,) = stack.send(To=[{"Email": "cy@gmail.com"}], CustomCampaign="other", HTMLPart="<p>x</p>")
    stack.deliver()
    open_message(stack, ana)
    open_message(stack, ana)  # opened again: no second follow-up
    open_message(stack, bo, agent="Mozilla/5.0")  # Apple's privacy proxy: not a person opening it
    open_message(stack, other)  # another campaign
    engine_of(stack).run_once()
    (follow_up,) = follow_ups(stack)
    assert (follow_up.recipient, follow_up.campaign) == ("ana@gmail.com", "welcome")
    stack.deliver()
    sent = stack.outbox_message(follow_up.id)
    assert sent["Subject"] == "Thanks for reading" and "Ana <ana@gmail.com>" in str(sent["To"])
    # The follow-up is itself in campaign "welcome"; opening it must not start a loop.
    open_message(stack, follow_up.id)
    engine_of(stack).run_once()
    assert len(follow_ups(stack)) == 1
    rules = stack.client.get("/api/v1/automations", auth=stack.auth).json()["Data"]
    assert rules[0]["Runs"] == 1


def test_clicks_trigger_click_rules(stack: Stack) -> None:
    add_rule(stack, EventType="click")
    (ana,) = stack.send(CustomCampaign="welcome", HTMLPart='<a href="https://shop.example/">shop</a>')
    stack.deliver()
    open_message(stack, ana)
    engine_of(stack).run_once()
    assert follow_ups(stack) == []  # an open is not a click
    link = stack.html_of(ana).split('href="', 1)[1].split('"', 1)[0]
    stack.client.get(link.removeprefix("https://track.example.com"), headers={"User-Agent": BROWSER})
    stack.flush_tracking()
    engine_of(stack).run_once()
    assert len(follow_ups(stack)) == 1


def test_a_crash_after_sending_does_not_send_twice(stack: Stack) -> None:
    add_rule(stack)
    (ana,) = stack.send(CustomCampaign="welcome", HTMLPart="<p>Welcome</p>")
    stack.deliver()
    open_message(stack, ana)
    real = engine_of(stack)._send

    def crash_after_sending(api_key_id: int, message: dict[str, Any], key: str) -> int:
        real(api_key_id, message, key)
        raise RuntimeError("killed before the run was marked sent")

    crashing = AutomationEngine(
        stack.runtime.engine, crash_after_sending, vault=stack.runtime.vault, gap_grace_seconds=0
    )
    crashing.match()
    with pytest.raises(RuntimeError):
        crashing.send_pending()
    engine_of(stack).send_pending()  # the run is still pending: sent again, with the same key
    with stack.runtime.engine.connect() as conn:
        sealed = conn.execute(select(messages.c.recipient).order_by(messages.c.id)).scalars().all()
        recipients = [stack.runtime.vault.open(conn, r, purpose=PURPOSE_RECIPIENT).decode() for r in sealed]
    assert recipients == ["ana@gmail.com", "ana@gmail.com"]  # the original and one follow-up
    assert len(follow_ups(stack)) == 1


def test_the_background_engine_acts_within_seconds(tmp_path: Path, sqlite_url: str) -> None:
    with make_stack(tmp_path, sqlite_url, {"automation": {"poll_seconds": 0.2}}) as stack:
        add_rule(stack)
        (ana,) = stack.send(CustomCampaign="welcome", HTMLPart="<p>Welcome</p>")
        stack.deliver()
        open_message(stack, ana)
        deadline = time.monotonic() + 30
        while not follow_ups(stack) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(follow_ups(stack)) == 1


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"EventType": "opened"}, "EventType"),
        ({"CustomCampaign": ""}, "CustomCampaign"),
        ({"Template": {**FOLLOW_UP, "To": [{"Email": "x@example.net"}]}}, "must not name recipients"),
        ({"Template": {**FOLLOW_UP, "From": {"Email": "news@elsewhere.example"}}}, "no DKIM key"),
        ({"Template": {"From": {"Email": "news@example.com"}, "Subject": "x"}}, "not a valid message"),
        ({"Template": "hello"}, "Send API message"),
        ({"Extra": 1}, "Unknown properties"),
    ],
)
def test_invalid_rules_are_explained(stack: Stack, overrides: dict[str, Any], problem: str) -> None:
    body = {"EventType": "open", "CustomCampaign": "welcome", "Template": FOLLOW_UP, **overrides}
    response = stack.client.post("/api/v1/automations", json=body, auth=stack.auth)
    assert response.status_code == 400
    assert problem in response.json()["ErrorMessage"]


def test_rules_belong_to_their_api_key(stack: Stack) -> None:
    rule = add_rule(stack)
    assert stack.client.get("/api/v1/automations").status_code == 401
    assert stack.client.delete(f"/api/v1/automations/{rule['ID']}", auth=stack.auth).status_code == 204
    assert stack.client.delete(f"/api/v1/automations/{rule['ID']}", auth=stack.auth).status_code == 404
    assert stack.client.get("/api/v1/automations", auth=stack.auth).json()["Count"] == 0


# --- recipients named in a template, in any letter case (the Send API matches names case-insensitively) --


@pytest.mark.parametrize("name", ["bcc", "CC", "tO", "BCC", "cC"])
def test_a_template_naming_recipients_in_any_case_is_refused(stack: Stack, name: str) -> None:
    template = {**FOLLOW_UP, name: [{"Email": "spy@example.org"}]}
    body = {"EventType": "open", "CustomCampaign": "welcome", "Template": template}
    response = stack.client.post("/api/v1/automations", json=body, auth=stack.auth)
    assert response.status_code == 400
    assert "must not name recipients" in response.json()["ErrorMessage"] and name in response.text
    assert stack.client.get("/api/v1/automations", auth=stack.auth).json()["Count"] == 0


def test_a_stored_template_naming_recipients_still_mails_only_the_trigger_s_recipient(stack: Stack) -> None:
    # A rule stored before templates were checked case-insensitively: it must not copy anyone in.
    (ana,) = stack.send(CustomCampaign="welcome", HTMLPart="<p>Welcome</p>")
    with stack.runtime.engine.begin() as conn:
        api_key_id = conn.execute(select(messages.c.api_key_id).where(messages.c.id == ana)).scalar_one()
        template = {**FOLLOW_UP, "bcc": [{"Email": "spy@example.org"}], "cc": [{"Email": "cc@example.org"}]}
        create_rule(
            conn, api_key_id=api_key_id, name="old", event_type="open", campaign="welcome", template=template
        )
    stack.deliver()
    open_message(stack, ana)
    engine_of(stack).run_once()
    stack.deliver()
    with stack.runtime.engine.connect() as conn:
        sealed = conn.execute(select(messages.c.recipient).order_by(messages.c.id)).scalars().all()
        recipients = [stack.runtime.vault.open(conn, r, purpose=PURPOSE_RECIPIENT).decode() for r in sealed]
    assert recipients == ["ana@gmail.com", "ana@gmail.com"]


_cased = st.builds(
    lambda word, flips: "".join(c.upper() if f else c for c, f in zip(word, flips, strict=False)),
    st.sampled_from(["to", "cc", "bcc"]),
    st.lists(st.booleans(), min_size=3, max_size=3),
)


@given(st.lists(_cased, max_size=4), st.sampled_from(["Subject", "subject", "CustomCampaign", "Headers"]))
def test_follow_ups_go_to_the_trigger_s_recipient_alone(named: list[str], other: str) -> None:
    template: dict[str, Any] = {other: "kept", **{name: [{"Email": "spy@example.org"}] for name in named}}
    assert sorted(recipient_properties(template)) == sorted(set(named))
    message = follow_up_message(template, {"Email": "ana@gmail.com"})
    assert message == {other: "kept", "To": [{"Email": "ana@gmail.com"}]}
