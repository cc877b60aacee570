"""Recording tracking events without making requests wait for the database.

The tracking endpoints hand each event to :meth:`EventRecorder.submit`, which only appends to a bounded
in-memory queue; a background thread writes the queue to the ``events`` table in batches. Nothing is
lost on the way:

* when the queue is full, or the database refuses a batch, events go to an append-only spool file in the
  data directory, replayed once the database takes writes again (and at the next start);
* :meth:`EventRecorder.stop` (called on SIGTERM, after the last request) drains the queue first;
* every event carries a unique ``uid`` and is inserted with "on conflict do nothing", so a batch written
  twice (a replay after a crash half-way through) is still stored once.

The spool holds what the events say about people (IPs, user agents, clicked URLs), so each of its lines is
encrypted and authenticated with the keyring (AES-256-GCM under a key derived from the master secret; the
vault cannot be used, its keys are in the database that is refusing writes). Lines written in the clear
by versions before this one are still replayed, so an upgrade loses nothing. A line that does not decrypt
(altered, truncated, or sealed under another master secret) or does not hold an event is never replayed
and never dropped: it is reported and kept aside in ``<spool file>.rejected`` next to the spool.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from mailstack.keyring import DecryptionError, Keyring
from mailstack.observability import get_logger
from mailstack.storage import seal_details
from mailstack.storage.schema import events, messages

if TYPE_CHECKING:
    from mailstack.privacy import Vault

__all__ = [
    "SPOOL_PURPOSE",
    "EventRecorder",
    "TrackedEvent",
    "open_spool_line",
    "seal_spool_line",
    "store_events",
]

log = get_logger("mailstack.tracking")

SPOOL_PURPOSE = "tracking.spool"  # the keyring purpose of spool lines (bound in as associated data)
_SEALED_PREFIX = "sealed:"
_REJECTED_SUFFIX = ".rejected"


@dataclass(frozen=True, slots=True)
class TrackedEvent:
    """One event to record; ``uid`` makes recording it idempotent."""

    uid: str
    message_id: int
    type: str
    created_at: float
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "message_id": self.message_id,
            "type": self.type,
            "created_at": self.created_at,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrackedEvent:
        return cls(
            str(data["uid"]),
            int(data["message_id"]),
            str(data["type"]),
            float(data["created_at"]),
            dict(data["detail"]),
        )


def store_events(conn: Connection, items: Sequence[TrackedEvent], *, vault: Vault) -> int:
    """Insert the events whose message still exists; a ``uid`` already stored is skipped.

    Returns how many rows were offered to the database (duplicates included). Events of messages that no
    longer exist (erased since the mail went out) are dropped: there is nothing left to attach them to.
    """
    if not items:
        return 0
    ids = {item.message_id for item in items}
    known = set(conn.execute(select(messages.c.id).where(messages.c.id.in_(ids))).scalars())
    rows = [
        {
            "uid": item.uid,
            "message_id": item.message_id,
            "type": item.type,
            "created_at": item.created_at,
            "detail": item.detail,
        }
        for item in items
        if item.message_id in known
    ]
    if not rows:
        return 0
    # IPs, user agents and replies are sealed; the facts statistics count stay readable.
    sealed = seal_details(conn, vault, [item.detail for item in items if item.message_id in known])
    for row, stored in zip(rows, sealed, strict=True):
        row["detail"] = stored
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(events).on_conflict_do_nothing(index_elements=["uid"]), rows)
    return len(rows)


class _RejectedLineError(ValueError):
    """A spool line that cannot be replayed; ``str()`` says why, never what it holds."""


def seal_spool_line(keyring: Keyring, event: TrackedEvent) -> str:
    """One spool line: the event's JSON encrypted with the keyring, base64, newline-terminated."""
    plain = json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    blob = keyring.encrypt(SPOOL_PURPOSE, plain)
    return _SEALED_PREFIX + base64.b64encode(blob).decode("ascii") + "\n"


def open_spool_line(keyring: Keyring, line: str) -> TrackedEvent:
    """The event of a spool line (sealed, or plaintext JSON from before spool encryption); raises
    :class:`_RejectedLineError`."""
    if line.startswith(_SEALED_PREFIX):
        try:
            blob = base64.b64decode(line[len(_SEALED_PREFIX) :], validate=True)
            plain = keyring.decrypt(SPOOL_PURPOSE, blob)
        except (binascii.Error, ValueError, DecryptionError):
            raise _RejectedLineError("altered, truncated or sealed under another master secret") from None
    elif line.startswith("{"):
        plain = line.encode("utf-8")  # written in the clear by a version before spool encryption
    else:
        raise _RejectedLineError("not a spool record")
    try:
        data = json.loads(plain)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        return TrackedEvent.from_json(data)
    except (ValueError, KeyError, TypeError):
        raise _RejectedLineError("not a tracking event") from None


class EventRecorder:
    """A bounded queue of events written to the database in batches by one background thread."""

    name = "tracking-recorder"

    def __init__(
        self,
        engine: Engine,
        *,
        capacity: int = 100_000,
        batch_size: int = 1000,
        flush_seconds: float = 0.25,
        spool_dir: Path | None = None,
        vault: Vault,
    ) -> None:
        """``vault`` seals the personal part of each event's detail."""
        self._engine = engine
        self._vault = vault
        self._queue: queue.Queue[TrackedEvent] = queue.Queue(maxsize=capacity)
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._spool_dir = spool_dir
        self._spool_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()  # one writer at a time: the thread, or flush() from outside
        self.stored = 0
        self.spooled = 0
        self.rejected = 0  # spool lines kept aside because they could not be replayed

    # --- the request side ------------------------------------------------------------------------

    def submit(self, event: TrackedEvent) -> None:
        """Queue an event; never waits for the database (overflow goes to the spool file)."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._spool([event])
            return
        if self._queue.qsize() >= self._batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread; spool files left by an earlier run are replayed by it."""
        if self._thread is not None:
            return
        self._reclaim_abandoned_spools()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tracking-recorder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread and write everything still queued (to the spool if the database fails)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()

    def flush(self) -> int:
        """Write everything queued now; returns how many events were written to the database."""
        with self._write_lock:
            written = self._drain()
            if self._spool_dir is not None and written >= 0:
                self._replay_spools()
            return max(written, 0)

    # --- the writer --------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the thread must survive anything; the events are spooled by _drain
                log.exception("tracking recorder flush failed")

    def _take(self) -> list[TrackedEvent]:
        batch: list[TrackedEvent] = []
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _drain(self) -> int:
        """Write queued batches; returns the count written, or -1 after a database failure."""
        written = 0
        while True:
            batch = self._take()
            if not batch:
                return written
            try:
                with self._engine.begin() as conn:
                    store_events(conn, batch, vault=self._vault)
            except Exception:
                log.exception("cannot record tracking events; spooling them", count=len(batch))
                self._spool(batch)
                for _ in range(self._queue.qsize()):
                    rest = self._take()
                    if not rest:
                        break
                    self._spool(rest)
                return -1
            written += len(batch)
            self.stored += len(batch)

    # --- the spool -----------------------------------------------------------------------------------

    def _spool(self, batch: Sequence[TrackedEvent]) -> None:
        if self._spool_dir is None:
            # Without a spool directory there is nowhere safe to put them: say so loudly.
            log.error("tracking events dropped: queue full or database down and no spool", count=len(batch))
            return
        keyring = self._vault.keyring
        lines = "".join(seal_spool_line(keyring, item) for item in batch).encode("ascii")
        with self._spool_lock:
            self._spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self._spool_dir / f"tracking-{os.getpid()}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "ab") as spool:
                spool.write(lines)
        self.spooled += len(batch)

    def _reclaim_abandoned_spools(self) -> None:
        # A replay that died half-way left a claimed file; replaying it again is harmless (uids).
        if self._spool_dir is None or not self._spool_dir.is_dir():
            return
        for path in self._spool_dir.glob("*.replay"):
            try:
                path.rename(path.with_name(path.name.removesuffix(".replay") + ".jsonl"))
            except OSError:
                continue

    def _replay_spools(self) -> None:
        assert self._spool_dir is not None
        if not self._spool_dir.is_dir():
            return
        for path in sorted(self._spool_dir.glob("tracking-*.jsonl")):
            claimed = path.with_name(f"{path.stem}.{os.getpid()}.{time.time_ns()}.replay")
            with self._spool_lock:
                try:
                    path.rename(claimed)  # atomic: another process replaying the same file loses the race
                except OSError:
                    continue
            items: list[TrackedEvent] = []
            rejected: list[tuple[int, str, str]] = []  # (line number, the line as found, why)
            keyring = self._vault.keyring
            with claimed.open(encoding="utf-8", errors="surrogateescape") as spool:
                for number, raw_line in enumerate(spool, 1):
                    line = raw_line.strip()
                    if not line:
                        continue
                    try:
                        items.append(open_spool_line(keyring, line))
                    except _RejectedLineError as exc:
                        rejected.append((number, line, str(exc)))
            try:
                for start in range(0, len(items), self._batch_size):
                    with self._engine.begin() as conn:
                        store_events(conn, items[start : start + self._batch_size], vault=self._vault)
            except Exception:
                log.exception("tracking spool replay failed; will retry", file=claimed.name)
                claimed.rename(claimed.with_name(claimed.name.removesuffix(".replay") + ".jsonl"))
                return
            if rejected:
                # Only once the rest is stored: a replay that fails is retried whole, lines kept aside once.
                self._set_aside(claimed, rejected)
            claimed.unlink()
            self.stored += len(items)
            log.info("replayed spooled tracking events", count=len(items))

    def _set_aside(self, claimed: Path, rejected: Sequence[tuple[int, str, str]]) -> None:
        kept = claimed.with_name(claimed.name.removesuffix(".replay") + _REJECTED_SUFFIX)
        fd = os.open(kept, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as out:
            out.writelines(line + "\n" for _number, line, _why in rejected)
        self.rejected += len(rejected)
        # Where and why, never the content: a line may be plaintext from an older version.
        log.warning(
            "tracking spool lines cannot be replayed; kept aside",
            file=claimed.name,
            kept=kept.name,
            lines=[number for number, _line, _why in rejected],
            reasons=sorted({why for _number, _line, why in rejected}),
        )
