"""STARTTLS to the relay: configurable, and an unverifiable certificate (a man in the middle) gets no mail."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from engagement_support import write_data_dir
from support import SmtpSink, free_port

from mailstack.config import load_settings
from mailstack.delivery import OutgoingMail
from mailstack.delivery._transport import Outcome
from mailstack.runtime import Runtime
from mailstack.smtp._tls import ensure_self_signed

MAIL = OutgoingMail(1, "bounce@example.com", "ana@example.org", b"Subject: hi\r\n\r\nhello\r\n")


@pytest.fixture
def tls_sink(tmp_path: Path) -> Iterator[tuple[SmtpSink, Path]]:
    """A relay that demands STARTTLS before MAIL, with a self-signed certificate for 127.0.0.1."""
    (tmp_path / "data").mkdir()
    pem = ensure_self_signed(tmp_path / "data" / "relay.pem", "relay.example", "127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    port = free_port()
    sink = SmtpSink("127.0.0.1", port)
    controller = Controller(
        sink, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True, decode_data=False
    )
    controller.start()
    try:
        yield sink, pem
    finally:
        controller.stop()


def deliver(tmp_path: Path, sink: SmtpSink, **delivery: Any) -> Outcome:
    data_dir = tmp_path / "data"
    write_data_dir(data_dir)
    overrides = {
        "database": {"url": f"sqlite:///{tmp_path / 'mailstack.db'}"},
        "delivery": {"relay": f"127.0.0.1:{sink.port}", **delivery},
    }
    runtime = Runtime.open(load_settings(data_dir, overrides))
    relay = runtime.relay()
    try:
        (result,) = relay.deliver([MAIL])
    finally:
        relay.close()
        runtime.close()
    return result.outcome


def test_starttls_with_the_configured_ca_delivers(tmp_path: Path, tls_sink: tuple[SmtpSink, Path]) -> None:
    sink, _pem = tls_sink
    assert deliver(tmp_path, sink, relay_starttls=True, relay_ca_file="relay.pem") == Outcome.SENT
    assert [m.rcpt_tos for m in sink.received] == [["ana@example.org"]]


def test_an_unverifiable_relay_certificate_gets_no_mail(
    tmp_path: Path, tls_sink: tuple[SmtpSink, Path]
) -> None:
    sink, _pem = tls_sink
    # The system CA store does not vouch for this certificate: as if someone sat between us and Postfix.
    assert deliver(tmp_path, sink, relay_starttls=True) == Outcome.DEFERRED
    assert sink.received == []


def test_without_starttls_a_relay_that_demands_it_refuses(
    tmp_path: Path, tls_sink: tuple[SmtpSink, Path]
) -> None:
    sink, _pem = tls_sink
    assert deliver(tmp_path, sink) != Outcome.SENT
    assert sink.received == []
