"""Automation rules: "when event E happens for campaign C, send template T to that recipient".

The engine reads the events table from its own cursor (only events from its first start on). For each
event matching an active rule it records a *run* — one per rule and triggering message, so a second open
never sends the follow-up twice — in the same transaction that moves the cursor. Runs are then sent
through the normal Send API path (validation, sender check, suppression, durable queue) with an
``Idempotency-Key`` naming the run: a crash between sending and noting it is replayed without a second
mail.

Machine traffic never triggers a rule (a privacy proxy's prefetch is not an open, a link scanner's
request is not a click), and mail sent by a rule never triggers one, so rules cannot loop.

Why a follow-up was refused often quotes the recipient ("... <ana@example.net> ..."): it is stored sealed
under the trigger recipient's key (``automation_runs.error``, erased with them) and never logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from mailstack.automation._rules import follow_up_message
from mailstack.observability import get_logger
from mailstack.privacy import Vault
from mailstack.storage import (
    PURPOSE_AUTOMATION_ERROR,
    PURPOSE_RECIPIENT,
    PURPOSE_RECIPIENT_NAME,
    EventTail,
    OutageNotice,
)
from mailstack.storage.schema import automation_rules, automation_runs, events, messages

__all__ = ["CURSOR", "TRIGGER_EVENTS", "AutomationEngine", "SendFailedError", "Sender"]

log = get_logger("mailstack.automation")

CURSOR = "automation"
TRIGGER_EVENTS: tuple[str, ...] = (
    "open",
    "click",
    "sent",
    "delivered",
    "bounce",
    "blocked",
    "spam",
    "unsub",
    "conversion",
)
RUN_BATCH = 100


class SendFailedError(Exception):
    """The follow-up could not be accepted (invalid for this recipient, suppressed, ...); not retried."""


# (api_key_id, Send API message, idempotency key) -> the new MessageID. Raises SendFailedError.
Sender = Callable[[int, dict[str, Any], str], int]


@dataclass(frozen=True, slots=True)
class _Trigger:
    rule_id: int
    message_id: int
    event_id: int


class AutomationEngine:
    """Matches events against rules and sends the follow-ups."""

    def __init__(
        self,
        engine: Engine,
        send: Sender,
        *,
        vault: Vault,
        poll_seconds: float = 0.5,
        batch_size: int = 1000,
        gap_grace_seconds: float | None = None,
    ) -> None:
        """``vault`` opens the sealed recipient of the message that triggered a rule."""
        self._engine = engine
        self._vault = vault
        self._send = send
        self._poll = poll_seconds
        self._batch = batch_size
        self._tail = (
            EventTail(CURSOR, start_at_end=True)
            if gap_grace_seconds is None
            else EventTail(CURSOR, start_at_end=True, gap_grace_seconds=gap_grace_seconds)
        )

    def start(self) -> None:
        """Create the cursor, so that only events from now on trigger rules."""
        with self._engine.begin() as conn:
            self._tail.read(conn, 0)

    def run(self, stop: threading.Event) -> None:
        outage = OutageNotice(log, "automation round")
        while not stop.is_set():
            try:
                worked = self.run_once()
                outage.succeeded()
            except Exception as exc:  # the thread must not die; what failed is retried next round
                outage.failed(exc)
                worked = 0
            if not worked:
                stop.wait(self._poll)

    def run_once(self) -> int:
        """Match one batch of events and send what is pending; returns the work done."""
        return self.match() + self.send_pending()

    def match(self) -> int:
        """Record the runs the next events trigger; returns how many events were read."""
        with self._engine.begin() as conn:
            rows = self._tail.read(
                conn, self._batch, [events.c.id, events.c.message_id, events.c.type, events.c.detail]
            )
            if not rows:
                return 0
            candidates = [row for row in rows if row.type in TRIGGER_EVENTS and not _machine(row.detail)]
            triggers = _triggers(conn, candidates)
            if triggers:
                dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
                conn.execute(
                    dialect.insert(automation_runs).on_conflict_do_nothing(
                        index_elements=["rule_id", "trigger_message_id"]
                    ),
                    [
                        {
                            "rule_id": t.rule_id,
                            "trigger_message_id": t.message_id,
                            "event_id": t.event_id,
                            "created_at": time.time(),
                        }
                        for t in triggers
                    ],
                )
            self._tail.advance(conn, rows[-1].id)
            return len(rows)

    def send_pending(self) -> int:
        """Send the follow-ups of the runs not sent yet; returns how many were handled."""
        with self._engine.connect() as conn:
            pending = conn.execute(
                select(
                    automation_runs.c.rule_id,
                    automation_runs.c.trigger_message_id,
                    automation_rules.c.api_key_id,
                    automation_rules.c.template,
                    messages.c.recipient,
                    messages.c.recipient_index,
                    messages.c.recipient_name,
                )
                .join(automation_rules, automation_rules.c.id == automation_runs.c.rule_id)
                .join(messages, messages.c.id == automation_runs.c.trigger_message_id)
                .where(automation_runs.c.sent_message_id.is_(None), automation_runs.c.error.is_(None))
                .order_by(automation_runs.c.created_at)
                .limit(RUN_BATCH)
            ).all()
            recipients = {
                (run.rule_id, run.trigger_message_id): (
                    self._vault.open_optional(conn, run.recipient, purpose=PURPOSE_RECIPIENT),
                    self._vault.open_optional(conn, run.recipient_name, purpose=PURPOSE_RECIPIENT_NAME),
                )
                for run in pending
            }
        for run in pending:
            email, name = recipients[(run.rule_id, run.trigger_message_id)]
            values: dict[str, Any]
            error: str | None = None
            try:
                if email is None:
                    raise SendFailedError("the recipient was erased")
                to: dict[str, str] = {"Email": email.decode()}
                if name:
                    to["Name"] = name.decode()
                message = follow_up_message(run.template, to)
                key = f"automation-{run.rule_id}-{run.trigger_message_id}"
                values = {"sent_message_id": self._send(run.api_key_id, message, key)}
            except SendFailedError as exc:
                error = str(exc)[:2000]
                # Ids only: the error itself may quote the address (GET /api/v1/automations/{id}/runs).
                log.warning(
                    "automation follow-up refused",
                    rule=run.rule_id,
                    trigger_message_id=run.trigger_message_id,
                )
            with self._engine.begin() as conn:
                if error is not None:
                    values = {
                        "error": self._vault.seal(
                            conn,
                            error.encode(),
                            purpose=PURPOSE_AUTOMATION_ERROR,
                            subject=run.recipient_index,
                        )
                    }
                conn.execute(
                    update(automation_runs)
                    .where(
                        automation_runs.c.rule_id == run.rule_id,
                        automation_runs.c.trigger_message_id == run.trigger_message_id,
                    )
                    .values(**values)
                )
        return len(pending)


def _machine(detail: Any) -> bool:
    return isinstance(detail, dict) and bool(detail.get("machine"))


# PostgreSQL: statement texts the same whatever the number of messages (an ``IN`` list of more than 50
# parameters is converted again by psycopg for every batch, and the server cannot reuse its plan). One
# index lookup per id (LATERAL, kept a subquery by OFFSET 0) rather than ``= ANY(...)``, whose generic
# plan, made once while a table may be small, can be a sequential scan (see
# mailstack.storage._vault._PG_KEYS).
_PG_MESSAGES = text(
    """
SELECT m.id, m.api_key_id, m.campaign FROM unnest(CAST(:ids AS BIGINT[])) AS k(id)
CROSS JOIN LATERAL (SELECT id, api_key_id, campaign FROM messages WHERE id = k.id OFFSET 0) AS m
"""
)
_PG_AUTOMATED = text(
    """
SELECT r.sent_message_id FROM unnest(CAST(:ids AS BIGINT[])) AS k(id)
CROSS JOIN LATERAL (
    SELECT sent_message_id FROM automation_runs WHERE sent_message_id = k.id OFFSET 0
) AS r
"""
)


def _triggers(conn: Connection, rows: Iterable[Any]) -> list[_Trigger]:
    by_message: dict[int, list[Any]] = {}
    for row in rows:
        by_message.setdefault(row.message_id, []).append(row)
    if not by_message:
        return []
    ids = sorted(by_message)
    info: dict[int, tuple[int, str]] = {}
    automated: set[int] = set()
    if conn.dialect.name == "postgresql":
        info.update({r.id: (r.api_key_id, r.campaign) for r in conn.execute(_PG_MESSAGES, {"ids": ids})})
        automated.update(int(m) for m in conn.execute(_PG_AUTOMATED, {"ids": ids}).scalars())
    else:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = select(messages.c.id, messages.c.api_key_id, messages.c.campaign).where(
                messages.c.id.in_(chunk)
            )
            info.update({r.id: (r.api_key_id, r.campaign) for r in conn.execute(query)})
            sent = select(automation_runs.c.sent_message_id).where(
                automation_runs.c.sent_message_id.in_(chunk)
            )
            automated.update(int(m) for m in conn.execute(sent).scalars())
    keys = {info[m] for m in info if m not in automated and info[m][1]}
    if not keys:
        return []
    rules: dict[tuple[int, str, str], list[int]] = {}
    query = select(
        automation_rules.c.id,
        automation_rules.c.api_key_id,
        automation_rules.c.campaign,
        automation_rules.c.event_type,
    ).where(
        automation_rules.c.active.is_(True),
        automation_rules.c.campaign.in_(sorted({campaign for _key, campaign in keys})),
    )
    for rule in conn.execute(query):
        rules.setdefault((rule.api_key_id, rule.campaign, rule.event_type), []).append(rule.id)
    found: dict[tuple[int, int], _Trigger] = {}
    for message_id, message_rows in by_message.items():
        if message_id not in info or message_id in automated:
            continue
        api_key_id, campaign = info[message_id]
        for row in message_rows:
            for rule_id in rules.get((api_key_id, campaign, row.type), ()):
                # The first matching event of the batch is the trigger; later ones change nothing.
                found.setdefault((rule_id, message_id), _Trigger(rule_id, message_id, row.id))
    return list(found.values())
