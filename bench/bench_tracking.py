"""Tracking: the open pixel under load, and link rewriting on hostile HTML.

Usage: .venv/bin/python bench/bench_tracking.py [--only tracking-pixel|tracking-links] [--seconds S]

``tracking-pixel``: ``GET /t/o/<token>`` through mailstack's ASGI app in-process (no sockets, so the
number is the app's own cost), 64 concurrent requests at a time, on the embedded SQLite database; every
hit is counted in the events table afterwards (nothing lost). Baseline: the same request answered by a
route that verifies the same token and writes the event inline, one transaction per hit — what the
endpoint would cost without the recorder's queue.

``tracking-links``: ``rewrite_links`` on hostile documents (``"<a " * k`` — the reported 24 KB one
took 10-47 s before the one-pass scanner —, unclosed comments, quotes and ``<area``, and a newsletter
of ordinary links) at 24 KB and at 8 x 24 KB. The value is the worst growth of the time taken when the
input grows 8 times; the baseline, measured in the same run over the same documents, is the median growth
of a pass that is linear by construction (counting "<" with a Python loop over the characters: unlike
``str.replace``, it takes long enough at 24 KB to be timed steadily). A ratio near 1 is linear growth;
quadratic would be ~8.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import mailstack.tracking  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select

from mailstack.config import load_settings, render_default_config
from mailstack.model import Address, MessageSpec
from mailstack.runtime import Runtime
from mailstack.serve import assemble
from mailstack.storage import create_api_key, insert_messages
from mailstack.storage.schema import events
from mailstack.tokens import TokenSigner
from mailstack.tracking import TrackedEvent, TrackingUrls, rewrite_links, store_events

CONCURRENCY = 64
SECONDS = 3.0
AGENT = b"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


async def _call(app: Any, path: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"user-agent", AGENT)],
        "client": ("203.0.113.9", 50000),
        "server": ("bench", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _load(app: Any, path: str, seconds: float) -> int:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            assert await _call(app, path) == 200
            done += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done


BENCHMARKS = ("tracking-pixel", "tracking-links")
LINKS_SIZE = 24_000  # the size of the reported document
LINKS_GROWTH = 8
LINKS_SECONDS = 12.0  # all measurements together: short ones are too noisy on a shared machine
HOSTILE: dict[str, str] = {
    "unclosed-a": "<a ",
    "unclosed-area": "<area ",
    "unclosed-comment": "<!--",
    "unclosed-quote": '<a x="',
    "newsletter": '<p>Deal <a href="https://shop.example/p?id=42&amp;c=news" class=btn>buy</a></p>\n',
}


def _count_lt(document: str) -> int:
    """The linear reference: one Python-level look at every character."""
    return sum(1 for char in document if char == "<")


def _per_call(action: Callable[[], object], budget: float) -> float:
    """Seconds per call: the best of 3 rounds, each repeating ``action`` for about budget/3 seconds."""
    best = float("inf")
    for _ in range(3):
        calls, started = 0, time.perf_counter()
        while True:
            action()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= budget / 3:
                break
        best = min(best, elapsed / calls)
    return best


def run_links(seconds: float = LINKS_SECONDS) -> dict[str, Any]:
    """``tracking-links``: growth of rewrite_links' time over 8x larger hostile input vs a linear pass."""
    urls = TrackingUrls(TokenSigner(b"b" * 32), "https://t.example.com")

    def click(position: int, url: str) -> str:
        return urls.click_url(1, position, url)

    budget = seconds / (4 * len(HOSTILE))
    growth: dict[str, float] = {}
    baseline: dict[str, float] = {}
    at_24k: dict[str, float] = {}
    for name, unit in HOSTILE.items():
        small = unit * (LINKS_SIZE // len(unit))
        large = unit * (LINKS_GROWTH * LINKS_SIZE // len(unit))
        times = [_per_call(functools.partial(rewrite_links, doc, click), budget) for doc in (small, large)]
        copies = [_per_call(functools.partial(_count_lt, doc), budget) for doc in (small, large)]
        growth[name] = times[1] / times[0]
        baseline[name] = copies[1] / copies[0]
        at_24k[name] = round(times[0] * 1000, 3)
    worst = max(growth, key=lambda name: growth[name])
    reference = statistics.median(baseline.values())  # every document's linear pass grows alike
    return {
        "name": "tracking-links",
        "unit": f"time growth for {LINKS_GROWTH}x input (worst document)",
        "value": round(growth[worst], 2),
        "baseline_name": "python-char-loop-growth",
        "baseline_value": round(reference, 2),
        "ratio": round(growth[worst] / reference, 3),
        "worst_document": worst,
        "growth": {name: round(value, 2) for name, value in growth.items()},
        "baseline_growth": {name: round(value, 2) for name, value in baseline.items()},
        "ms_at_24kb": at_24k,
    }


def run(only: str | None = None, seconds: float = SECONDS) -> list[dict[str, Any]]:
    """Run the benchmarks (all, or just ``only``); returns one result dict per benchmark."""
    if only is not None and only not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {only!r}")
    results: list[dict[str, Any]] = []
    if only in (None, "tracking-pixel"):
        results.append(run_pixel(seconds))
    if only in (None, "tracking-links"):
        results.append(run_links(LINKS_SECONDS if seconds == SECONDS else seconds))
    return results


def run_pixel(seconds: float = SECONDS) -> dict[str, Any]:
    """``tracking-pixel``: pixel requests per second with the recorder's queue vs inline inserts."""
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        data_dir = Path(tmp)
        (data_dir / "secret.key").write_text(secrets.token_hex(32))
        (data_dir / "mailstack.toml").write_text(render_default_config("example.com"))
        overrides = {"stats": {"mx_lookup": False}, "delivery": {"workers": 0}}
        runtime = Runtime.open(load_settings(data_dir, overrides))
        with runtime.engine.begin() as conn:
            create_api_key(conn)
            spec = MessageSpec(sender=Address("news@example.com"), to=(Address("ana@example.net"),), text="x")
            (accepted,) = insert_messages(conn, 1, [spec], now=time.time())
        message_id = accepted[0].message_id
        urls = TrackingUrls(runtime.compose_settings.tokens, "http://bench")
        token = urls.open_url(message_id).removeprefix("http://bench/t/o/")
        # The node as `mailstack serve` assembles it (the recorder is one of its services).
        node = assemble(runtime.settings, runtime, None)
        app = node.app

        @app.get("/bench/inline/{token}")
        async def inline(token: str, request: Request) -> Response:
            target = urls.open_message(token)

            def write() -> None:
                with runtime.engine.begin() as conn:
                    store_events(conn, [TrackedEvent(uuid.uuid4().hex, target, "open", time.time(), {})])

            await run_in_threadpool(write)
            return Response(b"GIF89a", media_type="image/gif")

        async def measure() -> tuple[float, float, int]:
            node.lifecycle.start()
            started = time.perf_counter()
            queued = await _load(app, f"/t/o/{token}", seconds)
            queued_rate = queued / (time.perf_counter() - started)
            node.lifecycle.stop()  # the recorder writes what it holds
            started = time.perf_counter()
            inline_count = await _load(app, f"/bench/inline/{token}", seconds)
            return queued_rate, inline_count / (time.perf_counter() - started), queued + inline_count

        queued_rate, inline_rate, total = asyncio.run(measure())
        with runtime.engine.connect() as conn:
            stored = conn.execute(
                select(func.count()).select_from(events).where(events.c.type == "open")
            ).scalar()
        runtime.close()
    assert stored == total, f"{total} hits answered but {stored} recorded"
    return {
        "name": "tracking-pixel",
        "unit": "requests/s",
        "value": round(queued_rate, 1),
        "baseline_name": "inline-insert-per-hit",
        "baseline_value": round(inline_rate, 1),
        "ratio": round(queued_rate / inline_rate, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=BENCHMARKS, help="run a single benchmark")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="time per measurement")
    args = parser.parse_args(argv)
    for result in run(args.only, args.seconds):
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
