from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from mailstack.storage import store_outbox

from ._transport import DeliveryResult, Outcome, OutgoingMail, ResultCallback

if TYPE_CHECKING:
    from mailstack.privacy import Vault


class SandboxOutbox:
    """Keeps mail in the database's outbox instead of sending it: nothing leaves the machine."""

    name = "sandbox"

    def __init__(self, engine: Engine, vault: Vault) -> None:
        self._engine = engine
        self._vault = vault  # the copies are sealed under their recipients' keys

    def deliver(
        self, mail: Sequence[OutgoingMail], on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        now = time.time()
        with self._engine.begin() as conn:
            for item in mail:
                store_outbox(
                    conn, item.message_id, item.mail_from, item.rcpt_to, item.data, now=now, vault=self._vault
                )
        results = [DeliveryResult(Outcome.SENT, 250, "kept in the sandbox outbox") for _ in mail]
        if on_result is not None:
            for position, result in enumerate(results):
                on_result(position, result)
        return results

    def close(self) -> None:
        return None
