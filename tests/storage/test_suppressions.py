"""The suppression list in the database: what each kind of entry blocks, for how long, and where."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from support import make_vault

from mailstack.storage import (
    active_suppressions,
    list_suppressions,
    note_soft_bounce,
    suppress,
    unsuppress,
)

DAY = 86400.0


def _entry(engine: Engine, address: str, scope: str) -> tuple[str, str, float | None]:
    vault = make_vault(engine)
    with engine.connect() as conn:
        (entry,) = list_suppressions(conn, address=address, scope=scope, include_expired=True, vault=vault)
    return entry.source, entry.reason, entry.expires_at


def test_an_entry_is_only_ever_lengthened_unless_replaced(engine: Engine) -> None:
    vault = make_vault(engine)
    with engine.begin() as conn:
        assert suppress(
            conn, " <Ana@Example.NET>", scope="global", reason="a", source="hard_bounce", now=1.0, vault=vault
        )
        assert not suppress(
            conn, "ana@example.net", scope="GLOBAL", reason="b", source="manual", now=2.0, vault=vault
        )
        # A later soft-bounce entry (which expires) never shortens a permanent one.
        assert not suppress(
            conn,
            "ana@example.net",
            scope="global",
            reason="c",
            source="soft_bounce_limit",
            now=3.0,
            expires_at=9.0,
            vault=vault,
        )
    assert _entry(engine, "ana@example.net", "global") == ("hard_bounce", "a", None)
    vault = make_vault(engine)
    with engine.begin() as conn:
        suppress(
            conn,
            "bob@example.net",
            scope="global",
            reason="x",
            source="soft_bounce_limit",
            now=1,
            expires_at=5,
            vault=vault,
        )
        assert suppress(
            conn,
            "bob@example.net",
            scope="global",
            reason="y",
            source="soft_bounce_limit",
            now=2,
            expires_at=8,
            vault=vault,
        )
        assert not suppress(
            conn,
            "bob@example.net",
            scope="global",
            reason="z",
            source="soft_bounce_limit",
            now=3,
            expires_at=6,
            vault=vault,
        )
        assert suppress(
            conn, "bob@example.net", scope="global", reason="hard", source="hard_bounce", now=4, vault=vault
        )
    assert _entry(engine, "bob@example.net", "global") == ("hard_bounce", "hard", None)
    vault = make_vault(engine)
    with engine.begin() as conn:  # an operator's explicit entry replaces whatever was there
        assert suppress(
            conn,
            "bob@example.net",
            scope="global",
            reason="ok",
            source="manual",
            now=5,
            expires_at=6,
            replace=True,
            vault=vault,
        )
        with pytest.raises(ValueError, match="unknown suppression source"):
            suppress(conn, "c@example.net", scope="global", reason="", source="whim", now=1, vault=vault)
    assert _entry(engine, "bob@example.net", "global") == ("manual", "ok", 6)


def test_scope_and_expiry_decide_what_is_blocked(engine: Engine) -> None:
    vault = make_vault(engine)
    with engine.begin() as conn:
        suppress(conn, "all@example.net", scope="global", reason="", source="complaint", now=0, vault=vault)
        suppress(
            conn, "one@example.net", scope="Shop.Example", reason="", source="unsubscribe", now=0, vault=vault
        )
        suppress(
            conn,
            "idn@example.net",
            scope="bücher.example",
            reason="",
            source="unsubscribe",
            now=0,
            vault=vault,
        )
        suppress(
            conn,
            "old@example.net",
            scope="global",
            reason="",
            source="manual",
            now=0,
            expires_at=10,
            vault=vault,
        )
        found = active_suppressions(
            conn,
            [
                ("ALL@example.net", "news.example"),
                ("one@example.net", "shop.example"),
                ("one@example.net", "news.example"),
                ("idn@example.net", "xn--bcher-kva.example"),
                ("old@example.net", "shop.example"),
                ("free@example.net", "shop.example"),
            ],
            now=20,
            vault=vault,
        )
        assert {key: entry.source for key, entry in found.items()} == {
            ("all@example.net", "news.example"): "complaint",
            ("one@example.net", "shop.example"): "unsubscribe",
            ("idn@example.net", "xn--bcher-kva.example"): "unsubscribe",
        }
        assert active_suppressions(
            conn, [("old@example.net", "shop.example")], now=5, vault=vault
        )  # not expired yet
        assert unsuppress(conn, "ONE@example.net", vault=vault) == 1
        assert unsuppress(conn, "all@example.net", scope="news.example", vault=vault) == 0
        assert unsuppress(conn, "nobody@example.net", vault=vault) == 0
        # Newest first; the expired entry only when asked for.
        assert [e.address for e in list_suppressions(conn, now=20, vault=vault)] == [
            "idn@example.net",
            "all@example.net",
        ]
        assert len(list_suppressions(conn, now=20, include_expired=True, vault=vault)) == 3


def test_a_reason_quoting_the_address_is_stored_without_it(engine: Engine) -> None:
    vault = make_vault(engine)
    with engine.begin() as conn:
        suppress(
            conn,
            "Ana@Example.net",
            scope="global",
            reason="550 5.1.1 <ana@example.NET>: Recipient address rejected: User unknown",
            source="hard_bounce",
            now=0,
            vault=vault,
        )
    _source, reason, _expires = _entry(engine, "ana@example.net", "global")
    assert reason == "550 5.1.1 <<recipient>>: Recipient address rejected: User unknown"


def test_a_reason_quoting_other_addresses_is_stored_without_them(engine: Engine) -> None:
    # A DSN quotes the original recipient or a forwarding target too, in any spelling.
    vault = make_vault(engine)
    with engine.begin() as conn:
        suppress(
            conn,
            "ana@example.net",
            scope="global",
            reason="5.1.1 forward of <ana@example.net> to ana.smith@mail.example failed"
            " (orcpt rfc822;Ana%40Example.net)",
            source="hard_bounce",
            now=0,
            vault=vault,
        )
    _source, reason, _expires = _entry(engine, "ana@example.net", "global")
    assert reason == "5.1.1 forward of <<recipient>> to <address> failed (orcpt rfc822;<address>)"


def test_soft_bounces_count_messages_within_the_window(engine: Engine) -> None:
    vault = make_vault(engine)
    with engine.begin() as conn:
        assert note_soft_bounce(conn, "s@example.net", 1, now=0, window=7 * DAY, vault=vault) == 1
        assert (
            note_soft_bounce(conn, "S@example.net", 1, now=DAY, window=7 * DAY, vault=vault) == 1
        )  # same message
        assert note_soft_bounce(conn, "s@example.net", 2, now=2 * DAY, window=7 * DAY, vault=vault) == 2
        assert (
            note_soft_bounce(conn, "s@example.net", 3, now=8 * DAY, window=7 * DAY, vault=vault) == 2
        )  # the first aged out
        assert note_soft_bounce(conn, "t@example.net", 4, now=8 * DAY, window=7 * DAY, vault=vault) == 1
