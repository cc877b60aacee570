"""The submission listener: aiosmtpd on an event loop of its own, in a thread of ``mailstack serve``."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import weakref

from mailstack.credentials import ApiKeyVerifier
from mailstack.observability import get_logger
from mailstack.service import Runtime

from ._handler import SubmissionHandler, SubmissionProtocol

__all__ = ["SmtpIngress"]

log = get_logger("mailstack.smtp")

# RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes for the next command.
IDLE_TIMEOUT_SECONDS = 300.0
# Wrong credentials are answered 535; the fourth AUTH on one connection closes it (421), which makes
# guessing secrets cost a TLS handshake per three tries. Other commands are practically unlimited.
_CALL_LIMITS = {"AUTH": 3, "*": 1_000_000}


class SmtpIngress:
    """SMTP submission on ``host:port``: STARTTLS, then AUTH (PLAIN/LOGIN, API key and secret), then mail.

    Accepted messages are stored and queued like API messages before the client gets its 250.
    :meth:`start` returns once the socket is bound (``port`` 0 picks a free one, see :attr:`port`);
    :meth:`stop` stops accepting, lets messages being stored commit and their replies go out, then
    closes every connection.
    """

    def __init__(self, runtime: Runtime, host: str, port: int, tls_context: ssl.SSLContext) -> None:
        self._runtime = runtime
        self._host = host
        self._port = port
        self._tls = tls_context
        self._handler = SubmissionHandler(
            runtime, ApiKeyVerifier(runtime.engine), max_recipients=runtime.settings.mail.max_recipients
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._protocols: weakref.WeakSet[SubmissionProtocol] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one picked for port 0)."""
        return self._port

    @property
    def address(self) -> str:
        """``HOST:PORT`` as bound."""
        return f"[{self._host}]:{self._port}" if ":" in self._host else f"{self._host}:{self._port}"

    def _protocol(self) -> SubmissionProtocol:
        assert self._loop is not None
        protocol = SubmissionProtocol(
            self._handler,
            hostname=self._runtime.settings.hostname,
            ident="mailstack ESMTP",
            data_size_limit=self._runtime.settings.mail.max_message_bytes,
            enable_SMTPUTF8=True,
            tls_context=self._tls,
            auth_required=True,
            auth_require_tls=True,
            authenticator=self._handler.authenticate,
            command_call_limit=_CALL_LIMITS,
            timeout=IDLE_TIMEOUT_SECONDS,
            loop=self._loop,
        )
        self._protocols.add(protocol)
        return protocol

    def start(self) -> None:
        """Bind and serve in a background thread; raises OSError when the address cannot be bound."""
        # aiosmtpd logs every command line at INFO, AUTH credentials and recipient addresses included.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        self._thread = threading.Thread(target=self._run, name="smtp-ingress", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                loop.create_server(self._protocol, self._host, self._port, reuse_address=True)
            )
        except BaseException as exc:
            self._error = exc
            loop.close()
            self._ready.set()
            return
        self._port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks))
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _drain(self, timeout: float) -> None:
        assert self._server is not None
        self._handler.closing = True
        self._server.close()
        if not await self._handler.wait_idle(timeout):
            log.warning("smtp transactions still in progress at shutdown; their clients will retry")
        for protocol in list(self._protocols):
            if protocol.transport is not None:
                protocol.transport.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, wait up to ``timeout`` seconds for stores in progress, close, join."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._drain(timeout), loop).result(timeout + 5)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout + 5)
