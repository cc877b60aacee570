"""A SIGKILL while a batch is being delivered re-sends only what was in flight, with the same Message-ID."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from chaos_support import Node, RecordingSink

pytestmark = pytest.mark.e2e


def test_kill_mid_batch_resends_only_the_transaction_in_flight(tmp_path: Path, sink: RecordingSink) -> None:
    # SQLite only: the same path on PostgreSQL is covered by test_chaos_kills.
    node = Node.initialise(tmp_path / "data", sink.address, None)
    node.set_config("delivery", "workers", "1")
    node.set_config("delivery", "batch_size", "10")
    recipients = [f"r{i}@example.net" for i in range(10)]
    last = recipients[-1]
    sink.hold[last] = 3.0  # the relay sits on the batch's last message: it is the one in flight
    node.start()
    try:
        response = httpx.post(
            f"{node.url}/v3.1/send",
            auth=node.auth,
            json={
                "Messages": [
                    {
                        "From": {"Email": "news@example.com"},
                        "To": [{"Email": r}],
                        "Subject": "s",
                        "TextPart": "t",
                    }
                    for r in recipients
                ]
            },
        )
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 30
        while len(sink.counts()) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(sink.counts()) == 10
        time.sleep(0.5)  # the first nine 250s reach the worker; the last one is held
        node.kill()  # the batch's outcomes were never committed
        sink.hold.clear()
        node.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (last not in sink.counts() or node.queue_left()[0]):
            time.sleep(0.1)
        time.sleep(2.0)  # anything else sent twice would arrive now
        counts = sink.counts()
        assert set(counts) == set(recipients), node.log()  # nothing lost
        # Only the transaction open at the kill went out again (and the relay took it the first time too).
        assert {r: n for r, n in counts.items() if n > 1} == {last: 2}
        # Receivers can deduplicate it: both copies carry the same Message-ID.
        assert len(sink.message_ids()[last]) == 1
    finally:
        node.kill()
