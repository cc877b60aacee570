"""Where webhooks may go: never to private, loopback, link-local, metadata or other non-public addresses.

A webhook URL comes from an API user, and mailstack's servers usually sit next to things that must not be
reachable from outside (a cloud metadata endpoint, the database, Postfix). So a destination is refused
unless *every* address its host resolves to is a public one, or lies in a network the operator listed in
``webhooks.allow_networks``. The check runs when the URL is registered and again right before each
connection, and the connection goes to the address that was checked (no second lookup), so a DNS answer
that changes in between (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

__all__ = [
    "Destination",
    "DestinationRefusedError",
    "Resolver",
    "check_destination",
    "check_url",
    "resolve_host",
]

Resolver = Callable[[str, int], list[str]]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL = 2000


class DestinationRefusedError(ValueError):
    """The URL is malformed or leads somewhere webhooks may not go; the message says why."""


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL: where to connect (``address``) and what to say (host, path, credentials)."""

    scheme: str
    host: str  # as written (the Host header and the TLS server name)
    port: int
    path: str  # path and query, never empty
    address: str  # the vetted IP address the connection must go to
    username: str | None = None
    password: str | None = None


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6); raises :class:`DestinationRefusedError`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationRefusedError(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _address(text: str) -> IPAddress:
    address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return mapped
        if address in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64: the IPv4 address inside decides
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _why_forbidden(address: IPAddress) -> str | None:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (cloud metadata lives there)"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not a public address"
    return None


def check_url(url: str) -> SplitResult:
    """Parse a webhook URL, refusing anything but an absolute http(s) URL with a host."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL or not url.isprintable() or " " in url:
        raise DestinationRefusedError(
            f"the URL must be an absolute http(s) URL of at most {MAX_URL} characters"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationRefusedError(f"the URL is malformed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise DestinationRefusedError("the URL must use http or https")
    if not parts.hostname:
        raise DestinationRefusedError("the URL has no host")
    if port == 0:
        raise DestinationRefusedError("the URL's port must be 1-65535")
    return parts


def check_destination(
    url: str, allow_networks: Iterable[str] = (), resolve: Resolver = resolve_host
) -> Destination:
    """Check ``url`` and resolve its host; every address must be public or explicitly allowed.

    Returns the destination pinned to the first address; raises :class:`DestinationRefusedError`.
    """
    parts = check_url(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    allowed: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)
    addresses = resolve(host, port)
    if not addresses:
        raise DestinationRefusedError(f"{host} has no address")
    for text in addresses:
        try:
            address = _address(text)
        except ValueError:
            raise DestinationRefusedError(
                f"{host} resolved to something that is not an address: {text!r}"
            ) from None
        if any(address in network for network in allowed):
            continue
        reason = _why_forbidden(address)
        if reason is not None:
            raise DestinationRefusedError(
                f"{host} resolves to {address}, a {reason} address; webhooks only go to public addresses "
                "unless webhooks.allow_networks lists the network"
            )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return Destination(parts.scheme, host, port, path, addresses[0], username, password)
