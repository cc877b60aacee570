"""Durability benchmarks, against ``mailstack serve`` subprocesses and a recording SMTP sink.

Usage: .venv/bin/python bench/bench_chaos.py [--only chaos|chaos-postgres] [--messages N]

chaos: N messages (8 clients x 20 per request, lost answers retried with the same Idempotency-Key) while
serve is SIGKILLed three times at random moments and restarted; prints lost, duplicated (% of N), how far
from a kill the first copy of a duplicated message arrived at the sink (the SMTP transactions open at a
kill arrive within milliseconds of it; an outcome lost for another reason would be seconds away), the drain
time, and the drain time of the same load without kills measured in the same run (the ratio).

The load spike is bench_spike.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "chaos"))

from chaos_support import Node, RecordingSink, run_with_kills

PG_ADMIN_URL = os.environ.get("MAILSTACK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


class _Database:
    """SQLite in the data directory, or a fresh PostgreSQL database dropped afterwards."""

    def __init__(self, backend: str) -> None:
        self.url: str | None = None
        self._name: str | None = None
        if backend == "postgres":
            self._name = f"mailstack_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self._name}"')
            self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self._name}"

    def drop(self) -> None:
        if self._name is not None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')


def _chaos_run(backend: str, messages: int, kills: int, seed: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="mailstack-chaos-"))
    database = _Database(backend)
    sink = RecordingSink().start()
    node = None
    try:
        node = Node.initialise(workdir / "data", sink.address, database.url)
        node.start()
        outcome = run_with_kills(
            node, sink, messages=messages, kills=kills, seed=seed, kill_window=15.0, drain_timeout=900
        )
        assert node.terminate() == 0
        return {
            "lost": outcome.lost,
            "duplicated": outcome.duplicated,
            "duplicated_percent": round(outcome.duplicated_percent, 3),
            "duplicates_with_another_message_id": outcome.duplicates_with_other_message_id,
            "duplicates_max_ms_from_a_kill": (
                None
                if outcome.duplicates_seconds_from_kill is None
                else round(outcome.duplicates_seconds_from_kill * 1000, 1)
            ),
            "dead": outcome.dead,
            "drain_seconds": round(outcome.drain_seconds, 1),
        }
    finally:
        if node is not None:
            node.kill()
        sink.stop()
        database.drop()
        shutil.rmtree(workdir, ignore_errors=True)


def chaos(backend: str, messages: int) -> dict[str, Any]:
    undisturbed = _chaos_run(backend, messages, 0, seed=1)
    disturbed = _chaos_run(backend, messages, 3, seed=14)
    return {
        "name": "chaos" if backend == "sqlite" else "chaos-postgres",
        "unit": "s to drain with 3 kills",
        "value": disturbed["drain_seconds"],
        "baseline_name": "drain without kills",
        "baseline_value": undisturbed["drain_seconds"],
        "ratio": round(disturbed["drain_seconds"] / undisturbed["drain_seconds"], 3),
        "messages": messages,
        "kills": 3,
        **{k: v for k, v in disturbed.items() if k != "drain_seconds"},
    }


BENCHMARKS = ("chaos", "chaos-postgres")


def run(only: str | None = None, messages: int = 5000) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    if only in (None, "chaos"):
        results.append(chaos("sqlite", messages))
    if only == "chaos-postgres":  # not in the default run: the SQLite one already takes minutes
        results.append(chaos("postgres", messages))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=BENCHMARKS)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    for result in run(args.only, args.messages):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
