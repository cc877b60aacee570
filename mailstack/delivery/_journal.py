"""Delivery journal: each relay outcome is written to a local file the moment it arrives.

A worker's outcomes reach the database in small groups as the relay answers (see ._group_commit).
Between the relay's reply and that commit, the outcome lives only in the process, and a database that is
away makes that window last. The journal closes it for a node that restarts: one
``write`` per outcome (no fsync: a killed process's writes survive in the page cache; only a power loss
can lose them, and then the queue's at-least-once rule still holds), cleared once the batch is
committed. At the next start the journals are replayed into the database before any lease is taken
back, so a crash re-sends only the SMTP transactions that were open at that instant.

Lines are JSON; the relay's reply has its addresses redacted (the file is not sealed like the database).
A torn last line (the process died mid-write) is ignored: that outcome is then treated as in flight.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mailstack.addresses import redact_addresses
from mailstack.observability import get_logger

from ._transport import DeliveryResult, Outcome

log = get_logger("mailstack.delivery")

_SUFFIX = ".journal"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One relay outcome of a leased job, as written before the database knows it."""

    job_id: int
    token: str
    message_id: int
    attempts: int
    result: DeliveryResult
    message_id_header: str | None

    def line(self) -> bytes:
        return (
            json.dumps(
                {
                    "job": self.job_id,
                    "token": self.token,
                    "message": self.message_id,
                    "attempts": self.attempts,
                    "outcome": self.result.outcome.value,
                    "code": self.result.code,
                    "reply": redact_addresses(self.result.reply)[:500],
                    "header": self.message_id_header,
                },
                separators=(",", ":"),
            ).encode()
            + b"\n"
        )

    @classmethod
    def parse(cls, line: bytes) -> JournalEntry:
        data = json.loads(line)
        return cls(
            int(data["job"]),
            str(data["token"]),
            int(data["message"]),
            int(data["attempts"]),
            DeliveryResult(Outcome(data["outcome"]), int(data["code"]), str(data["reply"])),
            None if data["header"] is None else str(data["header"]),
        )


class Journal:
    """One worker's journal file: appended per outcome, cleared per committed batch."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._dirty = False

    def append(self, entry: JournalEntry) -> None:
        try:
            os.write(self._fd, entry.line())  # one write per line: O_APPEND keeps lines whole
            self._dirty = True
        except OSError as exc:  # disk full: the outcome is still in memory and goes to the database
            log.warning("delivery journal not written", error=str(exc))

    def clear(self) -> None:
        if self._dirty:
            try:
                os.ftruncate(self._fd, 0)
                self._dirty = False
            except OSError as exc:
                log.warning("delivery journal not cleared", error=str(exc))

    def close(self) -> None:
        os.close(self._fd)


class JournalDirectory:
    """The journals of one node's workers (``DIR/journal/delivery-N.journal``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def for_worker(self, index: int) -> Journal:
        return Journal(self.directory / f"delivery-{index}{_SUFFIX}")

    def pending(self) -> list[JournalEntry]:
        """Every whole entry of every journal left by the previous run (the last one per job wins)."""
        if not self.directory.is_dir():
            return []
        entries: dict[int, JournalEntry] = {}
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            for line in path.read_bytes().split(b"\n"):
                if not line:
                    continue
                try:
                    entry = JournalEntry.parse(line)
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line: that outcome was in flight
                entries[entry.job_id] = entry
        return list(entries.values())

    def discard(self) -> None:
        """Forget the previous run's journals once their outcomes are in the database. Emptied, not
        removed: this run's workers may have opened theirs already (appends go on at the new end)."""
        if not self.directory.is_dir():
            return
        for path in self.directory.glob(f"*{_SUFFIX}"):
            os.truncate(path, 0)
