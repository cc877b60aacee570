"""Driving ``mailstack init``/``serve``/``privacy`` as subprocesses, as an operator does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import free_port

MAILSTACK = str(Path(sys.executable).parent / "mailstack")


@dataclass
class Served:
    """A data directory, its credentials and (between start and stop) its ``serve`` process."""

    data_dir: Path
    env: dict[str, str]
    credentials: dict[str, Any] = field(default_factory=dict)
    http: str = ""
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def auth(self) -> tuple[str, str]:
        return self.credentials["api_key"], self.credentials["api_secret"]

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [MAILSTACK, *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def start(self, relay: str) -> None:
        self.http = f"127.0.0.1:{free_port()}"
        log_path = self.data_dir.parent / f"serve-{time.time_ns()}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [MAILSTACK, "serve", "--data-dir", str(self.data_dir), "--http", self.http, "--relay", relay],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mailstack serve exited:\n{self.log_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        pytest.fail(f"mailstack serve did not become healthy:\n{self.log_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)

    def log_text(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.logs if path.exists())

    def send(self, message: dict[str, Any], headers: dict[str, str] | None = None) -> list[int]:
        response = httpx.post(
            f"{self.url}/v3.1/send", json={"Messages": [message]}, auth=self.auth, headers=headers or {}
        )
        assert response.status_code == 200, response.text
        (result,) = response.json()["Messages"]
        return [r["MessageID"] for part in ("To", "Cc", "Bcc") for r in result.get(part, [])]

    def status(self, message_id: int) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/v3/REST/message/{message_id}", auth=self.auth)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["Data"][0]
        return data

    def wait_status(self, message_id: int, *wanted: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        data: dict[str, Any] = {}
        while time.monotonic() < deadline:
            data = self.status(message_id)
            if data["Status"] in wanted:
                return data
            time.sleep(0.1)
        pytest.fail(f"message {message_id} is {data.get('Status')!r}, not {wanted!r}\n{self.log_text()}")


@contextmanager
def initialised(tmp_path: Path, database_url: str | None) -> Iterator[Served]:
    """``mailstack init`` (domain example.com) on SQLite in the data directory, or on ``database_url``."""
    env = dict(os.environ)
    env.pop("MAILSTACK_DATABASE_URL", None)
    if database_url is not None:
        env["MAILSTACK_DATABASE_URL"] = database_url
    served = Served(tmp_path / "data", env)
    result = subprocess.run(
        [MAILSTACK, "init", "--data-dir", str(served.data_dir), "--domain", "example.com", "--json"],
        capture_output=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    served.credentials = json.loads(result.stdout)
    try:
        yield served
    finally:
        if served.process is not None and served.process.poll() is None:
            served.process.kill()
            served.process.wait()


def database_bytes(served: Served, database_url: str | None) -> bytes:
    """Every byte the database holds: the SQLite files, or a ``pg_dump`` of the PostgreSQL database."""
    if database_url is None:
        return b"".join(p.read_bytes() for p in sorted(served.data_dir.glob("mailstack.db*")))
    dump = subprocess.run(["pg_dump", database_url], capture_output=True, check=False)
    assert dump.returncode == 0, dump.stderr.decode()
    assert b"CREATE TABLE public.messages" in dump.stdout
    return dump.stdout
