"""Erasure and webhooks: the erased person's events are dropped from every stored payload — pending ones
are never sent, logged ones go — while the other recipients' events in the same deliveries still are."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from engagement_support import Stack, make_stack, pixel_in
from erasure_support import mentions
from sqlalchemy import select
from support import stored_bytes

from mailstack.storage import create_api_key
from mailstack.storage.schema import webhook_deliveries
from mailstack.webhooks import Dispatcher

ANA = "ana.hook-93d@example.net"
BOB = "bob.hook@example.org"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


@pytest.fixture
def received() -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    """A webhook receiver on 127.0.0.1: its URL, and the (path, JSON body) of every request it got."""
    bodies: list[tuple[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            bodies.append((self.path, json.loads(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stack(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    # The test fans out and sends itself, at chosen moments: the app's background round stays idle.
    monkeypatch.setattr(Dispatcher, "run", lambda self, stop: stop.wait())
    with make_stack(tmp_path, db_url, {"webhooks": {"allow_networks": ["127.0.0.0/8"]}}) as running:
        yield running


def subscribe(stack: Stack, event_type: str, url: str, version: int) -> None:
    body = {"EventType": event_type, "Url": url, "Version": version}
    response = stack.client.post("/v3/REST/eventcallbackurl", json=body, auth=stack.auth)
    assert response.status_code == 201, response.text


def open_pixel(stack: Stack, message_id: int) -> None:
    pixel = pixel_in(stack.html_of(message_id))
    assert pixel is not None
    stack.client.get(pixel.removeprefix("https://track.example.com"), headers={"User-Agent": BROWSER})


def test_the_erased_persons_events_are_dropped_from_pending_and_logged_webhooks(
    stack: Stack, received: tuple[str, list[tuple[str, Any]]]
) -> None:
    url, bodies = received
    runtime = stack.runtime
    dispatcher: Dispatcher = stack.node.dispatcher
    subscribe(stack, "sent", url + "/sent", 2)  # grouped: one request carries several people's events
    subscribe(stack, "open", url + "/open", 1)  # one event per request
    with runtime.engine.begin() as conn:
        admin = create_api_key(conn, "dpo", ["privacy"])

    # Delivered earlier: the delivery log keeps the payload (Ana's event alone).
    (earlier,) = stack.send(To=[{"Email": ANA}], HTMLPart="<p>Earlier</p>")
    stack.deliver()
    while dispatcher.fan_out():
        pass
    dispatcher.send_due(None)
    assert [path for path, _body in bodies] == ["/sent"]
    # Pending: Ana's and Bob's "sent" grouped in one delivery, and one "open" delivery each.
    ana, bob = stack.send(To=[{"Email": ANA}, {"Email": BOB}], HTMLPart="<p>Now</p>")
    stack.deliver()
    open_pixel(stack, ana)
    open_pixel(stack, bob)
    stack.flush_tracking()
    while dispatcher.fan_out():
        pass
    assert "webhook_deliveries.payload" in mentions(runtime.engine, runtime.vault, ANA)

    exported = stack.client.get(f"/api/v1/privacy/subjects/{ANA}", auth=admin).json()
    events = [e for delivery in exported["webhook_events"] for e in delivery["events"]]
    assert sorted((e["event"], e["MessageID"]) for e in events) == [
        ("open", ana),
        ("sent", earlier),
        ("sent", ana),
    ]
    assert BOB not in json.dumps(exported["webhook_events"])  # only Ana's part of a grouped payload

    erased = stack.client.delete(f"/api/v1/privacy/subjects/{ANA}", auth=admin)
    assert erased.status_code == 200, erased.text
    report = erased.json()
    assert (report["webhook_deliveries_deleted"], report["webhook_deliveries_redacted"]) == (2, 1)

    already = len(bodies)
    assert dispatcher.send_due(None) == 2
    after = bodies[already:]
    assert ANA not in json.dumps(after)
    by_path = dict(after)
    assert [(e["event"], e["email"], e["MessageID"]) for e in by_path["/sent"]] == [("sent", BOB, bob)]
    assert (by_path["/open"]["event"], by_path["/open"]["MessageID"]) == ("open", bob)
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(webhook_deliveries.c.state, webhook_deliveries.c.event_count).order_by(
                webhook_deliveries.c.id
            )
        ).all()
    assert [tuple(row) for row in rows] == [("delivered", 1), ("delivered", 1)]  # Bob's two
    assert mentions(runtime.engine, runtime.vault, ANA) == []
    # The running app's background jobs may hold a snapshot while VACUUM runs: the dump, not dead rows.
    assert ANA.encode() not in stored_bytes(runtime.engine).lower()
