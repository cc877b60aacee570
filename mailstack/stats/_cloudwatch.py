"""Delivery counters for Amazon CloudWatch: ``Sent``, ``Bounced`` and ``Complained``, dimension ``Stack``.

The fleet's bounce- and complaint-rate alarms (``infra/monitoring.py``) divide the hourly sums of these
counters. They are read from the ``events`` table, the same record the statistics come from:

``Sent``
    the relay accepted the message (``sent`` events);
``Bounced``
    it bounced for good: a hard bounce (``bounce`` events classified hard) or the relay refusing it
    permanently (``failed`` events that are not dead letters) — what the statistics count as
    ``hard_bounced``. Soft bounces are retried and say little about list hygiene;
``Complained``
    a recipient reported it as spam (``spam`` events).

Counted once for the whole fleet
    Every sender of a fleet runs a publisher, and they share one database. They also share one durable
    cursor over the events (``event_cursors`` row ``cloudwatch``), locked while a batch is published and
    moved in the transaction that follows CloudWatch's acknowledgement. So whichever sender holds the
    cursor publishes the next events and the others find nothing new: each event is published by exactly
    one sender, without a host dimension, and CloudWatch's ``Sum`` over the period is the fleet's total.
    (Per-host counts were the alternative, but bounces and complaints come back through whichever host
    receives them, not the one that sent the message.)

Nothing lost, rarely twice
    A batch is published in one ``PutMetricData`` request (at most :data:`MAX_DATUMS` data points; a batch
    is cut short to fit) before the cursor moves. When CloudWatch is unreachable or throttles beyond the
    SDK's retries, the transaction rolls back and the same events are published on the next interval.
    Only a commit failing after CloudWatch accepted the request publishes a batch twice.

Data points carry the minute the events happened in, so a publisher catching up after an outage fills in
the right periods. CloudWatch refuses points older than two weeks: such events are skipped (and logged).
A new cursor starts at the newest event: history is not replayed into CloudWatch.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Text, type_coerce

from mailstack.config import MetricsSettings
from mailstack.model import EventType
from mailstack.observability import get_logger
from mailstack.storage import GAP_GRACE_SECONDS, EventTail
from mailstack.storage.schema import events

from ._aggregate import _bounce_is_hard

__all__ = [
    "CLOUDWATCH_CURSOR",
    "MAX_DATUMS",
    "METRIC_BOUNCED",
    "METRIC_COMPLAINED",
    "METRIC_NAMES",
    "METRIC_SENT",
    "STACK_DIMENSION",
    "CloudWatchPublisher",
    "cloudwatch_client",
    "metric_of_event",
]

log = get_logger("mailstack.stats.cloudwatch")

# The names infra/monitoring.py's alarms select (tests/stats compares them with infra/common.py).
METRIC_SENT = "Sent"
METRIC_BOUNCED = "Bounced"
METRIC_COMPLAINED = "Complained"
METRIC_NAMES = (METRIC_SENT, METRIC_BOUNCED, METRIC_COMPLAINED)
STACK_DIMENSION = "Stack"
CLOUDWATCH_CURSOR = "cloudwatch"
# PutMetricData takes at most 1000 metric data points per request.
MAX_DATUMS = 1000
# CloudWatch accepts data points up to two weeks old; an hour of margin for the request's own delays.
MAX_AGE_SECONDS = 14 * 86_400 - 3600
_MINUTE = 60


def metric_of_event(kind: str, detail: dict[str, Any]) -> str | None:
    """The counter an event adds one to, or None (opens, deferrals, soft bounces ...)."""
    if kind == EventType.SENT:
        return METRIC_SENT
    if kind == EventType.SPAM:
        return METRIC_COMPLAINED
    if kind == EventType.BOUNCE:
        return METRIC_BOUNCED if _bounce_is_hard(detail) else None
    if kind == EventType.FAILED:
        # A dead letter ran out of retries (soft); otherwise the relay refused it for good (hard).
        return None if detail.get("dead_letter", False) else METRIC_BOUNCED
    return None


def _detail(raw: object) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


_NEEDS_DETAIL = frozenset({EventType.BOUNCE.value, EventType.FAILED.value})


def cloudwatch_client(region: str, endpoint_url: str = "") -> Any:
    """A boto3 CloudWatch client with short timeouts: a publisher holds the fleet's cursor while it waits.

    Credentials come from the usual boto3 sources (the instance role on AWS); standard retry mode retries
    throttling and 5xx answers a few times with back-off.
    """
    import boto3  # type: ignore[import-untyped]  # noqa: PLC0415 - only a publishing deployment needs it
    from botocore.config import Config  # type: ignore[import-untyped]  # noqa: PLC0415

    config = Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 4, "mode": "standard"})
    return boto3.client("cloudwatch", region_name=region, endpoint_url=endpoint_url or None, config=config)


def _describe(exc: BaseException) -> dict[str, str]:
    """What a failure may log: its class and AWS's error code, never messages that could carry data."""
    described = {"error": type(exc).__name__}
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str):
            described["code"] = code
    return described


class CloudWatchPublisher:
    """Publishes the fleet's delivery counters since the last publish; see the module for the guarantees.

    :meth:`publish_once` is one batch (one request), :meth:`publish` catches up, :meth:`run` loops every
    interval until stopped.
    """

    def __init__(
        self,
        engine: Engine,
        client: Any,
        *,
        namespace: str,
        stack: str,
        batch_size: int = 5000,
        max_datums: int = MAX_DATUMS,
        gap_grace_seconds: float = GAP_GRACE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= max_datums <= MAX_DATUMS:
            raise ValueError(f"max_datums must be 1-{MAX_DATUMS}, got {max_datums}")
        self._engine = engine
        self._client = client
        self._namespace = namespace
        self._dimensions = [{"Name": STACK_DIMENSION, "Value": stack}]
        self._batch_size = batch_size
        self._max_datums = max_datums
        self._clock = clock
        self._tail = EventTail(CLOUDWATCH_CURSOR, gap_grace_seconds=gap_grace_seconds, start_at_end=True)

    @classmethod
    def from_settings(cls, engine: Engine, settings: MetricsSettings) -> CloudWatchPublisher:
        """A publisher configured by ``[metrics]``."""
        client = cloudwatch_client(settings.region, settings.endpoint_url)
        return cls(engine, client, namespace=settings.namespace, stack=settings.stack)

    def run(self, stop: threading.Event, interval_seconds: float) -> None:
        """Publish every ``interval_seconds`` until ``stop`` is set. A failed publish is logged and the same
        events are retried on the next interval; the thread never dies of it."""
        while not stop.is_set():
            try:
                self.publish()
            except Exception as exc:  # AWS unreachable, throttled, database gone: next interval
                log.warning("cloudwatch metrics not published; retrying next interval", **_describe(exc))
            stop.wait(interval_seconds)

    def publish(self) -> int:
        """Publish everything visible now, batch after batch; returns the number of events covered."""
        total = 0
        while done := self.publish_once():
            total += done
        return total

    def publish_once(self) -> int:
        """Publish one batch of events in one request and move the cursor past it; returns its size.

        Raises whatever the request raised, with the cursor (and so the counts) left where it was.
        """
        with self._engine.begin() as conn:
            rows = self._tail.read(
                conn,
                self._batch_size,
                [
                    events.c.id,
                    events.c.type,
                    events.c.created_at,
                    type_coerce(events.c.detail, Text).label("detail"),
                ],
            )
            if not rows:
                return 0
            now = self._clock()
            counts: Counter[tuple[str, int]] = Counter()
            too_old = 0
            last_id = rows[-1].id
            covered = len(rows)
            for index, (_event_id, kind, at, raw_detail) in enumerate(rows):
                name = str(kind)
                metric = metric_of_event(name, _detail(raw_detail) if name in _NEEDS_DETAIL else {})
                if metric is None:
                    continue
                if at < now - MAX_AGE_SECONDS:
                    too_old += 1
                    continue
                # A point in the future (another host's clock) is put at now: CloudWatch allows 2 h ahead.
                key = (metric, int(min(at, now) // _MINUTE) * _MINUTE)
                if key not in counts and len(counts) == self._max_datums:
                    # One request per batch: the rest waits for the next batch.
                    last_id, covered = rows[index - 1].id, index
                    break
                counts[key] += 1
            if counts:
                self._client.put_metric_data(Namespace=self._namespace, MetricData=self._datums(counts))
            self._tail.advance(conn, last_id)
        if too_old:
            log.warning("events older than CloudWatch accepts were not published", events=too_old)
        if counts:
            log.debug("cloudwatch metrics published", events=covered, datums=len(counts))
        return covered

    def _datums(self, counts: Counter[tuple[str, int]]) -> list[dict[str, Any]]:
        return [
            {
                "MetricName": metric,
                "Dimensions": self._dimensions,
                "Timestamp": datetime.fromtimestamp(minute, UTC),
                "Value": float(count),
                "Unit": "Count",
                "StorageResolution": 60,
            }
            for (metric, minute), count in sorted(counts.items(), key=lambda item: (item[0][1], item[0][0]))
        ]
