"""Running ``mailstack init`` and ``mailstack serve`` as a user does, as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import free_port

MAILSTACK = str(Path(sys.executable).parent / "mailstack")


@dataclass
class Instance:
    data_dir: Path
    credentials: dict[str, Any]
    env: dict[str, str]
    http: str = ""
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def auth(self) -> tuple[str, str]:
        return self.credentials["api_key"], self.credentials["api_secret"]

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    def start(self, *args: str) -> None:
        self.http = f"127.0.0.1:{free_port()}"
        self.log_path = self.data_dir / f"serve-{time.time_ns()}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [MAILSTACK, "serve", "--data-dir", str(self.data_dir), "--http", self.http, *args],
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

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def set_config(self, section: str, key: str, value: str) -> None:
        """Append a setting to the config file (TOML allows a section only once, so edit in place)."""
        path = self.data_dir / "mailstack.toml"
        text = path.read_text()
        header = f"[{section}]\n"
        assert header in text, f"no [{section}] section"
        path.write_text(text.replace(header, f"{header}{key} = {value}\n", 1))


@pytest.fixture
def mailstack_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MAILSTACK_DATABASE_URL", None)
    return env


@pytest.fixture
def instance(tmp_path: Path, mailstack_env: dict[str, str]) -> Iterator[Instance]:
    """An initialised data directory (domain example.com) and, once started, its ``serve`` process."""
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [MAILSTACK, "init", "--data-dir", str(data_dir), "--domain", "example.com", "--json"],
        capture_output=True,
        env=mailstack_env,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    inst = Instance(data_dir, json.loads(result.stdout), mailstack_env)
    try:
        yield inst
    finally:
        if inst.process is not None and inst.process.poll() is None:
            inst.process.kill()
            inst.process.wait()
