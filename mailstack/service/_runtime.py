"""The running service's parts, built once from the settings and shared by the API and the workers."""

from __future__ import annotations

import functools
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import Connection, Engine

from mailstack.compose import ComposeSettings, compose
from mailstack.config import Settings, parse_hostport
from mailstack.delivery import OutgoingMail, SandboxOutbox, SmtpRelay, Transport, WorkerSettings
from mailstack.keyring import Keyring
from mailstack.model import Envelope, MessageSpec
from mailstack.observability import Metrics
from mailstack.privacy import Vault, convert_plaintext, provider_from_settings
from mailstack.queue import Queue, queue_for
from mailstack.signing import Signer, SigningError
from mailstack.storage import (
    AcceptedRecipient,
    Store,
    create_storage_engine,
    insert_messages,
    message_api_key,
    migrate,
)
from mailstack.templates import TemplateFailure, render_message
from mailstack.throttle import Throttle, throttle_from_settings
from mailstack.tokens import TokenSigner
from mailstack.tracking import Tracker, tracker_for

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
    def store(self) -> Store:
        """The database's repositories, with the vault bound in."""
        return Store(self.engine, self.vault)

    @functools.cached_property
    def tracker(self) -> Tracker:
        """Open/click tracking and unsubscribe links, applied to each copy before composition."""
        return tracker_for(self.settings, self.compose_settings.tokens)

    def accept_messages(
        self, conn: Connection, api_key_id: int, specs: Sequence[MessageSpec], *, now: float
    ) -> list[list[AcceptedRecipient]]:
        """Store messages and queue them in the caller's transaction; call :meth:`notify` after commit.

        A suppressed recipient's message is stored as blocked (it still gets its MessageID, as with
        Mailjet) and never queued.
        """
        accepted = insert_messages(conn, api_key_id, specs, now=now, vault=self.vault) if specs else []
        queued = [r.message_id for group in accepted for r in group if not r.blocked]
        self.queue.enqueue(conn, queued, available_at=now)
        return accepted

    def notify(self, accepted: Sequence[Sequence[AcceptedRecipient]]) -> None:
        """Count accepted recipients and wake the workers if any were queued (after the commit)."""
        self.metrics.accepted.inc(sum(len(group) for group in accepted))
        if any(not r.blocked for group in accepted for r in group):
            self.wake.set()

    def prepare(self, envelope: Envelope) -> OutgoingMail:
        """Render templates, then compose and DKIM-sign one recipient's copy."""
        envelope = self._render(envelope)
        composed = compose(self.tracker.apply(envelope), self.compose_settings)
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

    def _render(self, envelope: Envelope) -> Envelope:
        spec = envelope.spec
        if not spec.template_language or spec.raw is not None:
            return envelope
        outcome = render_message(spec)
        if isinstance(outcome, TemplateFailure):
            self._report_template_error(envelope, outcome)
            if not spec.template_error_deliver:
                raise ValueError(f"template error in {outcome.message}")
            # TemplateErrorDeliver: the sender chose to have it sent as written rather than not at all.
            return replace(envelope, spec=replace(outcome.spec, template_language=False))
        return replace(envelope, spec=outcome.spec)

    def _report_template_error(self, envelope: Envelope, failure: TemplateFailure) -> None:
        """Mailjet's TemplateErrorReporting: mail the error to the address the sender named."""
        spec = envelope.spec
        if spec.template_error_reporting is None:
            return
        report = MessageSpec(
            sender=spec.sender,
            to=(spec.template_error_reporting,),
            subject=f"Template error in message {envelope.message_id}",
            text=(
                f"Message {envelope.message_id} ({envelope.message_uuid}) to one recipient could not be "
                f"rendered:\n\n{failure.message}\n\n"
                + ("It was sent unrendered (TemplateErrorDeliver).\n" if spec.template_error_deliver else "")
            ),
            custom_id=spec.custom_id,
        )
        now = time.time()
        with self.engine.begin() as conn:
            api_key_id = message_api_key(conn, envelope.message_id)
            accepted = self.accept_messages(conn, api_key_id, [report], now=now) if api_key_id else []
        self.notify(accepted)

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
