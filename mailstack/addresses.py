"""Taking e-mail addresses out of free text that is stored or logged in the clear.

Relay replies, DSN diagnostics and error messages quote addresses ("550 5.1.1 <bob@example.com>: user
unknown"). Where such text is kept readable on purpose (a suppression's reason, a queue job's last error,
a log line), the addresses in it are replaced; the full text, where it is needed at all, is sealed
elsewhere (mailstack.privacy.Vault).
"""

from __future__ import annotations

import re

__all__ = ["ADDRESS_PLACEHOLDER", "contains_address", "find_addresses", "redact_addresses"]

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
