"""Mailbox providers (Google, Microsoft, Yahoo, other) of recipient domains, shared by throttling and
statistics."""

from ._classify import (
    BUILTIN_PROVIDERS,
    GOOGLE,
    MICROSOFT,
    OTHER,
    PROVIDERS,
    WELL_KNOWN_DOMAINS,
    WELL_KNOWN_MX,
    YAHOO,
    MxResolver,
    ProviderClassifier,
    dns_mx_resolver,
)

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
