"""DKIM keys at rest: encrypted in the database, the newest active key signs, rotation keeps old selectors."""

from __future__ import annotations

from sqlalchemy import Engine, select

from mailstack.domains import create_domain_keys, published_keys, signing_keys
from mailstack.keyring import Keyring
from mailstack.storage import schema

KEYRING = Keyring(b"m" * 32)


def test_keys_are_encrypted_at_rest_and_load_back(engine: Engine) -> None:
    with engine.begin() as conn:
        created = create_domain_keys(conn, KEYRING, "Example.COM", activates_at=100.0)
    assert [k.algorithm for k in created] == ["rsa-sha256", "ed25519-sha256"]
    with engine.connect() as conn:
        stored = conn.execute(select(schema.dkim_keys.c.private_key)).scalars().all()
        keys = signing_keys(conn, KEYRING, now=100.0)
    assert all(b"PRIVATE KEY" not in blob for blob in stored)
    assert {(k.domain, k.selector) for k in keys} == {("example.com", c.selector) for c in created}
    assert {k.dns_txt() for k in keys} == {c.txt for c in created}


def test_rotation_adds_selectors_that_sign_only_once_active(engine: Engine) -> None:
    with engine.begin() as conn:
        old = create_domain_keys(conn, KEYRING, "example.com", activates_at=100.0)
        new = create_domain_keys(conn, KEYRING, "example.com", activates_at=500.0)
    assert {k.selector for k in new}.isdisjoint({k.selector for k in old})
    with engine.connect() as conn:
        before = {k.selector for k in signing_keys(conn, KEYRING, now=499.0)}
        after = {k.selector for k in signing_keys(conn, KEYRING, now=500.0)}
        published = {k.selector for k in published_keys(conn, KEYRING, domain="example.com")}
    assert before == {k.selector for k in old}
    assert after == {k.selector for k in new}
    assert published == before | after  # old selectors stay in DNS for mail in flight
