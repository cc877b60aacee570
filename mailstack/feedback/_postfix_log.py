"""Delivery status from Postfix's log: per recipient delivered, deferred or bounced, with the reply.

Postfix records every delivery attempt in its log (``maillog_file``)::

    ... postfix/qmgr[12]: 4BCD: from=<b-1z-xxxxxxxxxxxxxxxx@bounces.example.com>, size=2048, nrcpt=1
        (queue active)
    ... postfix/smtp[13]: 4BCD: to=<ana@example.net>, relay=mx.example.net[192.0.2.1]:25, delay=0.4,
        delays=0.1/0/0.1/0.2, dsn=2.0.0, status=sent (250 2.0.0 OK 1700000000 ok)
    ... postfix/qmgr[12]: 4BCD: removed

The queue manager's ``from=`` line names the message's VERP return path, which the reader checks with
:func:`~mailstack.compose.parse_verp` (so only our own, unforged mail is matched) and remembers under the
queue id until Postfix logs ``removed``. Delivery lines are then matched by queue id.

Exactly once across restarts: the read position (file identity and byte offset) is stored in the database
in the same transaction as the events and queue ids its lines produced, and only whole lines are
consumed. Every event also carries a uid derived from its log line, so even lines read twice (a lost
cursor) are recorded once. Rotation: when another file appears at the path, the old file (still open,
or found again by its identity after a restart) is read to its end first, then the new one from 0; a file
truncated in place is read again from 0.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection

from mailstack.compose import ComposeSettings, parse_verp
from mailstack.observability import get_logger
from mailstack.storage import LogCursor, Store

from ._classify import classify_logged, split_reply
from ._recorder import Bounce, FeedbackRecorder, StatusReport, event_uid

__all__ = ["LogEntry", "LogKind", "PostfixLogReader", "parse_line"]

log = get_logger("mailstack.feedback.postfix")

# "<program>[<pid>]: <queue id>: <rest>", program being postfix/smtp, postfix-out/qmgr, postfix/x/smtpd...
_HEADER = re.compile(r"\s(?P<prog>[\w.\-]+(?:/[\w.\-]+)+)\[\d+\]: (?P<qid>[0-9A-Za-z]{5,24}): (?P<rest>.*)$")
_DELIVERY = re.compile(
    r"^to=<(?P<to>[^>]*)>, (?:orig_to=<[^>]*>, )?relay=(?P<relay>[^,]*), (?:.*?, )?"
    r"dsn=(?P<dsn>[245]\.\d{1,3}\.\d{1,3}), status=(?P<status>[a-z]+)(?: \((?P<text>.*)\))?$"
)
_DELAY = re.compile(r", delay=(?P<delay>[\d.]+),")
_QUEUED = re.compile(r"^from=<(?P<sender>[^>]*)>, size=\d+, nrcpt=\d+ \(queue active\)$")
_EXPIRED = re.compile(r"^from=<(?P<sender>[^>]*)>, status=expired, returned to sender$")
_STALE_SECONDS = 14 * 86400.0  # well past Postfix's maximal_queue_lifetime (5 days by default)
_PURGE_EVERY = 3600.0


class LogKind(Enum):
    QUEUED = "queued"  # qmgr: the message entered the active queue (names its sender)
    DELIVERY = "delivery"  # a delivery agent: one recipient's attempt and its status
    EXPIRED = "expired"  # qmgr: the message stayed too long in the queue and went back to its sender
    REMOVED = "removed"  # qmgr: Postfix is done with the queue file


@dataclass(frozen=True, slots=True)
class LogEntry:
    kind: LogKind
    queue_id: str
    sender: str = ""
    recipient: str = ""
    relay: str = ""
    dsn: str = ""
    status: str = ""  # sent, deferred, bounced, ...
    text: str = ""  # the parenthesised explanation (the remote reply, or Postfix's own words)
    delay: str = ""


def parse_line(line: str) -> LogEntry | None:
    """The part of a Postfix log line that matters for delivery status, or None."""
    header = _HEADER.search(line)
    if header is None:
        return None
    qid, rest = header.group("qid"), header.group("rest")
    if rest.startswith("to=<"):
        match = _DELIVERY.match(rest)
        if match is None:
            return None
        delay = _DELAY.search(rest)
        return LogEntry(
            LogKind.DELIVERY,
            qid,
            recipient=match.group("to"),
            relay=match.group("relay"),
            dsn=match.group("dsn"),
            status=match.group("status"),
            text=match.group("text") or "",
            delay=delay.group("delay") if delay else "",
        )
    if rest.startswith("from=<"):
        match = _QUEUED.match(rest)
        if match is not None:
            return LogEntry(LogKind.QUEUED, qid, sender=match.group("sender"))
        match = _EXPIRED.match(rest)
        if match is not None:
            return LogEntry(LogKind.EXPIRED, qid, sender=match.group("sender"))
        return None
    if rest == "removed":
        return LogEntry(LogKind.REMOVED, qid)
    return None


def _file_id(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}"


class PostfixLogReader:
    """Follows one Postfix log file and records what it says about mailstack's messages.

    ``name`` keys the stored read position; it defaults to ``<host name>:<path>`` so that the nodes of a
    fleet, each reading its own Postfix's log into one database, keep separate positions.
    """

    def __init__(
        self,
        store: Store,
        path: Path,
        compose_settings: ComposeSettings,
        recorder: FeedbackRecorder,
        *,
        name: str | None = None,
        poll_seconds: float = 0.5,
        chunk_bytes: int = 256 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._relay_log = store.relay_log
        self._path = path
        self._compose = compose_settings
        self._recorder = recorder
        self.name = (name or f"{socket.gethostname()}:{path}")[:255]
        self._poll_seconds = poll_seconds
        self._chunk_bytes = chunk_bytes
        self._clock = clock
        self._file: IO[bytes] | None = None
        self._file_id = ""
        self._position = 0
        self._last_purge = 0.0

    # --- lifecycle ---------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Follow the log until ``stop`` is set; a failure (database down) is retried from the last commit."""
        log.info("following the postfix log", path=str(self._path), cursor=self.name)
        while not stop.is_set():
            try:
                self.poll(stop)
            except Exception:
                log.exception("reading the postfix log failed; retrying from the last committed position")
                self.close()
            stop.wait(self._poll_seconds)
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def poll(self, stop: threading.Event | None = None) -> int:
        """Read and record every complete line available now; returns how many lines were consumed."""
        if self._file is None and not self._open():
            return 0
        consumed = 0
        while stop is None or not stop.is_set():
            lines = self._read_chunk()
            if lines:
                consumed += lines
                continue
            if not self._follow_rotation():
                break
        return consumed

    # --- files -------------------------------------------------------------------------------------------

    def _open(self) -> bool:
        with self._store.connect() as conn:
            cursor = self._relay_log.cursor(conn, self.name)
        try:
            current: os.stat_result | None = os.stat(self._path)
        except FileNotFoundError:
            current = None
        if cursor is not None and (current is None or _file_id(current) != cursor.file_id):
            # The file we were reading was rotated while we were away: finish it first if it is still here.
            old = self._find(cursor.file_id)
            if old is not None:
                self._attach(old, cursor.position, cursor)
                log.info("finishing the rotated postfix log first", path=str(old))
                return True
            if current is not None:
                log.warning(
                    "the postfix log was rotated while mailstack was stopped and the old file is gone "
                    "(compressed or deleted): its unread lines are lost",
                    path=str(self._path),
                )
        if current is None:
            return False
        start = cursor.position if cursor is not None and cursor.file_id == _file_id(current) else 0
        self._attach(self._path, start, cursor)
        return True

    def _attach(self, path: Path, position: int, cursor: LogCursor | None = None) -> None:
        """Open ``path`` at ``position``; the stored cursor is updated when it says something else."""
        self.close()
        handle = path.open("rb")
        st = os.fstat(handle.fileno())
        self._file, self._file_id = handle, _file_id(st)
        # A position beyond the end means the file was truncated in place: it starts over.
        self._position = position if position <= st.st_size else 0
        if cursor != LogCursor(self._file_id, self._position):
            self._save_position(self._position)

    def _find(self, file_id: str) -> Path | None:
        for candidate in sorted(self._path.parent.glob(self._path.name + "*")):
            try:
                st = candidate.stat()
            except OSError:
                continue
            if candidate.is_file() and _file_id(st) == file_id:
                return candidate
        return None

    def _follow_rotation(self) -> bool:
        """At the end of the open file: switch to a new file at the path, or restart a truncated one."""
        assert self._file is not None
        try:
            current = os.stat(self._path)
        except FileNotFoundError:
            return False  # rotated, and the new file is not there yet: keep the old one
        if _file_id(current) == self._file_id:
            if current.st_size < self._position:
                log.warning("the postfix log was truncated in place; reading it again from the start")
                self._save_position(0)
                return True
            return False
        if current.st_size == 0:
            # Until the writer has reopened its log, it may still append to the old file: wait for it.
            return False
        self._finish_partial_line()
        self._attach(self._path, 0)
        log.info("the postfix log was rotated; following the new file", path=str(self._path))
        return True

    def _read_chunk(self) -> int:
        assert self._file is not None
        self._file.seek(self._position)
        data = self._file.read(self._chunk_bytes)
        end = data.rfind(b"\n")
        while end < 0 and len(data) >= self._chunk_bytes:
            # A line longer than a chunk: read on until it ends (or the file does).
            more = self._file.read(self._chunk_bytes)
            if not more:
                break
            data += more
            end = data.rfind(b"\n")
        if end < 0:
            return 0  # nothing, or a line still being written
        data = data[: end + 1]
        lines = data.split(b"\n")[:-1]
        self._commit(lines, len(data))
        return len(lines)

    def _finish_partial_line(self) -> None:
        # The old file will not grow any more: a last line without its newline is complete as it is.
        assert self._file is not None
        self._file.seek(self._position)
        rest = self._file.read()
        if rest:
            self._commit([rest], len(rest))

    # --- recording ---------------------------------------------------------------------------------------

    def _save_position(self, position: int) -> None:
        with self._store.begin() as conn:
            self._relay_log.save_cursor(
                conn, self.name, LogCursor(self._file_id, position), now=self._clock()
            )
        self._position = position

    def _commit(self, lines: list[bytes], size: int) -> None:
        now = self._clock()
        with self._store.begin() as conn:
            if not self._still_ours(conn):
                return
            self._apply(conn, [line.decode("utf-8", "replace") for line in lines], now)
            self._relay_log.save_cursor(
                conn, self.name, LogCursor(self._file_id, self._position + size), now=now
            )
        self._position += size

    def _still_ours(self, conn: Connection) -> bool:
        # Another process reading the same log under the same name may be ahead: follow it, never redo.
        row = self._relay_log.cursor(conn, self.name, lock=True)
        if row is not None and row.file_id == self._file_id and row.position > self._position:
            self._position = row.position
            return False
        return True

    def _apply(self, conn: Connection, lines: Iterable[str], now: float) -> None:
        entries = [(entry, line) for line in lines if (entry := parse_line(line)) is not None]
        if not entries:
            return
        wanted = {e.queue_id for e, _ in entries if e.kind in (LogKind.DELIVERY, LogKind.REMOVED)}
        known = self._relay_log.queue_ids(conn, self.name, wanted)
        added: dict[str, int] = {}
        removed: set[str] = set()
        outcomes: list[tuple[int, LogEntry, str]] = []
        for entry, line in entries:
            if entry.kind is LogKind.QUEUED:
                message_id = parse_verp(entry.sender, self._compose)
                if message_id is not None:  # only our own mail, with an unforged return path
                    known[entry.queue_id] = added[entry.queue_id] = message_id
                    removed.discard(entry.queue_id)
            elif entry.kind is LogKind.DELIVERY:
                message_id = known.get(entry.queue_id)
                if message_id is not None:
                    outcomes.append((message_id, entry, line))
            elif entry.kind is LogKind.EXPIRED:
                message_id = parse_verp(entry.sender, self._compose)
                if message_id is not None:
                    outcomes.append((message_id, entry, line))
            elif entry.queue_id in known:  # removed
                del known[entry.queue_id]
                added.pop(entry.queue_id, None)
                removed.add(entry.queue_id)
        purge = now - self._last_purge >= _PURGE_EVERY
        self._relay_log.forget_queue_ids(
            conn, self.name, removed, older_than=now - _STALE_SECONDS if purge else None
        )
        if purge:
            self._last_purge = now
        self._relay_log.remember_queue_ids(conn, self.name, added, now=now)
        if outcomes:
            self._record(conn, outcomes, now)

    def _record(self, conn: Connection, outcomes: list[tuple[int, LogEntry, str]], now: float) -> None:
        facts = self._recorder.load(conn, {message_id for message_id, _, _ in outcomes})
        # Consecutive delivered/deferred lines go in one batch; a bounce first flushes the batch, so each
        # message's events keep the log's order.
        batch: list[StatusReport] = []
        for message_id, entry, line in outcomes:
            message = facts.get(message_id)
            if message is None:
                continue  # erased since it was sent: nothing to attach the status to
            uid = event_uid("pflog", self.name, line)
            extra: dict[str, Any] = {"source": "postfix-log", "queue_id": entry.queue_id}
            if entry.kind is LogKind.DELIVERY and entry.status in ("sent", "deferred"):
                extra.update({"relay": entry.relay, "dsn": entry.dsn, "delay": entry.delay})
                reply = split_reply(entry.text)[0]
                batch.append(StatusReport(message, entry.status == "sent", reply, uid, extra))
                continue
            if entry.kind is LogKind.EXPIRED:
                bounce = Bounce(
                    hard=False,
                    reason="expired",
                    source="postfix-log",
                    status="4.4.7",
                    diagnostic="delivery expired: the message stayed too long in Postfix's queue",
                    extra=extra,
                )
            elif entry.status in ("bounced", "expired"):
                failure = classify_logged(entry.recipient, entry.dsn, entry.text)
                extra.update({"relay": entry.relay, "dsn": entry.dsn, "remote_mta": failure.remote_mta})
                bounce = Bounce(
                    hard=failure.hard,
                    reason=failure.reason,
                    source="postfix-log",
                    status=entry.dsn,
                    reply_code=failure.reply_code,
                    diagnostic=failure.reply,
                    extra=extra,
                )
            else:
                continue  # address verification probes and the like say nothing about our mail
            self._recorder.statuses(conn, batch, now=now)
            batch = []
            self._recorder.bounce(conn, message, bounce, uid=uid, now=now)
        self._recorder.statuses(conn, batch, now=now)
