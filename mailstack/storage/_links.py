"""Clicked links at rest: the URLs of ``link_counters`` sealed, found by a keyed HMAC.

A personalised link can carry the recipient's address (``?email=ana%40example.net``) or a token naming
them, so a URL is personal data until shown otherwise. Each one is sealed (mailstack.storage.Vault) and the
row is keyed by :func:`link_key`, an HMAC under a key derived from the master secret: equal URLs meet in one
row, and a dump thief cannot test a guessed URL against the table. A URL quoting an address is sealed under
that address's data key and names its blind index in ``subject``: erasing the person deletes the row
(:func:`forget_link_subject`) and shreds every copy, backups included. Other links — the sender's own pages,
or tokens mailstack cannot recognise — are sealed under the day's shared key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from sqlalchemy import ColumnElement, Connection, case, delete, select

from mailstack.addresses import find_addresses
from mailstack.keyring import Keyring

from ._blind import normalize_address
from ._engagement import link_counters
from ._vault import Vault

__all__ = [
    "PERSONALISED_LINK",
    "PURPOSE_LINK_URL",
    "LinkClicks",
    "Links",
    "forget_link_subject",
    "later_click",
    "link_clicks",
    "link_key",
    "link_subject",
    "open_link_urls",
    "seal_link_urls",
]

PURPOSE_LINK_URL = "link_counters.url"
_KEY_PURPOSE = "link_counters.url_hash"
_KEY_HEX = 32  # what link_counters.url_hash holds: 128 bits
_URL_DELIMITERS = re.compile(r"[/?&=#;:,\s]+")
# What the retention purge folds a position's personalised links into, once their clicks are past the
# limit of the events class: a row sealed under the shared key, without subject, keeping their counts.
PERSONALISED_LINK = "(personalised link)"


def link_key(keyring: Keyring, url: str) -> str:
    """The row key of ``url``: a keyed HMAC (not a plain digest, which a guessed URL could be tested by)."""
    return hmac.new(keyring.derive(_KEY_PURPOSE), url.encode("utf-8"), hashlib.sha256).hexdigest()[:_KEY_HEX]


def link_subject(vault: Vault, url: str) -> str | None:
    """The blind index of the first address ``url`` quotes (percent-encoded or not), None if none."""
    # Split at the URL's own delimiters first: "/", "?", "=", "&" are legal in a local part, so the
    # address pattern alone would take "//host/path?email=ana" for one.
    for part in _URL_DELIMITERS.split(unquote(url)):
        for found in find_addresses(part):
            if "@" in found:
                return vault.index(normalize_address(found))
    return None


def seal_link_urls(conn: Connection, vault: Vault, urls: Sequence[str]) -> list[tuple[bytes, str | None]]:
    """Each URL sealed, with its subject: one key look-up for the batch."""
    subjects = [link_subject(vault, url) for url in urls]
    keys = vault.data_keys_for(conn, set(subjects))
    return [
        (vault.seal_with(keys[subject], url.encode("utf-8"), purpose=PURPOSE_LINK_URL), subject)
        for url, subject in zip(urls, subjects, strict=True)
    ]


def open_link_urls(conn: Connection, vault: Vault, blobs: Sequence[bytes]) -> list[str | None]:
    """The URLs, None for a link whose subject was erased."""
    opened = vault.open_many_optional(conn, list(blobs), purpose=PURPOSE_LINK_URL)
    return [None if plain is None else plain.decode("utf-8", "replace") for plain in opened]


def forget_link_subject(conn: Connection, subject: str) -> int:
    """Delete the click counters of links quoting the erased address whose blind index is ``subject``;
    returns how many rows went. (Their URLs are sealed under that subject's key, which erasure shreds.)"""
    return int(conn.execute(delete(link_counters).where(link_counters.c.subject == subject)).rowcount)


def later_click(stored: Any, new: Any) -> ColumnElement[Any]:
    """The later of a row's ``last_click_at`` and a new one, for an upsert's SET on every backend (SQLite's
    ``max(a, b)`` is NULL when one is, PostgreSQL's ``GREATEST`` skips NULLs: spelt out instead)."""
    return case((stored.is_(None), new), (new.is_(None), stored), (new > stored, new), else_=stored)


@dataclass(frozen=True, slots=True)
class LinkClicks:
    """One link's click counters; ``url`` is None once the person it quoted was erased."""

    url: str | None
    position: int
    clicked_messages: int
    click_events: int


def link_clicks(conn: Connection, vault: Vault, api_key_id: int, campaign: str = "") -> list[LinkClicks]:
    """The click counters of an API key's links (campaign "" is every campaign), URLs opened, unordered
    (sealed values have no useful order in the database)."""
    rows = conn.execute(
        select(
            link_counters.c.url,
            link_counters.c.position,
            link_counters.c.clicked_messages,
            link_counters.c.click_events,
        ).where(link_counters.c.api_key_id == api_key_id, link_counters.c.campaign == campaign)
    ).all()
    urls = open_link_urls(conn, vault, [row.url for row in rows])
    return [
        LinkClicks(url, row.position, int(row.clicked_messages), int(row.click_events))
        for row, url in zip(rows, urls, strict=True)
    ]


class Links:
    """Clicked links, sealed and keyed, with the vault bound in (see :class:`~mailstack.storage.Store`)."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def key(self, url: str) -> str:
        """See :func:`link_key`."""
        return link_key(self._vault.keyring, url)

    def seal_urls(self, conn: Connection, urls: Sequence[str]) -> list[tuple[bytes, str | None]]:
        """See :func:`seal_link_urls`."""
        return seal_link_urls(conn, self._vault, urls)

    def open_urls(self, conn: Connection, blobs: Sequence[bytes]) -> list[str | None]:
        """See :func:`open_link_urls`."""
        return open_link_urls(conn, self._vault, blobs)

    def clicks(self, conn: Connection, api_key_id: int, campaign: str = "") -> list[LinkClicks]:
        """See :func:`link_clicks`."""
        return link_clicks(conn, self._vault, api_key_id, campaign)
