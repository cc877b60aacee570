"""The running service's parts, built once from the settings and shared by the API and the workers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine

from mailstack.compose import ComposeSettings, compose
from mailstack.config import Settings, parse_hostport
from mailstack.delivery import OutgoingMail, SandboxOutbox, SmtpRelay, Transport, WorkerSettings
from mailstack.keyring import Keyring
from mailstack.model import Envelope
from mailstack.observability import Metrics
from mailstack.queue import Queue, queue_for
from mailstack.signing import Signer, SigningError
from mailstack.storage import create_storage_engine, migrate
from mailstack.tokens import TokenSigner

from ._keys import signing_keys

# Rotated keys become active on a schedule; reloading this often picks them up without a restart.
KEY_RELOAD_SECONDS = 60.0


class SignerCache:
    """The current :class:`Signer`, rebuilt from the database at most every ``KEY_RELOAD_SECONDS``."""

    def __init__(self, engine: Engine, keyring: Keyring) -> None:
        self._engine = engine
        self._keyring = keyring
        self._lock = threading.Lock()
        self._signer: Signer | None = None
        self._loaded_at = 0.0

    def get(self) -> Signer:
        now = time.monotonic()
        signer = self._signer
        if signer is not None and now - self._loaded_at < KEY_RELOAD_SECONDS:
            return signer
        with self._lock:
            if self._signer is None or now - self._loaded_at >= KEY_RELOAD_SECONDS:
                with self._engine.connect() as conn:
                    self._signer = Signer(signing_keys(conn, self._keyring, now=time.time()))
                self._loaded_at = now
            return self._signer

    def invalidate(self) -> None:
        self._loaded_at = 0.0


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    queue: Queue
    keyring: Keyring
    metrics: Metrics
    compose_settings: ComposeSettings
    signers: SignerCache
    wake: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def open(cls, settings: Settings, *, run_migrations: bool = True) -> Runtime:
        """Connect to the database (migrating it to the current schema) and build every part."""
        engine = create_storage_engine(settings.database_url, pool_size=settings.delivery.workers + 8)
        if run_migrations:
            migrate(engine)
        keyring = Keyring(settings.secret_key())
        compose_settings = ComposeSettings(
            hostname=settings.hostname,
            bounce_domain=settings.bounce_domain,
            tokens=TokenSigner(keyring.derive("tokens")),
            unsubscribe_base_url=settings.public_url,
        )
        metrics = Metrics()
        queue = queue_for(engine)
        metrics.watch_queue(lambda: queue.stats(now=time.time()))
        return cls(settings, engine, queue, keyring, metrics, compose_settings, SignerCache(engine, keyring))

    def prepare(self, envelope: Envelope) -> OutgoingMail:
        """Compose and DKIM-sign one recipient's copy."""
        composed = compose(envelope, self.compose_settings)
        try:
            data = self.signers.get().sign_message(composed.data, envelope.spec.sender.domain)
        except SigningError as exc:
            raise ValueError(str(exc)) from exc
        return OutgoingMail(
            message_id=envelope.message_id,
            mail_from=composed.mail_from,
            rcpt_to=composed.rcpt_to,
            data=data,
            smtputf8=composed.smtputf8,
        )

    def relay(self) -> Transport:
        """The relay transport from the settings; the sandbox outbox when no relay is configured."""
        if not self.settings.delivery.relay:
            return SandboxOutbox(self.engine)
        host, port = parse_hostport(self.settings.delivery.relay)
        return SmtpRelay(
            host,
            port,
            helo_name=self.settings.hostname,
            pool_size=self.settings.delivery.workers,
            timeout=self.settings.delivery.smtp_timeout_seconds,
        )

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
