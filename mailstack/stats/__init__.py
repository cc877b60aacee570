"""Statistics: events folded into hourly and daily rollups, and Mailjet-compatible queries over them.

:class:`Aggregator` tails the events table (exactly once per event, crash-safe); :func:`counters`,
:func:`counters_by_slot`, :func:`counters_by_provider` and :func:`link_clicks` read the rollups;
:func:`statcounter_json` / :func:`esp_json` shape them as Mailjet's ``/statcounters`` and
``/statistics/recipient-esp`` answer. Mailbox providers (google, microsoft, yahoo, other) come from
:class:`mailstack.providers.ProviderClassifier`, as the throttle's do. :class:`CloudWatchPublisher`
publishes the fleet's ``Sent``, ``Bounced`` and ``Complained`` counts to Amazon CloudWatch, where the
bounce- and complaint-rate alarms read them.
"""

from __future__ import annotations

from mailstack.stats._aggregate import CURSOR, DAY, HOUR, Aggregator, Flag, bucket_start
from mailstack.stats._cloudwatch import (
    CLOUDWATCH_CURSOR,
    METRIC_BOUNCED,
    METRIC_COMPLAINED,
    METRIC_NAMES,
    METRIC_SENT,
    STACK_DIMENSION,
    CloudWatchPublisher,
    cloudwatch_client,
    metric_of_event,
)
from mailstack.stats._query import (
    Counters,
    StatsQuery,
    counters,
    counters_by_provider,
    counters_by_slot,
    esp_json,
    link_clicks,
    statcounter_json,
)

__all__ = [
    "CLOUDWATCH_CURSOR",
    "CURSOR",
    "DAY",
    "HOUR",
    "METRIC_BOUNCED",
    "METRIC_COMPLAINED",
    "METRIC_NAMES",
    "METRIC_SENT",
    "STACK_DIMENSION",
    "Aggregator",
    "CloudWatchPublisher",
    "Counters",
    "Flag",
    "StatsQuery",
    "bucket_start",
    "cloudwatch_client",
    "counters",
    "counters_by_provider",
    "counters_by_slot",
    "esp_json",
    "link_clicks",
    "metric_of_event",
    "statcounter_json",
]
