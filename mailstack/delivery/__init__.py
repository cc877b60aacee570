"""Delivery: hand signed mail to the relay (Postfix) or keep it in the sandbox outbox, and the worker
loop that drives queue → compose → sign → deliver → events."""

from ._journal import Journal, JournalDirectory, JournalEntry
from ._recovery import LeaseKeeper, node_owner, recover
from ._sandbox import SandboxOutbox
from ._smtp import SmtpRelay
from ._transport import DeliveryResult, Outcome, OutgoingMail, ResultCallback, Transport
from ._worker import DeliveryWorker, WorkerSettings, retry_delay

__all__ = [
    "DeliveryResult",
    "DeliveryWorker",
    "Journal",
    "JournalDirectory",
    "JournalEntry",
    "LeaseKeeper",
    "Outcome",
    "OutgoingMail",
    "ResultCallback",
    "SandboxOutbox",
    "SmtpRelay",
    "Transport",
    "WorkerSettings",
    "node_owner",
    "recover",
    "retry_delay",
]
