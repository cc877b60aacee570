"""Address rules: which domains mail may be sent from, and taking addresses out of free text.

:func:`sending_domain` is the one rule for a sending domain (DKIM ``d=``, From domain): ``mailstack init``,
``dkim rotate``/``dkim import``, the Send API and SMTP submission all call it, so a domain one of them
takes is never refused by another, and each refuses with the same message.

Relay replies, DSN diagnostics and error messages quote addresses ("550 5.1.1 <bob@example.com>: user
unknown"). Where such text is kept readable on purpose (a suppression's reason, a queue job's last error,
a log line), the addresses in it are replaced; the full text, where it is needed at all, is sealed
elsewhere (mailstack.privacy.Vault).
"""

from __future__ import annotations

import re
from typing import Final

import idna
from email_validator import EmailNotValidError, validate_email

__all__ = [
    "ADDRESS_PLACEHOLDER",
    "SPECIAL_USE_TLDS",
    "SendingDomainError",
    "contains_address",
    "find_addresses",
    "redact_addresses",
    "sending_domain",
]

# Names that are not (or not only) in the public DNS, so a DKIM record can never be published for them
# and receivers cannot verify mail from them; the Send API's address library refuses the first six for
# any address (email_validator's SPECIAL_USE_DOMAIN_NAMES). "example" (RFC 2606) stays allowed: it is
# the documentation's name, and the sandbox outbox runs on it.
SPECIAL_USE_TLDS: Final[dict[str, str]] = {
    "test": "RFC 6761",
    "invalid": "RFC 6761",
    "localhost": "RFC 6761",
    "local": "RFC 6762, multicast DNS",
    "onion": "RFC 7686, Tor",
    "arpa": "RFC 3172 and RFC 8375, infrastructure and home networks",
    "alt": "RFC 9476, outside the DNS",
}
_MAX_DOMAIN = 253  # RFC 1035, in A-label form


class SendingDomainError(ValueError):
    """A domain mail cannot be sent from; the message says why, the same wherever it is checked."""


def _shown(text: str) -> str:
    short = text if len(text) <= 100 else text[:100] + "…"
    return repr(short.encode("utf-8", "replace").decode("utf-8"))


def sending_domain(text: str) -> str:
    """``text`` as a sending domain: lower-case A-labels (IDNA 2008, UTS 46 mapping), no final dot.

    Raises :class:`SendingDomainError` for special-use names (:data:`SPECIAL_USE_TLDS`) and for anything
    the Send API would not take after the ``@`` of an address (its syntax rules are email_validator's,
    applied here to ``postmaster@domain``): what passes here passes there.
    """
    candidate = text.strip()
    candidate = candidate[:-1] if candidate.endswith(".") else candidate  # one root dot, never more
    invalid = SendingDomainError(f"{_shown(candidate)} is not a valid domain name")
    if not candidate or len(candidate) > _MAX_DOMAIN * 4:  # bounded work before IDNA
        raise invalid
    try:
        mapped = candidate.lower() if candidate.isascii() else idna.encode(candidate, uts46=True).decode()
    except UnicodeError:  # idna.IDNAError derives from it
        raise invalid from None
    tld = mapped.rpartition(".")[2]
    if tld in SPECIAL_USE_TLDS and len(mapped) <= _MAX_DOMAIN:
        raise SendingDomainError(
            f"{mapped} is a special-use domain name (.{tld}, {SPECIAL_USE_TLDS[tld]}): mail cannot be sent"
            " from it, since its DKIM records can never be published in the public DNS; use a domain you"
            " control"
        )
    try:
        checked = validate_email(f"postmaster@{candidate}", check_deliverability=False)
    except (EmailNotValidError, UnicodeError, ValueError):
        raise invalid from None
    domain = checked.ascii_domain.lower()
    if len(domain) > _MAX_DOMAIN or domain != mapped:
        raise invalid
    return domain


ADDRESS_PLACEHOLDER = "<address>"

# Deliberately generous: anything shaped like local@domain.tld, also URL-encoded (%40) as links carry it.
# \w covers internationalised (EAI) local parts and domains.
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)


def redact_addresses(text: str, placeholder: str = ADDRESS_PLACEHOLDER) -> str:
    """``text`` with every address-shaped substring replaced by ``placeholder``."""
    if "@" not in text and "%40" not in text:  # the common case: nothing to look for
        return text
    return _ADDRESS.sub(placeholder, text)


def contains_address(text: str) -> bool:
    """Whether ``text`` quotes something shaped like an address."""
    return _ADDRESS.search(text) is not None


def find_addresses(text: str) -> list[str]:
    """The address-shaped substrings of ``text``, in order (``%40`` left as it is)."""
    return _ADDRESS.findall(text)
