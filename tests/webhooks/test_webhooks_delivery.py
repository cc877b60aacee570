"""Webhooks end to end against a local receiver: payloads, grouping, signatures, retries, the log, SSRF."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from engagement_support import Stack, make_stack, pixel_in
from sqlalchemy import select

from mailstack.storage.schema import webhook_deliveries
from mailstack.webhooks import SIGNATURE_HEADER, Dispatcher, verify

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
COMMON = {"event", "time", "MessageID", "Message_GUID", "email", "mj_campaign_id", "mj_contact_id",
          "customcampaign", "mj_message_id", "CustomID", "Payload"}  # fmt: skip


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that keeps what it is sent and answers with ``statuses`` in turn."""

    server: ThreadingHTTPServer
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    redirect_to: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self) -> list[Any]:
        return [json.loads(body) for _path, _headers, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state = holder[0]
            state.received.append((self.path, dict(self.headers.items()), body))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", state.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Receiver(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()


LOOPBACK_ALLOWED = {"webhooks": {"allow_networks": ["127.0.0.0/8"], "poll_seconds": 60}}


@pytest.fixture
def stack(tmp_path: Path, db_url: str) -> Iterator[Stack]:
    with make_stack(tmp_path, db_url, LOOPBACK_ALLOWED) as running:
        yield running


def subscribe(stack: Stack, event_type: str, url: str, **extra: Any) -> tuple[int, bytes]:
    response = stack.client.post(
        "/v3/REST/eventcallbackurl", json={"EventType": event_type, "Url": url, **extra}, auth=stack.auth
    )
    assert response.status_code == 201, response.text
    data = response.json()["Data"][0]
    return data["ID"], bytes.fromhex(data["SigningSecret"])


def dispatch(stack: Stack) -> None:
    stack.flush_tracking()
    dispatcher: Dispatcher = stack.node.dispatcher
    while dispatcher.fan_out():
        pass
    dispatcher.send_due(None)


def test_events_are_posted_as_mailjet_payloads_signed(stack: Stack, receiver: Receiver) -> None:
    sent_id, sent_secret = subscribe(stack, "sent", receiver.url + "/sent", Version=2)
    _open_id, open_secret = subscribe(stack, "open", receiver.url + "/open")
    ids = stack.send(
        To=[{"Email": "ana@gmail.com"}, {"Email": "bo@outlook.com"}],
        HTMLPart="<p>Hi</p>",
        CustomID="order-7",
        EventPayload="cart=42",
        CustomCampaign="spring",
    )
    stack.deliver()
    pixel = pixel_in(stack.html_of(ids[0]))
    assert pixel is not None
    stack.client.get(pixel.removeprefix("https://track.example.com"), headers={"User-Agent": BROWSER})
    dispatch(stack)
    by_path = {path: (headers, body) for path, headers, body in receiver.received}
    assert set(by_path) == {"/sent", "/open"}
    headers, body = by_path["/sent"]
    assert verify(sent_secret, body, headers[SIGNATURE_HEADER])
    assert not verify(open_secret, body, headers[SIGNATURE_HEADER])  # each endpoint has its own secret
    assert not verify(sent_secret, body + b" ", headers[SIGNATURE_HEADER])
    grouped = json.loads(body)
    assert isinstance(grouped, list) and len(grouped) == 2  # Version 2: one request, an array
    assert {e["email"] for e in grouped} == {"ana@gmail.com", "bo@outlook.com"}
    first = grouped[0]
    assert set(first) == COMMON | {"smtp_reply"}
    assert (first["event"], first["CustomID"], first["Payload"], first["customcampaign"]) == (
        "sent",
        "order-7",
        "cart=42",
        "spring",
    )
    assert first["MessageID"] in ids and first["mj_message_id"] == str(first["MessageID"])
    headers, body = by_path["/open"]
    assert verify(open_secret, body, headers[SIGNATURE_HEADER])
    opened = json.loads(body)
    assert isinstance(opened, dict)  # Version 1: one event per request
    assert set(opened) == COMMON | {"ip", "geo", "agent"}
    assert (opened["event"], opened["MessageID"], opened["agent"]) == ("open", ids[0], BROWSER)
    log = stack.client.get(f"/v3/REST/eventcallbackurl/{sent_id}/deliveries", auth=stack.auth).json()["Data"]
    assert [(d["State"], d["Attempts"], d["LastStatus"], d["EventCount"]) for d in log] == [
        ("delivered", 1, 200, 2)
    ]


def test_failed_deliveries_are_retried_with_backoff_for_a_day_then_given_up(
    stack: Stack, receiver: Receiver
) -> None:
    endpoint_id, _secret = subscribe(stack, "sent", receiver.url + "/hook")
    stack.send()
    stack.deliver()
    stack.node.dispatcher.fan_out()
    now = [1_000_000.0]
    settings = stack.runtime.settings.webhooks
    dispatcher = Dispatcher(
        stack.runtime.engine, stack.runtime.keyring, settings, clock=lambda: now[0], vault=stack.runtime.vault
    )
    with stack.runtime.engine.begin() as conn:  # the delivery was created "now" on the fake clock
        conn.execute(webhook_deliveries.update().values(created_at=now[0], next_attempt_at=now[0]))
    receiver.statuses = [500, 503]
    waits = []
    for _ in range(2):
        assert dispatcher.send_due(None) == 1
        assert dispatcher.send_due(None) == 0  # not due again before its backoff
        with stack.runtime.engine.connect() as conn:
            row = conn.execute(select(webhook_deliveries)).one()
        assert row.state == "pending"
        waits.append(row.next_attempt_at - now[0])
        now[0] = row.next_attempt_at
    assert 30 <= waits[0] <= 33 and 60 <= waits[1] <= 66  # exponential: 30 s, 60 s (+ up to 10%)
    assert dispatcher.send_due(None) == 1  # third try: the receiver is back
    assert len(receiver.received) == 3 and receiver.received[0][2] == receiver.received[2][2]
    with stack.runtime.engine.connect() as conn:
        assert conn.execute(select(webhook_deliveries.c.state)).scalar_one() == "delivered"
    # A receiver that never recovers: retried until the delivery is a day old, then abandoned.
    stack.send()
    stack.deliver()
    stack.node.dispatcher.fan_out()
    with stack.runtime.engine.begin() as conn:
        conn.execute(
            webhook_deliveries.update()
            .where(webhook_deliveries.c.state == "pending")
            .values(created_at=now[0], next_attempt_at=now[0])
        )
    start, tries = now[0], 0
    receiver.statuses = [500] * 100
    while True:
        assert dispatcher.send_due(None) == 1
        tries += 1
        with stack.runtime.engine.connect() as conn:
            row = conn.execute(select(webhook_deliveries).where(webhook_deliveries.c.id != 1)).one()
        if row.state != "pending":
            break
        now[0] = row.next_attempt_at
    assert row.state == "failed" and row.attempts == tries
    assert 20 * 3600 < now[0] - start <= 24 * 3600
    assert tries < 40  # backoff, not hammering
    log = stack.client.get(f"/v3/REST/eventcallbackurl/{endpoint_id}/deliveries", auth=stack.auth).json()[
        "Data"
    ]
    assert log[0]["State"] == "failed" and log[0]["LastStatus"] == 500 and log[0]["LastError"] == "HTTP 500"


def test_redirects_are_not_followed(stack: Stack, receiver: Receiver) -> None:
    subscribe(stack, "sent", receiver.url + "/hook")
    receiver.statuses = [302]
    receiver.redirect_to = receiver.url + "/elsewhere"
    stack.send()
    stack.deliver()
    dispatch(stack)
    assert [path for path, _h, _b in receiver.received] == ["/hook"]
    with stack.runtime.engine.connect() as conn:
        row = conn.execute(select(webhook_deliveries)).one()
    assert (row.state, row.last_status, row.last_error) == ("pending", 302, "HTTP 302")


def test_dns_rebinding_is_caught_at_connect_time(stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    # Registered while the name pointed at a public address; by delivery time it points at loopback,
    # which this deployment does not allow: nothing may reach the receiver.
    subscribe(stack, "sent", receiver.url + "/hook")
    settings = stack.runtime.settings.webhooks.model_copy(update={"allow_networks": ()})
    answers = {"127.0.0.1": ["127.0.0.1"]}
    dispatcher = Dispatcher(
        stack.runtime.engine,
        stack.runtime.keyring,
        settings,
        resolve=lambda host, port: answers[host],
        vault=stack.runtime.vault,
    )
    stack.send()
    stack.deliver()
    stack.node.dispatcher.fan_out()
    assert dispatcher.send_due(None) == 1
    assert receiver.received == []
    with stack.runtime.engine.connect() as conn:
        row = conn.execute(select(webhook_deliveries)).one()
    assert row.state == "pending" and row.last_status is None
    assert "refused" in row.last_error and "loopback" in row.last_error


def test_registering_internal_urls_is_refused_without_an_allow_list(tmp_path: Path, sqlite_url: str) -> None:
    with make_stack(tmp_path, sqlite_url) as stack:
        for url in (
            "http://127.0.0.1:9/hook",
            "http://localhost/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://10.0.0.1/",
            "file:///etc/passwd",
        ):
            response = stack.client.post(
                "/v3/REST/eventcallbackurl", json={"EventType": "open", "Url": url}, auth=stack.auth
            )
            assert response.status_code == 400, url
            assert "refused" in response.json()["ErrorMessage"]
        assert stack.client.get("/v3/REST/eventcallbackurl", auth=stack.auth).json()["Count"] == 0


def test_endpoint_management(stack: Stack, receiver: Receiver) -> None:
    endpoint_id, _ = subscribe(stack, "click", receiver.url + "/c")
    duplicate = stack.client.post(
        "/v3/REST/eventcallbackurl", json={"EventType": "click", "Url": receiver.url + "/d"}, auth=stack.auth
    )
    assert duplicate.status_code == 400 and "already exists" in duplicate.json()["ErrorMessage"]
    listed = stack.client.get("/v3/REST/eventcallbackurl", auth=stack.auth).json()["Data"]
    assert listed == [
        {
            "ID": endpoint_id,
            "APIKeyID": 1,
            "EventType": "click",
            "Url": receiver.url + "/c",
            "Version": 1,
            "Status": "alive",
            "IsBackup": False,
        }
    ]
    assert "SigningSecret" not in listed[0]  # shown once, at creation
    for body, problem in (
        ({"EventType": "opened", "Url": receiver.url}, "EventType"),
        ({"EventType": "open"}, "Url"),
        ({"EventType": "open", "Url": receiver.url, "Version": 3}, "Version"),
        ({"EventType": "open", "Url": receiver.url, "Extra": 1}, "Unknown"),
    ):
        response = stack.client.post("/v3/REST/eventcallbackurl", json=body, auth=stack.auth)
        assert response.status_code == 400 and problem in response.json()["ErrorMessage"]
    assert stack.client.get("/v3/REST/eventcallbackurl").status_code == 401
    assert stack.client.delete(f"/v3/REST/eventcallbackurl/{endpoint_id}", auth=stack.auth).status_code == 204
    assert stack.client.get(f"/v3/REST/eventcallbackurl/{endpoint_id}", auth=stack.auth).status_code == 404
