"""Statistics: events folded into hourly and daily rollups, and Mailjet-compatible queries over them.

:class:`Aggregator` tails the events table (exactly once per event, crash-safe); :func:`counters`,
:func:`counters_by_slot`, :func:`counters_by_provider` and :func:`link_clicks` read the rollups;
:func:`statcounter_json` / :func:`esp_json` shape them as Mailjet's ``/statcounters`` and
``/statistics/recipient-esp`` answer. Mailbox providers (google, microsoft, yahoo, other) come from
:class:`ProviderResolver`.
"""

from __future__ import annotations

from mailstack.stats._aggregate import CURSOR, DAY, HOUR, Aggregator, Flag, bucket_start
from mailstack.stats._providers import (
    PROVIDERS,
    ProviderResolver,
    mx_hosts,
    provider_of_domain,
    provider_of_mx,
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
    "CURSOR",
    "DAY",
    "HOUR",
    "PROVIDERS",
    "Aggregator",
    "Counters",
    "Flag",
    "ProviderResolver",
    "StatsQuery",
    "bucket_start",
    "counters",
    "counters_by_provider",
    "counters_by_slot",
    "esp_json",
    "link_clicks",
    "mx_hosts",
    "provider_of_domain",
    "provider_of_mx",
    "statcounter_json",
]
