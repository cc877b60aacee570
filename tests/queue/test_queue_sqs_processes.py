"""Several worker processes share one SQS queue (moto_server on loopback) and one database: every message
is delivered exactly once, including those a crashed worker had leased."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import Engine, func, select
from support import free_port, make_vault

from mailstack.model import Address, MessageSpec, MessageStatus
from mailstack.queue import SqsQueue
from mailstack.storage import (
    create_api_key,
    create_storage_engine,
    find_api_key,
    insert_messages,
    migrate,
    schema,
)

WORKER = Path(__file__).with_name("sqs_worker_process.py")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


@pytest.fixture
def moto_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's AWS server on a loopback port, for as long as the test runs."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    server = Path(sys.executable).with_name("moto_server")
    if not server.exists():
        pytest.fail(f"{server} is missing: moto[server] is part of the dev dependencies (make setup)")
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("sqs", endpoint_url=endpoint, region_name="eu-west-1")
    deadline = time.monotonic() + 30
    while True:
        try:
            client.list_queues()
            break
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto_server did not start; see {tmp_path / 'moto.log'}")
            time.sleep(0.1)
    try:
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _insert(engine: Engine, count: int, tag: str) -> list[int]:
    spec = MessageSpec(
        sender=Address("a@example.com"),
        to=tuple(Address(f"{tag}{i}@example.net") for i in range(count)),
        text="x",
    )
    vault = make_vault(engine)
    with engine.begin() as conn:
        public, _secret = create_api_key(conn)
        record = find_api_key(conn, public)
        assert record is not None
        accepted = insert_messages(conn, record.id, [spec], now=time.time(), vault=vault)
    return [r.message_id for r in accepted[0]]


def _spawn(mode: str, db_url: str, endpoint: str, queue_url: str, stop: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, db_url, endpoint, queue_url, str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **AWS_ENV},
    )


def test_worker_processes_share_the_sqs_queue_and_survive_a_crash(tmp_path: Path, moto_endpoint: str) -> None:
    client: Any = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="eu-west-1")
    dead = client.create_queue(QueueName="mailstack-dead")["QueueUrl"]
    dead_arn = client.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    main = client.create_queue(
        QueueName="mailstack",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": "20"})},
    )["QueueUrl"]
    db_url = f"sqlite:///{tmp_path / 'mailstack.db'}"
    engine = create_storage_engine(db_url)
    migrate(engine)
    queue = SqsQueue(engine, main, client=client)
    first = _insert(engine, 12, "a")
    with engine.begin() as conn:
        queue.enqueue(conn, first, available_at=time.time())
    stop = tmp_path / "stop"

    # A node leases a batch and dies without acknowledging anything.
    crashed = _spawn("crash", db_url, moto_endpoint, main, stop)
    out, err = crashed.communicate(timeout=60)
    assert crashed.returncode == 0, err
    lost = {int(word) for word in out.split()}
    assert len(lost) == 6

    workers = [_spawn("work", db_url, moto_endpoint, main, stop) for _ in range(3)]
    try:
        # More mail arrives while the fleet runs: every worker relays the outbox, none twice.
        second = _insert(engine, 12, "b")
        with engine.begin() as conn:
            queue.enqueue(conn, second, available_at=time.time())
        wanted = set(first) | set(second)
        deadline = time.monotonic() + 90
        sent: set[int] = set()
        while time.monotonic() < deadline and sent != wanted:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(schema.messages.c.id).where(schema.messages.c.status == MessageStatus.SENT.value)
                ).all()
            sent = {row.id for row in rows}
            time.sleep(0.2)
        assert sent == wanted
    finally:
        stop.touch()
        errors = []
        for worker in workers:
            try:
                _out, worker_err = worker.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                _out, worker_err = worker.communicate()
            if worker.returncode != 0:
                errors.append(worker_err)
        assert not errors, errors

    with engine.connect() as conn:
        copies: dict[int, int] = dict(
            conn.execute(
                select(schema.outbox.c.message_id, func.count()).group_by(schema.outbox.c.message_id)
            ).all()
        )
        attempts = dict(conn.execute(select(schema.messages.c.id, schema.messages.c.attempts)).all())
    assert copies == {message_id: 1 for message_id in wanted}  # each delivered exactly once
    assert all(attempts[message_id] == 2 for message_id in lost)  # the crashed node's leases came back
    depth = client.get_queue_attributes(
        QueueUrl=main, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert depth == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    dead_depth = client.get_queue_attributes(QueueUrl=dead, AttributeNames=["ApproximateNumberOfMessages"])
    assert dead_depth["Attributes"]["ApproximateNumberOfMessages"] == "0"
    engine.dispose()
