"""The throttle that delivery workers ask before sending: classify, then one atomic decision per batch."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Engine

from mailstack.config import ThrottleSettings
from mailstack.providers import (
    WELL_KNOWN_DOMAINS,
    WELL_KNOWN_MX,
    MxResolver,
    ProviderClassifier,
    dns_mx_resolver,
)

from ._bucket import Limit, WarmupSchedule
from ._plan import Decision, Item, Policy, SendingIp, needs, plan
from ._store import ThrottleStore, throttle_store_for


@dataclass(frozen=True, slots=True)
class Request:
    """A message about to be delivered, and its recipient's domain."""

    message_id: int
    recipient_domain: str


class Throttle:
    """Decides, for a batch of messages, which may go now (and from which sending IP) and when the others
    may try again. Safe to share between threads; its state is in the database, shared by the fleet."""

    def __init__(
        self,
        policy: Policy,
        store: ThrottleStore,
        classifier: ProviderClassifier | None = None,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.policy = policy
        self._store = store
        self._classifier = classifier or ProviderClassifier()
        self._held = (
            Counter(
                "mailstack_messages_throttled",
                "Deliveries postponed by the throttle, by the limit that held them",
                ["limit"],
                registry=registry,
            )
            if registry is not None
            else None
        )

    def provider(self, domain: str) -> str:
        """The mailbox provider a recipient domain belongs to (``google``, …, ``other``)."""
        return self._classifier.classify(domain)

    def acquire(self, requests: Sequence[Request], *, now: float) -> list[Decision]:
        """One decision per request, in order. Messages allowed to go have their tokens taken."""
        if not requests:
            return []
        if not self.policy.active:
            # Only unlimited sending IPs (or none): spread mail over them; nothing to count or store.
            ips = self.policy.ips
            return [
                Decision(r.message_id, True, ip=ips[r.message_id % len(ips)].address if ips else None)
                for r in requests
            ]
        ids = [r.message_id for r in requests]
        # DNS (MX) lookups happen here, before any row is locked.
        providers = [self._classifier.classify(r.recipient_domain) for r in requests]
        keys = self._store.api_keys(ids) if self.policy.api_key or self.policy.api_keys else {}
        items = []
        for request, provider in zip(requests, providers, strict=True):
            key_id, public_key = keys.get(request.message_id, (None, None))
            domain = request.recipient_domain.lower()
            items.append(Item(request.message_id, domain, provider, key_id, public_key))
        buckets, days = needs(self.policy, items, now)
        decisions = self._store.update(
            buckets, days, lambda snapshot: plan(self.policy, items, snapshot, now)
        )
        if self._held is not None:
            for limit, count in Tally(d.limit for d in decisions if not d.send).items():
                self._held.labels(limit).inc(count)
        return decisions


def policy_from_settings(settings: ThrottleSettings) -> Policy:
    """The limits of a ``[throttle]`` configuration section."""
    ips = []
    for ip in settings.ips:
        warmup = None
        if ip.warmup_start is not None and ip.warmup_curve:
            warmup = WarmupSchedule.explicit(ip.warmup_start, ip.warmup_curve)
        elif ip.warmup_start is not None and ip.warmup_first is not None and ip.warmup_ceiling is not None:
            warmup = WarmupSchedule.geometric(
                ip.warmup_start, ip.warmup_first, ip.warmup_ceiling, ip.warmup_growth
            )
        limit = Limit.of(ip.rate, ip.burst) if ip.rate is not None else None
        ips.append(SendingIp(ip.address, limit, warmup))
    return Policy(
        api_key=Limit.of(settings.api_key.rate, settings.api_key.burst) if settings.api_key else None,
        api_keys={key: Limit.of(v.rate, v.burst) for key, v in settings.api_keys.items()},
        providers={name: Limit.of(p.rate, p.burst) for name, p in settings.providers.items()},
        ips=tuple(ips),
    )


def classifier_from_settings(
    settings: ThrottleSettings, *, resolver: MxResolver | None = None
) -> ProviderClassifier:
    """The built-in domain and MX lists plus the configured ones; MX lookups only when ``mx_lookup``
    is on (``resolver`` replaces DNS, for tests)."""
    domains = {name: list(names) for name, names in WELL_KNOWN_DOMAINS.items()}
    suffixes = {name: list(names) for name, names in WELL_KNOWN_MX.items()}
    for name, provider in settings.providers.items():
        domains.setdefault(name, []).extend(provider.domains)
        suffixes.setdefault(name, []).extend(provider.mx)
    if settings.mx_lookup and resolver is None:
        resolver = dns_mx_resolver()
    return ProviderClassifier(domains, suffixes, resolver=resolver if settings.mx_lookup else None)


def throttle_from_settings(
    settings: ThrottleSettings,
    engine: Engine,
    *,
    resolver: MxResolver | None = None,
    registry: CollectorRegistry | None = None,
) -> Throttle | None:
    """The throttle for a configuration, or None when it neither limits anything nor has sending IPs."""
    policy = policy_from_settings(settings)
    if not policy.active and not policy.ips:
        return None
    return Throttle(
        policy,
        throttle_store_for(engine),
        classifier_from_settings(settings, resolver=resolver),
        registry=registry,
    )
