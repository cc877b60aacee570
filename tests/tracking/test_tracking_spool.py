"""The tracking spool at rest: every line encrypted and authenticated with the keyring, replayed once,
plaintext lines of older versions still replayed, and a bad line reported and kept aside, never lost."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from structlog.testing import capture_logs
from support import make_vault

from mailstack.keyring import Keyring
from mailstack.model import Address, MessageSpec
from mailstack.storage import create_api_key, create_storage_engine, insert_messages, list_events, migrate
from mailstack.storage.schema import events
from mailstack.tracking import EventRecorder, TrackedEvent
from mailstack.tracking._recorder import seal_spool_line

IP = "198.51.100.203"
AGENT = "AgentProbe/7.3"
URL = "https://shop.example/offer?email=ana.spoolprobe-9d1%40gmail.com"
MARKERS = (IP, AGENT, "spoolprobe-9d1", "shop.example")


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Engine]:
    engine = create_storage_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def down(tmp_path: Path) -> Iterator[Engine]:
    """A database that refuses every write (its directory does not exist)."""
    engine = create_storage_engine(f"sqlite:///{tmp_path / 'missing' / 'nowhere.sqlite'}")
    try:
        yield engine
    finally:
        engine.dispose()


def make_message(engine: Engine) -> int:
    vault = make_vault(engine)  # before the transaction: the first vault of a database writes its KEK
    with engine.begin() as conn:
        create_api_key(conn)
        spec = MessageSpec(sender=Address("a@example.com"), to=(Address("b@example.net"),), text="x")
        (accepted,) = insert_messages(conn, 1, [spec], now=time.time(), vault=vault)
    return accepted[0].message_id


def a_click(message_id: int) -> TrackedEvent:
    detail = {"url": URL, "position": 1, "ip": IP, "agent": AGENT}
    return TrackedEvent(uuid.uuid4().hex, message_id, "click", time.time(), detail)


def clicks(engine: Engine) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(events).where(events.c.type == "click")
        return int(conn.execute(query).scalar_one())


def replay(engine: Engine, spool: Path) -> EventRecorder:
    recorder = EventRecorder(engine, spool_dir=spool, vault=make_vault(engine))
    recorder.start()
    recorder.stop()
    return recorder


def test_spooled_events_are_unreadable_on_disk_and_replayed_intact(
    database: Engine, down: Engine, tmp_path: Path
) -> None:
    message_id = make_message(database)
    spool = tmp_path / "spool"
    items = [a_click(message_id) for _ in range(3)]
    recorder = EventRecorder(down, spool_dir=spool, vault=make_vault(database))
    for item in items:
        recorder.submit(item)
    recorder.stop()  # the database refuses writes: everything lands in the spool
    assert recorder.spooled == 3
    (path,) = spool.glob("tracking-*.jsonl")
    data = path.read_bytes()
    assert len(data.splitlines()) == 3
    assert [marker for marker in MARKERS if marker.encode() in data] == []
    assert path.stat().st_mode & 0o077 == 0  # readable by the service's user only
    assert replay(database, spool).rejected == 0
    assert clicks(database) == 3
    with database.connect() as conn:
        found = list_events(conn, message_id, vault=make_vault(database))
    assert [detail for kind, _at, detail in found if kind == "click"] == [items[0].detail] * 3
    assert list(spool.iterdir()) == []


def test_replaying_the_same_sealed_lines_again_stores_nothing_twice(database: Engine, tmp_path: Path) -> None:
    message_id = make_message(database)
    keyring = make_vault(database).keyring
    items = [a_click(message_id) for _ in range(4)]
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = "".join(seal_spool_line(keyring, item) for item in items)
    (spool / "tracking-1.jsonl").write_text(lines)
    replay(database, spool)
    # A replay that died after storing (claimed file left behind), and a copy of the same lines.
    (spool / "tracking-1.11.22.replay").write_text(lines)
    (spool / "tracking-2.jsonl").write_text(lines)
    replay(database, spool)
    assert clicks(database) == 4
    assert list(spool.iterdir()) == []


def test_plaintext_lines_of_older_versions_are_still_replayed(database: Engine, tmp_path: Path) -> None:
    message_id = make_message(database)
    keyring = make_vault(database).keyring
    old, new = a_click(message_id), a_click(message_id)
    spool = tmp_path / "spool"
    spool.mkdir()
    # An upgrade with a spool left by the previous version, which the new one appended to.
    (spool / "tracking-7.jsonl").write_text(json.dumps(old.to_json()) + "\n" + seal_spool_line(keyring, new))
    assert replay(database, spool).rejected == 0
    assert clicks(database) == 2
    assert list(spool.iterdir()) == []


def test_altered_or_foreign_lines_are_reported_and_kept_aside(database: Engine, tmp_path: Path) -> None:
    message_id = make_message(database)
    keyring = make_vault(database).keyring
    good = [a_click(message_id) for _ in range(2)]
    sealed = seal_spool_line(keyring, a_click(message_id)).strip()
    prefix, body = sealed.split(":", 1)
    blob = bytearray(base64.b64decode(body))
    blob[-1] ^= 0x01  # one bit of the ciphertext's tag
    tampered = f"{prefix}:{base64.b64encode(bytes(blob)).decode()}"
    truncated = sealed[: len(sealed) // 2]  # a crash in the middle of a write
    foreign = seal_spool_line(Keyring(b"\x07" * 32), a_click(message_id)).strip()  # another master secret
    not_an_event = "sealed:" + base64.b64encode(keyring.encrypt("tracking.spool", b"[1, 2]")).decode()
    bad = [tampered, truncated, foreign, "garbage \x00 line", not_an_event, '{"uid": "no-message-id"}']
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = [seal_spool_line(keyring, good[0]).strip(), *bad, seal_spool_line(keyring, good[1]).strip()]
    (spool / "tracking-3.jsonl").write_text("\n".join(lines) + "\n")
    with capture_logs() as logs:
        recorder = replay(database, spool)
    assert clicks(database) == 2  # the good lines around the bad ones are stored
    assert recorder.rejected == len(bad)
    (kept,) = spool.glob("*.rejected")
    assert kept.read_text().splitlines() == bad  # kept aside exactly as found, nothing dropped
    (warning,) = [
        entry for entry in logs if entry["event"] == "tracking spool lines cannot be replayed; kept aside"
    ]
    assert warning["lines"] == [2, 3, 4, 5, 6, 7] and warning["kept"] == kept.name
    assert "no-message-id" not in repr(logs) and "garbage" not in repr(logs)  # where and why, not what
    # Kept aside for good: later replays neither retry nor lose it.
    replay(database, spool)
    assert clicks(database) == 2
    assert [p.name for p in spool.iterdir()] == [kept.name]
