"""Amazon SQS as the delivery queue of an AWS fleet, behind the :class:`~mailstack.queue.Queue` interface.

Guarantee: **at least once**, as with the SQL backends; never lost, rarely twice.

Enqueue and the database transaction — a transactional outbox
    The SQL backends insert the job inside the caller's transaction, so accepting a message and queueing it
    commit together. SQS cannot join that transaction: sending before the commit could hand a worker a
    message whose rows are not visible yet (or never will be, after a rollback), and sending after the
    commit loses the job when the process dies in between. So :meth:`SqsQueue.enqueue` writes the job to
    the database's own queue table inside the caller's transaction — the *outbox*, exactly what the SQL
    backend does — and a relay moves committed outbox rows to SQS: it claims them with a short lease
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so the relays of a whole fleet never claim the same row at
    once), sends them in batches of ten, and deletes a row only after SQS acknowledged its message. A
    relay that dies between SQS's acknowledgement and that delete leaves the row leased; the lease expires
    and the row is sent again: a duplicate SQS message, never a lost one. Every :meth:`SqsQueue.lease`
    runs the relay first; :meth:`SqsQueue.relay` runs it on its own. Jobs due in the future stay in the
    outbox until due, so SQS's 15-minute ``DelaySeconds`` limit never matters for them.

Leases
    A receive is a lease: the visibility timeout is the lease time, the receipt handle is the lease token.
    ``attempts`` is the receive count (``ApproximateReceiveCount``) plus the attempts carried in the
    message body, so a job that is released or postponed (re-sent as a fresh message) keeps its count.

Acknowledgements follow the commit
    The worker calls :meth:`~SqsQueue.complete` and :meth:`~SqsQueue.dead` inside the transaction that
    records the message's outcome. Deleting the SQS message there, before the commit, would lose the job if
    that commit then failed. Instead they are remembered (per thread) and carried out by the same thread's
    next :meth:`~SqsQueue.lease` or :meth:`~SqsQueue.flush` (the delivery worker's outcome writer calls it
    after each of its commits), i.e. after the commit, and only if the
    database shows the outcome: the message is no longer ``queued`` or ``deferred`` (or no longer exists,
    for a dead letter). When the transaction rolled back, nothing is acknowledged: the visibility timeout
    expires and the job is leased again, as an unacknowledged SQL lease would be. :meth:`~SqsQueue.retry`
    only delays the message (``ChangeMessageVisibility``, at most SQS's 12 hours after the receive), which
    is harmless whether or not the transaction commits, so it is done at once. Acknowledgements still
    pending when a process stops are not lost work: the message is settled, so its next receiver
    acknowledges it without sending.

Duplicates
    SQS standard queues deliver at least once, and the relay may send a job twice. The delivery worker
    acknowledges without sending any job whose message is already settled, so a duplicate costs a receive.
    Two copies leased at the same moment by two workers could both be sent: a window the SQL backends do
    not have (there a job is one row). It opens only when SQS itself delivers twice or a relay or re-send
    died half-way; the stable Message-ID lets receivers drop the second copy.

Dead letters
    :meth:`~SqsQueue.dead` moves the job to the dead-letter queue (with the error as a message attribute)
    and deletes it from the main queue. The main queue's redrive policy (set up by ``infra/``) is the safety
    net for jobs that crash their worker every time and so never reach ``dead``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select

from mailstack.model import PENDING_STATUSES
from mailstack.observability import get_logger
from mailstack.storage import schema

from ._base import Lease, LeaseOwner, Queue, QueueStats
from ._sql import queue_for as sql_queue_for

log = get_logger("mailstack.queue.sqs")

# SQS limits: batch operations take 10 entries; a message may stay invisible at most 12 hours after the
# receive that leased it; DelaySeconds is at most 15 minutes.
_BATCH = 10
_MAX_VISIBILITY = 43_200
_MAX_DELAY = 900
# How long the relay holds outbox rows it is sending; a relay that dies is replaced after this.
OUTBOX_LEASE_SECONDS = 60.0
# Messages not settled yet: a job for them must stay in the queue.
_UNSETTLED = frozenset(status.value for status in PENDING_STATUSES)
_AWS_QUEUE_URL = re.compile(r"^https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")


@dataclass(frozen=True, slots=True)
class _Ack:
    """A complete/dead waiting for its transaction's commit."""

    lease: Lease
    dead_error: str | None  # None: complete; otherwise: move to the dead letters with this error


@dataclass
class _ThreadState:
    acks: list[_Ack] = field(default_factory=list)


def region_from_queue_url(url: str) -> str | None:
    """The AWS region in an SQS queue URL (``https://sqs.<region>.amazonaws.com/...``), else None."""
    match = _AWS_QUEUE_URL.match(url)
    return match.group(1) if match else None


def sqs_client(queue_url: str) -> Any:
    """A boto3 SQS client for ``queue_url``: its region from the URL, credentials and endpoint overrides
    (``AWS_ENDPOINT_URL_SQS``) from the usual boto3 sources (instance profile on AWS)."""
    import boto3  # type: ignore[import-untyped]  # noqa: PLC0415 - only the SQS backend needs boto3

    region = region_from_queue_url(queue_url)
    return boto3.client("sqs", region_name=region) if region else boto3.client("sqs")


class SqsQueue:
    """The delivery queue on Amazon SQS, with a transactional outbox in the database (see the module)."""

    def __init__(
        self,
        engine: Engine,
        queue_url: str,
        *,
        dead_letter_url: str | None = None,
        client: Any = None,
        outbox: Queue | None = None,
        clock: Callable[[], float] = time.time,
        wait_seconds: int = 1,
    ) -> None:
        """``dead_letter_url`` defaults to the target of the queue's redrive policy; ``outbox`` to the
        SQL queue of ``engine`` (the ``queue_jobs`` table); ``client`` to :func:`sqs_client`.

        ``wait_seconds`` is SQS long polling on an empty queue: an idle worker thread then asks SQS about
        once every ``wait_seconds`` + its poll interval instead of twice a second, and SQS bills requests.
        """
        self._engine = engine
        self._url = queue_url
        self._client = client if client is not None else sqs_client(queue_url)
        self._outbox = outbox if outbox is not None else sql_queue_for(engine)
        self._clock = clock
        self._wait = max(0, min(20, wait_seconds))
        self._local = threading.local()
        self._received_lock = threading.Lock()
        # Receipt handle → when it was received: retries may delay a message at most 12 h after that.
        self._received: dict[str, float] = {}
        self._dead_url = dead_letter_url or self._discover_dead_letter_url()

    def _discover_dead_letter_url(self) -> str:
        attributes = self._client.get_queue_attributes(QueueUrl=self._url, AttributeNames=["RedrivePolicy"])
        policy = attributes.get("Attributes", {}).get("RedrivePolicy")
        if not policy:
            raise ValueError(
                f"SQS queue {self._url} has no redrive policy: give the dead-letter queue's URL "
                "(queue.sqs_dead_letter_url)"
            )
        arn = json.loads(policy)["deadLetterTargetArn"]
        account, name = arn.split(":")[4], arn.split(":")[5]
        url: str = self._client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        return url

    @property
    def url(self) -> str:
        """The main queue's URL."""
        return self._url

    @property
    def dead_letter_url(self) -> str:
        """The dead-letter queue's URL."""
        return self._dead_url

    # --- producing ------------------------------------------------------------------------------------

    def enqueue(self, conn: Connection, message_ids: Sequence[int], *, available_at: float) -> None:
        """Write the jobs to the outbox in the caller's transaction; the relay sends them once committed."""
        self._outbox.enqueue(conn, message_ids, available_at=available_at)

    def relay(self, *, limit: int = 100) -> int:
        """Move up to ``limit`` committed, due outbox jobs to SQS; returns how many were sent."""
        now = self._clock()
        claimed = self._outbox.lease(limit, OUTBOX_LEASE_SECONDS, now=now)
        if not claimed:
            return 0
        sent: list[Lease] = []
        for chunk in _chunks(claimed, _BATCH):
            entries = [
                {"Id": str(index), "MessageBody": _body(row.message_id, row.job_id, row.attempts - 1)}
                for index, row in enumerate(chunk)
            ]
            try:
                response = self._client.send_message_batch(QueueUrl=self._url, Entries=entries)
            except Exception as exc:  # the rows stay leased in the outbox and are sent again later
                log.warning("sqs relay failed; outbox jobs will be retried", error=str(exc))
                break
            for success in response.get("Successful", []):
                sent.append(chunk[int(success["Id"])])
            for failure in response.get("Failed", []):
                log.warning("sqs refused an outbox job; it will be retried", code=failure.get("Code"))
        if sent:
            with self._engine.begin() as conn:
                for row in sent:
                    self._outbox.complete(conn, row)
        return len(sent)

    # --- consuming ------------------------------------------------------------------------------------

    def lease(
        self, limit: int, lease_seconds: float, *, now: float, owner: LeaseOwner | None = None
    ) -> list[Lease]:
        """Acknowledge this thread's committed outcomes, relay the outbox, then receive up to ``limit``."""
        self.flush()
        self.relay()
        visibility = max(1, min(_MAX_VISIBILITY, math.ceil(lease_seconds)))
        leases: list[Lease] = []
        while len(leases) < limit:
            want = min(_BATCH, limit - len(leases))
            response = self._client.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=want,
                VisibilityTimeout=visibility,
                # Wait only while nothing is in hand: a partial batch goes to work at once.
                WaitTimeSeconds=0 if leases else self._wait,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            messages = response.get("Messages", [])
            for message in messages:
                leases.append(_lease_of(message, now + visibility))
            if len(messages) < want:
                break
        received_at = self._clock()
        with self._received_lock:
            for lease in leases:
                self._received[lease.token] = received_at
            # Forget receipts nobody acknowledged (a batch that raised): SQS has expired them anyway.
            stale = [token for token, at in self._received.items() if received_at - at > _MAX_VISIBILITY]
            for token in stale:
                del self._received[token]
        leases.sort(key=lambda lease: lease.job_id)
        return leases

    def renew(self, owner: LeaseOwner, lease_seconds: float, *, now: float) -> int:
        """SQS visibility timeouts are not renewed: a batch must finish within the lease time."""
        return 0

    def reclaim(self, owner: LeaseOwner, *, now: float) -> int:
        """SQS knows no owners: a dead process's messages come back when their visibility ends."""
        return 0

    def owned(self, conn: Connection, leases: Sequence[Lease]) -> set[int]:
        """Receipts of this process that SQS has not expired yet; a previous process's cannot be checked
        (they are retried when their visibility timeout ends)."""
        now = self._clock()
        with self._received_lock:
            return {
                lease.job_id for lease in leases if lease.token in self._received and now < lease.expires_at
            }

    def complete_many(self, conn: Connection, leases: Sequence[Lease]) -> set[int]:
        """Each acknowledgement is its own SQS call anyway: complete them one by one."""
        return {lease.job_id for lease in leases if not self.complete(conn, lease)}

    def complete(self, conn: Connection, lease: Lease) -> bool:
        """Delete the message once the caller's transaction has committed the outcome (see the module)."""
        self._thread_state().acks.append(_Ack(lease, None))
        return self._clock() < lease.expires_at

    def dead(self, conn: Connection, lease: Lease, *, error: str) -> bool:
        """Move the job to the dead-letter queue once the caller's transaction has committed."""
        self._thread_state().acks.append(_Ack(lease, error[:2000] or "dead"))
        return self._clock() < lease.expires_at

    def retry(self, conn: Connection, lease: Lease, *, available_at: float, error: str) -> bool:
        """Keep the message invisible until ``available_at`` (capped at 12 h after its receive)."""
        now = self._clock()
        with self._received_lock:
            received_at = self._received.pop(lease.token, now)
        # The cap counts from the receive; a minute of margin for clock skew between us and SQS.
        allowed = _MAX_VISIBILITY - (now - received_at) - 60
        delay = max(0, min(math.ceil(available_at - now), int(allowed)))
        try:
            self._client.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=lease.token, VisibilityTimeout=delay
            )
        except Exception as exc:  # the lease expired: another worker has the job now
            log.warning("sqs retry on a lost lease", message_id=lease.message_id, error=str(exc))
            return False
        return True

    def postpone(self, conn: Connection, lease: Lease, *, available_at: float) -> bool:
        """Put the job back untried until ``available_at``: re-sent as a fresh message carrying its attempt
        count (the receive count must not grow while throttled), delayed by at most 15 minutes — a job
        postponed longer comes back early and is postponed again by the throttle."""
        delay = max(0, min(_MAX_DELAY, math.ceil(available_at - self._clock())))
        return self._resend(lease, delay)

    def release(self, leases: Sequence[Lease], *, now: float) -> None:
        """Give back leases not worked on (shutdown): due at once, the attempt not counted."""
        self.flush()
        for lease in leases:
            self._resend(lease, 0)

    def flush(self) -> None:
        """Carry out this thread's pending acknowledgements whose outcome the database shows."""
        state = self._thread_state()
        acks, state.acks = state.acks, []
        if not acks:
            return
        ids = {ack.lease.message_id for ack in acks}
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(schema.messages.c.id, schema.messages.c.status).where(schema.messages.c.id.in_(ids))
            ).all()
        status = {row.id: row.status for row in rows}
        settled: list[_Ack] = []
        for ack in acks:
            # A message that no longer exists needs no job either; one still queued or deferred means the
            # transaction that recorded its outcome rolled back, so the job must be leased again.
            if status.get(ack.lease.message_id) in _UNSETTLED:
                log.warning("outcome not committed; job left to be retried", message_id=ack.lease.message_id)
            else:
                settled.append(ack)
        for ack in settled:
            if ack.dead_error is not None:
                self._send_dead(ack.lease, ack.dead_error)
        self._delete([ack.lease for ack in settled])

    def stats(self, *, now: float) -> QueueStats:
        """Approximate counts from SQS (leased includes messages delayed for a retry) plus the outbox."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        main = self._client.get_queue_attributes(QueueUrl=self._url, AttributeNames=names)["Attributes"]
        dead = self._client.get_queue_attributes(
            QueueUrl=self._dead_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        outbox = self._outbox.stats(now=now)
        return QueueStats(
            ready=int(main.get("ApproximateNumberOfMessages", 0))
            + int(main.get("ApproximateNumberOfMessagesDelayed", 0))
            + outbox.ready,
            leased=int(main.get("ApproximateNumberOfMessagesNotVisible", 0)) + outbox.leased,
            dead=int(dead.get("ApproximateNumberOfMessages", 0)) + outbox.dead,
            # SQS does not say when its oldest message was due (CloudWatch's ApproximateAgeOfOldestMessage
            # does, and infra/ alarms on it); the outbox's oldest job is what is known here.
            oldest_due_at=outbox.oldest_due_at,
        )

    # --- internals ------------------------------------------------------------------------------------

    def _thread_state(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is None:
            state = _ThreadState()
            self._local.state = state
        return state

    def _forget(self, leases: Iterable[Lease]) -> None:
        with self._received_lock:
            for lease in leases:
                self._received.pop(lease.token, None)

    def _resend(self, lease: Lease, delay: int) -> bool:
        # Send the fresh copy first: a crash in between leaves a duplicate, never a lost job.
        try:
            self._client.send_message(
                QueueUrl=self._url,
                MessageBody=_body(lease.message_id, lease.job_id, lease.attempts - 1),
                DelaySeconds=delay,
            )
        except Exception as exc:  # the lease stays; it expires and the job is retried
            log.warning("sqs re-send failed", message_id=lease.message_id, error=str(exc))
            return False
        self._delete([lease])
        return self._clock() < lease.expires_at

    def _send_dead(self, lease: Lease, error: str) -> None:
        self._client.send_message(
            QueueUrl=self._dead_url,
            MessageBody=_body(lease.message_id, lease.job_id, lease.attempts),
            MessageAttributes={"error": {"DataType": "String", "StringValue": error}},
        )

    def _delete(self, leases: Sequence[Lease]) -> None:
        self._forget(leases)
        for chunk in _chunks(list(leases), _BATCH):
            entries = [{"Id": str(index), "ReceiptHandle": lease.token} for index, lease in enumerate(chunk)]
            response = self._client.delete_message_batch(QueueUrl=self._url, Entries=entries)
            for failure in response.get("Failed", []):
                # An expired receipt handle: the job was leased again and its new holder settles it.
                log.warning("sqs delete failed", code=failure.get("Code"), message=failure.get("Message"))


def _body(message_id: int, job_id: int, attempts_before: int) -> str:
    return json.dumps({"m": message_id, "j": job_id, "a": max(0, attempts_before)}, separators=(",", ":"))


def _lease_of(message: dict[str, Any], expires_at: float) -> Lease:
    body = json.loads(message["Body"])
    received = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
    return Lease(
        job_id=int(body["j"]),
        message_id=int(body["m"]),
        attempts=int(body.get("a", 0)) + received,
        token=str(message["ReceiptHandle"]),
        expires_at=expires_at,
    )


def _chunks(items: Sequence[Lease], size: int) -> list[Sequence[Lease]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
