"""One header policy: the Send API refuses, at acceptance, every user header the composer would refuse at
delivery (answered "success" and then failed, before); any header set it accepts composes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from engagement_support import Stack
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstack.api._sendv31 import MessageErrors, ParsedMessage, parse_send_request
from mailstack.compose import ComposeSettings, compose
from mailstack.model import Envelope, RecipientKind
from mailstack.tokens import TokenSigner

MESSAGE: dict[str, Any] = {
    "From": {"Email": "news@example.com"},
    "To": [{"Email": "ana@example.net"}],
    "Subject": "Hello",
    "TextPart": "Hello",
}
COMPOSE = ComposeSettings(
    hostname="mail.example.com",
    bounce_domain="bounces.example.com",
    tokens=TokenSigner(b"header-policy-test-secret-012345"),
    unsubscribe_base_url="https://t.example.com",
)
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"Content-Disposition": "attachment"}, "Content-Disposition"),
        ({"Content-Language": "de"}, "Content-Language"),
        ({"ARC-Seal": "i=1; a=rsa-sha256; cv=none"}, "ARC-Seal"),
        ({"arc-message-signature": "i=1"}, "arc-message-signature"),
        ({"In-Reply-To": "<a@example.com>", "in-reply-to": "<b@example.com>"}, "in-reply-to"),
        ({"References": "<a@example.com>", "REFERENCES": "<b@example.com>"}, "REFERENCES"),
        ({"Reply-To": "a@example.com", "reply-to": "b@example.com"}, "reply-to"),
        ({"X-" + "n" * 300: "v"}, "X-" + "n" * 300),
    ],
    ids=[
        "content-disposition",
        "content-language",
        "arc",
        "arc-lower",
        "in-reply-to",
        "references",
        "reply-to",
        "long-name",
    ],
)
def test_headers_the_composer_refuses_are_refused_at_acceptance(
    stack: Stack, headers: dict[str, str], refused: str
) -> None:
    response = stack.client.post(
        "/v3.1/send", json={"Messages": [{**MESSAGE, "Headers": headers}]}, auth=stack.auth
    )
    assert response.status_code == 400, response.text
    (entry,) = response.json()["Messages"]
    assert entry["Status"] == "error"
    (error,) = entry["Errors"]
    assert error["ErrorCode"] in ("send-0011", "mj-0005") and error["StatusCode"] == 400
    (related,) = error["ErrorRelatedTo"]  # a long name is echoed shortened
    assert related.startswith(f'Headers["{refused[:90]}') and error["ErrorIdentifier"]
    assert stack.deliver() == 0  # nothing was stored to fail later


def test_accepted_headers_are_delivered_as_given(stack: Stack) -> None:
    headers = {"In-Reply-To": "<a@example.com>", "X-Campaign-Ref": "spring", "Reply-To": "r@example.com"}
    (message_id,) = stack.send(Headers=headers)
    stack.deliver()
    sent = stack.outbox_message(message_id)
    assert sent["In-Reply-To"] == "<a@example.com>" and sent["X-Campaign-Ref"] == "spring"
    assert sent["Reply-To"] == "r@example.com"


# --- the family: any Headers object -----------------------------------------------------------------

_NAME_PARTS = [
    "X-Custom",
    "In-Reply-To",
    "References",
    "Reply-To",
    "Subject",
    "Content-",
    "ARC-",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Keywords",
    "Comments",
    "Received",
    "X-MJ-CustomID",
    "Precedence",
]
_names = st.one_of(
    st.builds(
        lambda base, upper, suffix: (base.upper() if upper else base) + suffix,
        st.sampled_from(_NAME_PARTS),
        st.booleans(),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=8),
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7F), min_size=0, max_size=12),
    st.text(st.sampled_from("Xx-"), min_size=190, max_size=260),
)
_values = st.one_of(
    st.text(max_size=60),
    st.text(st.sampled_from(" \t<>@,;:\"'()abcz=?é日"), max_size=120),
    st.builds(lambda n: "a" * n, st.integers(min_value=800, max_value=1100)),
    st.sampled_from(["Ana <ana@example.net>", "a@b, c@d", "<x@example.com>", "not an address", ""]),
)


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(_names, _values, max_size=6),
    st.sampled_from(["", "spring"]),
    st.booleans(),
)
def test_any_header_set_the_api_accepts_composes(
    headers: dict[str, str], campaign: str, reply_to_property: bool
) -> None:
    message: dict[str, Any] = {**MESSAGE, "Headers": headers, "CustomCampaign": campaign}
    if reply_to_property:
        message["ReplyTo"] = {"Email": "reply@example.com"}
    (result,) = parse_send_request({"Messages": [message]}).results
    if isinstance(result, MessageErrors):
        return
    assert isinstance(result, ParsedMessage)
    spec = result.spec
    composed = compose(Envelope(7, "u7", spec.to[0], RecipientKind.TO, spec), COMPOSE, now=NOW)
    for line in composed.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        assert len(line) <= 998
