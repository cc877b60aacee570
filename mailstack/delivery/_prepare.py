"""Preparing one recipient's copy for the wire: render → track → compose → sign."""

from __future__ import annotations

import time
from dataclasses import replace

from sqlalchemy import Engine

from mailstack.accept import Acceptor
from mailstack.compose import ComposeError, ComposeSettings, compose
from mailstack.domains import SignerCache
from mailstack.model import Envelope, MessageSpec
from mailstack.signing import SigningError
from mailstack.storage import message_api_key
from mailstack.templates import TemplateFailure, render_message
from mailstack.tracking import Tracker

from ._transport import OutgoingMail


class Undeliverable(Exception):  # noqa: N818 - a verdict on the message, not a malfunction
    """The message can never be sent as it is (a template error, a header the composer refuses, a domain
    without a key): it fails at once. Any other exception from preparing is a malfunction, retried."""


class Preparer:
    def __init__(
        self,
        engine: Engine,
        tracker: Tracker,
        compose_settings: ComposeSettings,
        signers: SignerCache,
        acceptor: Acceptor,
    ) -> None:
        self._engine = engine
        self._tracker = tracker
        self._compose_settings = compose_settings
        self._signers = signers
        self._acceptor = acceptor

    def __call__(self, envelope: Envelope) -> OutgoingMail:
        """One recipient's signed copy; raises :class:`Undeliverable` for mail that can never go."""
        envelope = self._render(envelope)
        try:
            composed = compose(self._tracker.apply(envelope), self._compose_settings)
            data = self._signers.get().sign_message(composed.data, envelope.spec.sender.domain)
        except (ComposeError, SigningError) as exc:
            raise Undeliverable(str(exc)) from exc
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
                raise Undeliverable(f"template error in {outcome.message}")
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
        with self._engine.begin() as conn:
            api_key_id = message_api_key(conn, envelope.message_id)
            accepted = self._acceptor.accept(conn, api_key_id, [report], now=now) if api_key_id else []
        self._acceptor.notify(accepted)
