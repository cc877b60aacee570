from __future__ import annotations

import contextlib
import queue
import smtplib
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ._transport import DeliveryResult, Outcome, OutgoingMail


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
            client = self._connect()
        try:
            yield client
        except BaseException:
            _quietly_close(client)
            raise
        try:
            self._idle.put_nowait(client)
        except queue.Full:
            _quietly_close(client)

    def deliver(self, mail: Sequence[OutgoingMail]) -> list[DeliveryResult]:
        return [self._deliver_one(item) for item in mail]

    def _deliver_one(self, item: OutgoingMail) -> DeliveryResult:
        for attempt in (1, 2):
            try:
                with self._connection() as client:
                    return self._transaction(client, item)
            except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                # A pooled connection the relay closed: one fresh try before deferring.
                if attempt == 2:
                    return DeliveryResult(Outcome.DEFERRED, 0, f"relay {self.host}:{self.port}: {exc}")
            except (OSError, smtplib.SMTPException) as exc:
                return DeliveryResult(
                    Outcome.DEFERRED, 0, f"relay {self.host}:{self.port}: {exc or type(exc).__name__}"
                )
        raise AssertionError("unreachable")

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


def _reset(client: smtplib.SMTP) -> None:
    try:
        client.rset()
    except (OSError, smtplib.SMTPException):
        client.close()


def _quietly_close(client: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        client.close()
