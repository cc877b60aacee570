"""What a node does at start and while it runs so that a crash costs seconds, not a lease time.

- Its identity (``DIR/node-id``, made once) stays across restarts; each start is a new incarnation.
- At start: the journals of the previous run are recorded (:mod:`._journal`), then the leases its
  earlier incarnations still hold are made due at once: nobody works on them any more.
- While it runs, a keeper renews the leases of this incarnation every third of the lease time, so a
  lease can be short: when a node dies, other nodes take its jobs over within one lease time.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mailstack.observability import get_logger
from mailstack.queue import LeaseOwner, Queue

from ._journal import JournalDirectory
from ._worker import DeliveryWorker

log = get_logger("mailstack.delivery")

_NODE_FILE = "node-id"


def node_owner(data_dir: Path) -> LeaseOwner:
    """This node's lease owner: its identity (kept in ``DIR/node-id``) and a new incarnation."""
    path = data_dir / _NODE_FILE
    try:
        node = path.read_text().strip()
    except FileNotFoundError:
        node = ""
    if not node:
        node = f"{socket.gethostname()[:40]}-{secrets.token_hex(4)}"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(node + "\n")
        os.replace(temporary, path)
    return LeaseOwner(node[:64], time.time_ns() // 1_000_000)


def recover(worker: DeliveryWorker, journals: JournalDirectory, queue: Queue, owner: LeaseOwner) -> None:
    """Record what the previous run journaled, then take back its leases (in that order: a journaled
    outcome must be recorded before its job can be leased again)."""
    replayed = worker.replay(journals.pending())
    journals.discard()
    reclaimed = queue.reclaim(owner, now=time.time())
    if replayed or reclaimed:
        log.info(
            "recovered the previous run's work",
            outcomes_recorded=replayed,
            leases_taken_back=reclaimed,
            node=owner.node,
        )


class LeaseKeeper:
    """Renews this incarnation's leases while its workers work on them."""

    def __init__(
        self,
        queue: Queue,
        owner: LeaseOwner,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._owner = owner
        self._lease_seconds = lease_seconds
        self._clock = clock

    def run(self, stop: threading.Event) -> None:
        failing = False
        while not stop.wait(self._lease_seconds / 3):
            try:
                self._queue.renew(self._owner, self._lease_seconds, now=self._clock())
            except Exception as exc:  # the database is away: renew when it is back
                if not failing:
                    log.warning("cannot renew leases; retrying", error=str(exc)[:200])
                failing = True
                continue
            if failing:
                log.info("leases renewed again")
            failing = False
