"""The running service's parts, built once from the settings and shared by every component.

Built by the composition root (:mod:`mailstack.serve`) and by tests; it opens the database and holds what
the API, SMTP submission and the delivery workers share. It starts nothing: that is the lifecycle's job.
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine

from mailstack.accept import Acceptor
from mailstack.compose import ComposeSettings
from mailstack.config import Settings, parse_hostport
from mailstack.delivery import Preparer, SandboxOutbox, SmtpRelay, Transport, WorkerSettings
from mailstack.domains import SignerCache
from mailstack.keyring import Keyring
from mailstack.observability import Metrics
from mailstack.privacy import Vault, convert_plaintext, provider_from_settings
from mailstack.queue import Queue, queue_for
from mailstack.storage import Store, create_storage_engine, migrate
from mailstack.throttle import Throttle, throttle_from_settings
from mailstack.tokens import TokenSigner
from mailstack.tracking import Tracker, tracker_for

__all__ = ["Runtime"]


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    queue: Queue
    keyring: Keyring
    metrics: Metrics
    compose_settings: ComposeSettings
    signers: SignerCache
    vault: Vault
    wake: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def open(cls, settings: Settings, *, run_migrations: bool = True) -> Runtime:
        """Connect to the database (migrating it to the current schema) and build every part."""
        engine = create_storage_engine(settings.database_url, pool_size=settings.delivery.workers + 8)
        if run_migrations:
            migrate(engine)
        keyring = Keyring(settings.secret_key())
        # Personal data at rest is sealed (mailstack.privacy.Vault); old plaintext rows get sealed here.
        vault = Vault(engine, keyring, provider_from_settings(settings.privacy, keyring))
        if run_migrations:
            convert_plaintext(engine, vault)
        compose_settings = ComposeSettings(
            hostname=settings.hostname,
            bounce_domain=settings.bounce_domain,
            tokens=TokenSigner(keyring.derive("tokens")),
            unsubscribe_base_url=settings.public_url,
        )
        metrics = Metrics()
        queue = queue_for(engine, settings.queue)
        metrics.watch_queue(lambda: queue.stats(now=time.time()))
        return cls(
            settings, engine, queue, keyring, metrics, compose_settings, SignerCache(engine, keyring), vault
        )

    @functools.cached_property
    def tracker(self) -> Tracker:
        """Open/click tracking and unsubscribe links, applied to each copy before composition."""
        return tracker_for(self.settings, self.compose_settings.tokens)

    @functools.cached_property
    def store(self) -> Store:
        """The database's repositories, with the vault bound in."""
        return Store(self.engine, self.vault)

    @functools.cached_property
    def acceptor(self) -> Acceptor:
        """The one way into the pipeline: the API, SMTP submission, consents and automation use it."""
        return Acceptor(self.queue, self.vault, self.signers, self.metrics, self.wake)

    @functools.cached_property
    def preparer(self) -> Preparer:
        """render → track → compose → sign, for the delivery workers."""
        return Preparer(self.engine, self.tracker, self.compose_settings, self.signers, self.acceptor)

    def relay(self) -> Transport:
        """The relay transport from the settings; the sandbox outbox when no relay is configured."""
        if not self.settings.delivery.relay:
            return SandboxOutbox(self.engine, self.vault)
        return self._smtp_relay(*parse_hostport(self.settings.delivery.relay))

    def _smtp_relay(self, host: str, port: int) -> SmtpRelay:
        delivery = self.settings.delivery
        context = None
        if delivery.relay_starttls:
            ca_file = self.settings.data_dir / delivery.relay_ca_file if delivery.relay_ca_file else None
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        return SmtpRelay(
            host,
            port,
            helo_name=self.settings.hostname,
            pool_size=delivery.workers,
            timeout=delivery.smtp_timeout_seconds,
            starttls=delivery.relay_starttls,
            tls_context=context,
        )

    def ip_relays(self) -> dict[str, Transport]:
        """A relay per sending IP that names its own (the Postfix listener whose transport binds that IP).

        None in sandbox mode: with no ``delivery.relay`` nothing leaves the machine, whatever the IPs say.
        """
        if not self.settings.delivery.relay:
            return {}
        relays: dict[str, Transport] = {}
        for ip in self.settings.throttle.ips:
            if ip.relay:
                relays[ip.address] = self._smtp_relay(*parse_hostport(ip.relay))
        return relays

    @functools.cached_property
    def throttle(self) -> Throttle | None:
        """Pacing shared by every worker of the fleet through the database; None when nothing is limited."""
        return throttle_from_settings(self.settings.throttle, self.engine, registry=self.metrics.registry)

    def worker_settings(self) -> WorkerSettings:
        delivery = self.settings.delivery
        return WorkerSettings(
            batch_size=delivery.batch_size,
            lease_seconds=self.settings.queue.lease_seconds,
            max_attempts=delivery.max_attempts,
            retry_base_seconds=delivery.retry_base_seconds,
            retry_max_seconds=delivery.retry_max_seconds,
            poll_seconds=delivery.poll_seconds,
        )

    def close(self) -> None:
        self.engine.dispose()
