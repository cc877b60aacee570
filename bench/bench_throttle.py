"""Throttle overhead: decisions per second of ``Throttle.acquire`` on SQLite and PostgreSQL.

Usage: .venv/bin/python bench/bench_throttle.py [--only throttle-sqlite|throttle-postgres] [--batches N]

Each decision batch is 50 messages (the worker's default batch) to a mix of Gmail, Outlook, Yahoo and other
domains, under per-provider and per-API-key limits high enough that every message goes: the cost measured
is the locked read-modify-write of the buckets, which every delivered message pays. The baseline, measured
in the same run on the same database, is what the queue already costs per message: lease a batch of 50 and
complete each job. A ratio above 1 means throttling costs less per message than queueing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine

from mailstack.model import Address, MessageSpec
from mailstack.providers import ProviderClassifier
from mailstack.queue import queue_for
from mailstack.storage import create_api_key, create_storage_engine, find_api_key, insert_messages, migrate
from mailstack.throttle import Limit, Policy, Request, Throttle, throttle_store_for

PG_ADMIN_URL = os.environ.get("MAILSTACK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 50
DOMAINS = ("gmail.com", "gmail.com", "outlook.com", "yahoo.com", "example.net", "example.org")
BENCHMARKS = {"throttle-sqlite": "sqlite", "throttle-postgres": "postgres"}


def _messages(engine: Engine, count: int) -> list[int]:
    spec = MessageSpec(
        sender=Address("a@example.com"),
        to=tuple(Address(f"r{i}@{DOMAINS[i % len(DOMAINS)]}") for i in range(BATCH)),
        text="x",
    )
    with engine.begin() as conn:
        public, _ = create_api_key(conn)
        key = find_api_key(conn, public)
        assert key is not None
        accepted = insert_messages(conn, key.id, [spec] * (count // BATCH), now=time.time())
    return [r.message_id for recipients in accepted for r in recipients]


def _throttle_rate(engine: Engine, ids: list[int]) -> float:
    policy = Policy(
        api_key=Limit(1e6, 1_000_000),
        providers={name: Limit(1e6, 1_000_000) for name in ("google", "microsoft", "yahoo", "other")},
    )
    throttle = Throttle(policy, throttle_store_for(engine), ProviderClassifier())
    batches = [ids[i : i + BATCH] for i in range(0, len(ids), BATCH)]
    started = time.perf_counter()
    for batch in batches:
        requests = [Request(m, DOMAINS[m % len(DOMAINS)]) for m in batch]
        decisions = throttle.acquire(requests, now=time.time())
        assert all(d.send for d in decisions)
    return len(ids) / (time.perf_counter() - started)


def _queue_rate(engine: Engine, ids: list[int]) -> float:
    queue = queue_for(engine)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=0.0)
    started = time.perf_counter()
    done = 0
    while leases := queue.lease(BATCH, 300, now=time.time()):
        with engine.begin() as conn:
            for lease in leases:
                queue.complete(conn, lease)
        done += len(leases)
    assert done == len(ids)
    return done / (time.perf_counter() - started)


def measure(backend: str, batches: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="mailstack-bench-throttle-"))
    dbname = None
    if backend == "postgres":
        dbname = f"mailstack_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{dbname}"
    else:
        url = f"sqlite:///{workdir / 'bench.db'}"
    engine = create_storage_engine(url)
    try:
        migrate(engine)
        ids = _messages(engine, batches * BATCH)
        _throttle_rate(engine, ids[: BATCH * 5])  # warm up: buckets created, statements compiled
        throttle = _throttle_rate(engine, ids)
        queue = _queue_rate(engine, ids)
    finally:
        engine.dispose()
        if dbname is not None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return {"throttle": throttle, "queue": queue}


def run(only: str | None = None, batches: int = 200) -> list[dict[str, Any]]:
    """Run the throttle benchmarks (all, or the one named ``only``)."""
    results: list[dict[str, Any]] = []
    for name, backend in BENCHMARKS.items():
        if only not in (None, name):
            continue
        measured = measure(backend, batches)
        results.append(
            {
                "name": name,
                "unit": "decisions/s",
                "value": round(measured["throttle"], 1),
                "baseline_name": f"queue-lease-complete-{backend}",
                "baseline_value": round(measured["queue"], 1),
                "ratio": round(measured["throttle"] / measured["queue"], 4),
                "batch": BATCH,
                "messages": batches * BATCH,
            }
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BENCHMARKS))
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    for result in run(args.only, args.batches):
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
