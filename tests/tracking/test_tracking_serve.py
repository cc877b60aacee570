"""``mailstack serve`` as a user runs it: tracking hits answered before SIGTERM are all recorded."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from engagement_support import pixel_in
from sqlalchemy import func, select
from support import free_port

from mailstack.storage import create_storage_engine
from mailstack.storage.schema import events

MAILSTACK = str(Path(sys.executable).parent / "mailstack")


@pytest.mark.e2e
def test_sigterm_loses_no_tracking_hit(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MAILSTACK_DATABASE_URL"}
    data_dir = tmp_path / "data"
    init = subprocess.run(
        [MAILSTACK, "init", "--data-dir", str(data_dir), "--domain", "example.com", "--json"],
        capture_output=True,
        env=env,
        check=False,
    )
    assert init.returncode == 0, init.stderr.decode()
    credentials = json.loads(init.stdout)
    auth = (credentials["api_key"], credentials["api_secret"])
    # The recorder's own timer would take a minute: only the shutdown flush can have written the hits.
    with (data_dir / "mailstack.toml").open("a") as config:
        config.write("\n[tracking]\nflush_seconds = 60\n")
    http = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [MAILSTACK, "serve", "--data-dir", str(data_dir), "--http", http],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://{http}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        message = {
            "From": {"Email": "news@example.com"},
            "To": [{"Email": "ana@example.net"}],
            "Subject": "Hi",
            "HTMLPart": "<html><body><p>Hello</p></body></html>",
        }
        sent = httpx.post(f"{base}/v3.1/send", json={"Messages": [message]}, auth=auth, timeout=10)
        assert sent.status_code == 200, sent.text
        message_id = sent.json()["Messages"][0]["To"][0]["MessageID"]
        raw = b""
        deadline = time.monotonic() + 30
        while not raw:
            response = httpx.get(f"{base}/api/v1/outbox/{message_id}", auth=auth, timeout=10)
            if response.status_code == 200:
                raw = response.content
            else:
                assert time.monotonic() < deadline, "the message never reached the outbox"
                time.sleep(0.1)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        part = parsed.get_body(("html",))  # type: ignore[attr-defined]
        pixel = pixel_in(part.get_content())
        assert pixel is not None and pixel.startswith(base + "/t/o/")
        with httpx.Client(timeout=10) as client:
            for _ in range(40):
                assert (
                    client.get(pixel, headers={"User-Agent": "Mozilla/5.0 (X11) Firefox/120"}).status_code
                    == 200
                )
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    engine = create_storage_engine(f"sqlite:///{data_dir / 'mailstack.db'}")
    try:
        with engine.connect() as conn:
            count = conn.execute(
                select(func.count()).select_from(events).where(events.c.type == "open")
            ).scalar_one()
    finally:
        engine.dispose()
    assert count == 40
