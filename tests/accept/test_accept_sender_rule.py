"""One sender rule for every entry point: a domain is allowed exactly when this server holds its DKIM keys,
whatever spelling the client uses (case, a root dot, Unicode or its IDNA form)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from mailstack.domains import SignerCache, create_domain_keys
from mailstack.keyring import Keyring

KEYRING = Keyring(b"s" * 32)


def _signers(engine: Engine, *domains: str) -> SignerCache:
    with engine.begin() as conn:
        for domain in domains:
            create_domain_keys(conn, KEYRING, domain, activates_at=0.0)
    return SignerCache(engine, KEYRING)


def test_spellings_of_a_held_domain_are_allowed_and_others_refused(engine: Engine) -> None:
    signers = _signers(engine, "example.com", "xn--bcher-kva.example")
    for spelling in ("example.com", "EXAMPLE.com", "example.com.", "Bücher.example", "xn--bcher-kva.example"):
        assert signers.may_send_from(spelling), spelling
    for other in ("example.org", "sub.example.com", "example.com..", "", "exa mple.com", "xn--zz.example"):
        assert not signers.may_send_from(other), other


def test_a_key_added_later_is_seen_after_invalidation(engine: Engine) -> None:
    signers = _signers(engine, "example.com")
    assert not signers.may_send_from("example.net")
    with engine.begin() as conn:
        create_domain_keys(conn, KEYRING, "example.net", activates_at=0.0)
    signers.invalidate()
    assert signers.may_send_from("example.net")


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.text(max_size=80))
def test_any_text_as_domain_is_answered_without_error(engine: Engine, text: str) -> None:
    # No key is held: whatever the text, the answer is a refusal, never an exception.
    assert SignerCache(engine, KEYRING).may_send_from(text) is False
