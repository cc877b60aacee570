"""Running ``mailstack init``, ``serve`` and the other subcommands as subprocesses, as an operator does."""

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
from support import free_port, stored_bytes

from mailstack.storage import create_storage_engine

MAILSTACK = str(Path(sys.executable).parent / "mailstack")


@dataclass
class Instance:
    """A data directory made by ``mailstack init`` and, between start and stop, its ``serve`` process."""

    data_dir: Path
    credentials: dict[str, Any]
    env: dict[str, str]
    http: str = ""
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)  # one file per start, beside the data directory

    @property
    def auth(self) -> tuple[str, str]:
        return self.credentials["api_key"], self.credentials["api_secret"]

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    @property
    def database_url(self) -> str:
        """MAILSTACK_DATABASE_URL, or the default SQLite file in the data directory."""
        return self.env.get("MAILSTACK_DATABASE_URL") or f"sqlite:///{self.data_dir / 'mailstack.db'}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``mailstack ARGS --data-dir DIR``; with ``check``, assert it exits 0."""
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

    def start(self, *args: str, relay: str | None = None) -> None:
        """``mailstack serve --relay RELAY ARGS`` on a free HTTP port; returns once it is healthy."""
        self.http = f"127.0.0.1:{free_port()}"
        log_path = self.data_dir.parent / f"serve-{time.time_ns()}.log"
        self.logs.append(log_path)
        command = [MAILSTACK, "serve", "--data-dir", str(self.data_dir), "--http", self.http]
        if relay is not None:
            command += ["--relay", relay]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mailstack serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        pytest.fail(f"mailstack serve did not become healthy:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` to the serve process (unless it has exited) and return its exit code."""
        assert self.process is not None, "not started"
        self.process.send_signal(sig)  # a no-op once it has exited
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the serve process if it still runs (cleanup after a failed test)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        """What every ``serve`` run so far printed, in order."""
        return "".join(path.read_text(errors="replace") for path in self.logs if path.exists())

    def set_config(self, section: str, key: str, value: str) -> None:
        """Add ``key = value`` (TOML) to a section of mailstack.toml (a section may appear only once)."""
        path = self.data_dir / "mailstack.toml"
        text = path.read_text()
        header = f"[{section}]\n"
        assert header in text, f"no [{section}] section"
        path.write_text(text.replace(header, f"{header}{key} = {value}\n", 1))

    def send(self, message: dict[str, Any], headers: dict[str, str] | None = None) -> list[int]:
        """Send one message through the API; returns the MessageIDs of its To, Cc and Bcc recipients."""
        response = httpx.post(
            f"{self.url}/v3.1/send", json={"Messages": [message]}, auth=self.auth, headers=headers or {}
        )
        assert response.status_code == 200, response.text
        (result,) = response.json()["Messages"]
        assert result["Status"] == "success", result
        return [r["MessageID"] for part in ("To", "Cc", "Bcc") for r in result.get(part, [])]

    def status(self, message_id: int) -> dict[str, Any]:
        """The message as ``GET /v3/REST/message/ID`` shows it."""
        response = httpx.get(f"{self.url}/v3/REST/message/{message_id}", auth=self.auth)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["Data"][0]
        return data

    def wait_status(self, message_id: int, *wanted: str, timeout: float = 30) -> dict[str, Any]:
        """Poll :meth:`status` until its Status is one of ``wanted``."""
        deadline = time.monotonic() + timeout
        data: dict[str, Any] = {}
        while time.monotonic() < deadline:
            data = self.status(message_id)
            if data["Status"] in wanted:
                return data
            time.sleep(0.1)
        pytest.fail(f"message {message_id} is {data.get('Status')!r}, not {wanted!r}\n{self.log()}")

    def stored_bytes(self) -> bytes:
        """Every byte its database holds (see :func:`support.stored_bytes`)."""
        engine = create_storage_engine(self.database_url)
        try:
            return stored_bytes(engine)
        finally:
            engine.dispose()


def serve_env(database_url: str | None = None) -> dict[str, str]:
    """This process's environment, with MAILSTACK_DATABASE_URL set to ``database_url`` or removed."""
    env = dict(os.environ)
    env.pop("MAILSTACK_DATABASE_URL", None)
    if database_url is not None:
        env["MAILSTACK_DATABASE_URL"] = database_url
    return env


def initialise(data_dir: Path, env: dict[str, str]) -> Instance:
    """``mailstack init --domain example.com`` into ``data_dir``; not started."""
    result = subprocess.run(
        [MAILSTACK, "init", "--data-dir", str(data_dir), "--domain", "example.com", "--json"],
        capture_output=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return Instance(data_dir, json.loads(result.stdout), env)


@contextmanager
def initialised(tmp_path: Path, database_url: str | None) -> Iterator[Instance]:
    """:func:`initialise` into tmp_path/data, on SQLite or on ``database_url``; killed at exit."""
    instance = initialise(tmp_path / "data", serve_env(database_url))
    try:
        yield instance
    finally:
        instance.kill()


@pytest.fixture
def mailstack_env() -> dict[str, str]:
    return serve_env()


@pytest.fixture
def instance(tmp_path: Path, mailstack_env: dict[str, str]) -> Iterator[Instance]:
    """An initialised data directory (SQLite, domain example.com) and, once started, its ``serve`` process."""
    instance = initialise(tmp_path / "data", mailstack_env)
    try:
        yield instance
    finally:
        instance.kill()
