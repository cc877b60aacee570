from __future__ import annotations

import contextlib
import functools
import heapq
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from mailstack.model import FINAL_STATUSES, Envelope, EventType, MessageStatus
from mailstack.observability import Metrics, get_logger
from mailstack.queue import Lease, LeaseOwner, Queue
from mailstack.storage import (
    OutageNotice,
    SentRecord,
    Suppression,
    Vault,
    active_suppressions,
    load_envelopes,
    preblocked_detail,
    reading,
    record_event,
    record_sent,
    suppression_key,
    update_message_status,
)
from mailstack.throttle import Request, Throttle

from ._group_commit import GroupCommit
from ._journal import Journal, JournalEntry
from ._prepare import Undeliverable
from ._transport import DeliveryResult, Outcome, OutgoingMail, Transport

_ENHANCED_STATUS = re.compile(r"\s*([245]\.\d{1,3}\.\d{1,3})\b")

log = get_logger("mailstack.delivery")

# How many relay outcomes a worker may have delivered and not yet committed, and how long the first of
# them waits for others to share its commit: what a node lost for good (its journal with it) sends
# again, besides its open transactions. A database slower than that paces delivery.
MAX_UNCOMMITTED = 32
COMMIT_WINDOW_SECONDS = 0.25
# How many wake-up times of throttled messages one worker remembers.
_MAX_WAKEUPS = 10000
# Turns an envelope into signed mail (a Preparer); raises Undeliverable for a message that can never go.
Prepare = Callable[[Envelope], OutgoingMail]


@dataclass(frozen=True, slots=True)
class _Delivered:
    """A relay's final answer for a leased message."""

    lease: Lease
    message_id_header: str | None
    result: DeliveryResult
    created_at: float | None  # when the message was accepted (for the latency metric), if known


@dataclass(frozen=True, slots=True)
class _Batch:
    """What a batch left to record once the relay had answered (all of it while the database is away)."""

    finished: list[tuple[Lease, DeliveryResult | None, str | None]]
    delivered: list[_Delivered]
    blocked: list[tuple[Lease, Suppression]]


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
        *,
        throttle: Throttle | None = None,
        ip_transports: Mapping[str, Transport] | None = None,
        vault: Vault,
        journal: Journal | None = None,
        owner: LeaseOwner | None = None,
    ) -> None:
        """``throttle`` paces delivery; ``ip_transports`` maps a sending IP the throttle picks to the relay
        that sends from it (IPs not in it, and messages without one, use ``transport``); ``vault`` opens
        the sealed recipients and contents and seals the relay's replies; ``journal`` keeps each relay
        outcome from the moment it arrives until its batch is all committed (see :mod:`._journal`); ``owner``
        is the node and incarnation its leases are held by (see :mod:`._recovery`)."""
        self._engine = engine
        self._vault = vault
        self._queue = queue
        self._prepare = prepare
        self._transport = transport
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._throttle = throttle
        self._ip_transports = dict(ip_transports or {})
        self._journal = journal
        self._owner = owner
        self._outage = OutageNotice(log, "delivery batch")
        self._pending: _Batch | None = None  # delivered, not yet recorded (the database was away)
        # Each relay answer is committed while the rest of the batch goes out (see ._group_commit).
        self._outcomes: GroupCommit[_Delivered] = GroupCommit(
            self._commit_delivered,
            max_lag=MAX_UNCOMMITTED,
            window_seconds=COMMIT_WINDOW_SECONDS,
            name="delivery-outcomes",
        )
        self._abandoned: list[Lease] = []  # leased, not worked on, not yet given back
        # When the messages this worker put back come due (a heap): an idle worker wakes for each.
        self._due: list[float] = []

    def run(self, stop: threading.Event, wake: threading.Event | None = None) -> None:
        """Work until ``stop`` is set; the batch in hand is always finished first (graceful drain)."""
        while not stop.is_set():
            try:
                worked = self.run_once()
                self._outage.succeeded()
            except Exception as exc:  # the outcomes in hand are kept and recorded next round
                self._outage.failed(exc)
                worked = 0
            if worked == 0:
                idle = self._idle_seconds()
                if wake is not None:
                    wake.wait(idle)
                    wake.clear()
                else:
                    stop.wait(idle)

    def _idle_seconds(self) -> float:
        # A throttled message comes back when its token does; a worker that only polled every
        # poll_seconds would leave tokens unused (a bucket keeps no more than its burst) and then send
        # half a second's worth at once. Never below 10 ms, so float noise cannot make a busy loop.
        now = self._clock()
        while self._due and self._due[0] <= now:
            heapq.heappop(self._due)
        if not self._due:
            return self._settings.poll_seconds
        return min(self._settings.poll_seconds, max(0.01, self._due[0] - now))

    def run_once(self) -> int:
        """Lease, deliver and record one batch; returns how many jobs it handled.

        Outcomes that cannot be written (the database is away) are kept, with their journal, and written
        before anything else is leased; leases that could not be worked on are given back.
        """
        self._settle_pending()
        if self._abandoned:
            self._queue.release(self._abandoned, now=self._clock())
            self._abandoned = []
        leases = self._queue.lease(
            self._settings.batch_size, self._settings.lease_seconds, now=self._clock(), owner=self._owner
        )
        if not leases:
            return 0
        try:
            self._pending = self._work(leases)
        except BaseException:
            # Nothing was sent (the relay never raises): give the jobs back now rather than leaving them
            # leased (the keeper would renew them) — later if the database is away.
            self._abandoned = leases
            with contextlib.suppress(Exception):
                self._queue.release(leases, now=self._clock())
                self._abandoned = []
            raise
        self._settle_pending()
        return len(leases)

    def _settle_pending(self) -> None:
        batch = self._pending
        if batch is None:
            return
        self._record(batch.finished, batch.delivered, batch.blocked)
        self._pending = None
        if self._journal is not None:
            self._journal.clear()

    def _work(self, leases: list[Lease]) -> _Batch:
        """Check, throttle, compose, sign and deliver ``leases``; returns what is left to record."""
        now = self._clock()
        with reading(self._engine) as conn:
            envelopes = load_envelopes(conn, [lease.message_id for lease in leases], vault=self._vault)
            # Suppressed since it was queued (a hard bounce, a complaint, an unsubscribe): never send.
            suppressed = active_suppressions(
                conn,
                [(p.envelope.recipient.email, p.envelope.spec.sender.domain) for p in envelopes.values()],
                now=now,
                vault=self._vault,
            )
        candidates: list[tuple[Lease, Envelope]] = []
        finished: list[tuple[Lease, DeliveryResult | None, str | None]] = []
        blocked: list[tuple[Lease, Suppression]] = []
        for lease in leases:
            found = envelopes.get(lease.message_id)
            if found is None:
                finished.append((lease, None, "message not found"))
                continue
            if found.status in FINAL_STATUSES:
                # Delivered before a crash that lost the acknowledgement (or blocked, or already bounced
                # back according to Postfix's log): never send twice.
                finished.append((lease, None, None))
                continue
            entry = suppressed.get(
                suppression_key(found.envelope.recipient.email, found.envelope.spec.sender.email)
            )
            if entry is not None:
                blocked.append((lease, entry))
                continue
            candidates.append((lease, found.envelope))
        # Throttle before composing: signing mail that is put back would be wasted work.
        allowed, routes = self._throttled(candidates)
        to_send: list[tuple[Lease, OutgoingMail]] = []
        for lease, envelope in allowed:
            try:
                mail = self._prepare(envelope)
            except Undeliverable as exc:
                finished.append((lease, DeliveryResult(Outcome.FAILED, 0, f"cannot compose: {exc}"), None))
                continue
            except Exception as exc:
                # A malfunction (ours or a dependency's), not a verdict on the message: retried like a
                # temporary failure, so a bug fixed by an upgrade does not cost the mail.
                log.exception("preparing a message failed; it will be retried", message_id=lease.message_id)
                result = DeliveryResult(Outcome.DEFERRED, 0, f"cannot prepare: {type(exc).__name__}")
                finished.append((lease, result, None))
                continue
            to_send.append((lease, mail))
        created_at = {message_id: found.created_at for message_id, found in envelopes.items()}
        headers = [_message_id_header(mail) for _lease, mail in to_send]
        answered: set[int] = set()

        def delivered(index: int, result: DeliveryResult) -> _Delivered:
            lease = to_send[index][0]
            return _Delivered(lease, headers[index], result, created_at.get(lease.message_id))

        def on_result(index: int, result: DeliveryResult) -> None:
            # The moment the relay answers: journaled (a restart replays it), then committed soon.
            outcome = delivered(index, result)
            answered.add(index)
            if self._journal is not None:
                lease = outcome.lease
                self._journal.append(
                    JournalEntry(
                        lease.job_id, lease.token, lease.message_id, lease.attempts, result, headers[index]
                    )
                )
            self._outcomes.add(outcome)

        try:
            results = self._deliver(to_send, routes, on_result)
        finally:
            uncommitted = self._outcomes.drain()
        # A transport that did not report a result as it came: recorded with the batch.
        uncommitted += [delivered(i, result) for i, result in enumerate(results) if i not in answered]
        return _Batch(finished, uncommitted, blocked)

    def _throttled(
        self, candidates: list[tuple[Lease, Envelope]]
    ) -> tuple[list[tuple[Lease, Envelope]], dict[int, str]]:
        """What may go now, with each one's sending IP; the rest goes back to the queue until its slot."""
        if self._throttle is None or not candidates:
            return candidates, {}
        requests = [Request(lease.message_id, envelope.recipient.domain) for lease, envelope in candidates]
        decisions = self._throttle.acquire(requests, now=self._clock())
        allowed: list[tuple[Lease, Envelope]] = []
        postponed: list[tuple[Lease, float]] = []
        routes: dict[int, str] = {}
        for (lease, envelope), decision in zip(candidates, decisions, strict=True):
            if decision.send:
                allowed.append((lease, envelope))
                if decision.ip is not None:
                    routes[lease.message_id] = decision.ip
            else:
                postponed.append((lease, decision.until))
        if postponed:
            # Put back at once, before sending the rest: a slow relay must not make these miss their turn.
            # The attempt is not counted, and there is no event or status change: Mailjet exposes no
            # throttling event, and one per postponement would flood the message history.
            with self._engine.begin() as conn:
                for lease, until in postponed:
                    self._queue.postpone(conn, lease, available_at=until)
            for _lease, until in postponed:
                if len(self._due) < _MAX_WAKEUPS:  # a huge backlog: later batches add the later ones
                    heapq.heappush(self._due, until)
        return allowed, routes

    def _deliver(
        self,
        to_send: list[tuple[Lease, OutgoingMail]],
        routes: Mapping[int, str],
        on_result: Callable[[int, DeliveryResult], None],
    ) -> list[DeliveryResult]:
        """Each message through the relay of its sending IP; results in the order of ``to_send``, each
        also given to ``on_result`` (with its index in ``to_send``) as soon as the relay answers."""
        groups: dict[str, list[int]] = {}
        for index, (lease, _mail) in enumerate(to_send):
            groups.setdefault(routes.get(lease.message_id, ""), []).append(index)
        results: dict[int, DeliveryResult] = {}
        for ip, indexes in groups.items():
            transport = self._ip_transports.get(ip, self._transport)
            in_batch = functools.partial(_report_in_batch, on_result, indexes)
            outcomes = transport.deliver([to_send[index][1] for index in indexes], in_batch)
            results.update(zip(indexes, outcomes, strict=True))
        return [results[index] for index in range(len(to_send))]

    def _commit_delivered(self, delivered: list[_Delivered]) -> None:
        self._record([], delivered, [])
        self._queue.flush()  # on this (the writer's) thread, now that the outcomes are committed

    def _record(
        self,
        finished: list[tuple[Lease, DeliveryResult | None, str | None]],
        delivered: list[_Delivered],
        blocked: list[tuple[Lease, Suppression]],
    ) -> None:
        now = self._clock()
        failed = deferred = 0
        with self._engine.begin() as conn:
            for lease, entry in blocked:
                self._queue.complete(conn, lease)
                update_message_status(
                    conn, lease.message_id, MessageStatus.BLOCKED, now=now, vault=self._vault
                )
                record_event(
                    conn,
                    lease.message_id,
                    EventType.BLOCKED,
                    preblocked_detail(entry),
                    now=now,
                    vault=self._vault,
                )
            for lease, result, error in finished:
                if error is not None:
                    self._queue.dead(conn, lease, error=error)
                elif result is None:
                    self._queue.complete(conn, lease)
                elif self._retry_or_fail(conn, lease, result, now) is MessageStatus.DEFERRED:
                    deferred += 1
                else:
                    failed += 1
            sent: list[SentRecord] = []
            sent_leases: list[Lease] = []
            for item in delivered:
                lease, result = item.lease, item.result
                if result.outcome is Outcome.SENT:
                    sent_leases.append(lease)
                    sent.append(
                        SentRecord(lease.message_id, lease.attempts, result.summary(), item.message_id_header)
                    )
                elif self._retry_or_fail(conn, lease, result, now) is MessageStatus.DEFERRED:
                    deferred += 1
                else:
                    failed += 1
            for job_id in self._queue.complete_many(conn, sent_leases):
                log.warning("lease lost before acknowledgement", job_id=job_id)
            record_sent(conn, sent, now=now, vault=self._vault)
        # Counted once committed, by what the message became: a deferral that used up its attempts
        # and a message that could not be composed are failures too.
        if self._metrics is not None:
            self._metrics.sent.inc(len(sent))
            self._metrics.deferred.inc(deferred)
            self._metrics.failed.inc(failed)
            for item in delivered:
                if item.result.outcome is Outcome.SENT and item.created_at is not None:
                    self._metrics.delivery_latency.observe(now - item.created_at)

    def _retry_or_fail(
        self, conn: Connection, lease: Lease, result: DeliveryResult, now: float
    ) -> MessageStatus:
        """Deferred with a retry time while attempts remain, failed otherwise; returns which."""
        if result.outcome is Outcome.DEFERRED and lease.attempts < self._settings.max_attempts:
            retry_at = now + retry_delay(lease.attempts, self._settings)
            self._queue.retry(conn, lease, available_at=retry_at, error=_job_error(result))
            detail = {"attempt": lease.attempts, "retry_at": retry_at}
            _settle(conn, self._vault, lease, result, MessageStatus.DEFERRED, EventType.DEFERRED, detail, now)
            return MessageStatus.DEFERRED
        self._fail(conn, lease, result, now)
        return MessageStatus.FAILED

    def _fail(self, conn: Connection, lease: Lease, result: DeliveryResult, now: float) -> None:
        # A temporary failure that reaches here has used up its attempts: a dead letter.
        exhausted = result.outcome is Outcome.DEFERRED
        if exhausted:
            self._queue.dead(conn, lease, error=_job_error(result))
        else:
            self._queue.complete(conn, lease)
        detail = {"attempts": lease.attempts, "dead_letter": exhausted}
        _settle(conn, self._vault, lease, result, MessageStatus.FAILED, EventType.FAILED, detail, now)

    def replay(self, entries: Sequence[JournalEntry]) -> int:
        """Record the outcomes a previous run journaled but did not commit; returns how many were new.

        Only jobs still leased under the journaled token are recorded: the others were committed before
        the crash (or taken over by another worker, which then owns their outcome).
        """
        if not entries:
            return 0
        now = self._clock()
        journaled = [
            _Delivered(
                Lease(e.job_id, e.message_id, e.attempts, e.token, now), e.message_id_header, e.result, None
            )
            for e in entries
        ]
        with self._engine.connect() as conn:
            owned = self._queue.owned(conn, [item.lease for item in journaled])
        delivered = [item for item in journaled if item.lease.job_id in owned]
        self._record([], delivered, [])
        self._queue.flush()
        return len(delivered)


def _report_in_batch(
    on_result: Callable[[int, DeliveryResult], None],
    indexes: list[int],
    position: int,
    result: DeliveryResult,
) -> None:
    # A transport numbers the messages it was given; the batch numbers all of them.
    on_result(indexes[position], result)


def _settle(
    conn: Connection,
    vault: Vault,
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
        vault=vault,
    )
    record_event(conn, lease.message_id, event, {"smtp_reply": reply, **detail}, now=now, vault=vault)


def _job_error(result: DeliveryResult) -> str:
    """What a queue job keeps of a failure: the codes only. Replies quote addresses; the whole reply is
    kept sealed with the message (its last reply and its event)."""
    status = _ENHANCED_STATUS.match(result.reply)
    codes = " ".join(
        p for p in (str(result.code) if result.code else "", status.group(1) if status else "") if p
    )
    return f"{codes or result.outcome.value} (reply sealed with the message)"


def _message_id_header(mail: OutgoingMail) -> str | None:
    # The composer puts Message-ID in the first header block; find it without parsing the whole message.
    head = mail.data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line[:11].lower() == b"message-id:":
            return line[11:].strip().decode("ascii", "replace")
    return None
