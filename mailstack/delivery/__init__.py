"""Delivery: prepare each recipient's copy (render → track → compose → sign), hand it to the relay
(Postfix) or keep it in the sandbox outbox, and the worker loop that drives queue → prepare → throttle →
transport → outcomes."""

from ._prepare import Preparer, Undeliverable
from ._sandbox import SandboxOutbox
from ._smtp import SmtpRelay
from ._transport import DeliveryResult, Outcome, OutgoingMail, Transport
from ._worker import DeliveryWorker, WorkerSettings, retry_delay

__all__ = [
    "DeliveryResult",
    "DeliveryWorker",
    "Outcome",
    "OutgoingMail",
    "Preparer",
    "SandboxOutbox",
    "SmtpRelay",
    "Transport",
    "Undeliverable",
    "WorkerSettings",
    "retry_delay",
]
