"""Helpers of the engagement tests (tracking, stats, webhooks, automation, dashboard).

:func:`make_stack` builds what ``mailstack serve`` builds, in-process: settings in a data directory, a
migrated database on the backend under test, DKIM keys for ``example.com``, an API key, the runtime and
the ASGI app, plus a delivery worker that keeps mail in the sandbox outbox.
"""

from __future__ import annotations

import base64
import email
import email.policy
import html
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from mailstack.config import load_settings, render_default_config
from mailstack.delivery import DeliveryWorker, SandboxOutbox
from mailstack.domains import create_domain_keys
from mailstack.runtime import Runtime
from mailstack.serve import Node, assemble
from mailstack.storage import create_api_key, list_events, list_outbox

DOMAIN = "example.com"


@dataclass
class Stack:
    runtime: Runtime
    client: TestClient
    api_key: str
    api_secret: str
    worker: DeliveryWorker
    node: Node

    @property
    def auth(self) -> tuple[str, str]:
        return self.api_key, self.api_secret

    def send(self, **message: Any) -> list[int]:
        """Send one message through the API; returns the MessageIDs of its recipients."""
        body = {
            "From": {"Email": f"news@{DOMAIN}", "Name": "News"},
            "To": [{"Email": "ana@gmail.com"}],
            "Subject": "Hello",
            "TextPart": "Hello",
            **message,
        }
        response = self.client.post("/v3.1/send", json={"Messages": [body]}, auth=self.auth)
        assert response.status_code == 200, response.text
        entry = response.json()["Messages"][0]
        return [r["MessageID"] for kind in ("To", "Cc", "Bcc") for r in entry[kind]]

    def deliver(self) -> int:
        """Run the delivery worker until the queue is empty; returns the jobs handled."""
        handled = 0
        while worked := self.worker.run_once():
            handled += worked
        return handled

    def flush_tracking(self) -> None:
        """Write what the tracking recorder holds now (the background thread would, a moment later)."""
        self.node.recorder.flush()

    def outbox_message(self, message_id: int) -> EmailMessage:
        with self.runtime.engine.connect() as conn:
            items = list_outbox(
                conn, message_id=message_id, limit=1, with_data=True, vault=self.runtime.vault
            )
        assert items, f"message {message_id} is not in the outbox"
        data = items[0].data
        assert data is not None
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def html_of(self, message_id: int) -> str:
        part = self.outbox_message(message_id).get_body(("html",))
        assert part is not None, "the message has no HTML part"
        content = part.get_content()
        assert isinstance(content, str)
        return content

    def events_of(self, message_id: int) -> list[tuple[str, dict[str, Any]]]:
        """The message's events, details opened (their personal part is sealed at rest)."""
        with self.runtime.engine.connect() as conn:
            found = list_events(conn, message_id, vault=self.runtime.vault)
        return [(kind, detail) for kind, _at, detail in found]


def write_data_dir(data_dir: Path, extra_toml: str = "") -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "secret.key").write_text(secrets.token_hex(32) + "\n")
    (data_dir / "mailstack.toml").write_text(render_default_config(DOMAIN) + "\n" + extra_toml)


@contextmanager
def make_stack(
    tmp_path: Path, db_url: str, overrides: dict[str, dict[str, Any]] | None = None
) -> Iterator[Stack]:
    """A running stack (app started, lifespan included) on ``db_url``; everything stops on exit."""
    data_dir = tmp_path / "data"
    write_data_dir(data_dir)
    merged: dict[str, dict[str, Any]] = {
        "database": {"url": db_url},
        "server": {"public_url": "https://track.example.com"},
        "stats": {"mx_lookup": False},
        "delivery": {"workers": 0},
    }
    for section, values in (overrides or {}).items():
        merged[section] = {**merged.get(section, {}), **values}
    settings = load_settings(data_dir, merged)
    runtime = Runtime.open(settings)
    try:
        with runtime.engine.begin() as conn:
            create_domain_keys(conn, runtime.keyring, DOMAIN)
            api_key, api_secret = create_api_key(conn, "default")
        worker = DeliveryWorker(
            runtime.engine,
            runtime.queue,
            runtime.preparer,
            SandboxOutbox(runtime.engine, runtime.vault),
            runtime.worker_settings(),
            runtime.metrics,
            vault=runtime.vault,
        )
        # The node as `mailstack serve` assembles it, without delivery workers: tests drive `worker`.
        node = assemble(runtime.settings, runtime, None)
        node.lifecycle.start()
        try:
            with TestClient(node.app, base_url="https://track.example.com") as client:
                yield Stack(runtime, client, api_key, api_secret, worker, node)
        finally:
            node.lifecycle.stop()
    finally:
        runtime.close()


def parse_mail(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def html_part(data: bytes) -> str:
    part = parse_mail(data).get_body(("html",))
    assert part is not None, "the message has no HTML part"
    content = part.get_content()
    assert isinstance(content, str)
    return content


_HREF = re.compile(r'href="([^"]+)"')
_IMG = re.compile(r'<img src="([^"]+)"')


def links_in(document: str) -> list[str]:
    return [html.unescape(m) for m in _HREF.findall(document)]


def pixel_in(document: str) -> str | None:
    found = _IMG.findall(document)
    return html.unescape(found[-1]) if found else None


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()
