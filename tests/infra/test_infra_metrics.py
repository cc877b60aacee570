"""The bounce- and complaint-rate alarms, as the Monitoring component registers them, read what mailstack's
publisher puts into CloudWatch (moto): same namespace, names and dimension, and rates that add up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pulumi
import pytest
from infra_mocks import Mocked
from moto import mock_aws
from sqlalchemy import Engine
from support import make_vault

from infra.monitoring import MIN_SAMPLE, AlarmTargets, Monitoring
from mailstack.model import Address, EventType, MessageSpec
from mailstack.stats import CloudWatchPublisher, cloudwatch_client
from mailstack.storage import (
    SentRecord,
    create_api_key,
    create_storage_engine,
    insert_messages,
    migrate,
    record_event,
    record_sent,
)

REGION = "eu-west-1"
HOUR_START = (int(time.time()) // 3600 - 1) * 3600


@pytest.fixture
def cloudwatch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("cloudwatch", region_name=REGION)


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = create_storage_engine(sqlite_url)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _alarms(mocked: Mocked) -> dict[str, dict[str, Any]]:
    def build() -> pulumi.Output[Any]:
        return Monitoring(
            "mon",
            kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/test",
            log_max_age_days=30,
            targets=AlarmTargets("q", "q-dead", "app/lb/1", "targetgroup/tg/1"),
            alert_email="",
            queue_age_seconds=900,
            bounce_rate_percent=5,
            complaint_rate_percent=0.1,
        ).topic.arn

    mocked.run(build)
    return {
        r.props["name"].removeprefix("mailstack-test-"): r.props
        for r in mocked.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }


def _rate(cloudwatch: Any, alarm: dict[str, Any]) -> float:
    """Evaluate the alarm's metric math over the hour, its metrics read from CloudWatch."""
    queries = {query["id"]: query for query in alarm["metricQueries"]}

    def dimensions(metric: dict[str, Any]) -> list[dict[str, str]]:
        return [{"Name": name, "Value": value} for name, value in metric["dimensions"].items()]

    stats = [
        {
            "Id": query_id,
            "MetricStat": {
                "Metric": {
                    "Namespace": query["metric"]["namespace"],
                    "MetricName": query["metric"]["metricName"],
                    "Dimensions": dimensions(query["metric"]),
                },
                "Period": int(query["metric"]["period"]),  # the mocks hand numbers over as floats
                "Stat": query["metric"]["stat"],
            },
        }
        for query_id, query in queries.items()
        if "metric" in query
    ]
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=stats,
        StartTime=datetime.fromtimestamp(HOUR_START, UTC),
        EndTime=datetime.fromtimestamp(HOUR_START + 3600, UTC),
    )
    values = {result["Id"]: sum(result["Values"]) for result in answer["MetricDataResults"]}
    # moto does not evaluate metric math: the expression is checked here, then computed as CloudWatch would.
    assert queries["rate"]["expression"] == f"IF(sent >= {MIN_SAMPLE}, 100 * bad / sent, 0)"
    sent, bad = values["sent"], values["bad"]
    return 100 * bad / sent if sent >= MIN_SAMPLE else 0.0


def test_the_rate_alarms_read_the_published_counts(
    mocked: Mocked, cloudwatch: Any, sqlite_engine: Engine
) -> None:
    alarms = _alarms(mocked)
    engine = sqlite_engine
    vault = make_vault(engine)
    with engine.begin() as conn:
        create_api_key(conn)
        spec = MessageSpec(
            sender=Address("news@example.com"),
            to=tuple(Address(f"r{i}@example.net") for i in range(50)),
            text="x",
        )
        (accepted,) = insert_messages(conn, 1, [spec], now=HOUR_START, vault=vault)
    ids = [a.message_id for a in accepted]
    # The stack the alarms select is the Pulumi stack (the mocks run stack "test").
    publisher = CloudWatchPublisher(
        engine, cloudwatch_client(REGION), namespace="Mailstack", stack="test", gap_grace_seconds=0
    )
    publisher.publish()
    with engine.begin() as conn:
        for minute in range(3):  # 150 sent in the hour: above the minimum sample
            sent = [SentRecord(i, 1, "250 Ok", None) for i in ids]
            record_sent(conn, sent, now=HOUR_START + 60 * minute + 5, vault=vault)
        for message_id in ids[:9]:  # 6 % hard-bounced
            record_event(
                conn, message_id, EventType.BOUNCE, {"category": "hard"}, now=HOUR_START + 300, vault=vault
            )
        record_event(conn, ids[10], EventType.SPAM, {"source": "arf"}, now=HOUR_START + 400, vault=vault)
    publisher.publish()

    bounce_rate = _rate(cloudwatch, alarms["bounce-rate"])
    assert bounce_rate == 6.0 and bounce_rate > alarms["bounce-rate"]["threshold"]  # it fires
    complaint_rate = _rate(cloudwatch, alarms["complaint-rate"])
    assert complaint_rate == pytest.approx(100 / 150)
    assert complaint_rate > alarms["complaint-rate"]["threshold"]  # 0.67 % > 0.1 %: it fires too
