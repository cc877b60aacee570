"""Data-subject rights: export everything about an address, erase it for good, never mail it again."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from serve_support import initialised
from sqlalchemy import Engine, func, select
from support import SmtpSink, make_vault

from mailstack.keyring import Keyring
from mailstack.model import Address, MessageSpec
from mailstack.privacy import address_index, erase_subject, export_subject, list_audit
from mailstack.queue import queue_for
from mailstack.storage import create_api_key, find_api_key, insert_messages, load_envelopes, suppress
from mailstack.storage.schema import audit_log, contents, data_keys, messages, queue_jobs, suppressions

SECRET = bytes(range(32))
ANA = "ana.erase-probe@example.net"
BOB = "bob@example.net"


def _spec(*recipients: str, subject: str = "Hello") -> MessageSpec:
    return MessageSpec(
        sender=Address("news@example.com", "News"),
        to=tuple(Address(r, "Ana Probename" if r == ANA else "") for r in recipients),
        subject=subject,
        text="bodymarker-a11",
    )


def _accept(engine: Engine, *specs: MessageSpec) -> list[int]:
    vault = make_vault(engine, SECRET)
    with engine.begin() as conn:
        public_key = create_api_key(conn, "test")[0]
        record = find_api_key(conn, public_key)
        assert record is not None
        accepted = insert_messages(conn, record.id, list(specs), now=time.time(), vault=vault)
        ids = [r.message_id for group in accepted for r in group if not r.blocked]
        queue_for(engine).enqueue(conn, ids, available_at=0)
    return [r.message_id for group in accepted for r in group]


def test_export_returns_everything_held_and_is_audited(engine: Engine) -> None:
    vault = make_vault(engine, SECRET)
    keyring = Keyring(SECRET)
    ids = _accept(engine, _spec(ANA, subject="First"), _spec(ANA, BOB, subject="Shared"))
    with engine.begin() as conn:
        suppress(
            conn, ANA, scope="shop.example", reason="unsubscribed", source="unsubscribe", now=1.0, vault=vault
        )
        data = export_subject(conn, vault, keyring, ANA.upper(), actor="cli:dpo")
    json.dumps(data)  # JSON-serialisable as it is
    assert data["address"] == ANA
    assert [m["id"] for m in data["messages"]] == [ids[0], ids[1]]
    first = data["messages"][0]
    assert (first["recipient"], first["recipient_name"], first["status"]) == (ANA, "Ana Probename", "queued")
    assert first["content"]["Subject"] == "First" and first["content"]["TextPart"] == "bodymarker-a11"
    assert [e["type"] for e in first["events"]] == ["queued"]
    assert [(s["Email"], s["Scope"], s["Source"]) for s in data["suppressions"]] == [
        (ANA, "shop.example", "unsubscribe")
    ]
    with engine.connect() as conn:
        (entry,) = list_audit(conn, action="export")
    assert entry.actor == "cli:dpo" and entry.subject == address_index(keyring, ANA)
    assert entry.detail == {"messages": 2, "suppressions": 1, "soft_bounces": 0, "consents": 0}


def test_erasure_cancels_undelivered_mail_shreds_the_key_and_blocks_the_address(engine: Engine) -> None:
    vault = make_vault(engine, SECRET)
    keyring = Keyring(SECRET)
    subject = address_index(keyring, ANA)
    own, shared, shared_bob, bobs = _accept(engine, _spec(ANA), _spec(ANA, BOB), _spec(BOB))
    with engine.begin() as conn:
        sealed_bob_spec = conn.execute(
            select(contents.c.spec).join(messages).where(messages.c.id == bobs)
        ).scalar_one()
        before = conn.execute(select(func.count()).select_from(contents)).scalar_one()
        report = erase_subject(conn, vault, keyring, ANA, actor="api:dpo")
    assert report.messages_deleted == 2 and report.messages_in_flight == 0
    assert report.contents_deleted == 1 and report.contents_redacted == 1 and report.key_shredded
    with engine.connect() as conn:
        assert conn.execute(select(messages.c.id).where(messages.c.recipient_index == subject)).all() == []
        remaining = set(conn.execute(select(queue_jobs.c.message_id)).scalars())
        assert own not in remaining and shared not in remaining  # cancelled
        assert conn.execute(select(func.count()).select_from(contents)).scalar_one() == before - 1
        assert conn.execute(select(data_keys).where(data_keys.c.subject == subject)).all() == []
        # Bob's mail is untouched; the content he shared with Ana no longer names her.
        shared_export = export_subject(conn, vault, keyring, BOB)
        assert [m["id"] for m in shared_export["messages"]] == [shared_bob, bobs]
        for message in shared_export["messages"]:
            assert [r["Email"] for r in message["content"]["To"]] == [BOB]
        assert vault.open(conn, sealed_bob_spec, purpose="contents.spec")
        (audit,) = conn.execute(select(audit_log).where(audit_log.c.action == "erase")).all()
        assert audit.actor == "api:dpo" and audit.subject == subject
        assert ANA not in json.dumps(audit.detail) and audit.detail["messages_deleted"] == 2
    # The next send to the address is blocked at accept.
    vault = make_vault(engine, SECRET)
    with engine.begin() as conn:
        (again,) = insert_messages(conn, 1, [_spec(ANA)], now=time.time(), vault=vault)
    assert again[0].blocked
    with engine.connect() as conn:
        data = export_subject(conn, vault, keyring, ANA)
    assert [(s["Email"], s["Source"]) for s in data["suppressions"]] == [(ANA, "erasure")]
    with engine.connect() as conn:  # kept hashed only: the address itself is not stored
        stored = conn.execute(select(suppressions.c.address_index, suppressions.c.address)).all()
    assert stored == [(subject, None)]


def test_mail_a_worker_holds_is_left_to_finish_but_becomes_unreadable(engine: Engine) -> None:
    (held,) = _accept(engine, _spec(ANA))
    queue = queue_for(engine)
    (lease,) = queue.lease(10, 60, now=time.time())
    assert lease.message_id == held
    vault = make_vault(engine, SECRET)
    with engine.begin() as conn:
        report = erase_subject(conn, vault, Keyring(SECRET), ANA, actor="test")
    assert (report.messages_deleted, report.messages_in_flight) == (0, 1)
    with engine.connect() as conn:
        assert load_envelopes(conn, [held], vault=make_vault(engine, SECRET)) == {}  # nothing to send


@pytest.mark.e2e
def test_the_cli_exports_then_erases_and_nothing_readable_is_left(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    with initialised(tmp_path, None) as served:
        served.start(relay=f"{smtp_sink.host}:{smtp_sink.port}")
        message = {
            "From": {"Email": "news@example.com"},
            "To": [{"Email": ANA, "Name": "Ana Probename"}],
            "Subject": "subjectmarker-e21",
            "TextPart": "bodymarker-a11",
        }
        (first,) = served.send(message)
        served.wait_status(first, "sent")
        exported = json.loads(served.run("privacy", "export", ANA).stdout)
        assert [m["recipient"] for m in exported["messages"]] == [ANA]
        assert [e["type"] for e in exported["messages"][0]["events"]] == ["queued", "sent"]
        refused = served.run("privacy", "erase", ANA, check=False)  # no --yes and no terminal: refused
        assert refused.returncode != 0
        report = json.loads(served.run("privacy", "erase", ANA, "--yes").stdout)
        assert report["messages_deleted"] == 1 and report["key_shredded"] is True
        (second,) = served.send(message)
        assert served.wait_status(second, "blocked")["Status"] == "blocked"
        assert len(smtp_sink.received) == 1  # never mailed again
        after = json.loads(served.run("privacy", "export", ANA).stdout)
        assert [m["id"] for m in after["messages"]] == [second]
        assert [a["action"] for a in after["audit"]] == ["erase", "export"]
        rotated = json.loads(served.run("privacy", "rotate-keys").stdout)
        assert rotated["new_version"] == 2 and rotated["removed_versions"] == [1]
        # serve keeps working across the rotation: it reads and writes with the new version.
        assert served.status(second)["Destination"] == ANA
        final = json.loads(served.run("privacy", "export", ANA).stdout)
        assert final["messages"][0]["recipient"] == ANA
        served.stop()
        data = served.stored_bytes().lower()
        for marker in ("ana.erase-probe", "probename", "subjectmarker-e21", "bodymarker-a11"):
            assert marker.encode() not in data
        assert b"ana.erase-probe" not in served.log().lower().encode()
    bad = served.run("privacy", "export", "not-an-address", check=False)
    assert bad.returncode == 2 and "not an email address" in bad.stderr
