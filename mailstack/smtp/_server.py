"""The submission listener: aiosmtpd on an event loop of its own, in a thread of ``mailstack serve``."""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from typing import Any

from aiosmtpd.controller import Controller

from mailstack.credentials import ApiKeyVerifier
from mailstack.observability import get_logger
from mailstack.runtime import Runtime

from ._handler import SubmissionHandler, SubmissionProtocol

__all__ = ["SmtpIngress"]

log = get_logger("mailstack.smtp")

# RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes for the next command.
IDLE_TIMEOUT_SECONDS = 300.0
# Wrong credentials are answered 535; the fourth AUTH on one connection closes it (421), which makes
# guessing secrets cost a TLS handshake per three tries. Other commands are practically unlimited.
_CALL_LIMITS = {"AUTH": 3, "*": 1_000_000}


class _Controller(Controller):
    """aiosmtpd's threaded controller, serving our protocol subclass and knowing its open sessions."""

    def __init__(self, ingress: SmtpIngress, host: str, port: int, **smtp_kwargs: Any) -> None:
        super().__init__(ingress.handler, hostname=host, port=port, **smtp_kwargs)
        self._ingress = ingress

    def factory(self) -> SubmissionProtocol:
        protocol = SubmissionProtocol(self.handler, loop=self.loop, **self.SMTP_kwargs)
        self._ingress.protocols.add(protocol)
        return protocol

    def _trigger_server(self) -> None:
        # Port 0 asks the kernel for a free port: connect to the one it gave.
        if isinstance(self.server, asyncio.Server) and self.server.sockets:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]  # aiosmtpd is untyped here


class SmtpIngress:
    """SMTP submission on ``host:port``: STARTTLS, then AUTH (PLAIN/LOGIN, API key and secret), then mail.

    Accepted messages are stored and queued like API messages before the client gets its 250.
    :meth:`start` returns once the socket is bound (``port`` 0 picks a free one, see :attr:`port`);
    :meth:`stop` stops accepting, lets messages being stored commit and their replies go out, then
    closes every connection.
    """

    name = "smtp-submission"

    def __init__(self, runtime: Runtime, host: str, port: int, tls_context: ssl.SSLContext) -> None:
        self._host = host
        self.handler = SubmissionHandler(
            runtime, ApiKeyVerifier(runtime.engine), max_recipients=runtime.settings.mail.max_recipients
        )
        self.protocols: weakref.WeakSet[SubmissionProtocol] = weakref.WeakSet()
        self._controller = _Controller(
            self,
            host,
            port,
            server_hostname=runtime.settings.hostname,
            ident="mailstack ESMTP",
            data_size_limit=runtime.settings.mail.max_message_bytes,
            enable_SMTPUTF8=True,
            tls_context=tls_context,
            auth_required=True,
            auth_require_tls=True,
            authenticator=self.handler.authenticate,
            command_call_limit=_CALL_LIMITS,
            timeout=IDLE_TIMEOUT_SECONDS,
        )
        self._started = False

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one picked for port 0)."""
        return int(self._controller.port)

    @property
    def address(self) -> str:
        """``HOST:PORT`` as bound."""
        return f"[{self._host}]:{self.port}" if ":" in self._host else f"{self._host}:{self.port}"

    def start(self) -> None:
        """Bind and serve in a background thread; raises OSError when the address cannot be bound."""
        # aiosmtpd logs every command line at INFO, AUTH credentials and recipient addresses included.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        self._controller.start()
        self._started = True

    async def _drain(self, timeout: float) -> None:
        self.handler.closing = True
        server = self._controller.server
        if server is not None:
            server.close()
        if not await self.handler.wait_idle(timeout):
            log.warning("smtp transactions still in progress at shutdown; their clients will retry")
        for protocol in list(self.protocols):
            if protocol.transport is not None:
                protocol.transport.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, wait up to ``timeout`` seconds for stores in progress, close, join."""
        if not self._started:
            return
        self._started = False
        try:
            drained = asyncio.run_coroutine_threadsafe(self._drain(timeout), self._controller.loop)
            drained.result(timeout + 5)
        finally:
            self._controller.stop(no_assert=True)
