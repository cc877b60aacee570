"""What a rule did (its runs): refusals are kept sealed — they quote the recipient — and shown only to the
rule's owner; the log names ids, never the address."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engagement_support import Stack, make_stack, pixel_in
from sqlalchemy import select
from structlog.testing import capture_logs
from support import stored_bytes

from mailstack.automation import AutomationEngine, SendFailedError
from mailstack.privacy import erase_subject, export_subject
from mailstack.storage import create_api_key
from mailstack.storage.schema import automation_runs

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
ANA = "ana.runprobe-c41@gmail.com"
FOLLOW_UP = {
    "From": {"Email": "news@example.com", "Name": "News"},
    "Subject": "Thanks for reading",
    "TextPart": "Here is 10% off.",
    "CustomCampaign": "welcome",
}


@pytest.fixture
def stack(tmp_path: Path, db_url: str) -> Iterator[Stack]:
    with make_stack(tmp_path, db_url, {"automation": {"poll_seconds": 60}}) as running:
        yield running


def add_rule(stack: Stack) -> int:
    body = {"EventType": "open", "CustomCampaign": "welcome", "Template": FOLLOW_UP}
    response = stack.client.post("/api/v1/automations", json=body, auth=stack.auth)
    assert response.status_code == 201, response.text
    return int(response.json()["Data"][0]["ID"])


def opened(stack: Stack, to: str) -> int:
    (message_id,) = stack.send(To=[{"Email": to}], CustomCampaign="welcome", HTMLPart="<p>Welcome</p>")
    stack.deliver()
    pixel = pixel_in(stack.html_of(message_id))
    assert pixel is not None
    stack.client.get(pixel.removeprefix("https://track.example.com"), headers={"User-Agent": BROWSER})
    stack.flush_tracking()
    return message_id


def runs(stack: Stack, rule_id: int, auth: Any = None) -> Any:
    return stack.client.get(f"/api/v1/automations/{rule_id}/runs", auth=auth or stack.auth)


def refusing(stack: Stack) -> AutomationEngine:
    def send(_api_key_id: int, message: dict[str, Any], _key: str) -> int:
        # As a relay or the Send API would put it: the refusal quotes the address.
        raise SendFailedError(f"550 5.1.1 <{message['To'][0]['Email']}>: Recipient address rejected")

    return AutomationEngine(stack.runtime.engine, send, vault=stack.runtime.vault, gap_grace_seconds=0)


def test_a_refused_follow_up_is_stored_sealed_and_shown_to_the_rules_owner(stack: Stack) -> None:
    rule_id = add_rule(stack)
    trigger = opened(stack, ANA)
    engine = refusing(stack)
    engine.match()
    with capture_logs() as logs:
        assert engine.send_pending() == 1
    (refusal,) = [entry for entry in logs if entry["event"] == "automation follow-up refused"]
    assert refusal["trigger_message_id"] == trigger
    assert "runprobe" not in repr(logs)  # ids only: the address is not logged
    assert engine.send_pending() == 0  # a refusal is final
    response = runs(stack, rule_id)
    assert response.status_code == 200, response.text
    (run,) = response.json()["Data"]
    assert run["Status"] == "refused" and run["TriggerMessageID"] == trigger
    assert run["SentMessageID"] is None
    assert run["Error"] == f"550 5.1.1 <{ANA}>: Recipient address rejected"
    with stack.runtime.engine.connect() as conn:
        stored = conn.execute(select(automation_runs.c.error)).scalar_one()
    assert ANA.encode() not in stored
    assert b"runprobe-c41" not in stored_bytes(stack.runtime.engine).lower()
    # The person's own copy of what is held about them (GDPR export) includes the refusal.
    vault = stack.runtime.vault
    with stack.runtime.engine.begin() as conn:
        exported = export_subject(conn, vault, vault.keyring, ANA)
    (held,) = exported["automation_runs"]
    assert held["trigger_message_id"] == trigger and held["rule_id"] == rule_id
    assert held["error"] == f"550 5.1.1 <{ANA}>: Recipient address rejected"


def test_runs_list_follow_ups_sent_and_belong_to_the_rules_api_key(stack: Stack) -> None:
    rule_id = add_rule(stack)
    trigger = opened(stack, "bo@outlook.com")
    stack.node.automation.run_once()
    (run,) = runs(stack, rule_id).json()["Data"]
    assert run["Status"] == "sent" and run["Error"] == "" and run["TriggerMessageID"] == trigger
    assert isinstance(run["SentMessageID"], int)
    with stack.runtime.engine.begin() as conn:
        other = create_api_key(conn, "other")
    assert runs(stack, rule_id, auth=other).status_code == 404
    assert runs(stack, rule_id + 1).status_code == 404
    assert stack.client.get(f"/api/v1/automations/{rule_id}/runs").status_code == 401


def test_a_refusal_for_an_erased_recipient_reads_as_erased(stack: Stack) -> None:
    rule_id = add_rule(stack)
    opened(stack, ANA)
    engine = refusing(stack)
    engine.match()
    engine.send_pending()
    vault = stack.runtime.vault
    with stack.runtime.engine.begin() as conn:
        # Erasure deletes the runs its messages triggered; what any copy (a backup) holds is shredded.
        (sealed,) = conn.execute(select(automation_runs.c.error)).scalars().all()
        erase_subject(conn, vault, vault.keyring, ANA, actor="test")
        assert vault.open_optional(conn, sealed, purpose="automation_runs.error") is None
    assert runs(stack, rule_id).json()["Data"] == []
