"""Delivery: prepare each recipient's copy (render → track → compose → sign), hand it to the relay
(Postfix) or keep it in the sandbox outbox, and the worker loop that drives queue → prepare → throttle →
transport → outcomes."""

from ._journal import Journal, JournalDirectory, JournalEntry
from ._prepare import Preparer, Undeliverable
from ._recovery import LeaseKeeper, node_owner, recover
from ._sandbox import SandboxOutbox
from ._smtp import SmtpRelay
from ._transport import DeliveryResult, Outcome, OutgoingMail, ResultCallback, Transport
from ._worker import MAX_UNCOMMITTED, DeliveryWorker, WorkerSettings, retry_delay

__all__ = [
    "MAX_UNCOMMITTED",
    "DeliveryResult",
    "DeliveryWorker",
    "Journal",
    "JournalDirectory",
    "JournalEntry",
    "LeaseKeeper",
    "Outcome",
    "OutgoingMail",
    "Preparer",
    "ResultCallback",
    "SandboxOutbox",
    "SmtpRelay",
    "Transport",
    "Undeliverable",
    "WorkerSettings",
    "node_owner",
    "recover",
    "retry_delay",
]
