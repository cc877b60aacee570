"""Unsubscribing: the List-Unsubscribe one-click POST (RFC 8058) and the visible page, both suppressing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from engagement_support import Stack, make_stack

from mailstack.storage import active_suppressions, get_message, list_suppressions


@pytest.fixture
def stack(tmp_path: Path, db_url: str) -> object:
    with make_stack(tmp_path, db_url) as running:
        yield running


def list_unsubscribe_url(stack: Stack, message_id: int) -> str:
    header = str(stack.outbox_message(message_id)["List-Unsubscribe"])
    urls = re.findall(r"<(https://[^>]+)>", header)
    assert len(urls) == 1, header
    assert stack.outbox_message(message_id)["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    return urls[0].removeprefix("https://track.example.com")


def suppressed(stack: Stack, address: str, sender_domain: str = "example.com") -> bool:
    with stack.runtime.engine.connect() as conn:
        return bool(
            active_suppressions(conn, [(address, sender_domain)], now=9e12, vault=stack.runtime.vault)
        )


def bulk_message(stack: Stack, to: str = "ana@gmail.com") -> int:
    (message_id,) = stack.send(To=[{"Email": to}], CustomCampaign="spring", HTMLPart="<p>Sale</p>")
    assert stack.deliver() == 1
    return message_id


def test_one_click_post_suppresses_the_address_for_that_sender(stack: Stack) -> None:
    message_id = bulk_message(stack)
    path = list_unsubscribe_url(stack, message_id)
    assert not suppressed(stack, "ana@gmail.com")
    response = stack.client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert response.status_code == 200 and "location" not in response.headers
    assert suppressed(stack, "ana@gmail.com")
    assert not suppressed(stack, "ana@gmail.com", "other-sender.example")  # that sender only
    (entry,) = [e for e in _entries(stack) if e.address == "ana@gmail.com"]
    assert (entry.scope, entry.source, entry.message_id) == ("example.com", "unsubscribe", message_id)
    with stack.runtime.engine.connect() as conn:
        record = get_message(conn, message_id, 1, vault=stack.runtime.vault)
    assert record is not None and record.status == "unsub"
    # Pressing again (mail clients retry) changes nothing and records one unsub event.
    again = stack.client.post(path, content=b"List-Unsubscribe=One-Click")
    assert again.status_code == 200
    assert [kind for kind, _ in stack.events_of(message_id)].count("unsub") == 1


def _entries(stack: Stack) -> list[object]:
    with stack.runtime.engine.connect() as conn:
        return list(list_suppressions(conn, vault=stack.runtime.vault))


def test_the_page_asks_first_and_its_form_suppresses(stack: Stack) -> None:
    message_id = bulk_message(stack, "bo@outlook.com")
    path = list_unsubscribe_url(stack, message_id)
    page = stack.client.get(path)
    assert page.status_code == 200
    assert "<form method=post" in page.text and "frame-ancestors" not in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert not suppressed(stack, "bo@outlook.com"), "a GET (a link scanner) must not unsubscribe"
    done = stack.client.post(path, data={"confirm": "yes"})
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert suppressed(stack, "bo@outlook.com")


def test_unsubscribe_placeholder_in_the_body_leads_to_the_same_page(stack: Stack) -> None:
    (message_id,) = stack.send(HTMLPart='<p><a href="[[UNSUB_LINK_EN]]">Unsubscribe</a></p>')
    stack.deliver()
    document = stack.html_of(message_id)
    (href,) = re.findall(r'href="(https://track\.example\.com/unsubscribe/[^"]+)"', document)
    page = stack.client.get(href.removeprefix("https://track.example.com"))
    assert page.status_code == 200 and "<form" in page.text


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_forged_unsubscribe_tokens_are_refused(stack: Stack, method: str) -> None:
    message_id = bulk_message(stack)
    path = list_unsubscribe_url(stack, message_id)
    forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    response = stack.client.request(method, forged, content=b"List-Unsubscribe=One-Click")
    assert response.status_code == 404
    assert not suppressed(stack, "ana@gmail.com")
