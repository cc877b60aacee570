from __future__ import annotations

import threading
from collections.abc import Sequence

from sqlalchemy import Connection

from mailstack.domains import SignerCache
from mailstack.model import MessageSpec
from mailstack.observability import Metrics
from mailstack.privacy import Vault
from mailstack.queue import Queue
from mailstack.storage import AcceptedRecipient, insert_messages


class Acceptor:
    """Stores and queues accepted messages; every entry point shares it and its sender rule."""

    def __init__(
        self, queue: Queue, vault: Vault, signers: SignerCache, metrics: Metrics, wake: threading.Event
    ) -> None:
        self._queue = queue
        self._vault = vault
        self._signers = signers
        self._metrics = metrics
        self._wake = wake

    def may_send_from(self, domain: str) -> bool:
        """Whether mail from ``domain`` may be accepted (see :meth:`SignerCache.may_send_from`)."""
        return self._signers.may_send_from(domain)

    def accept(
        self, conn: Connection, api_key_id: int, specs: Sequence[MessageSpec], *, now: float
    ) -> list[list[AcceptedRecipient]]:
        """Store messages and queue them in the caller's transaction; call :meth:`notify` after commit.

        A suppressed recipient's message is stored as blocked (it still gets its MessageID, as with
        Mailjet) and never queued.
        """
        accepted = insert_messages(conn, api_key_id, specs, now=now, vault=self._vault) if specs else []
        queued = [r.message_id for group in accepted for r in group if not r.blocked]
        self._queue.enqueue(conn, queued, available_at=now)
        return accepted

    def notify(self, accepted: Sequence[Sequence[AcceptedRecipient]]) -> None:
        """Count accepted recipients and wake the workers if any were queued (after the commit)."""
        self._metrics.accepted.inc(sum(len(group) for group in accepted))
        if any(not r.blocked for group in accepted for r in group):
            self._wake.set()
