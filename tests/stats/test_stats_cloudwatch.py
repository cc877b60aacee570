"""The CloudWatch publisher against moto: real events from the storage layer, counted once per fleet, never
lost when AWS fails, and named as the alarms of infra/monitoring.py expect."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine
from support import free_port, make_vault

from mailstack.config import ConfigError, MetricsSettings, load_settings
from mailstack.keyring import Keyring
from mailstack.model import Address, EventType, MessageSpec
from mailstack.privacy import LocalKeyProvider, Vault
from mailstack.stats import (
    METRIC_BOUNCED,
    METRIC_COMPLAINED,
    METRIC_NAMES,
    METRIC_SENT,
    STACK_DIMENSION,
    CloudWatchPublisher,
    cloudwatch_client,
)
from mailstack.storage import (
    SentRecord,
    create_api_key,
    create_storage_engine,
    insert_messages,
    migrate,
    record_event,
    record_sent,
)

# infra/ is not an installed package: the repository root makes it importable (as in tests/infra).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# Only constants: no Pulumi resources, so no mocks needed.
from infra import common as infra_common

REGION = "eu-west-1"
STACK = "test"
NAMESPACE = "Mailstack"
# A fake credential that the logs must not show.
SECRET_ACCESS_KEY = "wJalrXUtnFEMI-do-not-log-me"
# An hour boundary a little in the past: the events of a test fall into its first minutes.
HOUR_START = (int(time.time()) // 3600 - 1) * 3600


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's CloudWatch (in process); returns a client to read back what was published."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("cloudwatch", region_name=REGION)


class Mail:
    """Messages stored and their outcomes recorded the way mailstack records them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        keyring = Keyring(b"k" * 32)
        self.vault = Vault(engine, keyring, LocalKeyProvider(keyring))
        with engine.begin() as conn:
            create_api_key(conn)

    def messages(self, count: int, *, at: float = HOUR_START) -> list[int]:
        spec = MessageSpec(
            sender=Address("news@example.com"),
            to=tuple(Address(f"r{i}@example.net") for i in range(count)),
            text="x",
        )
        with self.engine.begin() as conn:
            (accepted,) = insert_messages(conn, 1, [spec], now=at, vault=self.vault)
        return [a.message_id for a in accepted]

    def sent(self, ids: list[int], at: float) -> None:
        """The relay accepted them (the delivery worker's record)."""
        with self.engine.begin() as conn:
            record_sent(conn, [SentRecord(i, 1, "250 2.0.0 Ok", None) for i in ids], now=at, vault=self.vault)

    def event(self, message_id: int, kind: EventType, at: float, **detail: Any) -> None:
        vault = make_vault(self.engine)
        with self.engine.begin() as conn:
            record_event(conn, message_id, kind, detail, now=at, vault=vault)


def publisher(engine: Engine, client: Any | None = None, **kwargs: Any) -> CloudWatchPublisher:
    kwargs.setdefault("gap_grace_seconds", 0)  # every event of these tests is committed before publishing
    return CloudWatchPublisher(
        engine, client or cloudwatch_client(REGION), namespace=NAMESPACE, stack=STACK, **kwargs
    )


def sums(cloudwatch: Any, metric: str, *, period: int = 60, stack: str = STACK) -> dict[int, float]:
    """What CloudWatch holds for ``metric``: the Sum per period (Unix start -> value)."""
    answer = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=metric,
        Dimensions=[{"Name": STACK_DIMENSION, "Value": stack}],
        StartTime=datetime.fromtimestamp(HOUR_START - 3600, UTC),
        EndTime=datetime.fromtimestamp(HOUR_START + 7200, UTC),
        Period=period,
        Statistics=["Sum"],
    )
    return {int(p["Timestamp"].timestamp()): p["Sum"] for p in answer["Datapoints"] if p["Sum"]}


def total(cloudwatch: Any, metric: str) -> float:
    return sum(sums(cloudwatch, metric).values())


def test_sent_hard_bounces_and_complaints_are_published_once_per_minute(engine: Engine, aws: Any) -> None:
    mail = Mail(engine)
    before = mail.messages(2)
    mail.sent(before, HOUR_START + 1)
    publish = publisher(engine)
    assert publish.publish() == 0  # a new cursor starts at the newest event: no history replayed
    ids = mail.messages(9)
    mail.sent(ids[:6], HOUR_START + 10)  # minute 0
    mail.sent(ids[6:8], HOUR_START + 70)  # minute 1
    mail.event(ids[0], EventType.BOUNCE, HOUR_START + 75, category="hard", reason="user_unknown")
    mail.event(ids[1], EventType.BOUNCE, HOUR_START + 80, category="soft", reason="mailbox_full")
    mail.event(ids[2], EventType.SPAM, HOUR_START + 85, source="arf")
    mail.event(ids[8], EventType.FAILED, HOUR_START + 20, attempts=1, dead_letter=False)  # refused: hard
    mail.event(ids[7], EventType.FAILED, HOUR_START + 90, attempts=8, dead_letter=True)  # retries ran out
    mail.event(ids[3], EventType.OPEN, HOUR_START + 95)
    assert publish.publish() > 0
    assert sums(aws, METRIC_SENT) == {HOUR_START: 6, HOUR_START + 60: 2}
    assert sums(aws, METRIC_BOUNCED) == {HOUR_START: 1, HOUR_START + 60: 1}  # refused + hard bounce
    assert sums(aws, METRIC_COMPLAINED) == {HOUR_START + 60: 1}
    assert publish.publish() == 0  # nothing new: nothing published twice
    assert total(aws, METRIC_SENT) == 8
    listed = aws.list_metrics(Namespace=NAMESPACE)["Metrics"]
    assert {m["MetricName"] for m in listed} == set(METRIC_NAMES)
    assert all(m["Dimensions"] == [{"Name": STACK_DIMENSION, "Value": STACK}] for m in listed)
    mail.event(ids[4], EventType.SPAM, HOUR_START + 200, source="arf")  # the next interval's news
    assert publish.publish() == 1
    assert sums(aws, METRIC_COMPLAINED) == {HOUR_START + 60: 1, HOUR_START + 180: 1}


def test_the_senders_of_a_fleet_publish_each_event_once(pg_url: str, aws: Any) -> None:
    engine = create_storage_engine(pg_url)
    migrate(engine)
    try:
        mail = Mail(engine)
        senders = [publisher(engine, batch_size=25) for _ in range(3)]  # one per host, one database
        for sender in senders:
            sender.publish()
        ids = mail.messages(50)
        for start in range(0, 200, 50):  # 200 sends over four minutes, a complaint now and then
            mail.sent(ids[: 50 if start < 150 else 20], HOUR_START + start + 5)
        for message_id in ids[:7]:
            mail.event(message_id, EventType.SPAM, HOUR_START + 30, source="arf")
        barrier = threading.Barrier(len(senders))
        published: list[int] = []

        def run(sender: CloudWatchPublisher) -> None:
            barrier.wait()
            published.append(sender.publish())

        threads = [threading.Thread(target=run, args=(sender,)) for sender in senders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(published) == 50 + 170 + 7  # every event (queued ones too) covered by one sender
        assert total(aws, METRIC_SENT) == 170
        assert total(aws, METRIC_COMPLAINED) == 7
    finally:
        engine.dispose()


def test_an_unreachable_cloudwatch_loses_nothing_and_logs_no_secret(
    engine: Engine, aws: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    mail = Mail(engine)
    nowhere = cloudwatch_client(REGION, endpoint_url=f"http://127.0.0.1:{free_port()}")  # nothing listens
    down = publisher(engine, nowhere)
    down.publish()
    ids = mail.messages(3)
    mail.sent(ids, HOUR_START + 10)
    mail.event(ids[0], EventType.BOUNCE, HOUR_START + 20, category="hard")
    with pytest.raises(Exception, match="Could not connect"):
        down.publish_once()
    stop = threading.Event()
    thread = threading.Thread(target=down.run, args=(stop, 0.05))
    thread.start()  # the background job: fails, logs, tries again next interval, does not die
    time.sleep(0.5)
    assert thread.is_alive()
    stop.set()
    thread.join(60)
    output = capsys.readouterr()
    # structlog prints (its default) or goes through logging (once `mailstack serve` configured it).
    logged = output.out + output.err + caplog.text
    assert "cloudwatch metrics not published" in logged and "EndpointConnectionError" in logged
    assert SECRET_ACCESS_KEY not in logged
    assert total(aws, METRIC_SENT) == 0
    back = publisher(engine)  # AWS reachable again (or another sender of the fleet): the same events
    assert back.publish() == 3 + 3 + 1  # queued, sent, bounced
    assert total(aws, METRIC_SENT) == 3 and total(aws, METRIC_BOUNCED) == 1


def test_a_batch_fits_one_request_and_the_rest_follows(engine: Engine, aws: Any) -> None:
    mail = Mail(engine)
    small = publisher(engine, max_datums=2)
    small.publish()
    ids = mail.messages(6)
    for minute in range(3):  # three minutes of sends: three data points of Sent
        mail.sent(ids[2 * minute : 2 * minute + 2], HOUR_START + 60 * minute + 1)
    # The six queued events count nothing; two minutes of sends fill the request, the third waits.
    assert small.publish_once() == 6 + 4
    assert sums(aws, METRIC_SENT) == {HOUR_START: 2, HOUR_START + 60: 2}
    assert small.publish() == 2
    assert sums(aws, METRIC_SENT) == {HOUR_START: 2, HOUR_START + 60: 2, HOUR_START + 120: 2}


def test_events_older_than_cloudwatch_accepts_are_skipped(engine: Engine, aws: Any) -> None:
    mail = Mail(engine)
    publish = publisher(engine)
    publish.publish()
    ids = mail.messages(2)
    mail.sent(ids[:1], time.time() - 15 * 86_400)  # a sender that was down for two weeks
    mail.sent(ids[1:], HOUR_START + 10)
    assert publish.publish() == 2 + 2  # queued and sent events
    assert sums(aws, METRIC_SENT) == {HOUR_START: 1}


def test_the_published_names_are_what_the_alarms_read() -> None:
    # Both sides are built from these constants; tests/infra runs the alarms' own queries against moto.
    assert (METRIC_SENT, METRIC_BOUNCED, METRIC_COMPLAINED) == (
        infra_common.METRIC_SENT,
        infra_common.METRIC_BOUNCED,
        infra_common.METRIC_COMPLAINED,
    )
    assert STACK_DIMENSION == infra_common.METRICS_DIMENSION
    assert MetricsSettings().namespace == NAMESPACE == infra_common.METRICS_NAMESPACE


def test_the_metrics_section_is_validated(tmp_path: Path) -> None:
    (tmp_path / "mailstack.toml").write_text('[mail]\ndomain = "example.com"\n')
    assert load_settings(tmp_path).metrics.enabled is False  # off unless asked for
    for section, message in (
        ("enabled = true\nregion = 'eu-west-1'", "metrics.enabled needs metrics.stack"),
        ("enabled = true\nstack = 'prod'", "metrics.enabled needs metrics.region"),
        ("namespace = 'AWS/EC2'", "metrics.namespace"),
        ("region = 'Ireland'", "an AWS region like eu-west-1"),
        ("interval_seconds = 0", "metrics.interval_seconds"),
        ("endpoint_url = 'moto'", "metrics.endpoint_url"),
    ):
        (tmp_path / "mailstack.toml").write_text(f'[mail]\ndomain = "example.com"\n[metrics]\n{section}\n')
        with pytest.raises(ConfigError, match=message):
            load_settings(tmp_path)
    (tmp_path / "mailstack.toml").write_text(
        '[mail]\ndomain = "example.com"\n[metrics]\nenabled = true\nstack = "prod"\nregion = "eu-west-1"\n'
    )
    metrics = load_settings(tmp_path).metrics
    assert (metrics.namespace, metrics.stack, metrics.region, metrics.interval_seconds) == (
        "Mailstack",
        "prod",
        "eu-west-1",
        60.0,
    )
