"""Which source decides "sent" (Mailjet's delivered): Postfix's log when mailstack reads it, else the relay's
250 — with ``mailstack serve --relay`` to any MTA, the statcounters must not stay at 0 sent forever."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_support import Instance
from support import SmtpSink

pytestmark = pytest.mark.e2e

MESSAGE = {
    "From": {"Email": "news@example.com"},
    "To": [{"Email": "ana@example.net"}],
    "Subject": "Hi",
    "TextPart": "Hello",
}
LIFETIME = {"CounterSource": "APIKey", "CounterTiming": "Message", "CounterResolution": "Lifetime"}


def _counters_once_relayed(instance: Instance, relayed: int, timeout: float = 60) -> dict[str, Any]:
    """The account's lifetime counters, once the aggregator has folded in ``relayed`` relay acceptances."""
    deadline = time.monotonic() + timeout
    entry: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{instance.url}/v3/REST/statcounters", params=LIFETIME, auth=instance.auth)
        assert response.status_code == 200, response.text
        data = response.json()["Data"]
        entry = data[0] if data else {}
        if entry.get("MessageRelayedCount") == relayed:
            return entry
        time.sleep(0.2)
    pytest.fail(f"the relay's acceptances were not counted: {entry}\n{instance.log()}")


def test_a_relay_s_250_counts_as_sent_when_no_postfix_log_is_read(
    instance: Instance, smtp_sink: SmtpSink
) -> None:
    instance.start(relay=f"{smtp_sink.host}:{smtp_sink.port}")
    (message_id,) = instance.send(MESSAGE)
    instance.wait_status(message_id, "sent")
    assert len(smtp_sink.wait_for(1)) == 1
    counters = _counters_once_relayed(instance, 1)
    assert counters["MessageSentCount"] == 1 and counters["Total"] == 1
    assert counters["DeliveredRate"] == 1.0 and counters["MessageQueuedCount"] == 0


def test_with_postfix_s_log_read_only_the_log_says_delivered(
    instance: Instance, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    log = tmp_path / "postfix.log"
    log.touch()  # Postfix has not said anything about the message yet
    instance.set_config("feedback", "postfix_log", f'"{log}"')
    instance.start(relay=f"{smtp_sink.host}:{smtp_sink.port}")
    (message_id,) = instance.send(MESSAGE)
    instance.wait_status(message_id, "sent")
    counters = _counters_once_relayed(instance, 1)
    assert counters["MessageSentCount"] == 0 and counters["DeliveredRate"] == 0.0
