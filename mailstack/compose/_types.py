"""Composer settings and result types."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailstack.compose._headers import domain_to_ascii
from mailstack.tokens import TokenSigner

__all__ = ["ComposeSettings", "ComposedMessage"]

# Characters that would break out of the <...> of a List-Unsubscribe entry or of the header itself.
_URL_FORBIDDEN = re.compile(r"[\x00-\x20<>,\"\x7f]")


def _host(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty domain name")
    try:
        host = domain_to_ascii(value.strip().rstrip(".")).lower()
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if host.startswith("["):
        raise ValueError(f"{what} must be a domain name, not an address literal")
    return host


@dataclass(frozen=True, slots=True)
class ComposeSettings:
    """Deployment-wide composer settings.

    ``hostname`` is the right-hand side of Message-IDs, ``bounce_domain`` receives VERP bounces and
    ``mailto:`` unsubscribes, ``unsubscribe_base_url`` (https) enables RFC 8058 one-click unsubscribe.
    IDN names are accepted and stored as lower-case A-labels.
    """

    hostname: str
    bounce_domain: str
    tokens: TokenSigner
    unsubscribe_base_url: str | None = None
    unsubscribe_mailto: bool = True  # offer <mailto:unsubscribe+TOKEN@bounce_domain> for bulk mail

    def __post_init__(self) -> None:
        # Normalised once here so the per-message hot path can use the values verbatim.
        object.__setattr__(self, "hostname", _host(self.hostname, "hostname"))
        object.__setattr__(self, "bounce_domain", _host(self.bounce_domain, "bounce_domain"))
        if not isinstance(self.tokens, TokenSigner):
            raise TypeError("tokens must be a TokenSigner")
        url = self.unsubscribe_base_url
        if url is not None:
            url = url.rstrip("/")
            if not url.isascii() or _URL_FORBIDDEN.search(url) or not url.startswith(("https://", "http://")):
                raise ValueError("unsubscribe_base_url must be an absolute http(s) URL without spaces")
            object.__setattr__(self, "unsubscribe_base_url", url)

    @property
    def one_click(self) -> bool:
        """True when RFC 8058 one-click unsubscribe can be offered (it requires an https URI)."""
        return self.unsubscribe_base_url is not None and self.unsubscribe_base_url.startswith("https://")


@dataclass(frozen=True, slots=True)
class ComposedMessage:
    """One recipient's message, ready for DKIM signing and SMTP delivery."""

    mail_from: str  # the VERP return path, for MAIL FROM
    rcpt_to: str  # for RCPT TO (A-label domain; UTF-8 local part only when smtputf8)
    data: bytes = field(repr=False)  # RFC 5322 message, CRLF line endings, no dot-stuffing
    message_id: str  # the Message-ID header value, "<...>" included
    smtputf8: bool  # the envelope or headers need RFC 6531/6532 (non-ASCII local part)
