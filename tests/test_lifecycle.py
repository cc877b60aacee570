"""One lifecycle: services start in the order listed, stop in reverse, and a failed start undoes itself."""

from __future__ import annotations

import threading

import pytest

from mailstack.lifecycle import Lifecycle, Loop, LoopGroup


class Recorded:
    def __init__(self, name: str, journal: list[str], *, fails: bool = False) -> None:
        self.name = name
        self._journal = journal
        self._fails = fails

    def start(self) -> None:
        if self._fails:
            raise OSError(f"{self.name}: address already in use")
        self._journal.append(f"start {self.name}")

    def stop(self) -> None:
        self._journal.append(f"stop {self.name}")


def test_services_stop_in_reverse_order_of_start() -> None:
    journal: list[str] = []
    lifecycle = Lifecycle([Recorded(name, journal) for name in ("workers", "intake", "smtp")])
    lifecycle.start()
    lifecycle.stop()
    assert journal == [
        "start workers",
        "start intake",
        "start smtp",
        "stop smtp",
        "stop intake",
        "stop workers",
    ]
    lifecycle.stop()  # stopping twice does nothing more
    assert len(journal) == 6


def test_a_service_that_cannot_start_stops_those_already_started() -> None:
    journal: list[str] = []
    services = [Recorded("workers", journal), Recorded("smtp", journal, fails=True), Recorded("x", journal)]
    lifecycle = Lifecycle(services)
    with pytest.raises(OSError, match="address already in use"):
        lifecycle.start()
    assert journal == ["start workers", "stop workers"]


def test_a_loop_finishes_its_batch_and_side_by_side_loops_drain_together() -> None:
    started = threading.Barrier(3)
    stop_seen: list[str] = []
    release = threading.Event()
    overlapped: list[bool] = []

    def worker(name: str) -> Loop:
        def run(stop: threading.Event) -> None:
            started.wait(5)
            stop.wait(5)
            stop_seen.append(name)
            # Both must have been told to stop before either finishes: their drains overlap.
            if len(stop_seen) == 1:
                overlapped.append(release.wait(5))
            else:
                release.set()

        return Loop(name, run, join_seconds=10)

    group = LoopGroup("delivery", [worker("a"), worker("b")])
    group.start()
    started.wait(5)
    group.stop()
    assert sorted(stop_seen) == ["a", "b"]
    assert overlapped == [True]
