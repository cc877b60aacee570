"""Which mailbox provider receives a recipient domain: a static map of consumer domains, then (optionally)
the domain's MX hosts, which reveal Google Workspace, Microsoft 365 and Yahoo-hosted domains. Throttling
paces by it and statistics report by it, so both name a domain's provider the same way."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence

GOOGLE = "google"
MICROSOFT = "microsoft"
YAHOO = "yahoo"
OTHER = "other"
BUILTIN_PROVIDERS = (GOOGLE, MICROSOFT, YAHOO)
PROVIDERS = (*BUILTIN_PROVIDERS, OTHER)

__all__ = [
    "BUILTIN_PROVIDERS",
    "GOOGLE",
    "MICROSOFT",
    "OTHER",
    "PROVIDERS",
    "WELL_KNOWN_DOMAINS",
    "WELL_KNOWN_MX",
    "YAHOO",
    "MxResolver",
    "ProviderClassifier",
    "dns_mx_resolver",
]

# Consumer mailbox domains of the big providers. Postfix transport maps rendered from the configuration
# (Ansible) use the same lists, so keep additions here rather than in the playbooks.
WELL_KNOWN_DOMAINS: Mapping[str, tuple[str, ...]] = {
    GOOGLE: ("gmail.com", "googlemail.com"),
    MICROSOFT: (
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "hotmail.de",
        "hotmail.es",
        "hotmail.it",
        "live.co.uk",
        "live.fr",
        "outlook.fr",
        "outlook.de",
        "outlook.es",
        "windowslive.com",
    ),
    YAHOO: (
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "yahoo.de",
        "yahoo.es",
        "yahoo.it",
        "yahoo.ca",
        "yahoo.com.br",
        "yahoo.com.mx",
        "yahoo.in",
        "ymail.com",
        "rocketmail.com",
        "aol.com",  # AOL and Verizon mailboxes run on Yahoo's infrastructure (MX *.yahoodns.net)
        "aim.com",
        "verizon.net",
    ),
}

# MX host suffixes: aspmx.l.google.com / smtp.google.com, <tenant>.mail.protection.outlook.com,
# mta5.am0.yahoodns.net. A host matches a suffix when it equals it or ends with "." + suffix.
WELL_KNOWN_MX: Mapping[str, tuple[str, ...]] = {
    GOOGLE: ("google.com", "googlemail.com"),
    MICROSOFT: ("protection.outlook.com", "outlook.com", "outlook.office365.com", "hotmail.com"),
    YAHOO: ("yahoodns.net", "yahoo.com", "aol.com"),
}

# domain -> MX host names (empty when the domain has none or the lookup failed).
MxResolver = Callable[[str], Sequence[str]]


def dns_mx_resolver(timeout: float = 2.0) -> MxResolver:
    """MX lookups through dnspython with a short timeout, most preferred host first; failures look like a
    domain without MX."""
    import dns.exception  # noqa: PLC0415 - only loaded when MX classification is switched on
    import dns.resolver  # noqa: PLC0415

    resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout

    def resolve(domain: str) -> list[str]:
        try:
            answer = resolver.resolve(domain, "MX")
        except (dns.exception.DNSException, ValueError):  # ValueError: not a valid DNS name
            return []
        records = sorted(answer, key=lambda record: record.preference)
        return [str(record.exchange).rstrip(".").lower() for record in records]

    return resolve


class ProviderClassifier:
    """Maps a recipient domain to a provider name; ``other`` when nothing matches.

    MX answers are cached (``cache_seconds``; failures for ``negative_cache_seconds``) in a bounded LRU,
    since workers ask for every message and DNS must never become the bottleneck.
    """

    def __init__(
        self,
        domains: Mapping[str, Iterable[str]] = WELL_KNOWN_DOMAINS,
        mx_suffixes: Mapping[str, Iterable[str]] = WELL_KNOWN_MX,
        *,
        resolver: MxResolver | None = None,
        cache_seconds: float = 3600.0,
        negative_cache_seconds: float = 300.0,
        cache_size: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._domains = {
            domain.lower().rstrip("."): provider for provider, names in domains.items() for domain in names
        }
        # Longest suffix first, so "protection.outlook.com" is tried before a shorter overlapping one.
        pairs = [(s.lower().strip("."), p) for p, suffixes in mx_suffixes.items() for s in suffixes]
        self._mx = sorted(pairs, key=lambda pair: -len(pair[0]))
        self._resolver = resolver
        self._ttl = cache_seconds
        self._negative_ttl = negative_cache_seconds
        self._size = cache_size
        self._clock = clock
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def classify(self, domain: str) -> str:
        """The provider of ``domain`` (any case, trailing dot allowed)."""
        domain = domain.lower().rstrip(".")
        known = self._domains.get(domain)
        if known is not None:
            return known
        if self._resolver is None:
            return OTHER
        now = self._clock()
        with self._lock:
            cached = self._cache.get(domain)
            if cached is not None and cached[1] > now:
                self._cache.move_to_end(domain)
                return cached[0]
        # Resolve outside the lock: one slow domain must not stall every other worker thread.
        hosts = self._resolver(domain)
        provider = self._match_mx(hosts)
        ttl = self._ttl if hosts else self._negative_ttl
        with self._lock:
            self._cache[domain] = (provider, now + ttl)
            self._cache.move_to_end(domain)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return provider

    def _match_mx(self, hosts: Sequence[str]) -> str:
        for raw in hosts:
            host = raw.lower().rstrip(".")
            for suffix, provider in self._mx:
                if host == suffix or host.endswith("." + suffix):
                    return provider
        return OTHER
