"""The store: one database's engine and the vault that seals its personal columns, with a repository per
aggregate, so that the rest of mailstack holds one handle instead of an engine and a vault passed by hand.

Repositories run in the caller's transaction (``with store.begin() as conn: store.messages.insert(conn,
...)``), so that accepting a message, recording its event and queueing it still commit together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from mailstack.config import PrivacySettings
from mailstack.keyring import Keyring

from ._api_keys import ApiKeys
from ._details import EventDetails
from ._dkim import DkimKeys
from ._idempotency import IdempotentResponses
from ._links import Links
from ._messages import Messages
from ._outbox import Outbox
from ._relay_log import RelayLog
from ._suppressions import Suppressions
from ._vault import Vault

__all__ = ["Store"]


class Store:
    """One database: :attr:`engine`, :attr:`vault`, and its repositories."""

    def __init__(self, engine: Engine, vault: Vault) -> None:
        self.engine = engine
        self.vault = vault
        self.api_keys = ApiKeys()
        self.dkim_keys = DkimKeys()
        self.messages = Messages(vault)
        self.event_details = EventDetails(vault)
        self.idempotent_responses = IdempotentResponses(vault)
        self.outbox = Outbox(vault)
        self.suppressions = Suppressions(vault)
        self.relay_log = RelayLog()
        self.links = Links(vault)

    @classmethod
    def open(cls, engine: Engine, keyring: Keyring, settings: PrivacySettings) -> Store:
        """The store of ``engine``, its vault using the key provider ``[privacy]`` names."""
        return cls(engine, Vault.from_settings(engine, keyring, settings))

    @property
    def keyring(self) -> Keyring:
        """The master secret's keyring (keyed hashes, token keys)."""
        return self.vault.keyring

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads (a transaction begins on first use and is rolled back at the end)."""
        with self.engine.connect() as conn:
            yield conn
