"""One log line when the storage goes away and one when it is back, instead of a trace per retry."""

from __future__ import annotations

from typing import Any

from ._errors import is_unavailable


class OutageNotice:
    """For a loop that retries: :meth:`failed` in its ``except``, :meth:`succeeded` after a good round.

    While the storage is away the loop retries quietly (one warning at the start of the outage); any
    other error is logged with its trace each time, as before.
    """

    def __init__(self, log: Any, what: str) -> None:
        self._log = log
        self._what = what
        self.away = False

    def failed(self, exc: BaseException) -> None:
        if is_unavailable(exc):
            if not self.away:
                self._log.warning(f"{self._what}: storage unavailable; retrying", error=str(exc)[:200])
            self.away = True
        else:
            self._log.exception(f"{self._what} failed; retrying")

    def succeeded(self) -> None:
        if self.away:
            self._log.info(f"{self._what}: storage back")
        self.away = False
