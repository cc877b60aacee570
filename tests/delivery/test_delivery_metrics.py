"""``mailstack_messages_failed_total`` counts every message that becomes ``failed``: refused for good by
the relay, out of retries (a dead letter), or impossible to compose (``Undeliverable``) — in process and on
``/metrics``."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client import generate_latest
from serve_support import Instance
from sqlalchemy import Engine
from support import SmtpSink, make_vault

from mailstack.delivery import DeliveryWorker, OutgoingMail, SmtpRelay, Undeliverable, WorkerSettings
from mailstack.model import Address, Envelope, MessageSpec
from mailstack.observability import Metrics
from mailstack.queue import queue_for
from mailstack.storage import create_api_key, find_api_key, insert_messages


def _prepare(envelope: Envelope) -> OutgoingMail:
    if envelope.recipient.email.startswith("uncomposable"):
        raise Undeliverable("cannot compose this one")
    data = f"From: a@example.com\r\nTo: {envelope.recipient.email}\r\nSubject: t\r\n\r\nhello\r\n".encode()
    return OutgoingMail(
        envelope.message_id, f"b-{envelope.message_id}@bounces.example.com", envelope.recipient.email, data
    )


def _accept(engine: Engine, recipients: list[str]) -> None:
    spec = MessageSpec(sender=Address("a@example.com"), to=tuple(Address(r) for r in recipients), text="hi")
    vault = make_vault(engine)  # before the transaction: it may write keys of its own
    with engine.begin() as conn:
        public, _ = create_api_key(conn)
        key = find_api_key(conn, public)
        assert key is not None
        accepted = insert_messages(conn, key.id, [spec], now=1000.0, vault=vault)
        queue_for(engine).enqueue(conn, [r.message_id for r in accepted[0]], available_at=1000.0)


def _counts(metrics: Metrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    found = {}
    for name in ("sent", "deferred", "failed"):
        (line,) = [ln for ln in text.splitlines() if ln.startswith(f"mailstack_messages_{name}_total ")]
        found[name] = float(line.split()[1])
    return found


def test_every_way_of_failing_is_counted(engine: Engine, smtp_sink: SmtpSink) -> None:
    smtp_sink.replies["nobody@example.net"] = "550 5.1.1 no such user"
    smtp_sink.replies["busy@example.net"] = "451 4.3.0 try again later"
    _accept(engine, ["ok@example.net", "nobody@example.net", "busy@example.net", "uncomposable@example.net"])
    metrics = Metrics()
    now = [1000.0]
    worker = DeliveryWorker(
        engine,
        queue_for(engine),
        _prepare,
        SmtpRelay(smtp_sink.host, smtp_sink.port, helo_name="test.example.com", pool_size=2, timeout=10),
        WorkerSettings(batch_size=10, lease_seconds=60, max_attempts=2, retry_base_seconds=10),
        metrics,
        clock=lambda: now[0],
        vault=make_vault(engine),
    )
    assert worker.run_once() == 4
    # The refusal and the uncomposable message failed; the busy one is retried.
    assert _counts(metrics) == {"sent": 1, "deferred": 1, "failed": 2}
    now[0] += 1000
    assert worker.run_once() == 1
    # Its last attempt: a dead letter, a failed message — not one more deferral.
    assert _counts(metrics) == {"sent": 1, "deferred": 1, "failed": 3}


@pytest.mark.e2e
def test_failed_messages_show_on_the_metrics_endpoint(instance: Instance, smtp_sink: SmtpSink) -> None:
    smtp_sink.replies["nobody@example.net"] = "550 5.1.1 no such user"
    instance.start(relay=f"{smtp_sink.host}:{smtp_sink.port}")
    (message_id,) = instance.send(
        {
            "From": {"Email": "hello@example.com"},
            "To": [{"Email": "nobody@example.net"}],
            "Subject": "Hi",
            "TextPart": "Hello",
        }
    )
    deadline = time.monotonic() + 30
    while instance.status(message_id)["Status"] != "failed":
        assert time.monotonic() < deadline, instance.status(message_id)
        time.sleep(0.2)
    metrics = httpx.get(f"{instance.url}/metrics").text
    assert "mailstack_messages_failed_total 1.0" in metrics
    assert instance.stop() == 0
