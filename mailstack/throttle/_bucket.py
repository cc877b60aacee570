"""Pure rate arithmetic: token buckets, warm-up curves and UTC days. No I/O, no clock of its own."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

SECONDS_PER_DAY = 86400
# A message coming back exactly at its retry time must find its token despite rounding: timestamps near
# 1.7e9 carry about 0.2 µs of float precision, so waits shorter than a microsecond count as none.
_EPSILON_SECONDS = 1e-6


@dataclass(frozen=True, slots=True)
class Limit:
    """A sustained ``rate`` in messages per second and a ``burst`` of messages that may go at once."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number of messages per second, got {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst}")

    @classmethod
    def of(cls, rate: float, burst: int | None = None) -> Limit:
        """``burst`` defaults to one second's worth of messages (at least one)."""
        return cls(rate, burst if burst is not None else max(1, math.ceil(rate)))


@dataclass(frozen=True, slots=True)
class BucketState:
    """``tokens`` at ``updated_at``, and ``waitlist_until``: the last retry time given to a message that
    found the bucket empty. Retry times are handed out 1/rate apart after it, so that waiting messages
    come back one per token instead of all at once."""

    tokens: float
    updated_at: float
    waitlist_until: float = 0.0

    @classmethod
    def full(cls, limit: Limit, now: float) -> BucketState:
        return cls(float(limit.burst), now)


def refill(state: BucketState, limit: Limit, now: float) -> BucketState:
    """The bucket at ``now``: tokens accrue at ``limit.rate`` up to ``limit.burst``.

    A clock that went backwards (another node's clock slightly ahead wrote the row) adds nothing, and the
    bucket keeps the later time, so skew between nodes can never mint tokens twice.
    """
    if now <= state.updated_at:
        return state
    # The cap also applies a burst lowered in the configuration at once, rather than after a drain.
    tokens = min(float(limit.burst), state.tokens + (now - state.updated_at) * limit.rate)
    return BucketState(tokens, now, state.waitlist_until)


def wait_seconds(state: BucketState, limit: Limit) -> float:
    """How long until one whole token is in the (refilled) bucket; 0 when one is there now."""
    wait = (1.0 - state.tokens) / limit.rate
    return wait if wait > _EPSILON_SECONDS else 0.0


def take(state: BucketState) -> BucketState:
    """Spend one token; the bucket must hold one (see :func:`wait_seconds`)."""
    return BucketState(state.tokens - 1.0, state.updated_at, state.waitlist_until)


def waitlist(state: BucketState, limit: Limit, ready_at: float) -> tuple[BucketState, float]:
    """Give a message that found the bucket empty its retry time: when a token comes (``ready_at``), or
    1/rate after the last message told to wait, whichever is later. Nothing is taken from the bucket."""
    slot = max(ready_at, state.waitlist_until + 1.0 / limit.rate)
    return BucketState(state.tokens, state.updated_at, slot), slot


# --- IP warm-up -------------------------------------------------------------------------------------


def utc_day(timestamp: float) -> int:
    """Days since 1970-01-01 in UTC; POSIX time has no leap seconds, so this is exact."""
    return math.floor(timestamp / SECONDS_PER_DAY)


def next_utc_midnight(timestamp: float) -> float:
    return float((utc_day(timestamp) + 1) * SECONDS_PER_DAY)


def day_number(day: date) -> int:
    """A calendar date as days since 1970-01-01 (the same scale as :func:`utc_day`)."""
    return (day - date(1970, 1, 1)).days


def utc_date(timestamp: float) -> date:
    return datetime.fromtimestamp(timestamp, UTC).date()


@dataclass(frozen=True, slots=True)
class WarmupSchedule:
    """A new sending IP's daily cap: day 1 is ``start``; before it the IP sends nothing.

    Either an explicit ``curve`` (the cap of day 1, 2, …) or geometric growth from ``first`` by
    ``growth`` per day up to ``ceiling``. After the curve ends its last value (or the ceiling) stays the
    cap: an IP never becomes unlimited by accident; remove the warm-up from the configuration once warm.
    """

    start: date
    curve: tuple[int, ...] = ()
    first: int = 0
    growth: float = 2.0
    ceiling: int = 0

    def __post_init__(self) -> None:
        if self.curve:
            if self.first or self.ceiling:
                raise ValueError("give either an explicit curve or first/growth/ceiling, not both")
            if any(cap < 0 for cap in self.curve):
                raise ValueError("daily caps must not be negative")
        else:
            if self.first < 1 or self.ceiling < self.first:
                raise ValueError("geometric warm-up needs 1 <= first <= ceiling")
            if not self.growth > 1.0:
                raise ValueError("warm-up growth must be greater than 1")

    @classmethod
    def explicit(cls, start: date, curve: Sequence[int]) -> WarmupSchedule:
        return cls(start, curve=tuple(curve))

    @classmethod
    def geometric(cls, start: date, first: int, ceiling: int, growth: float = 2.0) -> WarmupSchedule:
        return cls(start, first=first, growth=growth, ceiling=ceiling)

    def cap(self, day: int) -> int:
        """The cap for the UTC day ``day`` (days since the epoch)."""
        index = day - day_number(self.start)  # 0 on the first day
        if index < 0:
            return 0
        if self.curve:
            return self.curve[min(index, len(self.curve) - 1)]
        # growth ** index overflows a float after ~1000 days of doubling; stop at the ceiling first.
        if index >= math.log(self.ceiling / self.first) / math.log(self.growth):
            return self.ceiling
        return min(self.ceiling, math.floor(self.first * self.growth**index))
