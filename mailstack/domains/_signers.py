"""The current DKIM signer and the one sender rule that follows from it."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine

from mailstack.addresses import SendingDomainError, sending_domain
from mailstack.keyring import Keyring
from mailstack.signing import Signer
from mailstack.storage import reading

from ._keys import signing_keys

# Rotated keys become active on a schedule; reloading this often picks them up without a restart.
KEY_RELOAD_SECONDS = 60.0


class SignerCache:
    """The current :class:`Signer`, rebuilt from the database at most every ``KEY_RELOAD_SECONDS``."""

    def __init__(self, engine: Engine, keyring: Keyring) -> None:
        self._engine = engine
        self._keyring = keyring
        self._lock = threading.Lock()
        self._signer: Signer | None = None
        self._loaded_at = 0.0

    def get(self) -> Signer:
        now = time.monotonic()
        signer = self._signer
        if signer is not None and now - self._loaded_at < KEY_RELOAD_SECONDS:
            return signer
        with self._lock:
            if self._signer is None or now - self._loaded_at >= KEY_RELOAD_SECONDS:
                with reading(self._engine) as conn:
                    self._signer = Signer(signing_keys(conn, self._keyring, now=time.time()))
                self._loaded_at = now
            return self._signer

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    def may_send_from(self, domain: str) -> bool:
        """The sender rule of every entry point: mail only from domains whose DKIM keys this server
        holds (never unsigned mail, never a stranger's domain). May read the database."""
        return normalized_domain(domain) in self.get().domains


def normalized_domain(domain: str) -> str | None:
    """``domain`` as the signer's keys name it (:func:`mailstack.addresses.sending_domain`); None if it
    is not a sending domain at all."""
    try:
        return sending_domain(domain)
    except SendingDomainError:
        return None
