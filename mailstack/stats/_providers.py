"""Mailbox providers: which of Google, Microsoft, Yahoo or another hosts a recipient's mailbox.

The recipient domain settles it for the consumer domains (gmail.com, hotmail.fr, yahoo.co.jp...); for
every other domain the MX records tell (a company on Google Workspace or Microsoft 365 is a Google or
Microsoft mailbox for deliverability purposes). MX answers are cached for a day.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["PROVIDERS", "ProviderResolver", "mx_hosts", "provider_of_domain", "provider_of_mx"]

PROVIDERS: tuple[str, ...] = ("google", "microsoft", "yahoo", "other")

_CONSUMER = (
    ("google", re.compile(r"^(gmail|googlemail)\.com$|^google\.com$")),
    ("microsoft", re.compile(r"^(hotmail|outlook|live|msn|windowslive|passport)\.[a-z]{2,3}(\.[a-z]{2})?$")),
    # AOL and Verizon mailboxes are run by Yahoo Inc. and share its filtering.
    (
        "yahoo",
        re.compile(r"^(yahoo|ymail|rocketmail)\.[a-z]{2,3}(\.[a-z]{2})?$|^(aol|aim|verizon)\.(com|net)$"),
    ),
)
_MX = (
    ("google", (".google.com", ".googlemail.com")),
    ("microsoft", (".outlook.com", ".hotmail.com", ".outlook.office365.com")),
    ("yahoo", (".yahoodns.net", ".yahoo.com", ".aol.com")),
)
_CACHE_SECONDS = 86_400.0
_CACHE_MAX = 50_000


def provider_of_domain(domain: str) -> str | None:
    """The provider of a consumer mailbox domain, or None when the domain alone does not say."""
    domain = domain.lower().rstrip(".")
    for provider, pattern in _CONSUMER:
        if pattern.match(domain):
            return provider
    return None


def provider_of_mx(hosts: Sequence[str]) -> str:
    """The provider behind a domain's MX hosts (the most preferred one first)."""
    for host in hosts:
        name = "." + host.lower().rstrip(".")
        for provider, suffixes in _MX:
            if name.endswith(suffixes):
                return provider
    return "other"


def mx_hosts(domain: str) -> list[str]:
    """MX hosts of ``domain`` by preference (empty on any DNS failure; 1.5 s at most)."""
    import dns.exception  # noqa: PLC0415 - only deployments that look MX up pay for the import
    import dns.resolver  # noqa: PLC0415

    try:
        answer = dns.resolver.resolve(domain, "MX", lifetime=1.5)
    except (dns.exception.DNSException, ValueError):
        return []
    records = sorted(answer, key=lambda r: r.preference)
    return [str(r.exchange) for r in records]


class ProviderResolver:
    """Maps recipient domains to providers, with an MX lookup (cached) for non-consumer domains."""

    def __init__(self, lookup: Callable[[str], list[str]] | None = mx_hosts) -> None:
        self._lookup = lookup
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, domain: str) -> str:
        domain = domain.lower().rstrip(".")
        known = provider_of_domain(domain)
        if known is not None:
            return known
        if self._lookup is None or not domain:
            return "other"
        now = time.monotonic()
        cached = self._cache.get(domain)
        if cached is not None and now - cached[0] < _CACHE_SECONDS:
            return cached[1]
        provider = provider_of_mx(self._lookup(domain))
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[domain] = (now, provider)
        return provider
