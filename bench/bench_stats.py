"""Statistics at scale: the rollups built from 10 million events, and what a query over them costs.

Usage: .venv/bin/python bench/bench_stats.py [--only stats-query|stats-aggregate] [--events N]

Setup: an embedded (SQLite) database gets about a million messages, one campaign a day for 90 days (20
campaigns, six recipient domains over four mailbox providers), and ``--events`` events (default 10
million: queued, sent, delivered, opens with privacy-proxy opens among them, clicks with scanner clicks
among them, bounces, unsubscribes, conversions), inserted directly in roughly chronological order.

* ``stats-aggregate``: events folded into the rollups per second by :class:`mailstack.stats.Aggregator`
  (the whole table, in its production batch size); baseline: the rate at which the same events were
  inserted (a plain executemany), the cheapest thing one can do with an event.
* ``stats-query``: milliseconds for the dashboard's questions over the rollups (lifetime counters of a
  campaign, its 90-day daily series, its per-provider table: Mailjet's statcounters and recipient-esp),
  the median of 20 rounds; baseline: the same lifetime counters computed from the raw events table with
  one GROUP BY, which is what a query costs without rollups. The target is < 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    import mailstack.stats  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine

from mailstack.keyring import Keyring
from mailstack.privacy import LocalKeyProvider, Vault
from mailstack.providers import ProviderClassifier
from mailstack.stats import (
    Aggregator,
    StatsQuery,
    counters,
    counters_by_provider,
    counters_by_slot,
    esp_json,
    statcounter_json,
)
from mailstack.storage import Store, create_api_key, create_storage_engine, migrate

BENCHMARKS = ("stats-aggregate", "stats-query")
DEFAULT_EVENTS = 10_000_000
CAMPAIGNS = 20
DAYS = 90
START = 1_767_225_600  # 2026-01-01T00:00:00Z
DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "corp.example", "mail.example", "hotmail.fr")
QUERY_ROUNDS = 20


# A message's life: queued, sent, delivered, then engagement and feedback (offsets in seconds).
PLAN = (
    ("queued", 0, "{}", 1.0),
    ("sent", 5, '{"smtp_reply": "250 ok"}', 1.0),
    ("delivered", 8, '{"mailjet": {"event": "sent"}}', 1.0),
    ("open", 1200, '{"machine": true, "proxy": "apple"}', 1.0),
    ("open", 3600, '{"ip": "203.0.113.5", "agent": "Mozilla/5.0 (X11) Firefox/120"}', 1.0),
    ("click", 3700, '{"position": 1, "url": "https://shop.example/a"}', 1.0),
    ("click", 3800, '{"position": 2, "url": "https://shop.example/b"}', 1.0),
    ("click", 3900, '{"position": 1, "url": "https://shop.example/a", "machine": true}', 1.0),
    ("open", 86_400, '{"ip": "203.0.113.5"}', 1.0),
    ("bounce", 50, '{"category": "soft"}', 0.2),
    ("unsub", 7200, "{}", 0.2),
    ("conversion", 9000, '{"name": "purchase"}', 0.2),
)
EVENTS_PER_MESSAGE = sum(share for *_rest, share in PLAN)


def _populate(path: Path, events: int) -> tuple[Engine, float]:
    """Create the database; returns the engine and the event insert rate (events/s).

    Like real traffic, one campaign goes out each day (between 09:00 and 10:00 UTC) and its events follow
    in time order over the next day, so the events table is in roughly chronological order.
    """
    engine = create_storage_engine(f"sqlite:///{path}")
    migrate(engine)
    with engine.begin() as conn:
        create_api_key(conn)
    rng = random.Random(42)
    count = max(int(events / EVENTS_PER_MESSAGE) + 1, DAYS)
    per_day = count // DAYS + 1
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("INSERT INTO contents (id, spec, created_at) VALUES (1, '{}', ?)", (START,))
    inserted = 0
    elapsed = 0.0
    message = 0
    for day in range(DAYS):
        rows = []
        day_events: list[tuple[float, int, str, str]] = []
        for j in range(per_day):
            message += 1
            at = START + day * 86_400 + 9 * 3600 + j * 3600 / per_day
            rows.append(
                (
                    message,
                    f"m-{message}",
                    f"r{message}@{DOMAINS[message % len(DOMAINS)]}",
                    f"c{day % CAMPAIGNS}",
                    at,
                    at,
                )
            )
            for kind, offset, detail, share in PLAN:
                if share >= 1.0 or rng.random() < share:
                    day_events.append((at + offset, message, kind, detail))
        db.executemany(
            "INSERT INTO messages (id, uuid, api_key_id, content_id, recipient, kind, sender, campaign, "
            "status, created_at, updated_at) "
            "VALUES (?, ?, 1, 1, ?, 'to', 'news@example.com', ?, 'sent', ?, ?)",
            rows,
        )
        day_events.sort()
        day_events = day_events[: events - inserted]
        started = time.perf_counter()
        db.executemany(
            "INSERT INTO events (created_at, message_id, type, detail) VALUES (?, ?, ?, ?)", day_events
        )
        db.commit()
        elapsed += time.perf_counter() - started
        inserted += len(day_events)
        if inserted >= events:
            break
    db.close()
    return engine, inserted / elapsed


def _raw_lifetime(path: Path, campaign: str) -> None:
    # What answering "lifetime counters of a campaign" costs straight from the events.
    db = sqlite3.connect(path)
    db.execute(
        "SELECT e.type, COUNT(*), COUNT(DISTINCT e.message_id) FROM events e JOIN messages m "
        "ON m.id = e.message_id WHERE m.api_key_id = 1 AND m.campaign = ? GROUP BY e.type",
        (campaign,),
    ).fetchall()
    db.close()


def _questions(engine: Engine) -> None:
    spec = StatsQuery(1, "c7", "message")
    series = StatsQuery(1, "c7", "event", START, START + DAYS * 86_400)
    with engine.connect() as conn:
        statcounter_json(counters(conn, spec), api_key_id=1, source_id="c7", timeslice=None)
        for slot, values in counters_by_slot(conn, series, "day"):
            statcounter_json(values, api_key_id=1, source_id="c7", timeslice=slot)
        for provider, values in counters_by_provider(conn, spec).items():
            esp_json(provider, values)


def run(only: str | None = None, events: int = DEFAULT_EVENTS) -> list[dict[str, Any]]:
    """Run the benchmarks (both, or just ``only``) and return one result dict per benchmark."""
    if only is not None and only not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {only!r}; choose from {', '.join(BENCHMARKS)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-stats-") as tmp:
        path = Path(tmp) / "stats.db"
        engine, insert_rate = _populate(path, events)
        keyring = Keyring(os.urandom(32))  # opens clicked URLs and seals them for the link counters
        vault = Vault(engine, keyring, LocalKeyProvider(keyring))
        aggregator = Aggregator(
            Store(engine, vault), batch_size=5000, providers=ProviderClassifier().classify
        )
        started = time.perf_counter()
        folded = aggregator.catch_up()
        aggregate_rate = folded / (time.perf_counter() - started)
        assert folded == events, (folded, events)
        if only in (None, "stats-aggregate"):
            results.append(
                {
                    "name": "stats-aggregate",
                    "unit": "events/s",
                    "value": round(aggregate_rate, 1),
                    "baseline_name": "sqlite-executemany-insert",
                    "baseline_value": round(insert_rate, 1),
                    "ratio": round(aggregate_rate / insert_rate, 3),
                    "events": events,
                }
            )
        if only in (None, "stats-query"):
            _questions(engine)  # warm the page cache, as a running server's would be
            timings = []
            for _ in range(QUERY_ROUNDS):
                started = time.perf_counter()
                _questions(engine)
                timings.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            _raw_lifetime(path, "c7")
            raw_ms = (time.perf_counter() - started) * 1000
            value = statistics.median(timings)
            results.append(
                {
                    "name": "stats-query",
                    "unit": "ms",
                    "value": round(value, 2),
                    "baseline_name": "raw-events-group-by-lifetime-only",
                    "baseline_value": round(raw_ms, 2),
                    "ratio": round(value / raw_ms, 4),
                    "events": events,
                    "target_ms": 200,
                }
            )
        engine.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=BENCHMARKS, help="run a single benchmark")
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="events to generate")
    args = parser.parse_args(argv)
    for result in run(args.only, args.events):
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
