"""Chaos harness: real ``mailstack serve`` processes, a recording SMTP sink, clients that retry.

Used by tests/chaos (small counts) and bench/bench_chaos.py (full size). Every message goes to its own
recipient, so the sink tells exactly what was lost (never received) and what was duplicated (received more
than once); each copy's Message-ID is kept so that a duplicate can be checked to carry the same one.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiosmtpd.controller import Controller

MAILSTACK = str(Path(sys.executable).parent / "mailstack")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(\S+)", re.I | re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Handler:
    sink: RecordingSink

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or b""
        head = content.split(b"\r\n\r\n", 1)[0]
        found = _MESSAGE_ID.search(head)
        message_id = found.group(1).decode("ascii", "replace") if found else ""
        with self.sink.lock:
            for rcpt in envelope.rcpt_tos:
                self.sink.received.append((rcpt, message_id))
                self.sink.received_at.append(time.monotonic())
            count = len(self.sink.received)
        hold = max((self.sink.hold.get(rcpt, 0.0) for rcpt in envelope.rcpt_tos), default=0.0)
        if hold:
            # Taken, but the answer is slow: the transaction is in flight meanwhile (a kill now is the
            # one window where a duplicate cannot be avoided).
            await asyncio.sleep(hold)
        return f"250 2.0.0 Ok: queued as C{count}"


@dataclass
class RecordingSink:
    """An SMTP server on loopback that records (recipient, Message-ID) of every message it accepts.

    :meth:`outage` stops listening (connections are refused) until :meth:`restore`.
    """

    port: int = field(default_factory=free_port)
    hold: dict[str, float] = field(default_factory=dict)  # recipient → seconds before its 250
    received: list[tuple[str, str]] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # time.monotonic() of each, in order
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    def start(self) -> RecordingSink:
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, data_size_limit=10_000_000
        )
        self._controller.start()
        return self

    def outage(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def restore(self) -> None:
        if self._controller is None:
            self.start()

    def stop(self) -> None:
        self.outage()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(rcpt for rcpt, _ in self.received)

    def first_arrivals(self) -> dict[str, float]:
        """Recipient -> when its first copy arrived (time.monotonic())."""
        with self.lock:
            first: dict[str, float] = {}
            for (rcpt, _), at in zip(self.received, self.received_at, strict=True):
                first.setdefault(rcpt, at)
            return first

    def message_ids(self) -> dict[str, set[str]]:
        with self.lock:
            seen: dict[str, set[str]] = {}
            for rcpt, message_id in self.received:
                seen.setdefault(rcpt, set()).add(message_id)
            return seen


@dataclass
class Node:
    """One data directory and its ``mailstack serve`` process, restarted on the same HTTP port."""

    data_dir: Path
    env: dict[str, str]
    relay: str
    credentials: dict[str, Any] = field(default_factory=dict)
    http: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    extra_args: tuple[str, ...] = ()
    wrapper: tuple[str, ...] = ()  # a command serve runs under (e.g. unshare), given serve's as arguments

    @classmethod
    def initialise(cls, data_dir: Path, relay: str, database_url: str | None, **config: str) -> Node:
        env = dict(os.environ)
        env.pop("MAILSTACK_DATABASE_URL", None)
        if database_url is not None:
            env["MAILSTACK_DATABASE_URL"] = database_url
        init = subprocess.run(
            [MAILSTACK, "init", "--data-dir", str(data_dir), "--domain", "example.com", "--json"],
            capture_output=True,
            env=env,
            check=True,
        )
        node = cls(data_dir, env, relay, json.loads(init.stdout))
        for dotted, value in config.items():
            node.set_config(*dotted.split(".", 1), value)
        return node

    def set_config(self, section: str, key: str, value: str) -> None:
        """Set ``key = value`` (TOML) in ``[section]`` of mailstack.toml, replacing a value it has."""
        path = self.data_dir / "mailstack.toml"
        lines = path.read_text().splitlines()
        header = f"[{section}]"
        if header not in lines:
            lines += ["", header]
        start = lines.index(header) + 1
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
        for i in range(start, end):
            if re.match(rf"{re.escape(key)}\s*=", lines[i]):
                lines[i] = f"{key} = {value}"
                break
        else:
            lines.insert(start, f"{key} = {value}")
        path.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    @property
    def auth(self) -> tuple[str, str]:
        return self.credentials["api_key"], self.credentials["api_secret"]

    @property
    def database_url(self) -> str:
        return self.env.get("MAILSTACK_DATABASE_URL") or f"sqlite:///{self.data_dir / 'mailstack.db'}"

    def start(self, *, wait: bool = True) -> None:
        self.starts += 1
        log = (self.data_dir.parent / f"serve-{self.data_dir.name}-{self.starts}.log").open("wb")
        command = [MAILSTACK, "serve", "--data-dir", str(self.data_dir), "--http", self.http]
        self.process = subprocess.Popen(
            [*self.wrapper, *command, "--relay", self.relay, *self.extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        log.close()
        if wait:
            self.wait_healthy()

    def wait_healthy(self, timeout: float = 60) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"serve did not become healthy:\n{self.log()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def terminate(self, timeout: float = 120) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def log(self) -> str:
        return "".join(
            p.read_text(errors="replace")
            for p in sorted(self.data_dir.parent.glob(f"serve-{self.data_dir.name}-*.log"))
        )

    def queue_left(self) -> tuple[int, int]:
        """(jobs not yet done, dead letters), read from the database directly (the node may be down)."""
        sql = "SELECT COALESCE(SUM(CASE WHEN state != 'dead' THEN 1 ELSE 0 END), 0), "
        sql += "COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) FROM queue_jobs"
        url = self.database_url
        if url.startswith("sqlite"):
            with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30) as conn:
                row = conn.execute(sql).fetchone()
        else:
            with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as pg:
                row = pg.execute(sql).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


@dataclass
class Clients:
    """``count`` threads posting ``batch`` messages per request, each to its own recipient; a request
    whose answer was lost (connection refused or cut, 5xx, 429) is retried with the same Idempotency-Key.
    """

    node_urls: Callable[[], list[str]]
    auth: tuple[str, str]
    requests: int
    batch: int = 20
    count: int = 8
    tag: str = "r"
    retried: int = 0
    accepted: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def recipients(self) -> set[str]:
        return {f"{self.tag}{i}-{j}@example.net" for i in range(self.requests) for j in range(self.batch)}

    def start(self) -> Clients:
        indexes = iter(range(self.requests))
        for number in range(self.count):
            thread = threading.Thread(target=self._run, args=(indexes, number), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, indexes: Any, number: int) -> None:
        rng = random.Random(number)
        with httpx.Client(auth=self.auth, timeout=30) as session:
            while True:
                with self._lock:
                    index = next(indexes, None)
                if index is None:
                    return
                body = {
                    "Messages": [
                        {
                            "From": {"Email": "news@example.com", "Name": "News"},
                            "To": [{"Email": f"{self.tag}{index}-{j}@example.net"}],
                            "Subject": f"Chaos {index}-{j}",
                            "TextPart": "Hello, this is a chaos test message.",
                            "HTMLPart": "<p>Hello, this is a chaos test message.</p>",
                        }
                        for j in range(self.batch)
                    ]
                }
                headers = {"Idempotency-Key": f"{self.tag}-{index}"}
                deadline = time.monotonic() + 600  # bounded
                while True:
                    urls = self.node_urls()
                    url = urls[rng.randrange(len(urls))]
                    try:
                        response = session.post(f"{url}/v3.1/send", json=body, headers=headers)
                        status = response.status_code
                    except httpx.TransportError:
                        status = 0
                    with self._lock:
                        self.statuses[status] += 1
                    if status == 200:
                        with self._lock:
                            self.accepted += self.batch
                        break
                    if status not in (0, 429, 502, 503, 500):
                        raise RuntimeError(f"request {index}: {status} {response.text}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"request {index} never accepted")
                    with self._lock:
                        self.retried += 1
                    time.sleep(0.1 + rng.random() * 0.2)

    def join(self, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            raise RuntimeError("clients did not finish")

    def done(self) -> bool:
        return not any(thread.is_alive() for thread in self._threads)


@dataclass
class Outcome:
    expected: int
    lost: int
    duplicated: int
    duplicates_with_other_message_id: int
    dead: int
    drain_seconds: float
    kills: int
    statuses: dict[int, int]
    # The farthest a duplicated message's first copy arrived from the nearest kill: an SMTP transaction
    # open at the kill arrives within milliseconds of it (the sink's clock lags under load).
    duplicates_seconds_from_kill: float | None = None

    @property
    def duplicated_percent(self) -> float:
        return 100.0 * self.duplicated / self.expected if self.expected else 0.0


def wait_drained(
    sink: RecordingSink, nodes: list[Node], expected: set[str], *, timeout: float, settle: float = 2.0
) -> float:
    """Until every expected recipient got its mail and the queue is empty (then ``settle`` seconds more,
    so that late duplicates are counted too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if expected <= set(sink.counts()):
            try:
                left, _dead = nodes[0].queue_left()
            except (sqlite3.Error, psycopg.Error):
                left = 1
            if left == 0:
                drained_at = time.monotonic()
                time.sleep(settle)
                return drained_at
        time.sleep(0.1)
    missing = len(expected - set(sink.counts()))
    raise RuntimeError(f"not drained in {timeout:.0f} s: {missing} recipients still missing")


def tally(
    sink: RecordingSink,
    nodes: list[Node],
    clients: Clients,
    drain: float,
    kills: int,
    kill_moments: list[float] | None = None,
) -> Outcome:
    expected = clients.recipients()
    counts = sink.counts()
    ids = sink.message_ids()
    _left, dead = nodes[0].queue_left()
    duplicated = [rcpt for rcpt, n in counts.items() if rcpt in expected and n > 1]
    from_kill: list[float] = []
    if kill_moments:
        first = sink.first_arrivals()
        from_kill = [min(abs(first[rcpt] - kill) for kill in kill_moments) for rcpt in duplicated]
    return Outcome(
        expected=len(expected),
        lost=len(expected - set(counts)),
        duplicated=sum(counts[rcpt] - 1 for rcpt in duplicated),
        duplicates_with_other_message_id=sum(1 for rcpt, seen in ids.items() if len(seen) > 1),
        dead=dead,
        drain_seconds=drain,
        kills=kills,
        statuses=dict(clients.statuses),
        duplicates_seconds_from_kill=max(from_kill) if from_kill else None,
    )


def run_with_kills(
    node: Node,
    sink: RecordingSink,
    *,
    messages: int,
    kills: int,
    seed: int,
    clients: int = 8,
    batch: int = 20,
    kill_window: float = 20.0,
    drain_timeout: float = 600.0,
    tag: str = "r",
) -> Outcome:
    """Send ``messages`` through ``node`` (started) while it is SIGKILLed ``kills`` times at random
    moments within the first ``kill_window`` seconds and restarted within a second."""
    rng = random.Random(seed)
    moments = sorted(rng.uniform(0.5, kill_window) for _ in range(kills))
    load = Clients(lambda: [node.url], node.auth, messages // batch, batch=batch, count=clients, tag=tag)
    started = time.monotonic()
    load.start()
    killed_at: list[float] = []
    for moment in moments:
        time.sleep(max(0.0, started + moment - time.monotonic()))
        killed_at.append(time.monotonic())
        node.kill()
        time.sleep(rng.uniform(0.1, 1.0))
        node.start()
    load.join()
    drain = wait_drained(sink, [node], load.recipients(), timeout=drain_timeout) - started
    return tally(sink, [node], load, drain, kills, killed_at)
