"""``mailstack serve``: the composition root. It builds every component from the settings, lists the
background services in start order (one :class:`~mailstack.lifecycle.Lifecycle`), and serves the HTTP API
in the foreground; SIGTERM stops the API first, then the services in reverse order, and exits 0.

Nothing in mailstack imports this module but the CLI (``tests/test_architecture.py`` checks it).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from mailstack.api import create_app, make_sender
from mailstack.automation import AutomationEngine
from mailstack.config import ConfigError, Settings, parse_hostport
from mailstack.delivery import (
    DeliveryWorker,
    Journal,
    JournalDirectory,
    LeaseKeeper,
    Transport,
    node_owner,
    recover,
)
from mailstack.feedback import feedback_services
from mailstack.lifecycle import Lifecycle, Loop, LoopGroup, Service
from mailstack.observability import get_logger
from mailstack.privacy import (
    RetentionError,
    RetentionJob,
    RetentionPolicy,
    check_policy_tables,
    load_retention,
    policy_path,
)
from mailstack.providers import ProviderClassifier, dns_mx_resolver
from mailstack.runtime import Runtime
from mailstack.smtp import SmtpIngress, smtp_ingress
from mailstack.stats import Aggregator, CloudWatchPublisher
from mailstack.tracking import EventRecorder
from mailstack.webhooks import Dispatcher

__all__ = ["DRAIN_SECONDS", "Node", "assemble", "serve"]

log = get_logger("mailstack.serve")

# How long SIGTERM waits for the batches in hand; leases of anything slower expire and are retried.
DRAIN_SECONDS = 60.0


@dataclass
class Node:
    """One assembled ``mailstack serve``: its parts, its background services and its HTTP app."""

    runtime: Runtime
    lifecycle: Lifecycle
    app: FastAPI
    transports: list[Transport]
    smtp: SmtpIngress | None
    recorder: EventRecorder
    aggregator: Aggregator
    dispatcher: Dispatcher
    automation: AutomationEngine

    def close(self) -> None:
        """After the lifecycle has stopped: release relay connections and the database."""
        for transport in self.transports:
            transport.close()
        self.runtime.close()


def _delivery(runtime: Runtime) -> tuple[list[Service], list[Transport]]:
    if runtime.settings.delivery.workers == 0:
        return [], []  # an accepting node: the fleet's other nodes deliver
    relay = runtime.relay()
    ip_relays = runtime.ip_relays()
    settings = runtime.worker_settings()
    owner = node_owner(runtime.settings.data_dir)
    journals = JournalDirectory(runtime.settings.data_dir / "journal")

    def worker(journal: Journal | None) -> DeliveryWorker:
        return DeliveryWorker(
            runtime.engine,
            runtime.queue,
            runtime.preparer,
            relay,
            settings,
            runtime.metrics,
            throttle=runtime.throttle,
            ip_transports=ip_relays,
            vault=runtime.vault,
            journal=journal,
            owner=owner,
        )

    workers = []
    for index in range(runtime.settings.delivery.workers):
        run = functools.partial(worker(journals.for_worker(index)).run, wake=runtime.wake)
        workers.append(Loop(f"delivery-{index}", run, join_seconds=DRAIN_SECONDS, wake=runtime.wake))
    # Started before the workers (and stopped after them): it first records what the previous run
    # journaled and takes back its leases, then renews this run's leases while they work.
    keeper = LeaseKeeper(runtime.queue, owner, settings.lease_seconds)
    recovery = functools.partial(recover, worker(None), journals, runtime.queue, owner)
    services: list[Service] = [
        Loop("lease-keeper", keeper.run, prepare=recovery, daemon=True, join_seconds=5.0),
        LoopGroup("delivery", workers),
    ]
    return services, [relay, *ip_relays.values()]


def _recorder(runtime: Runtime) -> EventRecorder:
    tracking = runtime.settings.tracking
    return EventRecorder(
        runtime.engine,
        capacity=tracking.queue_size,
        batch_size=tracking.batch_size,
        flush_seconds=tracking.flush_seconds,
        spool_dir=runtime.settings.data_dir / "spool",
        vault=runtime.vault,
    )


def _aggregator(runtime: Runtime) -> Aggregator:
    settings = runtime.settings
    classifier = ProviderClassifier(resolver=dns_mx_resolver() if settings.stats.mx_lookup else None)
    return Aggregator(
        runtime.store,
        batch_size=settings.stats.batch_size,
        providers=classifier.classify,
        poll_seconds=settings.stats.poll_seconds,
        sent_is_delivery=settings.sent_is_delivery,
    )


def assemble(settings: Settings, runtime: Runtime, retention: RetentionPolicy | None) -> Node:
    """Build every component of a node, in start order; raises ConfigError for an unusable setting."""
    services: list[Service] = []
    if retention is not None:
        job = RetentionJob(
            runtime.engine,
            retention,
            interval_seconds=settings.retention.interval_seconds,
            batch_size=settings.retention.batch_size,
            vault=runtime.vault,
        )
        # Not a daemon: on SIGTERM the purge stops after the batch in hand, which commits.
        services.append(Loop("retention", job.run))
    if settings.metrics.enabled:
        publisher = CloudWatchPublisher.from_settings(runtime.engine, settings.metrics)
        publish = functools.partial(publisher.run, interval_seconds=settings.metrics.interval_seconds)
        # A daemon: a publish cut short by the exit rolls back, and its events go out with the next one.
        services.append(Loop("cloudwatch-metrics", publish, daemon=True, join_seconds=5.0))
    delivery, transports = _delivery(runtime)
    services.extend(delivery)
    # What reads the events: stopped after the HTTP API and the feedback loop, so nothing they wrote waits.
    aggregator = _aggregator(runtime)
    services.append(Loop("stats-aggregator", aggregator.run, daemon=True))
    dispatcher = Dispatcher(
        runtime.engine,
        runtime.keyring,
        settings.webhooks,
        sent_is_delivery=settings.sent_is_delivery,
        vault=runtime.vault,
    )
    # A delivery in flight may take its whole timeout before the loop sees the stop.
    join = settings.webhooks.timeout_seconds + 10
    services.append(
        Loop("webhooks", dispatcher.run, prepare=dispatcher.start, join_seconds=join, daemon=True)
    )
    automation = AutomationEngine(
        runtime.engine,
        make_sender(runtime),
        vault=runtime.vault,
        poll_seconds=settings.automation.poll_seconds,
    )
    services.append(Loop("automation", automation.run, prepare=automation.start, daemon=True))
    # After the workers: stopped before them, so the outcomes they record are all written.
    services.extend(feedback_services(settings, runtime.store, runtime.compose_settings))
    recorder = _recorder(runtime)
    # Stopped right after the HTTP API: it writes what the last requests recorded.
    services.append(recorder)
    smtp = smtp_ingress(runtime, settings.smtp.listen) if settings.smtp.listen else None
    if smtp is not None:
        # Last: stopped first, so messages being accepted commit and get their 250 before anything drains.
        services.append(smtp)
    app = create_app(runtime, recorder)
    return Node(
        runtime, Lifecycle(services), app, transports, smtp, recorder, aggregator, dispatcher, automation
    )


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its shutdown; we drain the services next and exit 0 instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def _retention(settings: Settings) -> RetentionPolicy | None:
    if not settings.retention.enabled:
        return None
    policy = load_retention(policy_path(settings.data_dir, settings.retention.policy_file))
    check_policy_tables(policy)
    return policy


def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; in-flight requests and delivery batches finish first. Returns 0."""
    try:
        # A policy that cannot be enforced stops the start, before anything else runs.
        retention = _retention(settings)
    except RetentionError as exc:
        log.error("the retention policy cannot be used", error=str(exc))
        return 1
    runtime = Runtime.open(settings)
    try:
        node = assemble(settings, runtime, retention)
    except ConfigError as exc:
        log.error("mailstack cannot be assembled", error=str(exc))
        runtime.close()
        return 1
    try:
        node.lifecycle.start()
    except (OSError, ConfigError) as exc:
        log.error("a service cannot start", error=str(exc))
        node.close()
        return 1
    host, port = parse_hostport(settings.server.http)
    server = _Server(
        uvicorn.Config(
            node.app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=30,
        )
    )
    log.info(
        "serving",
        api=f"http://{host}:{port}",
        relay=settings.delivery.relay or "sandbox outbox (nothing leaves this machine)",
        database=runtime.engine.dialect.name,
        workers=settings.delivery.workers,
        smtp=node.smtp.address if node.smtp is not None else "off",
        bounce_intake=settings.feedback.intake or "off",
        postfix_log=settings.feedback.postfix_log or "off",
        retention=str(retention.source) if retention is not None else "off",
        cloudwatch_metrics=settings.metrics.namespace if settings.metrics.enabled else "off",
        services=[service.name for service in node.lifecycle.services],
    )
    # Everything built so far lives as long as the process: the collector need not scan it again. Full
    # collections over it took 100-270 ms (every other thread stopped) and set the API's p99 under load.
    gc.collect()
    gc.freeze()
    try:
        server.run()
    finally:
        log.info("draining")
        node.lifecycle.stop()
        node.close()
        log.info("stopped")
    return 0 if server.started else 1
