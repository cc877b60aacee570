from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class QueueDepth(Protocol):
    """What the queue gauge reads (``mailstack.queue.QueueStats``); observability sits below the queue."""

    @property
    def ready(self) -> int: ...
    @property
    def leased(self) -> int: ...
    @property
    def dead(self) -> int: ...


class _QueueCollector(Collector):
    def __init__(self, stats: Callable[[], QueueDepth]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        depth = GaugeMetricFamily(
            "mailstack_queue_depth", "Jobs in the delivery queue by state", labels=["state"]
        )
        depth.add_metric(["ready"], stats.ready)
        depth.add_metric(["leased"], stats.leased)
        depth.add_metric(["dead"], stats.dead)
        yield depth


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (several services may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "mailstack_messages_accepted", "Recipients accepted by the API", registry=self.registry
        )
        self.rejected = Counter(
            "mailstack_messages_rejected", "Messages refused by validation", registry=self.registry
        )
        self.sent = Counter(
            "mailstack_messages_sent", "Recipients accepted by the relay", registry=self.registry
        )
        self.deferred = Counter(
            "mailstack_messages_deferred", "Temporary delivery failures (retried)", registry=self.registry
        )
        self.failed = Counter(
            "mailstack_messages_failed", "Permanent failures and dead letters", registry=self.registry
        )
        self.delivery_latency = Histogram(
            "mailstack_delivery_latency_seconds",
            "Time from API accept to relay acceptance",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
        )
        self.request_latency = Histogram(
            "mailstack_http_request_seconds", "HTTP API request latency", ["route"], registry=self.registry
        )

    def watch_queue(self, stats: Callable[[], QueueDepth]) -> None:
        self.registry.register(_QueueCollector(stats))
