"""PostgreSQL goes away mid-run and comes back: serve reconnects by itself, writes the outcomes it could
not write, loses nothing and sends nothing twice; the background services note the outage once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from chaos_support import Clients, Node, RecordingSink, tally, wait_drained
from tcp_relay_support import TcpRelay

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def test_database_restart_while_sending_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, sink: RecordingSink, pg_url: str
) -> None:
    database = TcpRelay(("127.0.0.1", 5432))
    node = Node.initialise(
        tmp_path / "data", sink.address, pg_url.replace("127.0.0.1:5432", database.address)
    )
    node.set_config("delivery", "batch_size", "20")
    node.start()
    try:
        load = Clients(lambda: [node.url], node.auth, requests=20, batch=20, count=4).start()
        deadline = time.monotonic() + 60
        while len(sink.received) < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(sink.received) >= 60, node.log()
        database.cut()  # mid-run: batches in hand cannot record their outcomes
        time.sleep(5)
        assert node.process is not None and node.process.poll() is None
        database.restore()
        load.join()
        drained_at = wait_drained(sink, [node], load.recipients(), timeout=120)
        outcome = tally(sink, [node], load, drained_at, kills=0)
        assert outcome.lost == 0
        assert outcome.duplicated == 0, outcome  # never re-sent because the database blinked
        assert outcome.dead == 0
        assert node.process.poll() is None  # no restart needed
        assert node.terminate() == 0
        log = node.log()
        # Each retrying loop says once that the storage is away, not once per retry.
        assert 1 <= log.count("storage unavailable; retrying") <= 12, log[-5000:]
    finally:
        node.kill()
        database.cut()
