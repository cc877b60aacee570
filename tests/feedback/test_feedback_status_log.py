"""Delivery status from Postfix's log: statuses recorded, restarts and rotation neither lose nor repeat."""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

import pytest
from feedback_loop_helpers import (
    COMPOSE,
    FEEDBACK,
    delivery,
    message_events,
    message_status,
    qmgr,
    removed,
    seed_messages,
    stamp,
)
from sqlalchemy import Engine, delete, func, select
from support import make_store, make_vault

from mailstack.compose import verp_address
from mailstack.config import FeedbackSettings
from mailstack.feedback import FeedbackRecorder, LogKind, PostfixLogReader, parse_line
from mailstack.model import MessageStatus
from mailstack.storage import list_suppressions, update_message_status
from mailstack.storage.schema import log_cursors, relay_queue_ids


def sent_lines(qid: str, message_id: int, rcpt: str) -> str:
    return (
        qmgr(qid, verp_address(message_id, COMPOSE))
        + delivery(qid, rcpt, "2.0.0", "sent", f"250 2.0.0 OK {qid.lower()} accepted")
        + removed(qid)
    )


def reader(engine: Engine, path: Path, settings: FeedbackSettings = FEEDBACK) -> PostfixLogReader:
    store = make_store(engine)
    return PostfixLogReader(
        store, path, COMPOSE, FeedbackRecorder(settings, store), name="node-1:postfix.log"
    )


def types(engine: Engine, message_id: int) -> list[str]:
    return [kind for kind, _detail in message_events(engine, message_id)]


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as log:
        log.write(text)


def test_each_status_is_recorded_with_its_dsn_and_reply(engine: Engine, tmp_path: Path) -> None:
    ok, slow, dead, full, other = seed_messages(
        engine,
        ["ok@example.net", "slow@example.net", "dead@example.net", "full@example.net", "x@example.net"],
    )
    log = tmp_path / "postfix.log"
    forged = verp_address(other, COMPOSE).replace("@", "x@")
    log.write_text(
        "Nov 28 09:59:59 mail postfix/smtpd[99]: NOQUEUE: reject: RCPT from unknown[198.51.100.7]: 554 5.7.1 "
        "<spam@example.org>: Relay access denied; from=<a@b> to=<spam@example.org> proto=ESMTP\n"
        + sent_lines("4A1B2C3D4E", ok, "ok@example.net")
        + qmgr("5B2C3D4E5F", verp_address(slow, COMPOSE))
        + delivery(
            "5B2C3D4E5F",
            "slow@example.net",
            "4.2.0",
            "deferred",
            "host mx.example.net[192.0.2.1] said: 450 4.2.0 <slow@example.net>: greylisted, come back later "
            "(in reply to RCPT TO command)",
        )
        + qmgr("6C3D4E5F6A", verp_address(dead, COMPOSE))
        + delivery(
            "6C3D4E5F6A",
            "dead@example.net",
            "5.1.1",
            "bounced",
            "host mx.example.net[192.0.2.1] said: 550 5.1.1 <dead@example.net>: Recipient address rejected: "
            "User unknown in virtual mailbox table (in reply to RCPT TO command)",
        )
        + removed("6C3D4E5F6A")
        + qmgr("7D4E5F6A7B", verp_address(full, COMPOSE))
        + delivery(
            "7D4E5F6A7B",
            "full@example.net",
            "5.2.2",
            "bounced",
            "host mx.example.net[192.0.2.1] said: 552 5.2.2 <full@example.net>: Mailbox full "
            "(in reply to RCPT TO command)",
        )
        + removed("7D4E5F6A7B")
        # Mail that is not ours (another sender, a forged return path) is never matched.
        + qmgr("8E5F6A7B8C", "root@mail.example.com")
        + delivery("8E5F6A7B8C", "x@example.net", "2.0.0", "sent", "250 ok")
        + qmgr("9F6A7B8C9D", forged)
        + delivery("9F6A7B8C9D", "x@example.net", "5.1.1", "bounced", "550 5.1.1 unknown")
        # The retry of the deferred message, later: delivered.
        + qmgr("5B2C3D4E5F", verp_address(slow, COMPOSE))
        + delivery("5B2C3D4E5F", "slow@example.net", "2.0.0", "sent", "250 2.0.0 Ok: queued as 77")
        + removed("5B2C3D4E5F")
    )
    follower = reader(engine, log)
    assert follower.poll() == len(log.read_text().splitlines())

    assert types(engine, ok) == ["queued", "delivered"]
    (_kind, detail) = message_events(engine, ok)[1]
    assert detail["smtp_reply"] == "250 2.0.0 OK 4a1b2c3d4e accepted"
    assert detail["dsn"] == "2.0.0" and detail["queue_id"] == "4A1B2C3D4E"
    assert detail["relay"] == "mx.example.net[192.0.2.1]:25"
    assert detail["mailjet"] == {"event": "sent", "smtp_reply": "sent (250 2.0.0 OK 4a1b2c3d4e accepted)"}
    assert message_status(engine, ok) == ("sent", "250 2.0.0 OK 4a1b2c3d4e accepted")

    assert types(engine, slow) == ["queued", "deferred", "delivered"]
    deferred = message_events(engine, slow)[1][1]
    assert deferred["dsn"] == "4.2.0" and deferred["smtp_reply"].startswith("450 4.2.0")

    assert types(engine, dead) == ["queued", "bounce"]
    bounce = message_events(engine, dead)[1][1]
    assert bounce["mailjet"] == {
        "event": "bounce",
        "blocked": True,
        "hard_bounce": True,
        "error_related_to": "recipient",
        "error": "user unknown",
        "comment": bounce["smtp_reply"],
    }
    assert bounce["reason"] == "userunknown" and bounce["status"] == "5.1.1" and bounce["reply_code"] == "550"
    assert message_status(engine, dead)[0] == MessageStatus.HARD_BOUNCED
    vault = make_vault(engine)
    with engine.connect() as conn:
        (entry,) = list_suppressions(conn, address="dead@example.net", vault=vault)
        assert (entry.scope, entry.source, entry.message_id) == ("global", "hard_bounce", dead)
        assert entry.expires_at is None

    full_bounce = message_events(engine, full)[1][1]
    assert full_bounce["category"] == "soft" and full_bounce["reason"] == "mailboxfull"
    assert full_bounce["mailjet"]["hard_bounce"] is False and full_bounce["mailjet"]["blocked"] is False
    assert message_status(engine, full)[0] == MessageStatus.SOFT_BOUNCED
    vault = make_vault(engine)
    with engine.connect() as conn:
        assert (
            list_suppressions(conn, address="full@example.net", vault=vault) == []
        )  # one soft bounce is not enough

    assert types(engine, other) == ["queued"]
    with engine.connect() as conn:  # every queue id Postfix removed is forgotten; none leak
        assert conn.execute(select(func.count()).select_from(relay_queue_ids)).scalar_one() == 0


def test_a_restart_loses_nothing_and_repeats_nothing(engine: Engine, tmp_path: Path) -> None:
    first, second, third = seed_messages(engine, ["a@example.net", "b@example.net", "c@example.net"])
    log = tmp_path / "postfix.log"
    tail = sent_lines("3CC3CC3CC3", third, "c@example.net")
    cut = len(tail) // 2
    # The queue manager's line is read before the stop, the delivery line only after it; the last line
    # is still being written when the first reader stops.
    before = (
        sent_lines("1AA1AA1AA1", first, "a@example.net")
        + qmgr("2BB2BB2BB2", verp_address(second, COMPOSE))
        + tail[:cut]
    )
    assert not before.endswith("\n")
    log.write_text(before)
    assert reader(engine, log).poll() == before.count("\n")
    after = (
        tail[cut:]
        + delivery("2BB2BB2BB2", "b@example.net", "5.1.1", "bounced", "550 5.1.1 no such user")
        + removed("2BB2BB2BB2")
    )
    append(log, after)
    restarted = reader(engine, log)  # a new process: only the database remembers
    assert restarted.poll() == after.count("\n")
    assert types(engine, first) == ["queued", "delivered"]
    assert types(engine, second) == ["queued", "bounce"]
    assert types(engine, third) == ["queued", "delivered"]
    assert reader(engine, log).poll() == 0  # and again: nothing new, nothing repeated

    # Even with its position lost, re-reading the whole file records nothing twice.
    with engine.begin() as conn:
        conn.execute(delete(log_cursors))
    assert reader(engine, log).poll() == len(log.read_text().splitlines())
    assert Counter(types(engine, second)) == Counter({"queued": 1, "bounce": 1})
    assert types(engine, first) == ["queued", "delivered"]


def test_rotation_while_running_finishes_the_old_file_first(engine: Engine, tmp_path: Path) -> None:
    ids = seed_messages(engine, [f"r{i}@example.net" for i in range(4)])
    log = tmp_path / "postfix.log"
    log.write_text(sent_lines("10A10A10A1", ids[0], "r0@example.net"))
    follower = reader(engine, log)
    assert follower.poll() == 3
    log.rename(tmp_path / "postfix.log.1")
    # The writer has not reopened yet: it still appends to the renamed file, and the new file is empty.
    append(tmp_path / "postfix.log.1", sent_lines("20B20B20B2", ids[1], "r1@example.net"))
    log.touch()
    assert follower.poll() == 3
    # Once it writes the new file, the old one gets nothing more: its rest, then the new file.
    append(tmp_path / "postfix.log.1", sent_lines("30C30C30C3", ids[2], "r2@example.net"))
    append(log, sent_lines("40D40D40D4", ids[3], "r3@example.net"))
    assert follower.poll() == 6
    for message_id in ids:
        assert types(engine, message_id) == ["queued", "delivered"]
    with engine.connect() as conn:
        (cursor,) = conn.execute(select(log_cursors)).all()
    st = os.stat(log)
    assert (cursor.file_id, cursor.position) == (f"{st.st_dev}:{st.st_ino}", st.st_size)


def test_rotation_while_stopped_finishes_the_old_file_after_the_restart(
    engine: Engine, tmp_path: Path
) -> None:
    ids = seed_messages(engine, ["p@example.net", "q@example.net", "s@example.net"])
    log = tmp_path / "postfix.log"
    log.write_text(sent_lines("1F1F1F1F1F", ids[0], "p@example.net"))
    assert reader(engine, log).poll() == 3
    append(log, sent_lines("2E2E2E2E2E", ids[1], "q@example.net"))  # written while mailstack was down
    log.rename(tmp_path / "postfix.log.1")
    log.write_text(sent_lines("3D3D3D3D3D", ids[2], "s@example.net"))
    assert reader(engine, log).poll() == 6
    for message_id in ids:
        assert types(engine, message_id) == ["queued", "delivered"]


def test_a_log_truncated_in_place_is_read_again_from_its_start(engine: Engine, tmp_path: Path) -> None:
    first, second = seed_messages(engine, ["t1@example.net", "t2@example.net"])
    log = tmp_path / "postfix.log"
    log.write_text(sent_lines("1C1C1C1C1C", first, "t1@example.net"))
    follower = reader(engine, log)
    assert follower.poll() == 3
    # copytruncate: the file is emptied in place and grows again (seen while shorter than before).
    log.write_text(
        qmgr("2C2C2C2C2C", verp_address(second, COMPOSE))
        + delivery("2C2C2C2C2C", "t2@example.net", "2.0.0", "sent", "250 ok")
    )
    assert follower.poll() == 2
    assert types(engine, second) == ["queued", "delivered"]


def test_expiry_is_a_soft_bounce_and_soft_bounces_suppress_at_the_limit(
    engine: Engine, tmp_path: Path
) -> None:
    settings = FeedbackSettings(soft_bounce_limit=2, soft_bounce_days=7, soft_bounce_suppression_days=10)
    first, second = seed_messages(engine, ["gone@example.net", "gone@example.net"])
    log = tmp_path / "postfix.log"
    expired = f"{stamp()} mail postfix/qmgr[101]: 1E1E1E1E1E: from=<{verp_address(first, COMPOSE)}>, "
    log.write_text(expired + "status=expired, returned to sender\n")
    reader(engine, log, settings).poll()
    bounce = message_events(engine, first)[1][1]
    assert (bounce["reason"], bounce["category"]) == ("expired", "soft")
    vault = make_vault(engine)
    with engine.connect() as conn:
        assert list_suppressions(conn, address="gone@example.net", vault=vault) == []
    append(
        log,
        qmgr("2E2E2E2E2E", verp_address(second, COMPOSE))
        + delivery("2E2E2E2E2E", "gone@example.net", "5.2.2", "bounced", "552 5.2.2 mailbox full"),
    )
    reader(engine, log, settings).poll()
    assert message_events(engine, second)[1][1]["mailjet"]["blocked"] is True
    vault = make_vault(engine)
    with engine.connect() as conn:
        (entry,) = list_suppressions(conn, address="gone@example.net", vault=vault)
    assert entry.source == "soft_bounce_limit" and entry.expires_at is not None
    assert 9.9 * 86400 < entry.expires_at - entry.created_at <= 10 * 86400


def test_a_status_read_before_the_worker_commits_is_not_overwritten(engine: Engine, tmp_path: Path) -> None:
    (message_id,) = seed_messages(engine, ["early@example.net"])
    log = tmp_path / "postfix.log"
    log.write_text(
        qmgr("1D1D1D1D1D", verp_address(message_id, COMPOSE))
        + delivery("1D1D1D1D1D", "early@example.net", "5.1.1", "bounced", "550 5.1.1 unknown user")
    )
    reader(engine, log).poll()
    vault = make_vault(engine)
    with engine.begin() as conn:  # the worker's late commit of the relay's 250
        update_message_status(
            conn,
            message_id,
            MessageStatus.SENT,
            now=0.0,
            attempts=1,
            last_reply="250 2.0.0 Ok: queued as 1D",
            vault=vault,
        )
    assert message_status(engine, message_id) == (MessageStatus.HARD_BOUNCED, "550 5.1.1 unknown user")


def test_the_reader_thread_follows_the_log_and_stops(engine: Engine, tmp_path: Path) -> None:
    (message_id,) = seed_messages(engine, ["live@example.net"])
    log = tmp_path / "postfix.log"
    log.touch()
    store = make_store(engine)
    follower = PostfixLogReader(
        store,
        log,
        COMPOSE,
        FeedbackRecorder(FEEDBACK, store),
        name="node-1:postfix.log",
        poll_seconds=0.05,
    )
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,))
    thread.start()
    try:
        append(log, sent_lines("1B1B1B1B1B", message_id, "live@example.net"))
        deadline = threading.Event()
        for _ in range(600):
            if types(engine, message_id) == ["queued", "delivered"]:
                break
            deadline.wait(0.05)
        assert types(engine, message_id) == ["queued", "delivered"]
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


@pytest.mark.parametrize(
    ("line", "kind", "fields"),
    [
        (
            "2026-11-28T10:00:00.123456+00:00 mail postfix-out/smtp[7]: 4Xyzk1AbcdefGh: to=<a@b.example>, "
            "orig_to=<alias@b.example>, relay=mx.b.example[2001:db8::1]:25, conn_use=2, delay=1.5, "
            "delays=0.5/0/0.5/0.5, dsn=4.4.2, status=deferred (lost connection with "
            "mx.b.example[2001:db8::1] while sending end of data -- message may be sent more than once)",
            LogKind.DELIVERY,
            {"queue_id": "4Xyzk1AbcdefGh", "recipient": "a@b.example", "dsn": "4.4.2", "status": "deferred"},
        ),
        (
            "Nov 28 10:00:00 mail postfix/lmtp[8]: ABCDEF1234: to=<u@c.example>, "
            "relay=mail.c.example[private/dovecot-lmtp], delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, "
            "status=sent (250 2.0.0 <u@c.example> Saved)",
            LogKind.DELIVERY,
            {"relay": "mail.c.example[private/dovecot-lmtp]", "text": "250 2.0.0 <u@c.example> Saved"},
        ),
        (
            "Nov 28 10:00:00 mail postfix/error[9]: ABCDEF1234: to=<u@d.example>, relay=none, delay=300, "
            "delays=300/0/0/0, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to "
            "mx.d.example[192.0.2.9]:25: Connection refused)",
            LogKind.DELIVERY,
            {"relay": "none", "status": "deferred"},
        ),
        (
            "Nov 28 10:00:00 mail postfix/qmgr[1]: ABCDEF1234: from=<>, size=3000, nrcpt=1 (queue active)",
            LogKind.QUEUED,
            {"sender": ""},
        ),
        ("Nov 28 10:00:00 mail postfix/qmgr[1]: ABCDEF1234: removed", LogKind.REMOVED, {}),
    ],
)
def test_parse_line_reads_real_postfix_formats(line: str, kind: LogKind, fields: dict[str, str]) -> None:
    entry = parse_line(line)
    assert entry is not None and entry.kind is kind
    for name, value in fields.items():
        assert getattr(entry, name) == value


@pytest.mark.parametrize(
    "line",
    [
        "",
        "Nov 28 10:00:00 mail postfix/smtpd[5]: connect from unknown[198.51.100.7]",
        "Nov 28 10:00:00 mail postfix/cleanup[6]: ABCDEF1234: message-id=<x@y>",
        "Nov 28 10:00:00 mail postfix/bounce[7]: ABCDEF1234: sender non-delivery notification: BCDEF12345",
        "Nov 28 10:00:00 mail postfix/smtp[8]: ABCDEF1234: to=<broken",
        "\x00\xff garbage",
    ],
)
def test_parse_line_ignores_everything_else(line: str) -> None:
    assert parse_line(line) is None
