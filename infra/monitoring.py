"""Logs and alarms: CloudWatch log groups kept as long as the retention policy allows, and the alarms an
operator must hear about (stuck queue, dead letters, bounce and complaint rates, unhealthy senders)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NotRequired, TypedDict, Unpack

import pulumi
import pulumi_aws as aws

from .common import (
    METRIC_BOUNCED,
    METRIC_COMPLAINED,
    METRIC_SENT,
    METRICS_DIMENSION,
    METRICS_NAMESPACE,
    data_tags,
    prefix,
    stack_tags,
)

# The retention values CloudWatch Logs accepts.
CLOUDWATCH_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
# Below this many sent messages in the hour, a rate says nothing (one bounce in ten is not a trend).
MIN_SAMPLE = 100
LOG_STREAMS = ("mailstack", "postfix")


def log_retention_days(max_age_days: int) -> int:
    """The longest CloudWatch retention that does not exceed the policy's maximum age."""
    allowed = [days for days in CLOUDWATCH_RETENTION_DAYS if days <= max_age_days]
    if not allowed:
        raise ValueError(f"CloudWatch keeps logs at least 1 day; the policy allows {max_age_days}")
    return allowed[-1]


@dataclass(frozen=True)
class AlarmTargets:
    """What the alarms watch."""

    queue_name: pulumi.Input[str]
    dead_letter_queue_name: pulumi.Input[str]
    load_balancer_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]


class AlarmSettings(TypedDict):
    """What sets one alarm apart (actions, tags and naming are common to them all): a metric, or
    ``metric_queries`` for metric math."""

    evaluation_periods: int
    threshold: float
    comparison_operator: str
    treat_missing_data: str
    namespace: NotRequired[str]
    metric_name: NotRequired[str]
    dimensions: NotRequired[Mapping[str, pulumi.Input[str]]]
    statistic: NotRequired[str]
    period: NotRequired[int]
    metric_queries: NotRequired[Sequence[aws.cloudwatch.MetricAlarmMetricQueryArgsDict]]


def _rate(name: str, numerator: str) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgsDict]:
    """Metric math: ``numerator`` as a percentage of sent mail over an hour, 0 below :data:`MIN_SAMPLE`.

    The sums are the fleet's: one publisher per fleet sends each event's count once, with only the
    ``Stack`` dimension (a per-host dimension would need a SEARCH/SUM over hosts here instead).
    """
    dimensions = {METRICS_DIMENSION: pulumi.get_stack()}

    def metric(metric_id: str, metric_name: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgsDict:
        return {
            "id": metric_id,
            "return_data": False,
            "metric": {
                "namespace": METRICS_NAMESPACE,
                "metric_name": metric_name,
                "dimensions": dimensions,
                "period": 3600,
                "stat": "Sum",
            },
        }

    return [
        metric("sent", METRIC_SENT),
        metric("bad", numerator),
        {
            "id": "rate",
            "label": f"{name} rate (%)",
            "expression": f"IF(sent >= {MIN_SAMPLE}, 100 * bad / sent, 0)",
            "return_data": True,
        },
    ]


class Monitoring(pulumi.ComponentResource):
    """Encrypted SNS topic (with an optional e-mail subscription), log groups and alarms.

    mailstack publishes ``Sent``, ``Bounced`` (hard bounces) and ``Complained`` counts to the ``Mailstack``
    namespace with the dimension ``Stack`` (``mailstack/stats/_cloudwatch.py``, one publisher per fleet);
    the rates are computed here from those counts.
    """

    def __init__(
        self,
        name: str,
        *,
        kms_key_arn: pulumi.Input[str],
        log_max_age_days: int,
        targets: AlarmTargets,
        alert_email: str,
        queue_age_seconds: int,
        bounce_rate_percent: float,
        complaint_rate_percent: float,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mailstack:infra:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.log_groups: dict[str, aws.cloudwatch.LogGroup] = {}
        retention = log_retention_days(log_max_age_days)
        for stream in LOG_STREAMS:
            self.log_groups[stream] = aws.cloudwatch.LogGroup(
                f"{name}-logs-{stream}",
                name=f"/{prefix()}/{stream}",
                retention_in_days=retention,
                kms_key_id=kms_key_arn,
                tags=data_tags("monitoring", "personal", "delivery_logs"),
                opts=child,
            )
        self.topic = aws.sns.Topic(
            f"{name}-alerts",
            name=f"{prefix()}-alerts",
            kms_master_key_id=kms_key_arn,
            tags=data_tags("monitoring", "internal"),
            opts=child,
        )
        if alert_email:
            aws.sns.TopicSubscription(
                f"{name}-alerts-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=alert_email,
                opts=child,
            )
        actions = [self.topic.arn]

        def alarm(
            label: str, description: str, **settings: Unpack[AlarmSettings]
        ) -> aws.cloudwatch.MetricAlarm:
            return aws.cloudwatch.MetricAlarm(
                f"{name}-{label}",
                name=f"{prefix()}-{label}",
                alarm_description=description,
                alarm_actions=actions,
                ok_actions=actions,
                tags=stack_tags("monitoring"),
                opts=child,
                **settings,
            )

        alarm(
            "queue-age",
            f"The oldest queued message waits more than {queue_age_seconds} s: senders are stuck or too few.",
            namespace="AWS/SQS",
            metric_name="ApproximateAgeOfOldestMessage",
            dimensions={"QueueName": targets.queue_name},
            statistic="Maximum",
            period=300,
            evaluation_periods=2,
            threshold=queue_age_seconds,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        )
        alarm(
            "dead-letters",
            "Messages reached the dead-letter queue: inspect them, fix the cause, redrive.",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": targets.dead_letter_queue_name},
            statistic="Maximum",
            period=300,
            evaluation_periods=1,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        )
        alarm(
            "bounce-rate",
            f"More than {bounce_rate_percent}% of the last hour's mail hard-bounced: check list hygiene, "
            "blocks.",
            metric_queries=_rate("Bounce", METRIC_BOUNCED),
            evaluation_periods=1,
            threshold=bounce_rate_percent,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        )
        alarm(
            "complaint-rate",
            f"More than {complaint_rate_percent}% of the last hour's mail was reported as spam "
            "(Gmail and Yahoo require staying below 0.3%).",
            metric_queries=_rate("Complaint", METRIC_COMPLAINED),
            evaluation_periods=1,
            threshold=complaint_rate_percent,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        )
        alarm(
            "unhealthy-senders",
            "A sender fails its health check behind the load balancer (it will be replaced).",
            namespace="AWS/ApplicationELB",
            metric_name="UnHealthyHostCount",
            dimensions={
                "LoadBalancer": targets.load_balancer_arn_suffix,
                "TargetGroup": targets.target_group_arn_suffix,
            },
            statistic="Maximum",
            period=60,
            evaluation_periods=3,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        )
        self.register_outputs(
            {
                "topic_arn": self.topic.arn,
                "log_groups": {stream: group.name for stream, group in self.log_groups.items()},
            }
        )
