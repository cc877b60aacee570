"""Telling people from machines: privacy proxies that fetch the open pixel, scanners that follow links.

Apple Mail Privacy Protection downloads every image of every message when it arrives, whether or not
anyone reads it: such opens are *machine opens*, reported apart so that open rates stay honest. Gmail's
and Yahoo's image proxies fetch the pixel when a person opens the message, so those opens count, flagged
with their proxy (the IP and user agent are the proxy's, not the reader's). Security gateways and link
checkers follow links before (or instead of) the recipient: those clicks are *bot clicks*, kept apart
from click rates, though the redirect is served to them as to anyone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Detector", "Verdict"]

# Apple owns 17.0.0.0/8; Mail Privacy Protection prefetches from there with a bare "Mozilla/5.0".
_APPLE_NETWORKS = ("17.0.0.0/8",)
_APPLE_AGENT = "Mozilla/5.0"
_PROXIES = (("GoogleImageProxy", "google"), ("YahooMailProxy", "yahoo"))
# User agents of crawlers, HTTP libraries, headless browsers and mail security gateways.
_BOT_AGENT = re.compile(
    r"bot\b|bot/|crawler|spider|slurp|python-requests|python-urllib|aiohttp|httpx|curl/|wget/|"
    r"go-http-client|java/|okhttp|libwww|httpclient|headlesschrome|phantomjs|barracuda|mimecast|"
    r"proofpoint|symantec|messagelabs|trendmicro|forcepoint|fortinet|fortiguard|sophos|safelinks|"
    r"microsoft office|ms-office|zscaler|ironport|cisco|bitdefender|kaspersky|mcafee|appriver|"
    r"scanner|preview|validator|linkcheck|check_http|monitor",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """``machine`` opens/clicks are counted apart; ``proxy`` names a mailbox provider's image proxy."""

    machine: bool = False
    reason: str = ""
    proxy: str = ""

    def to_detail(self) -> dict[str, object]:
        detail: dict[str, object] = {}
        if self.machine:
            detail["machine"] = True
            detail["machine_reason"] = self.reason
        if self.proxy:
            detail["proxy"] = self.proxy
        return detail


def _parse_networks(
    values: Iterable[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Detector:
    """Classifies tracking requests; extra proxy and scanner networks come from the settings."""

    def __init__(self, proxy_networks: Iterable[str] = (), scanner_networks: Iterable[str] = ()) -> None:
        self._apple = _parse_networks(_APPLE_NETWORKS)
        self._proxies = _parse_networks(proxy_networks)
        self._scanners = _parse_networks(scanner_networks)

    def open(self, user_agent: str, ip: str) -> Verdict:
        """Classify a pixel fetch."""
        agent = user_agent.strip()
        address = _address(ip)
        for marker, proxy in _PROXIES:
            if marker in agent:
                return Verdict(proxy=proxy)
        if address is not None and any(address in n for n in self._apple):
            return Verdict(True, "apple-mail-privacy-protection", "apple")
        if agent == _APPLE_AGENT:
            return Verdict(True, "apple-mail-privacy-protection", "apple")
        if address is not None and any(address in n for n in self._proxies):
            return Verdict(True, "privacy-proxy", "")
        if not agent:
            return Verdict(True, "no-user-agent")
        if _BOT_AGENT.search(agent):
            return Verdict(True, "bot-user-agent")
        return Verdict()

    def click(self, user_agent: str, ip: str, method: str) -> Verdict:
        """Classify a link follow."""
        agent = user_agent.strip()
        address = _address(ip)
        if method.upper() != "GET":
            # People's browsers GET; HEAD and friends are link checkers probing the target.
            return Verdict(True, f"method-{method.lower()}")
        if address is not None and any(address in n for n in self._scanners):
            return Verdict(True, "scanner-network")
        if not agent:
            return Verdict(True, "no-user-agent")
        if _BOT_AGENT.search(agent):
            return Verdict(True, "bot-user-agent")
        return Verdict()
