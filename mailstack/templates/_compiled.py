"""Parsed templates, kept per process so every recipient's copy of a message renders from one parse.

Parsing is where a template's cost lies (about 25 times the cost of rendering the parsed tree for a
template dense in tags): a message's copies are prepared one by one, by any worker thread, so the tree
is cached by its source text (and the limits it was parsed under). Parse failures are cached too, so a
broken template is not parsed again for each recipient. The cache is bounded by the characters of the
sources it holds (:data:`CACHED_TEMPLATE_CHARS`): least recently used entries go first. Threads asking
for a template another thread is parsing wait for that parse rather than starting their own.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from typing import Final

from mailstack.templates._errors import Limits, TemplateError
from mailstack.templates._parser import Node, parse

__all__ = ["CACHED_TEMPLATE_CHARS", "PARSED_TEMPLATES", "TemplateCache", "parsed"]

# A parsed tree takes about 30 bytes per source character for a template dense in tags: ~60 MB at most.
CACHED_TEMPLATE_CHARS: Final = 2_000_000
CACHED_TEMPLATES: Final = 512


_Parsed = tuple[Node, ...] | TemplateError


class _Flight:
    """A parse under way: the threads wanting the same template wait for it instead of parsing too."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: _Parsed | None = None


class TemplateCache:
    """A thread-safe LRU of parsed templates, bounded in entries and in total source characters."""

    def __init__(self, max_chars: int = CACHED_TEMPLATE_CHARS, max_entries: int = CACHED_TEMPLATES) -> None:
        self._max_chars = max_chars
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[str, Limits], _Parsed] = OrderedDict()
        self._flights: dict[tuple[str, Limits], _Flight] = {}
        self._chars = 0
        self._lock = threading.Lock()
        self.parses = 0  # how many times a template was actually parsed (for tests and benchmarks)

    def parsed(self, source: str, limits: Limits) -> tuple[Node, ...]:
        """The parsed tree of ``source``; raises the :class:`TemplateError` of a template that fails."""
        key = (source, limits)
        leader = False
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                flight = None
            elif (flight := self._flights.get(key)) is None:
                flight = self._flights[key] = _Flight()
                leader = True
        if flight is not None:
            if leader:
                found = self._parse(key, flight)
            else:
                flight.done.wait()
                found = flight.result if flight.result is not None else self._parse(key, _Flight())
        assert found is not None
        if isinstance(found, TemplateError):
            raise copy.copy(found)  # a fresh exception per caller: tracebacks are not shared
        return found

    def _parse(self, key: tuple[str, Limits], flight: _Flight) -> _Parsed:
        # Outside the lock: a long parse must not hold up the other workers' cache hits.
        result: _Parsed | None = None
        try:
            try:
                result = parse(*key)
            except TemplateError as exc:
                result = exc
            return result
        finally:
            flight.result = result  # None if parse() failed otherwise: the waiters parse for themselves
            with self._lock:
                self.parses += 1
                if self._flights.get(key) is flight:
                    del self._flights[key]
                if result is not None:
                    self._store(key, result)
            flight.done.set()

    def _store(self, key: tuple[str, Limits], value: _Parsed) -> None:
        size = len(key[0])
        if size > self._max_chars or key in self._entries:
            return
        self._entries[key] = value
        self._chars += size
        while self._chars > self._max_chars or len(self._entries) > self._max_entries:
            (source, _limits), _value = self._entries.popitem(last=False)
            self._chars -= len(source)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._chars = 0


# The process's cache: every render() goes through it.
PARSED_TEMPLATES: Final = TemplateCache()


def parsed(source: str, limits: Limits) -> tuple[Node, ...]:
    """The parsed tree of ``source`` from this process's cache (parsed on first use)."""
    return PARSED_TEMPLATES.parsed(source, limits)
