"""``mailstack serve``: the HTTP API and the delivery workers in one process, drained on SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import uvicorn

from mailstack.config import ConfigError, Settings, parse_hostport
from mailstack.delivery import (
    DeliveryWorker,
    Journal,
    JournalDirectory,
    LeaseKeeper,
    node_owner,
    recover,
)
from mailstack.feedback import FeedbackServices
from mailstack.observability import get_logger
from mailstack.privacy import (
    RetentionError,
    RetentionJob,
    check_policy_tables,
    load_retention,
    policy_path,
)
from mailstack.stats import CloudWatchPublisher

from ._runtime import Runtime

log = get_logger("mailstack.serve")

# How long SIGTERM waits for the batches in hand; leases of anything slower expire and are retried.
DRAIN_SECONDS = 60.0


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its shutdown; we drain the workers next and exit 0 instead."""

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


def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; in-flight requests and delivery batches finish first. Returns 0."""
    from mailstack.api import create_app  # noqa: PLC0415 - the API imports this package

    retention = None
    if settings.retention.enabled:
        # A policy that cannot be enforced stops the start, before anything else runs.
        try:
            retention = load_retention(policy_path(settings.data_dir, settings.retention.policy_file))
            check_policy_tables(retention)
        except RetentionError as exc:
            log.error("the retention policy cannot be used", error=str(exc))
            return 1
    runtime = Runtime.open(settings)
    smtp = None
    if settings.smtp.listen:
        from mailstack.smtp import start_ingress  # noqa: PLC0415 - the SMTP ingress imports this package

        try:
            smtp = start_ingress(runtime, settings.smtp.listen)
        except (OSError, ConfigError) as exc:
            log.error("smtp submission cannot start", error=str(exc))
            runtime.close()
            return 1
    feedback = FeedbackServices(settings, runtime.engine, runtime.compose_settings, runtime.vault)
    try:
        feedback.start()
    except OSError as exc:
        log.error("the bounce intake cannot start", error=str(exc))
        feedback.stop()
        if smtp is not None:
            smtp.stop()
        runtime.close()
        return 1
    relay = runtime.relay()
    ip_relays = runtime.ip_relays()
    stop = threading.Event()
    threads = []
    journals = JournalDirectory(settings.data_dir / "journal")
    owner = node_owner(settings.data_dir)
    worker_settings = runtime.worker_settings()

    def delivery_worker(journal: Journal | None) -> DeliveryWorker:
        return DeliveryWorker(
            runtime.engine,
            runtime.queue,
            runtime.prepare,
            relay,
            worker_settings,
            runtime.metrics,
            throttle=runtime.throttle,
            ip_transports=ip_relays,
            vault=runtime.vault,
            journal=journal,
            owner=owner,
        )

    # What the previous run delivered but had not recorded, then the leases it held.
    recover(delivery_worker(None), journals, runtime.queue, owner)
    workers = [delivery_worker(journals.for_worker(index)) for index in range(settings.delivery.workers)]
    keeper = LeaseKeeper(runtime.queue, owner, worker_settings.lease_seconds)
    thread = threading.Thread(target=keeper.run, args=(stop,), name="lease-keeper", daemon=True)
    thread.start()
    for index, worker in enumerate(workers):
        thread = threading.Thread(target=worker.run, args=(stop, runtime.wake), name=f"delivery-{index}")
        thread.start()
        threads.append(thread)
    if settings.metrics.enabled:
        publisher = CloudWatchPublisher.from_settings(runtime.engine, settings.metrics)
        # A daemon: a publish cut short by the exit rolls back, and its events go out with the next one.
        thread = threading.Thread(
            target=publisher.run,
            args=(stop, settings.metrics.interval_seconds),
            name="cloudwatch-metrics",
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    if retention is not None:
        job = RetentionJob(
            runtime.engine,
            retention,
            interval_seconds=settings.retention.interval_seconds,
            batch_size=settings.retention.batch_size,
            vault=runtime.vault,
        )
        # Not a daemon: on SIGTERM the purge stops after the batch in hand, which commits.
        thread = threading.Thread(target=job.run, args=(stop,), name="retention")
        thread.start()
        threads.append(thread)
    host, port = parse_hostport(settings.server.http)
    server = _Server(
        uvicorn.Config(
            create_app(runtime),
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
        smtp=smtp.address if smtp is not None else "off",
        bounce_intake=feedback.intake.address if feedback.intake is not None else "off",
        postfix_log=settings.feedback.postfix_log or "off",
        retention=str(retention.source) if retention is not None else "off",
        cloudwatch_metrics=settings.metrics.namespace if settings.metrics.enabled else "off",
    )
    try:
        server.run()
    finally:
        if smtp is not None:
            # Before the workers: messages being accepted commit and get their 250 first.
            log.info("draining smtp submission")
            smtp.stop()
        feedback.stop()  # no more bounces taken; the log reader commits the chunk in hand
        log.info("draining delivery workers")
        stop.set()
        runtime.wake.set()
        for thread in threads:
            thread.join(DRAIN_SECONDS)
        relay.close()
        for ip_relay in ip_relays.values():
            ip_relay.close()
        runtime.close()
        log.info("stopped")
    return 0 if server.started else 1
