"""The throttle's decisions, as a pure function of the policy, the messages, the stored state and the time.

Every message needs one token from each bucket that applies to it — its API key, its destination provider
and the sending IP it would leave from — plus room under that IP's warm-up cap for the UTC day. When all
are there it goes now and takes them. When not, it takes nothing and is told when to come back: the
bucket that holds it back longest hands out retry times 1/rate apart (its *waitlist*), so a backlog of
100 000 Gmail messages at 50/s comes back one message per token, not all at once every few milliseconds.

Tokens are only ever taken by a message that goes, at the moment it goes. That keeps the limit strict
whatever happens in between (a worker late, a node dead, a message deleted), and keeps the throttle
work-conserving: a token nobody waiting is there to use goes to the next message that asks. Why only the
bottleneck's waitlist: counting a Gmail message that will wait an hour against its API key's waitlist
would hold back that key's mail to every other provider (head-of-line blocking through a shared bucket).

Binding reservations (the waiting message takes its future token at once) were tried first and dropped:
while workers were busy putting back a large new backlog, the reserved tokens came due unused, and the
catch-up then sent them all at once (57.7/s measured against a 50/s limit across two processes).

Under overload there is no strict first-come order: a waiting message that comes back to find its token
used by a newcomer goes to the end of the waitlist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mailstack.providers import OTHER

from ._bucket import (
    BucketState,
    Limit,
    WarmupSchedule,
    next_utc_midnight,
    refill,
    take,
    utc_day,
    wait_seconds,
    waitlist,
)

# What held a message back (the metrics label, and the reason in logs).
API_KEY = "api_key"
PROVIDER = "provider"
IP = "ip"
WARMUP = "warmup"


@dataclass(frozen=True, slots=True)
class SendingIp:
    """A source address mail can leave from, with its own rate and warm-up cap (both optional)."""

    address: str
    limit: Limit | None = None
    warmup: WarmupSchedule | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """Every limit the throttle enforces; an empty policy lets everything through without touching storage.

    ``providers`` maps a provider name to its limit; the ``other`` provider's limit applies to each
    recipient domain separately (one small company's server is not Gmail), the named providers' limits
    to all their domains together.
    """

    api_key: Limit | None = None
    api_keys: Mapping[str, Limit] = field(default_factory=dict)  # per public key, overrides ``api_key``
    providers: Mapping[str, Limit] = field(default_factory=dict)
    ips: tuple[SendingIp, ...] = ()

    @property
    def active(self) -> bool:
        """Whether anything is limited (the IPs alone, without limits, only spread mail across them)."""
        return bool(
            self.api_key or self.api_keys or self.providers or any(ip.limit or ip.warmup for ip in self.ips)
        )


@dataclass(frozen=True, slots=True)
class Item:
    """One message to decide on, with what the throttle knows about it."""

    message_id: int
    domain: str  # the recipient's domain
    provider: str
    api_key_id: int | None = None
    api_public_key: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """``send`` now from ``ip`` (None: no sending IPs configured), or wait until ``until`` because of
    ``limit``."""

    message_id: int
    send: bool
    ip: str | None = None
    until: float = 0.0
    limit: str = ""


@dataclass
class Snapshot:
    """The stored state a decision reads and updates; the store locks it for the planner's duration."""

    buckets: dict[str, BucketState]
    daily: dict[tuple[str, int], int]  # (ip, utc day) -> messages sent


@dataclass(frozen=True, slots=True)
class _Option:
    ip: SendingIp | None
    buckets: Mapping[str, Limit]


def _kind(key: str) -> str:
    return {"api": API_KEY, "provider": PROVIDER, "ip": IP}[key.split(":", 1)[0]]


def _options(policy: Policy, item: Item) -> list[_Option]:
    common: dict[str, Limit] = {}
    api_limit = policy.api_keys.get(item.api_public_key or "", policy.api_key)
    if api_limit is not None and item.api_key_id is not None:
        common[f"api:{item.api_key_id}"] = api_limit
    provider_limit = policy.providers.get(item.provider)
    if provider_limit is not None:
        name = f"{OTHER}:{item.domain}" if item.provider == OTHER else item.provider
        common[f"provider:{name}"] = provider_limit
    if not policy.ips:
        return [_Option(None, common)]
    options = []
    for ip in policy.ips:
        buckets = dict(common)
        if ip.limit is not None:
            buckets[f"ip:{ip.address}"] = ip.limit
        options.append(_Option(ip, buckets))
    # Start at a different IP for each message so that mail spreads over all of them.
    turn = item.message_id % len(options)
    return options[turn:] + options[:turn]


def needs(
    policy: Policy, items: list[Item], now: float
) -> tuple[dict[str, BucketState], set[tuple[str, int]]]:
    """The buckets (with the state a new one starts in: full) and the (ip, day) counters to load."""
    buckets: dict[str, BucketState] = {}
    days: set[tuple[str, int]] = set()
    for item in items:
        for option in _options(policy, item):
            for key, limit in option.buckets.items():
                buckets.setdefault(key, BucketState.full(limit, now))
            if option.ip is not None and option.ip.warmup is not None:
                days.add((option.ip.address, utc_day(now)))
    return buckets, days


def plan(policy: Policy, items: list[Item], snapshot: Snapshot, now: float) -> list[Decision]:
    """Decide for each item in order, updating ``snapshot`` in place (the store writes it back)."""
    return [_decide(policy, item, snapshot, now) for item in items]


def _decide(policy: Policy, item: Item, snapshot: Snapshot, now: float) -> Decision:
    day = utc_day(now)
    best: tuple[float, _Option, str | None] | None = None  # (retry at, option, bucket that sets it)
    for option in _options(policy, item):
        warmup = option.ip.warmup if option.ip is not None else None
        counter = (option.ip.address if option.ip is not None else "", day)
        if warmup is not None and snapshot.daily.get(counter, 0) >= warmup.cap(day):
            # This IP's cap for today is reached: there is nothing to wait for before the next UTC day.
            if best is None or next_utc_midnight(now) < best[0]:
                best = (next_utc_midnight(now), option, None)
            continue
        short: dict[str, float] = {}  # bucket key -> the retry time its waitlist would give
        for key, limit in option.buckets.items():
            state = refill(snapshot.buckets[key], limit, now)
            snapshot.buckets[key] = state
            wait = wait_seconds(state, limit)
            if wait > 0.0:
                # From the row's own time, which is later than ``now`` when another node wrote it while we
                # waited for its lock: counting from our earlier clock would promise tokens too soon.
                short[key] = waitlist(state, limit, max(now, state.updated_at) + wait)[1]
        if not short:
            for key in option.buckets:
                snapshot.buckets[key] = take(snapshot.buckets[key])
            if warmup is not None:
                snapshot.daily[counter] = snapshot.daily.get(counter, 0) + 1
            return Decision(item.message_id, True, ip=option.ip.address if option.ip else None)
        slowest = max(short, key=lambda key: short[key])
        if best is None or short[slowest] < best[0]:
            best = (short[slowest], option, slowest)
    assert best is not None  # there is always at least one option
    retry_at, option, bottleneck = best
    if bottleneck is None:
        return Decision(item.message_id, False, until=retry_at, limit=WARMUP)
    # Only the bottleneck's waitlist moves on; no token is taken anywhere.
    state = snapshot.buckets[bottleneck]
    snapshot.buckets[bottleneck] = BucketState(state.tokens, state.updated_at, retry_at)
    return Decision(item.message_id, False, until=retry_at, limit=_kind(bottleneck))
