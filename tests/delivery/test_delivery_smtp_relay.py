"""The relay client: a batch over one connection, one round trip per message when the relay pipelines, and
the same outcomes, in the same order, whether it pipelines or not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from support import SmtpSink, free_port

from mailstack.delivery import OutgoingMail, SmtpRelay
from mailstack.delivery._transport import Outcome


class Server:
    """The test relay, which can be restarted (dropping every connection) on the same port."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink
        self._controller = self._start()

    def _start(self) -> Controller:
        controller = Controller(self.sink, hostname="127.0.0.1", port=self.sink.port, decode_data=False)
        controller.start()
        return controller

    def restart(self) -> None:
        self._controller.stop()
        self._controller = self._start()

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture(params=[True, False], ids=["pipelining", "one-command-at-a-time"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    server = Server(SmtpSink("127.0.0.1", free_port(), pipelining=request.param))
    try:
        yield server
    finally:
        server.stop()


def _mail(index: int, rcpt: str) -> OutgoingMail:
    # A line starting with a dot must arrive as written (dot-stuffed on the wire, unstuffed by the relay).
    data = f"From: a@example.com\r\nTo: {rcpt}\r\nSubject: {index}\r\n\r\n.hidden {index}\r\n.\r\nend\r\n"
    return OutgoingMail(index, f"b-{index}@bounces.example.com", rcpt, data.encode())


def _relay(sink: SmtpSink) -> SmtpRelay:
    return SmtpRelay(sink.host, sink.port, helo_name="test.example.com", pool_size=1, timeout=10)


def test_each_refusal_stays_with_its_message_and_the_rest_of_the_batch_goes_out(server: Server) -> None:
    sink = server.sink
    sink.replies["nobody@example.net"] = "550 5.1.1 no such user"
    sink.replies["busy@example.net"] = "451 4.3.0 try again later"
    rcpts = ["a@example.net", "nobody@example.net", "b@example.net", "busy@example.net", "c@example.net"]
    mail = [_mail(i, rcpt) for i, rcpt in enumerate(rcpts)]
    relay = _relay(sink)
    try:
        results = relay.deliver(mail)
    finally:
        relay.close()
    assert [r.outcome for r in results] == [
        Outcome.SENT,
        Outcome.FAILED,
        Outcome.SENT,
        Outcome.DEFERRED,
        Outcome.SENT,
    ]
    assert results[1].summary() == "550 5.1.1 no such user"
    assert results[3].summary() == "451 4.3.0 try again later"
    assert [r.summary() for r in results[::2]] == [f"250 2.0.0 Ok: queued as Q{n}" for n in (1, 2, 3)]
    assert [(m.mail_from, m.rcpt_tos) for m in sink.received] == [
        (mail[i].mail_from, [mail[i].rcpt_to]) for i in (0, 2, 4)
    ]
    assert [m.data for m in sink.received] == [mail[i].data for i in (0, 2, 4)]


def test_a_connection_the_relay_dropped_between_batches_is_replaced(server: Server) -> None:
    relay = _relay(server.sink)
    try:
        assert [r.outcome for r in relay.deliver([_mail(0, "r0@example.net")])] == [Outcome.SENT]
        server.restart()  # the pooled connection is now dead
        batch = [_mail(i, f"r{i}@example.net") for i in range(1, 4)]
        assert [r.outcome for r in relay.deliver(batch)] == [Outcome.SENT] * 3
    finally:
        relay.close()
    assert [m.rcpt_tos for m in server.sink.received] == [[f"r{i}@example.net"] for i in range(4)]


def test_an_envelope_address_smtp_cannot_carry_fails_alone(server: Server) -> None:
    sink = server.sink
    mail = [
        _mail(0, "a@example.net"),
        _mail(1, "x@example.net\r\nRCPT TO:<victim@example.org>"),
        _mail(2, "b@example.net"),
    ]
    relay = _relay(sink)
    try:
        results = relay.deliver(mail)
    finally:
        relay.close()
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.FAILED, Outcome.SENT]
    assert [m.rcpt_tos for m in sink.received] == [["a@example.net"], ["b@example.net"]]


def test_a_relay_that_is_gone_defers_the_whole_batch() -> None:
    relay = SmtpRelay("127.0.0.1", free_port(), helo_name="test.example.com", timeout=2)
    results = relay.deliver([_mail(i, f"r{i}@example.net") for i in range(3)])
    assert [r.outcome for r in results] == [Outcome.DEFERRED] * 3
    assert all(r.code == 0 and "relay 127.0.0.1:" in r.reply for r in results)
