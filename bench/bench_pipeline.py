"""Pipeline throughput: API accept → queue → compose → DKIM (RSA + Ed25519) → SMTP to Postfix's smtp-sink.

Usage: .venv/bin/python bench/bench_pipeline.py [--only pipeline-sqlite|pipeline-postgres] [--messages N]

``mailstack serve`` runs as a subprocess with smtp-sink (a C sink, so the sink is not the bottleneck) as its
relay. Clients post batches over HTTP; the clock stops when the relay has accepted every message
(``mailstack_messages_sent_total``). The baseline, measured in the same run, is smtp-source feeding the same
smtp-sink directly with messages of the same size: the SMTP ceiling of this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

MAILSTACK = str(Path(sys.executable).parent / "mailstack")
PG_ADMIN_URL = os.environ.get("MAILSTACK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 20  # messages per request
CLIENTS = 4
HTML = (
    "<html><body>"
    + "".join(
        f"<p>Paragraph {i}: our autumn collection is here, with free delivery on every order.</p>"
        for i in range(40)
    )
    + "</body></html>"
)  # ~4 KB


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpSink:
    """Postfix's smtp-sink on loopback, counting what it accepts."""

    def __init__(self) -> None:
        if shutil.which("smtp-sink") is None:
            raise SystemExit("smtp-sink is missing: apt-get install postfix")
        self.port = _port()
        self.process = subprocess.Popen(
            ["smtp-sink", "-u", "nobody", "-h", "sink.test", f"127.0.0.1:{self.port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
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


def smtp_source_rate(sink: SmtpSink, count: int, size: int) -> float:
    """Messages/s smtp-source achieves into the sink directly."""
    started = time.perf_counter()
    subprocess.run(
        [
            "smtp-source",
            "-s",
            "20",
            "-m",
            str(count),
            "-l",
            str(size),
            "-f",
            "a@example.com",
            "-t",
            "b@example.net",
            f"127.0.0.1:{sink.port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return count / (time.perf_counter() - started)


def _sent(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(r"^mailstack_messages_sent_total (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


def run_pipeline(backend: str, messages: int, sink: SmtpSink) -> dict[str, Any]:
    """Run one pipeline measurement; returns rate, latencies and memory."""
    workdir = Path(tempfile.mkdtemp(prefix="mailstack-bench-"))
    env = {k: v for k, v in os.environ.items() if k != "MAILSTACK_DATABASE_URL"}
    dbname = None
    if backend == "postgres":
        dbname = f"mailstack_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
        env["MAILSTACK_DATABASE_URL"] = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{dbname}"
    process = None
    try:
        init = subprocess.run(
            [MAILSTACK, "init", "--data-dir", str(workdir), "--domain", "example.com", "--json"],
            capture_output=True,
            env=env,
            check=True,
        )
        creds = json.loads(init.stdout)
        auth = (creds["api_key"], creds["api_secret"])
        http = f"127.0.0.1:{_port()}"
        url = f"http://{http}"
        process = subprocess.Popen(
            [
                MAILSTACK,
                "serve",
                "--data-dir",
                str(workdir),
                "--http",
                http,
                "--relay",
                f"127.0.0.1:{sink.port}",
            ],
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

        requests = messages // BATCH
        latencies: list[float] = []
        lock = threading.Lock()
        next_request = iter(range(requests))

        def client() -> None:
            with httpx.Client(auth=auth, timeout=60) as session:
                while True:
                    with lock:
                        index = next(next_request, None)
                    if index is None:
                        return
                    body = {
                        "Messages": [
                            {
                                "From": {"Email": "news@example.com", "Name": "Example News"},
                                "To": [{"Email": f"reader{index}-{j}@example.net", "Name": "Reader"}],
                                "Subject": f"Autumn collection #{index}-{j}",
                                "TextPart": "Our autumn collection is here.",
                                "HTMLPart": HTML,
                                "CustomCampaign": "autumn",
                            }
                            for j in range(BATCH)
                        ]
                    }
                    started = time.perf_counter()
                    response = session.post(f"{url}/v3.1/send", json=body)
                    elapsed = time.perf_counter() - started
                    if response.status_code != 200:
                        raise RuntimeError(response.text)
                    with lock:
                        latencies.append(elapsed)

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepted_at = time.perf_counter()
        limit = time.monotonic() + 600  # bounded: give up after 10 minutes
        total = requests * BATCH
        while _sent(url) < total:
            if time.monotonic() > limit:
                raise RuntimeError(f"only {_sent(url)} of {total} delivered in time")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        rss = _peak_rss_mb(process.pid)
        latencies.sort()
        return {
            "rate": total / elapsed,
            "accept_rate": total / (accepted_at - started),
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "peak_rss_mb": rss,
            "messages": total,
        }
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        if dbname is not None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)


BENCHMARKS = {"pipeline-sqlite": "sqlite", "pipeline-postgres": "postgres"}


def run(only: str | None = None, messages: int = 10_000) -> list[dict[str, Any]]:
    """Run the pipeline benchmarks (all, or the one named ``only``)."""
    names = [n for n in BENCHMARKS if only in (None, n)]
    results: list[dict[str, Any]] = []
    if not names:
        return results
    sink = SmtpSink()
    try:
        baseline = smtp_source_rate(sink, 5000, 4096)
        for name in names:
            measured = run_pipeline(BENCHMARKS[name], messages, sink)
            results.append(
                {
                    "name": name,
                    "unit": "messages/s",
                    "value": round(measured["rate"], 1),
                    "baseline_name": "smtp-source-to-smtp-sink",
                    "baseline_value": round(baseline, 1),
                    "ratio": round(measured["rate"] / baseline, 4),
                    "accept_rate": round(measured["accept_rate"], 1),
                    "accept_p50_ms": round(measured["p50_ms"], 1),
                    "accept_p99_ms": round(measured["p99_ms"], 1),
                    "request_batch": BATCH,
                    "serve_peak_rss_mb": round(measured["peak_rss_mb"], 1),
                    "messages": measured["messages"],
                }
            )
    finally:
        sink.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BENCHMARKS))
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    for result in run(args.only, args.messages):
        print(json.dumps(result))


if __name__ == "__main__":
    main()
