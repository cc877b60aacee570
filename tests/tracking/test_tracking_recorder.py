"""The asynchronous event recorder: batches, idempotency, the spool when the database is unavailable."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from sqlalchemy import Engine, func, select
from support import make_vault

from mailstack.model import Address, MessageSpec
from mailstack.storage import create_api_key, create_storage_engine, insert_messages, migrate
from mailstack.storage.schema import events
from mailstack.tracking import EventRecorder, TrackedEvent, store_events
from mailstack.tracking._recorder import open_spool_line


def make_message(engine: Engine) -> int:
    vault = make_vault(engine)
    with engine.begin() as conn:
        create_api_key(conn)
        spec = MessageSpec(sender=Address("a@example.com"), to=(Address("b@example.net"),), text="x")
        (accepted,) = insert_messages(conn, 1, [spec], now=time.time(), vault=vault)
    return accepted[0].message_id


def opens(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(events).where(events.c.type == "open")).scalar_one()
        )


def event(message_id: int, uid: str | None = None) -> TrackedEvent:
    return TrackedEvent(uid or uuid.uuid4().hex, message_id, "open", time.time(), {"ip": "192.0.2.1"})


def test_events_are_written_in_batches_and_once_per_uid(engine: Engine, tmp_path: Path) -> None:
    message_id = make_message(engine)
    recorder = EventRecorder(engine, batch_size=3, spool_dir=tmp_path / "spool", vault=make_vault(engine))
    duplicate = event(message_id, "same-uid")
    for item in [event(message_id) for _ in range(7)] + [duplicate, duplicate]:
        recorder.submit(item)
    assert opens(engine) == 0, "submit must not write to the database itself"
    assert recorder.pending == 9
    recorder.flush()
    assert opens(engine) == 8
    vault = make_vault(engine)
    with engine.begin() as conn:
        store_events(conn, [duplicate], vault=vault)  # arriving a third time, later
    assert opens(engine) == 8


def test_events_of_unknown_messages_are_dropped_not_fatal(engine: Engine) -> None:
    message_id = make_message(engine)
    recorder = EventRecorder(engine, vault=make_vault(engine))
    recorder.submit(event(message_id + 1000))
    recorder.submit(event(message_id))
    recorder.flush()
    assert opens(engine) == 1


def test_stop_writes_everything_still_queued(engine: Engine) -> None:
    message_id = make_message(engine)
    recorder = EventRecorder(
        engine, flush_seconds=60, vault=make_vault(engine)
    )  # the thread alone would not flush in time
    recorder.start()
    for _ in range(25):
        recorder.submit(event(message_id))
    recorder.stop()
    assert opens(engine) == 25


def test_background_thread_flushes_on_its_own(engine: Engine) -> None:
    message_id = make_message(engine)
    recorder = EventRecorder(engine, flush_seconds=0.05, vault=make_vault(engine))
    recorder.start()
    try:
        recorder.submit(event(message_id))
        deadline = time.monotonic() + 30
        while opens(engine) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert opens(engine) == 1
    finally:
        recorder.stop()


def test_database_down_spools_and_replays_without_loss_or_duplicates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = create_storage_engine(url)
    migrate(engine)
    message_id = make_message(engine)
    spool = tmp_path / "spool"
    broken = create_storage_engine(f"sqlite:///{tmp_path / 'missing' / 'nowhere.sqlite'}")
    recorder = EventRecorder(broken, spool_dir=spool, vault=make_vault(engine))
    items = [event(message_id) for _ in range(5)]
    for item in items:
        recorder.submit(item)
    recorder.stop()  # the database is unreachable: everything lands in the spool
    keyring = make_vault(engine).keyring
    lines = [line for path in spool.glob("*.jsonl") for line in path.read_text().splitlines()]
    spooled = [open_spool_line(keyring, line) for line in lines]
    assert sorted(e.uid for e in spooled) == sorted(e.uid for e in items)
    # A later start against the working database replays the spool, once.
    healthy = EventRecorder(engine, spool_dir=spool, vault=make_vault(engine))
    healthy.start()
    healthy.stop()
    assert opens(engine) == 5
    assert not list(spool.glob("*.jsonl"))
    # A replay that died half-way (claimed file left behind) is replayed again without duplicates.
    (spool / "tracking-1.jsonl").write_text("".join(json.dumps(e.to_json()) + "\n" for e in items))
    (spool / "tracking-1.jsonl").rename(spool / "tracking-1.123.456.replay")
    again = EventRecorder(engine, spool_dir=spool, vault=make_vault(engine))
    again.start()
    again.stop()
    assert opens(engine) == 5
    assert not list(spool.iterdir())
    engine.dispose()
    broken.dispose()


def test_a_full_queue_overflows_to_the_spool(engine: Engine, tmp_path: Path) -> None:
    message_id = make_message(engine)
    recorder = EventRecorder(engine, capacity=100, spool_dir=tmp_path / "spool", vault=make_vault(engine))
    for _ in range(130):
        recorder.submit(event(message_id))
    assert recorder.pending == 100 and recorder.spooled == 30
    recorder.flush()
    assert opens(engine) == 130
