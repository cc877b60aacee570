from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A composed, signed message for one recipient."""

    message_id: int
    mail_from: str
    rcpt_to: str
    data: bytes
    smtputf8: bool = False


class Outcome(StrEnum):
    SENT = "sent"  # the relay took responsibility (2xx after DATA)
    DEFERRED = "deferred"  # temporary: retry later
    FAILED = "failed"  # permanent refusal by the relay


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    outcome: Outcome
    code: int  # SMTP reply code, 0 when no reply was received
    reply: str  # the relay's reply text, or the local error

    def summary(self) -> str:
        return f"{self.code} {self.reply}" if self.code else self.reply


# Called with (position in the batch, result) as each message's final reply arrives.
ResultCallback = Callable[[int, "DeliveryResult"], None]


class Transport(Protocol):
    """Where mail leaves mailstack."""

    name: str

    def deliver(
        self, mail: Sequence[OutgoingMail], on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        """Try each message once; results in the same order. Never raises for a delivery problem.

        ``on_result`` hears of each result as soon as it is known, before the rest of the batch."""

    def close(self) -> None:
        """Release connections."""
