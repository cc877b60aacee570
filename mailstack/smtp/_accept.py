"""Accepting a submitted message: check it, then store and queue one message per recipient atomically."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from mailstack.addresses import SendingDomainError, sending_domain
from mailstack.compose import ComposeError, Submission, parse_submission
from mailstack.model import Address, MessageSpec
from mailstack.runtime import Runtime
from mailstack.storage import urgent_writes

from . import replies

__all__ = ["SubmissionRefused", "accept_submission"]


class SubmissionRefused(Exception):  # noqa: N818 - a refusal, with the reply to give
    """The message is refused; ``reply`` is the SMTP reply to give."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def _spec(submission: Submission, recipients: Sequence[str], data: bytes) -> MessageSpec:
    # Each envelope recipient is one message; its kind (To, Cc, or Bcc when no header names it) is what
    # the status API reports, as for API mail.
    to: list[Address] = []
    cc: list[Address] = []
    bcc: list[Address] = []
    for recipient in recipients:
        key = recipient.lower()
        target = to if key in submission.to else cc if key in submission.cc else bcc
        target.append(Address(recipient))
    return MessageSpec(
        sender=submission.sender,
        to=tuple(to),
        cc=tuple(cc),
        bcc=tuple(bcc),
        subject=submission.subject,
        raw=data,
    )


def accept_submission(runtime: Runtime, api_key_id: int, recipients: Sequence[str], data: bytes) -> list[int]:
    """Store and queue a submitted message; returns the MessageIDs in ``recipients`` order.

    ``recipients`` are the envelope recipients (validated, distinct), ``data`` the message as received.
    The rows, their ``queued`` events and the queue jobs commit in one transaction before this returns,
    so the client's 250 always means durably queued (a suppressed recipient's message is stored
    ``blocked`` instead, as for the API). Raises :class:`SubmissionRefused`.
    """
    now = time.time()
    try:
        submission = parse_submission(data, now=datetime.fromtimestamp(now, UTC))
    except ComposeError as exc:
        raise SubmissionRefused(replies.MALFORMED.format(reason=exc)) from None
    domain = submission.sender.domain
    try:
        sending_domain(domain)
    except SendingDomainError as exc:
        raise SubmissionRefused(replies.FROM_DOMAIN_REFUSED.format(reason=replies.reason(str(exc)))) from None
    if not runtime.acceptor.may_send_from(domain):
        raise SubmissionRefused(replies.FROM_NOT_AUTHORIZED.format(domain=replies.echo(domain)))
    # RFC 5321 4.4: a server that accepts a message adds its trace. No client name or address: the
    # submitter's network details are nobody else's business.
    trace = (
        f"Received: by {runtime.compose_settings.hostname} (mailstack) with ESMTPSA;\r\n"
        f" {email.utils.format_datetime(datetime.fromtimestamp(now, UTC))}\r\n"
    ).encode("ascii")
    spec = _spec(submission, recipients, trace + submission.data)
    with urgent_writes(), runtime.engine.begin() as conn:  # a client waits: before background writers
        (accepted,) = runtime.acceptor.accept(conn, api_key_id, [spec], now=now)
    runtime.acceptor.notify([accepted])
    by_address = {r.email: r.message_id for r in accepted}
    return [by_address[recipient] for recipient in recipients]
