"""One lifecycle for every background service of ``mailstack serve``.

Each service has a name, ``start()`` (returns once it runs, raises if it cannot) and ``stop()`` (drains
what it holds, then returns). :class:`Lifecycle` starts them in the order listed and stops them in the
reverse order, so a service is stopped only after everything that feeds it: the HTTP API and SMTP
submission (listed last) stop taking work before the workers that deliver it are drained.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from mailstack.observability import get_logger

__all__ = ["Lifecycle", "Loop", "LoopGroup", "Service"]

log = get_logger("mailstack.lifecycle")


class Service(Protocol):
    @property
    def name(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Loop:
    """A ``run(stop)`` function on a thread of its own: the shape of every polling service."""

    def __init__(
        self,
        name: str,
        run: Callable[[threading.Event], None],
        *,
        join_seconds: float = 30.0,
        prepare: Callable[[], None] | None = None,
        wake: threading.Event | None = None,
        daemon: bool = False,
    ) -> None:
        self.name = name
        self._run = run
        self._join_seconds = join_seconds
        self._prepare = prepare
        self._wake = wake
        # A daemon thread may be cut by the exit: only for services whose unfinished work rolls back.
        self._daemon = daemon
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._prepare is not None:
            self._prepare()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name=self.name, daemon=self._daemon
        )
        self._thread.start()

    def signal_stop(self) -> None:
        """Ask the loop to finish its batch, without waiting (see :meth:`Lifecycle.stop`)."""
        self._stop.set()
        if self._wake is not None:
            self._wake.set()

    def stop(self) -> None:
        self.signal_stop()
        if self._thread is not None:
            self._thread.join(self._join_seconds)
            if self._thread.is_alive():
                log.warning("service did not stop in time", service=self.name, seconds=self._join_seconds)
            self._thread = None


class LoopGroup:
    """Loops side by side (the delivery workers): all are told to stop before the first is waited for,
    so their drains overlap instead of adding up."""

    def __init__(self, name: str, loops: Sequence[Loop]) -> None:
        self.name = name
        self._loops = list(loops)

    def start(self) -> None:
        for loop in self._loops:
            loop.start()

    def stop(self) -> None:
        for loop in self._loops:
            loop.signal_stop()
        for loop in self._loops:
            loop.stop()


class Lifecycle:
    """Services started in order and stopped in reverse; a failed start stops what had started."""

    def __init__(self, services: Sequence[Service]) -> None:
        self._services = list(services)
        self._started: list[Service] = []

    @property
    def services(self) -> list[Service]:
        return list(self._services)

    def start(self) -> None:
        for service in self._services:
            try:
                service.start()
            except BaseException:
                log.error("service cannot start", service=service.name)
                self.stop()
                raise
            self._started.append(service)

    def stop(self) -> None:
        """Stop every started service, last started first."""
        started, self._started = self._started, []
        for service in reversed(started):
            try:
                service.stop()
            except Exception:
                log.exception("service failed to stop cleanly", service=service.name)
