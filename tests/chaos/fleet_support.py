"""A fleet of ``mailstack serve`` nodes, each in its own network namespace, sharing one PostgreSQL.

Each node is a namespace (``netns_support``) with its own address, reaching this machine at the other end
of its veth pair; there it finds the fleet's PostgreSQL (a TCP relay to 127.0.0.1:5432, so the server's
configuration stays as it is) and the destination MX (a sink that records every message with its
Message-ID, its arrival time and the node it came from). A node is the installed ``mailstack serve``,
configured by its data directory as the README says, run inside its namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from netns_support import VethNamespace

MAILSTACK = str(Path(sys.executable).parent / "mailstack")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(\S+)", re.I | re.M)


def fleet_namespaces(count: int) -> list[VethNamespace]:
    """``count`` nodes: node i at 10.201.i.2, this machine at 10.201.i.1 on its link."""
    return [
        VethNamespace(f"msfleet{i}", f"msfl{i}h", f"msfl{i}n", f"10.201.{i}.1", f"10.201.{i}.2")
        for i in range(count)
    ]


def _port_free_on(hosts: Sequence[str]) -> int:
    """A port the kernel gives on the first host, checked free on the others (fresh link addresses)."""
    with socket.socket() as first:
        first.bind((hosts[0], 0))
        port = int(first.getsockname()[1])
    for host in hosts[1:]:
        with socket.socket() as other:
            other.bind((host, port))
    return port


@dataclass(frozen=True)
class Arrival:
    """One message the sink accepted: its recipient, Message-ID, when (time.time()) and from where."""

    recipient: str
    message_id: str
    at: float
    peer: str


@dataclass
class _Hold:
    """Keep the reply to one node's DATA until released (or its connection drops): a kill then lands
    in the middle of that node's SMTP transaction."""

    peer: str
    after: int  # only once this many messages have arrived, one of them at least from ``peer``
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    recipient: str = ""


class ArrivalSink:
    """The destination MX of the fleet: one SMTP listener per node link, recording each message as it is
    accepted. Offers PIPELINING, as Postfix does. A held transaction whose client vanishes is never
    accepted (it ends up in ``aborted``), as with a server that had not answered yet."""

    HOLD_SECONDS = 60.0  # bounded: a hold nobody releases answers anyway

    def __init__(self, hosts: Sequence[str]) -> None:
        self.port = _port_free_on(hosts)
        self.arrivals: list[Arrival] = []
        self.aborted: list[Arrival] = []
        self.by_peer: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._hold: _Hold | None = None
        self._controllers = [
            Controller(self, hostname=host, port=self.port, data_size_limit=10_000_000) for host in hosts
        ]
        for controller in self._controllers:
            controller.start()

    def hold_next(self, peer: str, *, after: int) -> _Hold:
        """Hold the first DATA from ``peer`` once ``after`` messages have arrived, one at least from it."""
        self._hold = _Hold(peer, after)
        return self._hold

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or b""
        found = _MESSAGE_ID.search(content.split(b"\r\n\r\n", 1)[0])
        message_id = found.group(1).decode("ascii", "replace") if found else ""
        peer = str(session.peer[0])
        hold = self._hold
        with self.lock:
            take = hold is not None and hold.peer == peer and not hold.held.is_set()
            take = take and len(self.arrivals) >= (hold.after if hold else 0) and self.by_peer[peer] > 0
            if take and hold is not None:
                hold.recipient = envelope.rcpt_tos[0]
                hold.held.set()
        if take and hold is not None:
            deadline = time.monotonic() + self.HOLD_SECONDS
            try:
                while not hold.release.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
            except asyncio.CancelledError:  # the client's connection dropped: nothing was accepted
                with self.lock:
                    self.aborted.extend(Arrival(r, message_id, time.time(), peer) for r in envelope.rcpt_tos)
                raise
        with self.lock:
            now = time.time()
            self.arrivals.extend(Arrival(r, message_id, now, peer) for r in envelope.rcpt_tos)
            self.by_peer[peer] += len(envelope.rcpt_tos)
            count = len(self.arrivals)
        return f"250 2.0.0 Ok: queued as F{count}"

    def snapshot(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

    def stop(self) -> None:
        if self._hold is not None:
            self._hold.release.set()
        for controller in self._controllers:
            with contextlib.suppress(Exception):
                controller.stop()


@dataclass
class FleetNode:
    """One node: its namespace, its data directory and, once started, its ``mailstack serve``."""

    index: int
    space: VethNamespace
    data_dir: Path
    env: dict[str, str]
    relay: str  # HOST:PORT of the MX as the node reaches it
    http_port: int = 8800
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return self.space.address

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"serve-node{self.index}.log"

    def start(self) -> None:
        command = [
            MAILSTACK,
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--http",
            f"{self.address}:{self.http_port}",
            "--relay",
            self.relay,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.space.command(*command), stdout=log, stderr=subprocess.STDOUT, env=self.env
            )

    def wait_healthy(self, timeout: float = 60) -> None:
        assert self.process is not None, "not started"
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"node {self.index} exited with {self.process.returncode}:\n{self.log()}"
                    )
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"node {self.index} did not become healthy in {timeout:.0f} s:\n{self.log()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL (the serve process itself: ``ip netns exec`` execs it) and reap it."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(30)

    def terminate(self, timeout: float = 30) -> int | None:
        """SIGTERM, then SIGKILL if it has not drained within ``timeout``; its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""


def copy_node_config(source: Path, target: Path) -> None:
    """What a deployment puts on each node of a fleet: the same configuration and master secret."""
    target.mkdir(mode=0o700)
    for name in ("mailstack.toml", "secret.key"):
        shutil.copy2(source / name, target / name)
