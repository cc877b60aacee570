"""The SQS queue backend against moto's in-process SQS, with its outbox on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine, func, select
from support import make_vault

from mailstack.config import ConfigError, QueueSettings, load_settings
from mailstack.delivery import DeliveryWorker, OutgoingMail, SandboxOutbox, WorkerSettings
from mailstack.model import Address, Envelope, MessageSpec, MessageStatus
from mailstack.queue import Lease, SqsQueue, queue_for
from mailstack.queue._sqs import region_from_queue_url
from mailstack.storage import (
    create_api_key,
    create_storage_engine,
    find_api_key,
    insert_messages,
    migrate,
    schema,
    update_message_status,
)


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """boto3's SQS client inside moto's in-process AWS (no network)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.client("sqs", region_name="eu-west-1")


def _create_queues(client: Any, name: str = "mailstack", *, redrive: bool = True) -> tuple[str, str]:
    dead = client.create_queue(QueueName=f"{name}-dead")["QueueUrl"]
    dead_arn = client.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    attributes = {"VisibilityTimeout": "300"}
    if redrive:
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": "20"})
    main = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return main, dead


def _messages(engine: Engine, count: int) -> list[int]:
    spec = MessageSpec(
        sender=Address("a@example.com"),
        to=tuple(Address(f"r{i}@example.net") for i in range(count)),
        text="x",
    )
    vault = make_vault(engine)
    with engine.begin() as conn:
        public, _secret = create_api_key(conn)
        record = find_api_key(conn, public)
        assert record is not None
        accepted = insert_messages(conn, record.id, [spec], now=time.time(), vault=vault)
    return [r.message_id for r in accepted[0]]


def _settle(engine: Engine, queue: SqsQueue, leases: list[Lease], status: MessageStatus) -> None:
    """What the worker does for a delivered batch: the outcome and the acknowledgement, one transaction."""
    vault = make_vault(engine)
    with engine.begin() as conn:
        for lease in leases:
            update_message_status(
                conn, lease.message_id, status, now=time.time(), attempts=lease.attempts, vault=vault
            )
            assert queue.complete(conn, lease)


def _depth(client: Any, url: str) -> tuple[int, int]:
    attributes = client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _lease_until(
    queue: SqsQueue, want: int, lease_seconds: float = 300, timeout: float = 15.0
) -> list[Lease]:
    """Lease until ``want`` jobs came back (visibility timeouts run on SQS's real clock)."""
    deadline = time.monotonic() + timeout
    got: list[Lease] = []
    while len(got) < want and time.monotonic() < deadline:
        got.extend(queue.lease(want - len(got), lease_seconds, now=time.time()))
        if len(got) < want:
            time.sleep(0.1)
    return got


def _outbox_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.queue_jobs)).scalar_one())


def test_jobs_reach_sqs_only_after_their_transaction_commits(engine: Engine, sqs: Any) -> None:
    main, dead = _create_queues(sqs)
    queue = SqsQueue(engine, main, client=sqs, wait_seconds=0)
    assert queue.dead_letter_url == dead  # found through the redrive policy
    ids = _messages(engine, 3)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=time.time())
        assert _depth(sqs, main) == (0, 0)  # nothing reaches SQS before the commit
    leases = queue.lease(10, 300, now=time.time())
    assert sorted(lease.message_id for lease in leases) == sorted(ids)
    assert all(lease.attempts == 1 for lease in leases)
    assert _outbox_rows(engine) == 0  # relayed rows leave the outbox
    assert queue.lease(10, 300, now=time.time()) == []  # leased messages are invisible
    _settle(engine, queue, leases, MessageStatus.SENT)
    queue.flush()
    assert _depth(sqs, main) == (0, 0)


def test_rolled_back_enqueue_sends_nothing(engine: Engine, sqs: Any) -> None:
    main, _dead = _create_queues(sqs)
    queue = SqsQueue(engine, main, client=sqs, wait_seconds=0)
    ids = _messages(engine, 1)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=time.time())
        raise RuntimeError("accept failed")
    assert queue.lease(10, 300, now=time.time()) == []
    assert _depth(sqs, main) == (0, 0)


def test_an_acknowledgement_whose_transaction_rolled_back_is_not_carried_out(
    engine: Engine, sqs: Any
) -> None:
    main, _dead = _create_queues(sqs)
    queue = SqsQueue(engine, main, client=sqs, wait_seconds=0)
    ids = _messages(engine, 1)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=time.time())
    (lease,) = queue.lease(1, 1, now=time.time())
    vault = make_vault(engine)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        update_message_status(conn, lease.message_id, MessageStatus.SENT, now=time.time(), vault=vault)
        queue.complete(conn, lease)
        raise RuntimeError("recording the outcome failed")
    queue.flush()  # the message is still queued in the database: its SQS message must stay
    (again,) = _lease_until(queue, 1)  # back after the 1 s visibility timeout, like an expired SQL lease
    assert again.message_id == lease.message_id and again.attempts == 2


def test_retry_keeps_the_job_invisible_until_its_time_and_counts_the_attempt(
    engine: Engine, sqs: Any
) -> None:
    main, _dead = _create_queues(sqs)
    queue = SqsQueue(engine, main, client=sqs, wait_seconds=0)
    ids = _messages(engine, 1)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=time.time())
    (lease,) = queue.lease(1, 300, now=time.time())
    with engine.begin() as conn:
        assert queue.retry(conn, lease, available_at=time.time() + 1, error="451 try later")
    (again,) = _lease_until(queue, 1)
    assert again.message_id == lease.message_id and again.attempts == 2


def test_postpone_and_release_do_not_count_an_attempt(engine: Engine, sqs: Any) -> None:
    main, _dead = _create_queues(sqs)
    queue = SqsQueue(engine, main, client=sqs, wait_seconds=0)
    ids = _messages(engine, 2)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=time.time())
    first = queue.lease(2, 300, now=time.time())
    with engine.begin() as conn:
        assert queue.retry(conn, first[0], available_at=time.time(), error="451")  # attempt 1 used up
    again = _lease_until(queue, 1)
    assert again[0].attempts == 2
    with engine.begin() as conn:
        assert queue.postpone(conn, again[0], available_at=time.time())
    queue.release([first[1]], now=time.time())
    back = {lease.message_id: lease.attempts for lease in _lease_until(queue, 2)}
    assert back == {first[0].message_id: 2, first[1].message_id: 1}
    assert _depth(sqs, main) == (0, 2)  # the postponed and released originals were deleted, not duplicated


def test_dead_letters_move_to_the_dead_letter_queue_with_their_error(engine: Engine, sqs: Any) -> None:
    main, dead = _create_queues(sqs)
    queue = SqsQueue(engine, main, client=sqs, wait_seconds=0)
    ids = _messages(engine, 2)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=time.time())
    exhausted, _other = queue.lease(2, 300, now=time.time())
    vault = make_vault(engine)
    with engine.begin() as conn:
        update_message_status(conn, exhausted.message_id, MessageStatus.FAILED, now=time.time(), vault=vault)
        assert queue.dead(conn, exhausted, error="451 gave up after 8 attempts")
    queue.flush()
    stats = queue.stats(now=time.time())
    assert (stats.dead, stats.leased, stats.ready) == (1, 1, 0)
    (letter,) = sqs.receive_message(QueueUrl=dead, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(letter["Body"])["m"] == exhausted.message_id
    assert letter["MessageAttributes"]["error"]["StringValue"] == "451 gave up after 8 attempts"


def test_jobs_due_later_wait_in_the_outbox(engine: Engine, sqs: Any) -> None:
    main, _dead = _create_queues(sqs)
    clock = [time.time()]
    queue = SqsQueue(engine, main, client=sqs, clock=lambda: clock[0], wait_seconds=0)
    ids = _messages(engine, 1)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=clock[0] + 3600)
    assert queue.lease(5, 300, now=clock[0]) == []
    assert queue.stats(now=clock[0]).ready == 1  # counted, waiting in the outbox
    clock[0] += 3600
    (lease,) = queue.lease(5, 300, now=clock[0])
    assert lease.message_id == ids[0]


class _FlakySqs:
    """Passes calls to the real client, but the first batch send fails as if SQS were unreachable."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failures = 1

    def send_message_batch(self, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("sqs unreachable")
        return self._client.send_message_batch(**kwargs)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return getattr(self._client, name)  # type: ignore[no-any-return]


def test_a_failed_relay_keeps_the_jobs_in_the_outbox(engine: Engine, sqs: Any) -> None:
    main, _dead = _create_queues(sqs)
    clock = [time.time()]
    queue = SqsQueue(engine, main, client=_FlakySqs(sqs), clock=lambda: clock[0], wait_seconds=0)
    ids = _messages(engine, 3)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=clock[0])
    assert queue.lease(5, 300, now=clock[0]) == []
    assert _outbox_rows(engine) == 3
    clock[0] += 61  # the relay's claim on the outbox rows expired
    leases = queue.lease(5, 300, now=clock[0])
    assert sorted(lease.message_id for lease in leases) == sorted(ids)


def test_the_dead_letter_queue_must_be_known(engine: Engine, sqs: Any) -> None:
    main, dead = _create_queues(sqs, "plain", redrive=False)
    with pytest.raises(ValueError, match="no redrive policy"):
        SqsQueue(engine, main, client=sqs, wait_seconds=0)
    assert SqsQueue(engine, main, client=sqs, dead_letter_url=dead, wait_seconds=0).dead_letter_url == dead


def test_a_delivery_worker_runs_on_sqs(engine: Engine, sqs: Any) -> None:
    main, _dead = _create_queues(sqs)
    queue = SqsQueue(engine, main, client=sqs)  # the default: long polling while the queue is empty
    ids = _messages(engine, 4)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=time.time())

    def prepare(envelope: Envelope) -> OutgoingMail:
        return OutgoingMail(
            envelope.message_id, "a@example.com", envelope.recipient.email, b"Subject: x\r\n\r\nx"
        )

    vault = make_vault(engine)
    worker = DeliveryWorker(
        engine, queue, prepare, SandboxOutbox(engine, vault), WorkerSettings(batch_size=10), vault=vault
    )
    assert worker.run_once() == 4
    assert worker.run_once() == 0  # the acknowledgements are carried out before the next receive
    with engine.connect() as conn:
        statuses = conn.execute(select(schema.messages.c.status).where(schema.messages.c.id.in_(ids))).all()
        kept = conn.execute(select(func.count()).select_from(schema.outbox)).scalar_one()
    assert {row.status for row in statuses} == {MessageStatus.SENT.value}
    assert kept == 4
    assert _depth(sqs, main) == (0, 0)


def test_settings_choose_the_backend(sqlite_url: str, sqs: Any, tmp_path: Path) -> None:
    main, dead = _create_queues(sqs)
    engine = create_storage_engine(sqlite_url)
    migrate(engine)
    try:
        chosen = queue_for(engine, QueueSettings(backend="sqs", sqs_url=main))
        assert isinstance(chosen, SqsQueue) and chosen.dead_letter_url == dead
        assert not isinstance(queue_for(engine, QueueSettings()), SqsQueue)
    finally:
        engine.dispose()
    with pytest.raises(ValueError, match="sqs_url"):
        QueueSettings(backend="sqs")
    (tmp_path / "mailstack.toml").write_text('[mail]\ndomain = "example.com"\n[queue]\nbackend = "sqs"\n')
    with pytest.raises(ConfigError, match="queue"):
        load_settings(tmp_path)


def test_region_comes_from_the_queue_url() -> None:
    assert region_from_queue_url("https://sqs.eu-west-1.amazonaws.com/123456789012/q") == "eu-west-1"
    assert region_from_queue_url("http://127.0.0.1:5000/123456789012/q") is None
