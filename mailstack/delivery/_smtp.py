from __future__ import annotations

import contextlib
import queue
import re
import smtplib
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ._transport import DeliveryResult, Outcome, OutgoingMail, ResultCallback


def _outcome(code: int) -> Outcome:
    if 200 <= code < 300:
        return Outcome.SENT
    if 500 <= code < 600:
        return Outcome.FAILED
    return Outcome.DEFERRED


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


class SmtpRelay:
    """SMTP client to the relay with a pool of persistent connections, safe to share between threads.

    Each message is a MAIL/RCPT/DATA transaction on a pooled connection; a connection that fails is
    dropped and the message retried once on a fresh one, since a relay closing an idle connection is normal.
    A batch goes through one connection; when the relay offers PIPELINING (RFC 2920, as Postfix does), each
    message takes one round trip instead of four: MAIL, RCPT and DATA go in one write, and the message
    content goes together with the next message's MAIL, RCPT and DATA.
    """

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        helo_name: str,
        pool_size: int = 4,
        timeout: float = 30.0,
        starttls: bool = False,
        tls_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._helo = helo_name
        self._timeout = timeout
        self._starttls = starttls
        self._tls_context = tls_context
        self._credentials = (username, password) if username and password else None
        self._idle: queue.LifoQueue[smtplib.SMTP] = queue.LifoQueue(maxsize=pool_size)

    def _connect(self) -> smtplib.SMTP:
        client = smtplib.SMTP(self.host, self.port, local_hostname=self._helo, timeout=self._timeout)
        client.ehlo()
        if self._starttls:
            client.starttls(context=self._tls_context or ssl.create_default_context())
            client.ehlo()
        if self._credentials:
            client.login(*self._credentials)
        return client

    @contextmanager
    def _connection(self) -> Iterator[smtplib.SMTP]:
        try:
            client = self._idle.get_nowait()
        except queue.Empty:
            try:
                client = self._connect()
            except (OSError, smtplib.SMTPException) as exc:
                raise _Unreachable from exc
        try:
            yield client
        except BaseException:
            _quietly_close(client)
            raise
        try:
            self._idle.put_nowait(client)
        except queue.Full:
            _quietly_close(client)

    def deliver(
        self, mail: Sequence[OutgoingMail], on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        results: list[DeliveryResult] = _Reported(on_result) if on_result is not None else []
        retried = -1  # the message that already had its fresh try after a dropped connection
        while len(results) < len(mail):
            try:
                with self._connection() as client:
                    # Appends each message's result as its final reply arrives, so that a connection
                    # lost mid-batch leaves the results so far and the rest go on a fresh connection.
                    self._session(client, mail[len(results) :], results)
            except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                # A pooled connection the relay closed: one fresh try before deferring.
                if retried == len(results):
                    results.append(
                        DeliveryResult(Outcome.DEFERRED, 0, f"relay {self.host}:{self.port}: {exc}")
                    )
                else:
                    retried = len(results)
            except _Unreachable as unreachable:
                # The relay is down (refused, timed out): the rest of the batch would meet the same, one
                # connection timeout each. Defer it all at once.
                cause = unreachable.__cause__ or unreachable
                reply = f"relay {self.host}:{self.port}: {cause or type(cause).__name__}"
                while len(results) < len(mail):
                    results.append(DeliveryResult(Outcome.DEFERRED, 0, reply))
            except (OSError, smtplib.SMTPException) as exc:
                results.append(
                    DeliveryResult(
                        Outcome.DEFERRED, 0, f"relay {self.host}:{self.port}: {exc or type(exc).__name__}"
                    )
                )
        return results

    def _session(
        self, client: smtplib.SMTP, mail: Sequence[OutgoingMail], results: list[DeliveryResult]
    ) -> None:
        if not client.has_extn("pipelining"):
            for item in mail:
                results.append(self._unsendable(client, item) or self._transaction(client, item))
            return
        eight_bit = client.has_extn("8bitmime")
        ahead = False  # whether this message's MAIL, RCPT and DATA went with the previous message
        for index, item in enumerate(mail):
            if not ahead:
                refused = self._unsendable(client, item)
                if refused is not None:
                    results.append(refused)
                    continue
                client.send(_envelope(item, eight_bit))
            replies = [client.getreply(), client.getreply(), client.getreply()]  # MAIL, RCPT, DATA
            following = b""
            if index + 1 < len(mail) and self._unsendable(client, mail[index + 1]) is None:
                following = _envelope(mail[index + 1], eight_bit)
            (mail_code, _), (rcpt_code, _), (data_code, _) = replies
            ahead = bool(following)
            if mail_code == 250 and rcpt_code in (250, 251) and data_code == 354:
                client.send(_content(item.data) + following)
                code, reply = client.getreply()
                results.append(DeliveryResult(_outcome(code), code, _text(reply)))
                continue
            # Refused: the first refusal is the answer; RSET ends the transaction before the next one.
            code, reply = replies[0 if mail_code != 250 else 1 if rcpt_code not in (250, 251) else 2]
            results.append(DeliveryResult(_outcome(code), code, _text(reply)))
            if data_code == 354:  # DATA taken without a recipient (a broken relay): send nothing
                client.send(b".\r\n")
                client.getreply()
            client.send(b"RSET\r\n" + following)
            client.getreply()

    def _unsendable(self, client: smtplib.SMTP, item: OutgoingMail) -> DeliveryResult | None:
        """Why ``item`` cannot go through this connection (its result), or None."""
        if item.smtputf8 and not client.has_extn("smtputf8"):
            return DeliveryResult(
                Outcome.DEFERRED, 0, f"relay {self.host}:{self.port}: SMTPUTF8 not supported by server"
            )
        addresses = item.mail_from + item.rcpt_to
        if "\r" in addresses or "\n" in addresses or not (item.smtputf8 or addresses.isascii()):
            return DeliveryResult(Outcome.FAILED, 0, "the envelope addresses cannot be written in SMTP")
        return None

    def _transaction(self, client: smtplib.SMTP, item: OutgoingMail) -> DeliveryResult:
        options = ["SMTPUTF8", "BODY=8BITMIME"] if item.smtputf8 else []
        if not item.smtputf8 and client.has_extn("8bitmime"):
            options = ["BODY=8BITMIME"]
        reply: bytes | str
        code, reply = client.mail(item.mail_from, options)
        if code == 250:
            code, reply = client.rcpt(item.rcpt_to)
            if code in (250, 251):
                try:
                    # smtplib dot-stuffs and returns the reply to the final dot.
                    code, reply = client.data(item.data)
                    return DeliveryResult(_outcome(code), code, _text(reply))
                except smtplib.SMTPDataError as refused:  # DATA itself refused (no 354)
                    code, reply = refused.smtp_code, refused.smtp_error
        _reset(client)
        return DeliveryResult(_outcome(code), code, _text(reply))

    def close(self) -> None:
        while True:
            try:
                client = self._idle.get_nowait()
            except queue.Empty:
                return
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                _quietly_close(client)


class _Unreachable(Exception):  # noqa: N818 - a state, not an error of ours
    """No connection to the relay could be made (its cause says why)."""


class _Reported(list[DeliveryResult]):
    """The batch's results, each reported as it is appended (the moment its final reply arrived)."""

    def __init__(self, on_result: ResultCallback) -> None:
        super().__init__()
        self._on_result = on_result

    def append(self, result: DeliveryResult) -> None:
        super().append(result)
        self._on_result(len(self) - 1, result)


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _envelope(item: OutgoingMail, eight_bit: bool) -> bytes:
    """MAIL, RCPT and DATA for ``item``, pipelined (the options as in :meth:`SmtpRelay._transaction`)."""
    options = " SMTPUTF8 BODY=8BITMIME" if item.smtputf8 else " BODY=8BITMIME" if eight_bit else ""
    commands = f"MAIL FROM:<{item.mail_from}>{options}\r\nRCPT TO:<{item.rcpt_to}>\r\nDATA\r\n"
    return commands.encode("utf-8" if item.smtputf8 else "ascii")


def _content(data: bytes) -> bytes:
    """The message as sent after DATA: dot-stuffed and ended with CRLF.CRLF, as smtplib does."""
    stuffed = _LEADING_DOT.sub(b"..", data)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def _reset(client: smtplib.SMTP) -> None:
    try:
        client.rset()
    except (OSError, smtplib.SMTPException):
        client.close()


def _quietly_close(client: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        client.close()
