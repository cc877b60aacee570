"""aiosmtpd hooks: who may submit (AUTH with an API key, after STARTTLS), as whom, to whom, and what."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from email_validator import EmailNotValidError, validate_email

from mailstack.addresses import SendingDomainError, sending_domain
from mailstack.credentials import ApiKeyVerifier
from mailstack.observability import get_logger
from mailstack.runtime import Runtime
from mailstack.storage import ApiKeyRecord

from . import replies
from ._accept import SubmissionRefused, accept_submission

__all__ = ["SubmissionHandler", "SubmissionProtocol", "SubmissionSession"]

log = get_logger("mailstack.smtp")

_MAX_ADDRESS = 320


class SubmissionSession(Session):
    """aiosmtpd's session, plus whether the connection must close after the current reply."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.hang_up = False


class SubmissionProtocol(SMTP):
    """aiosmtpd's SMTP server, closing the connection after a refused smuggling attempt."""

    def _create_session(self) -> Session:
        return SubmissionSession(self.loop)

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command method name
        handler = self.event_handler
        tracked = isinstance(handler, SubmissionHandler)
        if tracked:
            handler.transactions += 1  # a shutdown waits until the reply below has been written
        try:
            await super().smtp_DATA(arg)
        finally:
            if tracked:
                handler.transactions -= 1
        session = self.session
        if isinstance(session, SubmissionSession) and session.hang_up and self.transport is not None:
            # As QUIT does: the task stops at its next await, so commands the client pipelined after
            # the refused data are never executed (the hooks also refuse them, should one get through).
            if self._handler_coroutine is not None:
                self._handler_coroutine.cancel()
            self.transport.close()


def _has_bare_line_ending(data: bytes) -> bool:
    pairs = data.count(b"\r\n")
    return data.count(b"\r") != pairs or data.count(b"\n") != pairs


def _recipient(address: str) -> str | None:
    # The HTTP API's address rules, so that both front doors accept the same recipients.
    if len(address) > _MAX_ADDRESS or not address.isprintable():
        return None
    try:
        return validate_email(address, check_deliverability=False).normalized
    except (EmailNotValidError, UnicodeError, ValueError):
        return None


def _refused(session: Session) -> str | None:
    """The reply for a session that may not go on, if any."""
    if isinstance(session, SubmissionSession) and session.hang_up:
        return replies.CLOSING
    if not session.authenticated or not isinstance(session.auth_data, ApiKeyRecord):
        return replies.AUTH_REQUIRED
    return None


class SubmissionHandler:
    """The hooks of :class:`SubmissionProtocol`; one instance serves every connection.

    Storing runs in the event loop's thread pool; each store is tracked until its commit finishes, so
    that a shutdown waits for it (see :meth:`wait_idle`) even if its client has gone away meanwhile.
    """

    def __init__(self, runtime: Runtime, verifier: ApiKeyVerifier, *, max_recipients: int) -> None:
        self._runtime = runtime
        self._verifier = verifier
        self._max_recipients = max_recipients
        self._pending: set[asyncio.Future[list[int]]] = set()
        self.transactions = 0  # DATA commands in progress, from 354 to the final reply
        self.closing = False  # set at shutdown: finished messages are refused with 421 from then on

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """aiosmtpd's authenticator: PLAIN and LOGIN with ``api_key`` / ``api_secret``."""
        if isinstance(auth_data, LoginPassword):
            try:
                public_key, secret = auth_data.login.decode("utf-8"), auth_data.password.decode("utf-8")
            except UnicodeDecodeError:
                public_key = secret = ""
            record = self._verifier.verify(public_key, secret) if public_key else None
            if record is not None and not record.allows("send"):
                # A key made for reading or list management must not become an SMTP login.
                log.info("smtp authentication refused", reason="API key lacks the send scope")
                record = None
            if record is not None:
                log.info("smtp authenticated", api_key_id=record.id, mechanism=mechanism)
                return AuthResult(success=True, auth_data=record)
        log.info("smtp authentication failed", mechanism=mechanism)
        # handled=False: aiosmtpd answers 535 5.7.8 itself.
        return AuthResult(success=False, handled=False)

    async def _may_send_from(self, domain: str) -> bool:
        # The sender rule may reload keys from the database: never on the event loop's thread.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._runtime.acceptor.may_send_from, domain)

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        """MAIL FROM: only after AUTH, only from a domain this server signs for."""
        refused = _refused(session)
        if refused is not None:
            return refused
        domain = address.rpartition("@")[2]
        try:
            sending_domain(domain)
        except SendingDomainError as exc:
            log.info("smtp sender refused", reason="not a sending domain")
            return replies.SENDING_DOMAIN_REFUSED.format(reason=replies.reason(str(exc)))
        if not await self._may_send_from(domain):
            log.info("smtp sender refused", reason="domain without DKIM key")
            return replies.SENDER_NOT_AUTHORIZED.format(domain=replies.echo(domain))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.SENDER_OK

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        """RCPT TO: a valid address, at most ``max_recipients`` distinct ones per message."""
        refused = _refused(session)
        if refused is not None:
            return refused
        recipient = _recipient(address)
        if recipient is None:
            return replies.BAD_ADDRESS
        if recipient.lower() in (r.lower() for r in envelope.rcpt_tos):
            return replies.RECIPIENT_OK  # the same recipient twice gets one copy
        if len(envelope.rcpt_tos) >= self._max_recipients:
            return replies.TOO_MANY_RECIPIENTS.format(limit=self._max_recipients)
        envelope.rcpt_tos.append(recipient)
        envelope.rcpt_options.extend(rcpt_options)
        return replies.RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        """End of DATA: refuse smuggling and malformed mail, else store, queue, and only then reply 250."""
        data = envelope.original_content or b""
        if _has_bare_line_ending(data):
            if isinstance(session, SubmissionSession):
                session.hang_up = True
            log.warning("smtp data refused", reason="bare CR or LF (smuggling attempt?)")
            return replies.BARE_LINE_ENDING
        refused = _refused(session)
        if refused is not None:
            return refused
        if self.closing:
            return replies.SHUTTING_DOWN
        api_key = session.auth_data
        assert isinstance(api_key, ApiKeyRecord)  # checked by _refused
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(
            None,
            functools.partial(accept_submission, self._runtime, api_key.id, list(envelope.rcpt_tos), data),
        )
        self._pending.add(work)
        work.add_done_callback(self._pending.discard)
        try:
            # shield: a client that hangs up mid-commit cancels this task, not the commit.
            message_ids = await asyncio.shield(work)
        except SubmissionRefused as refusal:
            log.info("smtp message refused", reply=refusal.reply[:3], api_key_id=api_key.id)
            return refusal.reply
        except Exception:
            log.exception("smtp message not stored", api_key_id=api_key.id)
            return replies.TEMPORARY_FAILURE
        log.info("smtp message accepted", api_key_id=api_key.id, message_ids=message_ids)
        return replies.accepted(message_ids)

    async def handle_exception(self, error: Exception) -> str:
        """Anything unexpected: a temporary failure, without internals in the reply."""
        log.error("smtp session error", error=type(error).__name__)
        return replies.TEMPORARY_FAILURE

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no DATA command is in progress and every store has finished; False on timeout.

        Stores are waited for even when their client has gone: the commit happens regardless.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.transactions or self._pending:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)  # shutdown only: a short poll is simpler than a condition here
        return True
