from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from mailstack.model import Envelope, EventType, MessageStatus
from mailstack.observability import Metrics, get_logger
from mailstack.queue import Lease, Queue
from mailstack.storage import load_envelopes, record_event, update_message_status

from ._transport import DeliveryResult, Outcome, OutgoingMail, Transport

log = get_logger("mailstack.delivery")

# Turns an envelope into signed mail; raises ValueError for a message that can never be sent.
Prepare = Callable[[Envelope], OutgoingMail]


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    batch_size: int = 50
    lease_seconds: float = 300.0
    max_attempts: int = 8
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    poll_seconds: float = 0.5


def retry_delay(attempt: int, settings: WorkerSettings, *, jitter: float | None = None) -> float:
    """Exponential backoff after ``attempt`` failed tries, capped, with up to 10% jitter."""
    delay: float = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (attempt - 1))
    spread = random.random() if jitter is None else jitter  # noqa: S311 - jitter, not security
    return delay * (1 + 0.1 * spread)


class DeliveryWorker:
    """Leases batches from the queue and delivers them; every outcome is recorded as an event.

    Delivery is at least once: a message whose relay acceptance was recorded is never sent again, and a
    worker that dies mid-batch loses nothing — its leases expire and another worker retries them.
    """

    def __init__(
        self,
        engine: Engine,
        queue: Queue,
        prepare: Prepare,
        transport: Transport,
        settings: WorkerSettings,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._queue = queue
        self._prepare = prepare
        self._transport = transport
        self._settings = settings
        self._metrics = metrics
        self._clock = clock

    def run(self, stop: threading.Event, wake: threading.Event | None = None) -> None:
        """Work until ``stop`` is set; the batch in hand is always finished first (graceful drain)."""
        while not stop.is_set():
            try:
                worked = self.run_once()
            except Exception:
                log.exception("delivery batch failed; its leases will expire and be retried")
                worked = 0
            if worked == 0:
                if wake is not None:
                    wake.wait(self._settings.poll_seconds)
                    wake.clear()
                else:
                    stop.wait(self._settings.poll_seconds)

    def run_once(self) -> int:
        """Lease, deliver and record one batch; returns how many jobs it handled."""
        leases = self._queue.lease(self._settings.batch_size, self._settings.lease_seconds, now=self._clock())
        if not leases:
            return 0
        with self._engine.connect() as conn:
            envelopes = load_envelopes(conn, [lease.message_id for lease in leases])
        to_send: list[tuple[Lease, OutgoingMail]] = []
        finished: list[tuple[Lease, DeliveryResult | None, str | None]] = []
        for lease in leases:
            found = envelopes.get(lease.message_id)
            if found is None:
                finished.append((lease, None, "message not found"))
                continue
            if found.status in (MessageStatus.SENT, MessageStatus.FAILED):
                # Delivered before a crash that lost the acknowledgement: never send twice.
                finished.append((lease, None, None))
                continue
            try:
                mail = self._prepare(found.envelope)
            except ValueError as exc:
                finished.append((lease, DeliveryResult(Outcome.FAILED, 0, f"cannot compose: {exc}"), None))
                continue
            to_send.append((lease, mail))
        results = self._transport.deliver([mail for _lease, mail in to_send]) if to_send else []
        delivered = [(lease, mail, result) for (lease, mail), result in zip(to_send, results, strict=True)]
        self._record(finished, delivered)
        if self._metrics is not None:
            now = self._clock()
            for lease, _mail, result in delivered:
                if result.outcome is Outcome.SENT:
                    self._metrics.delivery_latency.observe(now - envelopes[lease.message_id].created_at)
        return len(leases)

    def _record(
        self,
        finished: list[tuple[Lease, DeliveryResult | None, str | None]],
        delivered: list[tuple[Lease, OutgoingMail, DeliveryResult]],
    ) -> None:
        now = self._clock()
        with self._engine.begin() as conn:
            for lease, result, error in finished:
                if error is not None:
                    self._queue.dead(conn, lease, error=error)
                elif result is None:
                    self._queue.complete(conn, lease)
                else:
                    self._fail(conn, lease, result, now)
            for lease, mail, result in delivered:
                if result.outcome is Outcome.SENT:
                    if not self._queue.complete(conn, lease):
                        log.warning("lease lost before acknowledgement", message_id=lease.message_id)
                    _settle(
                        conn,
                        lease,
                        result,
                        MessageStatus.SENT,
                        EventType.SENT,
                        {},
                        now,
                        _message_id_header(mail),
                    )
                elif result.outcome is Outcome.DEFERRED and lease.attempts < self._settings.max_attempts:
                    retry_at = now + retry_delay(lease.attempts, self._settings)
                    self._queue.retry(conn, lease, available_at=retry_at, error=result.summary())
                    detail = {"attempt": lease.attempts, "retry_at": retry_at}
                    _settle(conn, lease, result, MessageStatus.DEFERRED, EventType.DEFERRED, detail, now)
                else:
                    self._fail(conn, lease, result, now)
        self._count(delivered, now)

    def _fail(self, conn: Connection, lease: Lease, result: DeliveryResult, now: float) -> None:
        # A temporary failure that reaches here has used up its attempts: a dead letter.
        exhausted = result.outcome is Outcome.DEFERRED
        if exhausted:
            self._queue.dead(conn, lease, error=result.summary())
        else:
            self._queue.complete(conn, lease)
        detail = {"attempts": lease.attempts, "dead_letter": exhausted}
        _settle(conn, lease, result, MessageStatus.FAILED, EventType.FAILED, detail, now)

    def _count(self, delivered: list[tuple[Lease, OutgoingMail, DeliveryResult]], now: float) -> None:
        if self._metrics is None:
            return
        for _lease, _mail, result in delivered:
            if result.outcome is Outcome.SENT:
                self._metrics.sent.inc()
            elif result.outcome is Outcome.DEFERRED:
                self._metrics.deferred.inc()
            else:
                self._metrics.failed.inc()


def _settle(
    conn: Connection,
    lease: Lease,
    result: DeliveryResult,
    status: MessageStatus,
    event: EventType,
    detail: Mapping[str, object],
    now: float,
    message_id_header: str | None = None,
) -> None:
    """Record a delivery outcome: the message's status and its event, with the relay's reply."""
    reply = result.summary()
    update_message_status(
        conn,
        lease.message_id,
        status,
        now=now,
        attempts=lease.attempts,
        last_reply=reply,
        message_id_header=message_id_header,
    )
    record_event(conn, lease.message_id, event, {"smtp_reply": reply, **detail}, now=now)


def _message_id_header(mail: OutgoingMail) -> str | None:
    # The composer puts Message-ID in the first header block; find it without parsing the whole message.
    head = mail.data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line[:11].lower() == b"message-id:":
            return line[11:].strip().decode("ascii", "replace")
    return None
