"""Automated messages: "when event E happens for campaign C, send template T to that recipient".

:class:`AutomationEngine` matches events against the rules (exactly once per rule and message) and sends
the follow-ups through the Send API path; ``mailstack.api._automation`` holds the ``/api/v1/automations``
routes (``/api/v1/automations/{id}/runs`` shows what each rule did, refusals included).
"""

from __future__ import annotations

from mailstack.automation._engine import CURSOR, TRIGGER_EVENTS, AutomationEngine, Sender, SendFailedError
from mailstack.automation._rules import (
    RuleRecord,
    RunRecord,
    create_rule,
    delete_rule,
    follow_up_message,
    list_rules,
    list_runs,
    recipient_properties,
)

__all__ = [
    "CURSOR",
    "TRIGGER_EVENTS",
    "AutomationEngine",
    "RuleRecord",
    "RunRecord",
    "SendFailedError",
    "Sender",
    "create_rule",
    "delete_rule",
    "follow_up_message",
    "list_rules",
    "list_runs",
    "recipient_properties",
]
