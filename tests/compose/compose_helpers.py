"""Builders and checks shared by the composer's tests (importable as ``compose_helpers``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mailstack.compose import ComposeSettings
from mailstack.model import Address, Envelope, MessageSpec, RecipientKind
from mailstack.tokens import TokenSigner

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
SECRET = b"compose-test-secret-0123456789ab"
UUID = "5b1d2c3e-0000-4000-8000-000000000001"


def make_settings(**kw: Any) -> ComposeSettings:
    kw.setdefault("unsubscribe_base_url", "https://t.example.com")
    return ComposeSettings(
        hostname="mailstack.example.com",
        bounce_domain="bounces.example.com",
        tokens=TokenSigner(SECRET),
        **kw,
    )


def make_envelope(
    *,
    message_id: int = 1001,
    uuid: str = UUID,
    recipient: Address | None = None,
    kind: RecipientKind = RecipientKind.TO,
    **spec_kw: Any,
) -> Envelope:
    """An envelope for a plain "Hello" message; any MessageSpec field can be overridden."""
    spec_kw.setdefault("sender", Address("news@example.com", "Example News"))
    spec_kw.setdefault("to", (Address("alice@example.org", "Alice"),))
    spec_kw.setdefault("subject", "Hello")
    spec_kw.setdefault("text", "Hello\n")
    spec = MessageSpec(**spec_kw)
    return Envelope(message_id, uuid, recipient or spec.to[0], kind, spec)


def assert_wire_format(data: bytes) -> None:
    """Every line CRLF-terminated, no bare CR or LF, no line over 998 octets."""
    assert data.endswith(b"\r\n")
    for line in data.split(b"\r\n")[:-1]:
        assert b"\r" not in line and b"\n" not in line
        assert len(line) <= 998
