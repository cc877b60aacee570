"""Automation rules: creating, listing and removing them, and reading what they did (their runs)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func, insert, select

from mailstack.storage import PURPOSE_AUTOMATION_ERROR
from mailstack.storage.schema import automation_rules, automation_runs

if TYPE_CHECKING:
    from mailstack.privacy import Vault

__all__ = [
    "RuleRecord",
    "RunRecord",
    "create_rule",
    "delete_rule",
    "follow_up_message",
    "list_rules",
    "list_runs",
    "recipient_properties",
]

# The Send API matches property names whatever their letter case (casefold), so "bcc" or "TO" in a
# template name recipients just as "Bcc" and "To" do.
_RECIPIENTS = frozenset({"to", "cc", "bcc"})


def recipient_properties(template: Mapping[str, object]) -> list[str]:
    """The keys of ``template`` that name recipients, in any letter case."""
    return [key for key in template if isinstance(key, str) and key.casefold() in _RECIPIENTS]


def follow_up_message(template: Mapping[str, Any], to: dict[str, str]) -> dict[str, Any]:
    """``template`` sent to ``to`` alone: recipients a stored template names (in any case) are dropped."""
    named = set(recipient_properties(template))
    return {**{key: value for key, value in template.items() if key not in named}, "To": [to]}


@dataclass(frozen=True, slots=True)
class RuleRecord:
    id: int
    api_key_id: int
    name: str
    event_type: str
    campaign: str
    template: dict[str, Any]
    active: bool
    created_at: float
    runs: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Name": self.name,
            "EventType": self.event_type,
            "CustomCampaign": self.campaign,
            "Template": self.template,
            "Active": self.active,
            "CreatedAt": self.created_at,
            "Runs": self.runs,
        }


def create_rule(
    conn: Connection, *, api_key_id: int, name: str, event_type: str, campaign: str, template: dict[str, Any]
) -> RuleRecord:
    now = time.time()
    new_id = conn.execute(
        insert(automation_rules)
        .values(
            api_key_id=api_key_id,
            name=name,
            event_type=event_type,
            campaign=campaign,
            template=template,
            created_at=now,
        )
        .returning(automation_rules.c.id)
    ).scalar_one()
    return RuleRecord(new_id, api_key_id, name, event_type, campaign, template, True, now)


def list_rules(conn: Connection, api_key_id: int) -> list[RuleRecord]:
    """The API key's rules, each with how many follow-ups it has sent."""
    runs = (
        select(func.count())
        .where(
            automation_runs.c.rule_id == automation_rules.c.id, automation_runs.c.sent_message_id.is_not(None)
        )
        .scalar_subquery()
    )
    rows = conn.execute(
        select(automation_rules, runs.label("runs"))
        .where(automation_rules.c.api_key_id == api_key_id)
        .order_by(automation_rules.c.id)
    )
    return [
        RuleRecord(
            r.id,
            r.api_key_id,
            r.name,
            r.event_type,
            r.campaign,
            r.template,
            r.active,
            r.created_at,
            int(r.runs),
        )
        for r in rows
    ]


def delete_rule(conn: Connection, api_key_id: int, rule_id: int) -> bool:
    owned = conn.execute(
        select(automation_rules.c.id).where(
            automation_rules.c.id == rule_id, automation_rules.c.api_key_id == api_key_id
        )
    ).first()
    if owned is None:
        return False
    conn.execute(delete(automation_runs).where(automation_runs.c.rule_id == rule_id))
    conn.execute(delete(automation_rules).where(automation_rules.c.id == rule_id))
    return True


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One firing of a rule: the message that triggered it and what came of it."""

    trigger_message_id: int
    event_id: int
    sent_message_id: int | None
    created_at: float
    error: str | None  # why the follow-up was refused; "" once the trigger's recipient was erased

    @property
    def status(self) -> str:
        if self.sent_message_id is not None:
            return "sent"
        return "pending" if self.error is None else "refused"

    def to_json(self) -> dict[str, Any]:
        return {
            "TriggerMessageID": self.trigger_message_id,
            "EventID": self.event_id,
            "SentMessageID": self.sent_message_id,
            "CreatedAt": self.created_at,
            "Status": self.status,
            "Error": self.error or "",
        }


def list_runs(
    conn: Connection, vault: Vault, api_key_id: int, rule_id: int, *, limit: int = 100, offset: int = 0
) -> list[RunRecord] | None:
    """The rule's runs, newest first, their errors opened; None when the rule is not the API key's."""
    owned = conn.execute(
        select(automation_rules.c.id).where(
            automation_rules.c.id == rule_id, automation_rules.c.api_key_id == api_key_id
        )
    ).first()
    if owned is None:
        return None
    rows = conn.execute(
        select(automation_runs)
        .where(automation_runs.c.rule_id == rule_id)
        .order_by(automation_runs.c.created_at.desc(), automation_runs.c.trigger_message_id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    errors = vault.open_many_optional(conn, [r.error for r in rows], purpose=PURPOSE_AUTOMATION_ERROR)
    return [
        RunRecord(
            r.trigger_message_id,
            r.event_id,
            r.sent_message_id,
            r.created_at,
            None if r.error is None else ("" if plain is None else plain.decode("utf-8", "replace")),
        )
        for r, plain in zip(rows, errors, strict=True)
    ]
