"""Engine creation for the two storage backends, SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import collections
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

__all__ = ["create_storage_engine", "normalize_url", "reading", "urgent_writes"]


def normalize_url(url: str) -> str:
    """Accept libpq-style ``postgresql://`` URLs and route them to psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername not in ("postgresql+psycopg", "sqlite", "sqlite+pysqlite"):
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r} (use sqlite or postgresql)")
    return parsed.render_as_string(hide_password=False)


def create_storage_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine tuned for the queue: WAL and immediate transactions on SQLite, a pool on PostgreSQL."""
    url = normalize_url(url)
    # Database errors end up in logs (log.exception); their text must not carry the statement's values,
    # which hold personal data (sealed, mostly) and idempotency keys.
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, hide_parameters=True
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, hide_parameters=True
    )


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's implicit transactions would defer the write lock and invite SQLITE_BUSY deadlocks
    # between two writers; take the write lock when a transaction begins instead.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # The writers of this process take turns on a lock before asking SQLite for its write lock. SQLite's
    # busy handler polls with sleeps growing to 100 ms, so under load the database sat idle while the
    # waiters slept (measured with the API and four delivery workers: 64 ms per BEGIN IMMEDIATE on
    # average); a lock hands over at once, in turn. Other processes still meet SQLite's busy timeout.
    turns = _WriterTurns()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        dbapi_connection = connection.connection.dbapi_connection
        if getattr(_intent, "reading", False):
            # A reader (:func:`reading`) sees a snapshot without the write lock (WAL) and takes no turn:
            # a health check or a GET does not queue behind the writers. query_only makes a write in it
            # fail at once instead of taking the lock outside the turns.
            connection.exec_driver_sql("PRAGMA query_only = 1")
            connection.connection.info[_READ_ONLY] = True
            connection.exec_driver_sql("BEGIN")
            return
        turns.enter(dbapi_connection)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            turns.leave(dbapi_connection)
            raise

    @event.listens_for(engine, "commit")
    def _on_commit(connection: Connection) -> None:
        # The turn ends after the commit, not before it (SQLAlchemy's own commit, which follows, then finds
        # nothing to do). A commit that fails here fails again there, and the rollback ends the turn.
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection is None:
            return
        try:
            dbapi_connection.commit()
        except sqlite3.Error as exc:
            if dbapi_connection.in_transaction:
                return  # raised again, wrapped, by SQLAlchemy's commit
            # SQLite rolled the transaction back itself (a full disk, an I/O error): SQLAlchemy's commit
            # would find no transaction and report success for writes that are gone. Wrapped as
            # SQLAlchemy wraps what the driver raises, so callers see the same kind of error.
            raise DBAPIError.instance("COMMIT", None, exc, sqlite3.Error) from exc
        turns.leave(dbapi_connection)

    @event.listens_for(engine, "rollback")
    def _on_rollback(connection: Connection) -> None:
        if connection.invalidated:
            return  # the pool's invalidate event ends its turn
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection is None:
            return
        with contextlib.suppress(Exception):  # SQLAlchemy's rollback, which follows, reports it
            dbapi_connection.rollback()
        turns.leave(dbapi_connection)

    # Whatever happened to a transaction, a connection going back to the pool or away holds no turn.
    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        turns.leave(dbapi_connection)
        if dbapi_connection is not None and record.info.pop(_READ_ONLY, False):
            dbapi_connection.execute("PRAGMA query_only = 0")

    @event.listens_for(engine, "invalidate")
    def _on_invalidate(dbapi_connection: Any, _record: Any, _exception: Any) -> None:
        turns.leave(dbapi_connection)


_READ_ONLY = "mailstack_read_only"  # in a pooled connection's info while it is a reader's

# How long a writer waits for its turn before leaving it to SQLite's busy timeout (which then applies).
_TURN_TIMEOUT = 30.0

# How long a background writer lets urgent writers go first; then it goes next. Back-to-back accepts
# would otherwise hold a purge or the delivery outcomes back until the turn timeout, and past it.
_BACKGROUND_PATIENCE = 0.5


class _WriterTurns:
    """One SQLite writer at a time in this process, the others waiting their turn (see _configure_sqlite).

    Writers marked urgent (:func:`urgent_writes`: accepting mail) go before the background writers
    (delivery, webhooks, stats) that wait: a client must not wait for the backlog being delivered. A
    background writer that has waited ``_BACKGROUND_PATIENCE`` is *overdue*: overdue writers and urgent
    ones then take turns one each, so no writer starves and an urgent one waits for one at most. Background
    writers go in the order they came: one that loops back to back cannot take the turn again ahead of
    another that waits.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._urgent_turn = threading.Condition(self._mutex)
        self._background_turn = threading.Condition(self._mutex)
        self._urgent_waiting = 0
        self._background_queue: collections.deque[int] = collections.deque()  # tickets, first come first
        self._next_ticket = 0
        self._overdue_waiting = 0  # background writers past their patience
        self._overdue_went_last = False  # the last turn was an overdue writer's: an urgent one goes next
        self._holder: Any = None  # the DBAPI connection whose turn it is
        self._thread: int | None = None

    def enter(self, dbapi_connection: Any) -> None:
        me = threading.get_ident()
        if self._thread == me:
            # This thread already has the turn on another connection: waiting for itself would never
            # end, so SQLite's busy timeout decides, as it did before there were turns.
            return
        urgent = getattr(_intent, "urgent", False)
        overdue = False
        ticket = -1
        with self._mutex:
            # Timed under the mutex, as tickets are given: the first in line is the first overdue.
            started = time.monotonic()
            deadline = started + _TURN_TIMEOUT
            overdue_at = started + _BACKGROUND_PATIENCE
            if urgent:
                self._urgent_waiting += 1
            else:
                ticket = self._next_ticket
                self._next_ticket += 1
                self._background_queue.append(ticket)
            try:
                while self._must_wait(urgent=urgent, overdue=overdue, ticket=ticket):
                    now = time.monotonic()
                    if now >= deadline:
                        return  # SQLite's busy timeout decides
                    if not urgent and not overdue and now >= overdue_at:
                        overdue = True
                        self._overdue_waiting += 1
                        continue
                    wakes_at = deadline if urgent or overdue else min(deadline, overdue_at)
                    (self._urgent_turn if urgent else self._background_turn).wait(wakes_at - now)
                self._holder, self._thread = dbapi_connection, me
                self._overdue_went_last = overdue
            finally:
                if urgent:
                    self._urgent_waiting -= 1
                else:
                    self._background_queue.remove(ticket)
                if overdue:
                    self._overdue_waiting -= 1
                if self._holder is None:
                    self._hand_over()  # a waiter that gave up passes on the turn it may have been handed

    def _must_wait(self, *, urgent: bool, overdue: bool, ticket: int) -> bool:
        if self._holder is not None:
            return True
        if urgent:
            return self._overdue_next()
        if self._background_queue[0] != ticket:
            return True  # an earlier background writer goes first
        if overdue:
            return self._urgent_waiting > 0 and not self._overdue_next()
        return self._urgent_waiting > 0

    def _overdue_next(self) -> bool:
        # Whether the free turn belongs to an overdue background writer rather than an urgent one.
        return self._overdue_waiting > 0 and not (self._overdue_went_last and self._urgent_waiting)

    def leave(self, dbapi_connection: Any) -> None:
        if dbapi_connection is None or self._holder is not dbapi_connection:
            return  # every connection checked in comes here: most never had the turn
        with self._mutex:
            if self._holder is dbapi_connection:
                self._holder = self._thread = None
                self._hand_over()

    def _hand_over(self) -> None:
        # With the mutex held and no holder: wake the next writer — an urgent one unless an overdue
        # background writer's turn has come. Background writers share one condition and only the first in
        # line may go: wake them all.
        if self._urgent_waiting and not self._overdue_next():
            self._urgent_turn.notify()
        else:
            self._background_turn.notify_all()


_intent = threading.local()


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only. On SQLite its transactions take neither the write lock nor a turn
    among the writers (a write in it fails); on PostgreSQL it is a plain connection."""
    previous = getattr(_intent, "reading", False)
    _intent.reading = True
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        _intent.reading = previous


@contextlib.contextmanager
def urgent_writes() -> Iterator[None]:
    """Within this block, this thread's SQLite transactions go before waiting background writers."""
    previous = getattr(_intent, "urgent", False)
    _intent.urgent = True
    try:
        yield
    finally:
        _intent.urgent = previous
