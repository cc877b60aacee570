"""Blind indexes: one per mailbox however it is spelled, and useless without the master secret."""

from __future__ import annotations

import hashlib

from mailstack.keyring import Keyring
from mailstack.storage import address_index

OURS = Keyring(b"m" * 32)
THEIRS = Keyring(b"t" * 32)


def test_every_spelling_of_one_mailbox_has_one_index() -> None:
    index = address_index(OURS, "ana@example.org")
    assert len(index) == 64 and int(index, 16) >= 0
    assert {address_index(OURS, s) for s in (" Ana@Example.ORG ", "<ana@example.org>")} == {index}
    assert address_index(OURS, "bob@example.org") != index


def test_a_dump_thief_cannot_test_a_guessed_address() -> None:
    # Without the master secret, neither a plain hash nor another installation's key gives the index.
    index = address_index(OURS, "ana@example.org")
    assert index != hashlib.sha256(b"ana@example.org").hexdigest()
    assert index != address_index(THEIRS, "ana@example.org")
    assert "ana" not in index
