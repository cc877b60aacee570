"""Load spike: API latency at 20 times the normal request rate while the workers deliver, vs the normal rate.

Usage: .venv/bin/python bench/bench_spike.py [--only spike-sqlite|spike-postgres] [--rate R] [--seconds S]
       [--rounds N] [--throttle MSG_PER_S] [--limit REQ_PER_S] [--sink-delay SECONDS]

``mailstack serve`` runs as a subprocess (SQLite, then PostgreSQL through MAILSTACK_DATABASE_URL) with
Postfix's smtp-sink (C: not competing for this machine's Python) as its relay. An asyncio httpx client posts
one message per request at fixed times (open loop: a slow answer does not slow the sender, and latency
counts from the scheduled time, so a stall is not hidden). Each round is the normal rate R for S seconds
(the baseline: the queue drains as it fills) then 20 R for S seconds, with the workers delivering the
backlog; the rounds alternate so that both phases see the same machine. Printed: p50/p99 of each phase,
the ratios spike/normal, status codes (never a 5xx), the server's own view of the handler latency
(histogram bucket bounds), how long the serve process waited for a CPU (a loaded machine's share of the
latency), and how long the backlog took to drain. The issue's target: spike p99 below 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

MAILSTACK = str(Path(sys.executable).parent / "mailstack")
PG_ADMIN_URL = os.environ.get("MAILSTACK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
FACTOR = 20
DRAIN_LIMIT = 600.0  # seconds: the backlog must be delivered within this, or the run says so
BENCHMARKS = {"spike-sqlite": "sqlite", "spike-postgres": "postgres"}
HTML = "<html><body>" + "<p>Our autumn collection is here, with free delivery.</p>" * 60 + "</body></html>"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sink:
    """Postfix's smtp-sink on loopback; ``delay`` whole seconds before it answers DATA (a slow relay)."""

    def __init__(self, delay: int) -> None:
        if shutil.which("smtp-sink") is None:
            raise SystemExit("smtp-sink is missing: apt-get install postfix")
        self.port = _port()
        command = ["smtp-sink", "-u", "nobody", "-h", "sink.test"]
        if delay > 0:
            command += ["-w", str(delay)]
        self.process = subprocess.Popen(
            [*command, f"127.0.0.1:{self.port}", "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _send_histogram(url: str) -> dict[float, float]:
    """The server's own /v3.1/send handler latency histogram: cumulative counts by upper bound (s)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    pattern = r'^mailstack_http_request_seconds_bucket\{le="([^"]+)",route="/v3.1/send"\} (\S+)$'
    return {float(le): float(count) for le, count in re.findall(pattern, text, re.M)}


def _cpu(pid: int) -> dict[str, tuple[float, float]]:
    """By thread of ``pid``: (seconds on a CPU, seconds runnable but waiting for one) so far."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:
            continue  # the thread ended meanwhile
        threads[task.name] = (int(fields[0]) / 1e9, int(fields[1]) / 1e9)
    return threads


def _cpu_delta(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> tuple[float, float]:
    """What the threads alive at the end used between two reads (threads that ended are not counted)."""
    ran = sum(used - before.get(tid, (0.0, 0.0))[0] for tid, (used, _) in after.items())
    waited = sum(wait - before.get(tid, (0.0, 0.0))[1] for tid, (_, wait) in after.items())
    return ran, waited


def _bucket_quantile(deltas: dict[float, float], q: float) -> float | None:
    total = deltas.get(float("inf"), 0.0)
    for bound in sorted(deltas):
        if total and deltas[bound] >= q * total:
            return bound
    return None


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))] if sorted_values else 0.0


def _body(index: int) -> dict[str, Any]:
    return {
        "Messages": [
            {
                "From": {"Email": "news@example.com", "Name": "Example News"},
                "To": [{"Email": f"reader{index}@example.net", "Name": "Reader"}],
                "Subject": f"Autumn collection #{index}",
                "TextPart": "Our autumn collection is here.",
                "HTMLPart": HTML,
                "CustomCampaign": "autumn",
            }
        ]
    }


class Phase:
    """What one kind of phase (normal or spike) measured, over every round."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.round_p99: list[float] = []
        self.codes: collections.Counter[int] = collections.Counter()
        self.retry_after_missing = 0
        self.server: dict[float, float] = collections.defaultdict(float)
        self.cpu_ran = self.cpu_waited = self.seconds = self.client_lag_max = 0.0

    def summary(self) -> dict[str, Any]:
        latencies = sorted(self.latencies)
        return {
            "requests": len(latencies),
            "rate": round(len(latencies) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(_quantile(latencies, 0.5) * 1000, 1),
            "p99_ms": round(_quantile(latencies, 0.99) * 1000, 1),
            "max_ms": round(_quantile(latencies, 1.0) * 1000, 1),
            "p99_ms_by_round": [round(p * 1000, 1) for p in self.round_p99],
            "status": {str(code): n for code, n in sorted(self.codes.items())},
            "429_without_retry_after": self.retry_after_missing,
            "server_handler_p50_le_ms": (_bucket_quantile(self.server, 0.5) or 0) * 1000,
            "server_handler_p99_le_ms": (_bucket_quantile(self.server, 0.99) or 0) * 1000,
            "serve_cpu_s_per_s": round(self.cpu_ran / self.seconds, 2) if self.seconds else 0.0,
            "serve_waiting_for_cpu_s_per_s": round(self.cpu_waited / self.seconds, 2)
            if self.seconds
            else 0.0,
            "client_loop_lag_max_ms": round(self.client_lag_max * 1000, 1),
        }


async def _run_phase(
    client: httpx.AsyncClient, url: str, pid: int, rate: float, seconds: float, first: int, into: Phase
) -> None:
    """POST at ``rate`` per second for ``seconds`` (open loop) and add what it measured to ``into``."""
    count = max(1, int(rate * seconds))
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    lags: list[float] = []

    async def one(index: int, due: float) -> None:
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            response = await client.post(f"{url}/v3.1/send", json=_body(first + index))
        except httpx.TransportError:
            into.codes[0] += 1  # no answer at all: counted apart from the HTTP statuses
        else:
            into.codes[response.status_code] += 1
            if response.status_code == 429 and not response.headers.get("retry-after", "").isdigit():
                into.retry_after_missing += 1
        latencies.append(loop.time() - due)

    async def watch_lag() -> None:
        # How late this client's own event loop runs: its delays are in the latencies too.
        while True:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            lags.append(loop.time() - due)

    histogram_before = await asyncio.to_thread(_send_histogram, url)
    cpu_before = _cpu(pid)
    watcher = asyncio.create_task(watch_lag())
    start = loop.time() + 0.05
    await asyncio.gather(*(one(i, start + i / rate) for i in range(count)))
    watcher.cancel()
    elapsed = loop.time() - start
    cpu_after = _cpu(pid)
    histogram_after = await asyncio.to_thread(_send_histogram, url)
    into.latencies += latencies
    into.round_p99.append(_quantile(sorted(latencies), 0.99))
    into.seconds += elapsed
    ran, waited = _cpu_delta(cpu_before, cpu_after)
    into.cpu_ran += ran
    into.cpu_waited += waited
    into.client_lag_max = max([into.client_lag_max, *lags])
    for bound, count_after in histogram_after.items():
        into.server[bound] += count_after - histogram_before.get(bound, 0.0)


def run_spike(
    backend: str,
    *,
    rate: float,
    seconds: float,
    rounds: int,
    sink_delay: int = 0,
    throttle: float = 0.0,
    limit: float = 0.0,
) -> dict[str, Any]:
    """One serve process: ``rounds`` times (normal rate, then 20 times it); both phases and the drain."""
    workdir = Path(tempfile.mkdtemp(prefix="mailstack-spike-"))
    env = {k: v for k, v in os.environ.items() if k != "MAILSTACK_DATABASE_URL"}
    dbname = None
    if backend == "postgres":
        dbname = f"mailstack_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
        env["MAILSTACK_DATABASE_URL"] = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{dbname}"
    sink = Sink(sink_delay)
    process = None
    try:
        init = subprocess.run(
            [MAILSTACK, "init", "--data-dir", str(workdir), "--domain", "example.com", "--json"],
            capture_output=True,
            env=env,
            check=True,
        )
        creds = json.loads(init.stdout)
        config = workdir / "mailstack.toml"
        lines = {"throttle": f"api_key = {{ rate = {throttle:g} }}" if throttle else ""}
        lines["server"] = f"max_requests_per_second = {limit:g}" if limit else ""
        for section, line in lines.items():
            if line:
                config.write_text(config.read_text().replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1))
        http = f"127.0.0.1:{_port()}"
        url = f"http://{http}"
        command = [MAILSTACK, "serve", "--data-dir", str(workdir), "--http", http]
        process = subprocess.Popen(
            [*command, "--relay", f"127.0.0.1:{sink.port}"],
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "serve.log").open("wb"),
            env=env,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError((workdir / "serve.log").read_text())
            time.sleep(0.1)
        pid = process.pid
        normal, spike = Phase(), Phase()

        async def drive() -> None:
            # Idle connections go before uvicorn closes them (5 s): a reuse racing its close is no answer.
            limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000, keepalive_expiry=1.0)
            auth = (creds["api_key"], creds["api_secret"])
            async with httpx.AsyncClient(auth=auth, timeout=120, limits=limits) as client:
                await _run_phase(client, url, pid, rate, 1.0, 90_000_000, Phase())  # warm-up
                for round_ in range(rounds):
                    first = round_ * 10_000_000
                    await _run_phase(client, url, pid, rate, seconds, first, normal)
                    await _run_phase(client, url, pid, rate * FACTOR, seconds, first + 1_000_000, spike)

        sent_before = _metric(url, "mailstack_messages_sent_total")
        started = time.monotonic()
        asyncio.run(drive())
        accepted = sum(n for phase in (normal, spike) for code, n in phase.codes.items() if 200 <= code < 300)
        ended = time.monotonic()
        while _metric(url, "mailstack_messages_sent_total") - sent_before < accepted:
            if time.monotonic() > ended + DRAIN_LIMIT:
                break
            time.sleep(0.2)
        drained = time.monotonic()
        delivered = _metric(url, "mailstack_messages_sent_total") - sent_before
        return {
            "normal": normal.summary(),
            "spike": spike.summary(),
            "accepted": accepted,
            "delivered": int(delivered),  # the warm-up's few are counted too
            "drain_after_spike_s": round(drained - ended, 1),
            "delivery_rate": round(delivered / (drained - started), 1),
        }
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(120)
        sink.close()
        if dbname is not None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)


def _ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 2) if baseline else None


def run(
    only: str | None = None,
    *,
    rate: float = 2.0,
    seconds: float = 10.0,
    rounds: int = 3,
    sink_delay: int = 0,
    throttle: float = 0.0,
    limit: float = 0.0,
) -> list[dict[str, Any]]:
    """Run the spike benchmarks (all, or the one named ``only``)."""
    results: list[dict[str, Any]] = []
    for name, backend in BENCHMARKS.items():
        if only not in (None, name):
            continue
        measured = run_spike(
            backend,
            rate=rate,
            seconds=seconds,
            rounds=rounds,
            sink_delay=sink_delay,
            throttle=throttle,
            limit=limit,
        )
        normal, spike = measured["normal"], measured["spike"]
        results.append(
            {
                "name": name,
                "unit": f"ms: API p99 at {FACTOR}x the normal rate, workers delivering",
                "value": spike["p99_ms"],
                "baseline_name": f"API p99 at the normal rate ({rate:g} requests/s)",
                "baseline_value": normal["p99_ms"],
                "ratio": _ratio(spike["p99_ms"], normal["p99_ms"]),
                "p50_ratio": _ratio(spike["p50_ms"], normal["p50_ms"]),
                "target_p99_ms": 100,
                "throttle_messages_per_s": throttle or None,
                "limit_requests_per_s": limit or None,
                **measured,
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BENCHMARKS))
    parser.add_argument(
        "--rate", type=float, default=2.0, help="the normal rate, requests/s (1 message each)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase of a round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (normal, spike)")
    parser.add_argument("--sink-delay", type=int, default=0, help="whole seconds the relay waits on DATA")
    parser.add_argument("--throttle", type=float, default=0.0, help="[throttle] api_key rate, messages/s")
    parser.add_argument("--limit", type=float, default=0.0, help="[server] max_requests_per_second")
    args = parser.parse_args()
    for result in run(
        args.only,
        rate=args.rate,
        seconds=args.seconds,
        rounds=args.rounds,
        sink_delay=args.sink_delay,
        throttle=args.throttle,
        limit=args.limit,
    ):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
