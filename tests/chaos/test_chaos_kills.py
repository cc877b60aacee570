"""SIGKILL three times at random moments under load, restarted each time; clients retry lost answers with
the same Idempotency-Key. Nothing is lost, and only what was in flight at a kill is sent twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos_support import Node, RecordingSink, run_with_kills

pytestmark = pytest.mark.e2e

WORKERS = 4  # mailstack init's default: each worker has at most one SMTP transaction open at a time


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_three_kills_lose_nothing_and_duplicate_at_most_the_transactions_in_flight(
    tmp_path: Path, sink: RecordingSink, backend: str, request: pytest.FixtureRequest
) -> None:
    database_url = None if backend == "sqlite" else str(request.getfixturevalue("pg_url"))
    node = Node.initialise(tmp_path / "data", sink.address, database_url)
    node.set_config("delivery", "workers", str(WORKERS))
    node.start()
    try:
        outcome = run_with_kills(
            node,
            sink,
            messages=400,
            kills=3,
            seed=14,
            batch=10,
            clients=4,
            kill_window=4.0,
            drain_timeout=180,
        )
        assert outcome.lost == 0, outcome
        assert outcome.duplicated <= outcome.kills * WORKERS, outcome
        assert outcome.duplicates_with_other_message_id == 0, outcome  # receivers can deduplicate
        assert outcome.dead == 0, outcome
        assert node.terminate() == 0
    finally:
        node.kill()
