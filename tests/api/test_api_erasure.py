"""Erasure through the API and what a client sees afterwards: a retried request (same Idempotency-Key)
is answered from the stored response without the erased address, and sends nothing again; the other
recipients' mail goes out without the address; the export shows only the subject's own part."""

from __future__ import annotations

from typing import Any

from engagement_support import Stack
from erasure_support import mentions
from sqlalchemy import func, select
from support import stored_bytes

from mailstack.storage import get_message
from mailstack.storage.schema import messages, queue_jobs

ANA = "ana.idem-4b1@example.net"
BOB = "bob.idem@example.org"
CAROL = "carol.blind@example.org"


REQUEST = {
    "Messages": [
        {
            "From": {"Email": "news@example.com", "Name": "News"},
            "To": [{"Email": ANA, "Name": "Ana Idem"}, {"Email": BOB, "Name": "Bob"}],
            "Bcc": [{"Email": CAROL}],
            "Subject": "Your receipt",
            "TextPart": f"A copy for {ANA} and Bob. keepmarker-text",
            "CustomID": f"receipt-{ANA}",
        }
    ]
}


def post(stack: Stack) -> Any:
    return stack.client.post(
        "/v3.1/send", json=REQUEST, auth=stack.auth, headers={"Idempotency-Key": "receipt-1"}
    )


def counts(stack: Stack) -> tuple[int, int]:
    with stack.runtime.engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(messages)).scalar_one(),
            conn.execute(select(func.count()).select_from(queue_jobs)).scalar_one(),
        )


def test_a_retry_after_erasure_replays_without_the_address_and_sends_nothing_again(
    stack: Stack, admin: tuple[str, str]
) -> None:
    runtime = stack.runtime
    first = post(stack)
    assert first.status_code == 200, first.text
    (entry,) = first.json()["Messages"]
    (ana_entry, bob_entry), (carol_entry,) = entry["To"], entry["Bcc"]
    assert ana_entry["Email"] == ANA
    assert "idempotency_keys.response" in mentions(runtime.engine, runtime.vault, ANA)

    # The export shows the subject's part of the stored response, and no one else's blind copy.
    exported = stack.client.get(f"/api/v1/privacy/subjects/{ANA}", auth=admin).json()
    (response,) = exported["idempotent_responses"]
    assert [e["MessageID"] for e in response["entries"]] == [ana_entry["MessageID"]]
    (message,) = exported["messages"]
    assert message["content"]["Bcc"] == [] and CAROL not in str(exported)

    erased = stack.client.delete(f"/api/v1/privacy/subjects/{ANA}", auth=admin)
    assert erased.status_code == 200, erased.text
    report = erased.json()
    assert report["idempotent_responses_redacted"] == 1 and report["contents_redacted"] == 1
    assert report["vacuumed"] is True
    before = counts(stack)

    retry = post(stack)
    assert retry.status_code == 200 and retry.headers.get("Idempotent-Replayed") == "true"
    assert ANA not in retry.text and ana_entry["MessageUUID"] not in retry.text
    (replayed,) = retry.json()["Messages"]
    assert replayed["To"] == [bob_entry] and replayed["Bcc"] == [carol_entry]
    assert counts(stack) == before  # nothing stored or queued again: no one is mailed twice

    assert stack.deliver() == 2  # Bob and Carol, once each
    bob_copy = stack.outbox_message(bob_entry["MessageID"])
    assert bob_copy["To"] == "Bob <bob.idem@example.org>"
    assert "A copy for erased@invalid and Bob. keepmarker-text" in bob_copy.get_body().get_content()
    with runtime.engine.connect() as conn:
        record = get_message(conn, bob_entry["MessageID"], 1, vault=runtime.vault)
    assert record is not None and record.custom_id == "receipt-erased@invalid"
    assert mentions(runtime.engine, runtime.vault, ANA) == []
    # The running app's background jobs may hold a snapshot while VACUUM runs: the dump, not dead rows.
    assert ANA.encode() not in stored_bytes(runtime.engine).lower()
    after = stack.client.get(f"/api/v1/privacy/subjects/{ANA}", auth=admin).json()
    assert after["messages"] == [] and after["idempotent_responses"] == []
