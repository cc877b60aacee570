"""Durability and load-spike benchmarks, against ``mailstack serve`` subprocesses and a recording SMTP sink.

Usage: .venv/bin/python bench/bench_chaos.py [--only chaos|chaos-postgres|spike] [--messages N]

chaos: N messages (8 clients x 20 per request, lost answers retried with the same Idempotency-Key) while
serve is SIGKILLed three times at random moments and restarted; prints lost, duplicated (% of N), the drain
time, and the drain time of the same load without kills measured in the same run (the ratio).

spike: the API's p50/p99 latency for one-message requests at a normal rate (5 requests/s, idle workers)
and at 20x that rate (100 requests/s, workers busy delivering what it accepts), in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
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


def _paced(url: str, auth: tuple[str, str], rate: float, seconds: float, tag: str) -> list[float]:
    """One client thread sending one-message requests at ``rate`` per second; the latencies."""
    latencies: list[float] = []
    with httpx.Client(auth=auth, timeout=30) as session:
        started = time.perf_counter()
        for index in range(int(rate * seconds)):
            time.sleep(max(0.0, started + index / rate - time.perf_counter()))
            body = {
                "Messages": [
                    {
                        "From": {"Email": "news@example.com"},
                        "To": [{"Email": f"{tag}{index}@example.net"}],
                        "Subject": "Spike",
                        "TextPart": "Hello",
                        "HTMLPart": "<p>Hello</p>",
                    }
                ]
            }
            sent = time.perf_counter()
            response = session.post(f"{url}/v3.1/send", json=body)
            if response.status_code not in (200, 429):
                raise RuntimeError(f"{response.status_code} {response.text}")
            latencies.append(time.perf_counter() - sent)
    return latencies


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def spike(normal_rate: float = 5.0, factor: int = 20, seconds: float = 20.0) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="mailstack-spike-"))
    sink = RecordingSink().start()
    node = Node.initialise(workdir / "data", sink.address, None)
    try:
        node.start()
        idle = _paced(node.url, node.auth, normal_rate, seconds / 2, "idle")
        results: list[list[float]] = []
        threads = [
            threading.Thread(
                target=lambda n=n: results.append(_paced(node.url, node.auth, normal_rate, seconds, f"s{n}-"))
            )
            for n in range(factor)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        loaded = [latency for part in results for latency in part]
        idle_p50, idle_p99 = _percentiles(idle)
        p50, p99 = _percentiles(loaded)
        assert node.terminate() == 0
        return {
            "name": "spike",
            "unit": "ms (API p99 at 20x the normal request rate)",
            "value": round(p99, 1),
            "baseline_name": "API p99 at the normal rate",
            "baseline_value": round(idle_p99, 1),
            "ratio": round(p99 / idle_p99, 3),
            "p50_ms": round(p50, 1),
            "idle_p50_ms": round(idle_p50, 1),
            "normal_rate_per_s": normal_rate,
            "spike_rate_per_s": normal_rate * factor,
            "requests": len(loaded),
            "achieved_rate_per_s": round(len(loaded) / seconds, 1),
        }
    finally:
        node.kill()
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)


BENCHMARKS = ("chaos", "chaos-postgres", "spike")


def run(only: str | None = None, messages: int = 5000) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    if only in (None, "chaos"):
        results.append(chaos("sqlite", messages))
    if only == "chaos-postgres":  # not in the default run: the SQLite one already takes minutes
        results.append(chaos("postgres", messages))
    if only in (None, "spike"):
        results.append(spike())
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
