"""The vault under concurrency: two OS processes racing for one data subject's key, and a send racing an
erasure (crypto-shredding). Real transactions on each backend; the order is forced, never timed."""

from __future__ import annotations

import contextlib
import multiprocessing
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess

import pytest
from sqlalchemy import Engine, func, select
from support import make_vault

from mailstack.keyring import Keyring
from mailstack.storage import ShreddedDataError, address_index, create_storage_engine
from mailstack.storage.schema import data_keys

SECRET = bytes(range(32))
PURPOSE = "messages.recipient"


def _subject(address: str) -> str:
    return address_index(Keyring(SECRET), address)


def _seal_in_another_process(url: str, subject: str, warm_up: bool, pipe: Pipe) -> None:
    """Another ``serve`` process: on "go", seal for ``subject`` in a transaction of its own.

    With ``warm_up`` it first seals and commits once, so that its vault has seen the subject's key (as a
    long-running process has); it reports that blob. Then it reports its backend pid (PostgreSQL) just
    before it starts the racing transaction, and at last the blob sealed in it (or the error).
    """
    engine = create_storage_engine(url)
    try:
        vault = make_vault(engine, SECRET)
        with engine.connect() as conn:
            if warm_up:
                with conn.begin():
                    warm = vault.seal(conn, b"warm-up", purpose=PURPOSE, subject=subject)
                pipe.send(warm)  # committed
            assert pipe.recv() == "go"
            pid = 0
            if conn.dialect.name == "postgresql":
                with conn.begin():
                    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            pipe.send(pid)
            with conn.begin():
                blob = vault.seal(conn, b"second", purpose=PURPOSE, subject=subject)
        pipe.send(blob)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # the test may have given up on it already
            pipe.send(f"error in the other process: {exc!r}")
        raise
    finally:
        engine.dispose()


def _start(url: str, subject: str, *, warm_up: bool = False) -> tuple[BaseProcess, Pipe]:
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    process = context.Process(target=_seal_in_another_process, args=(url, subject, warm_up, theirs))
    process.start()
    return process, mine


def _until_it_waits_for_us(engine: Engine, pid: int, process: BaseProcess, pipe: Pipe) -> bool:
    """On PostgreSQL, until the other backend waits for a lock this transaction holds; False when it got
    through without waiting (it answered, or ended). SQLite: its writers take turns; nothing to see."""
    if engine.dialect.name != "postgresql":
        return True
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
        while process.is_alive() and not pipe.poll(0.02):
            waiting = watcher.exec_driver_sql(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %(pid)s", {"pid": pid}
            ).scalar()
            if waiting == "Lock":
                return True
    return False


def _answer(process: BaseProcess, pipe: Pipe) -> bytes:
    answer = pipe.recv()
    process.join()
    assert isinstance(answer, bytes), answer
    return answer


def _stop(process: BaseProcess, pipe: Pipe) -> None:
    pipe.close()  # a process still waiting for "go" (this test failed first) gets EOFError and ends
    process.join()


def test_two_processes_creating_one_subjects_key_at_once_share_it(engine: Engine, db_url: str) -> None:
    vault = make_vault(engine, SECRET)  # the first vault makes the KEK, before the other process starts
    subject = _subject("race@example.net")
    process, pipe = _start(db_url, subject)
    try:
        with engine.begin() as conn:
            # This transaction creates the subject's key and holds it, uncommitted, while the other one
            # asks for it: on PostgreSQL its INSERT ... ON CONFLICT waits for this one to end, then finds
            # that the subject has a key after all and must use it (the fallback path). SQLite's writers
            # take turns: it begins once this one has committed, and finds the key.
            first = vault.seal(conn, b"first", purpose=PURPOSE, subject=subject)
            pipe.send("go")
            pid = pipe.recv()
            assert _until_it_waits_for_us(engine, pid, process, pipe), "the other process did not wait"
        second = _answer(process, pipe)
    finally:
        _stop(process, pipe)
    assert vault.key_id_of(first) == vault.key_id_of(second)
    fresh = make_vault(engine, SECRET)  # a third process: nothing cached
    with engine.connect() as conn:
        keys = conn.execute(select(func.count()).select_from(data_keys).where(data_keys.c.subject == subject))
        assert keys.scalar_one() == 1
        assert fresh.open_many(conn, [first, second], purpose=PURPOSE) == [b"first", b"second"]


def test_a_send_racing_an_erasure_never_seals_under_the_shredded_key(engine: Engine, db_url: str) -> None:
    vault = make_vault(engine, SECRET)
    subject = _subject("erased-meanwhile@example.net")
    # The other process has sealed for the subject before: it has seen (and cached) the subject's key.
    process, pipe = _start(db_url, subject, warm_up=True)
    try:
        old = pipe.recv()
        assert isinstance(old, bytes), old
        with engine.begin() as conn:
            # The erasure has deleted the key, not committed yet, when the other process seals for the
            # subject: on PostgreSQL it must wait for the erasure (the key's row is locked), then make a
            # new key. Reading the deleted row without waiting would seal under a key about to be gone:
            # that message could never be read, nor delivered.
            assert vault.shred_subject(conn, subject)
            pipe.send("go")
            pid = pipe.recv()
            assert _until_it_waits_for_us(engine, pid, process, pipe), "the other process did not wait"
        new = _answer(process, pipe)
    finally:
        _stop(process, pipe)
    assert vault.key_id_of(new) != vault.key_id_of(old)
    fresh = make_vault(engine, SECRET)
    with engine.connect() as conn:
        assert fresh.open(conn, new, purpose=PURPOSE) == b"second"
        with pytest.raises(ShreddedDataError):
            fresh.open(conn, old, purpose=PURPOSE)
