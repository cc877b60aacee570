"""A database that is unavailable — PostgreSQL gone (a TCP relay in front of it, closed), a SQLite file
that is full — is answered 503 with Retry-After in Mailjet's shape, not 500; the API recovers once the
database is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engagement_support import Stack, make_stack
from sqlalchemy import event, func, select, text
from tcp_relay_support import TcpRelay

from mailstack.storage import create_storage_engine, is_unavailable
from mailstack.storage.schema import messages

MESSAGE = {
    "From": {"Email": "news@example.com"},
    "To": [{"Email": "ana@example.net"}],
    "Subject": "Hello",
    "TextPart": "Hello",
}


@pytest.fixture
def relay() -> Iterator[TcpRelay]:
    running = TcpRelay(("127.0.0.1", 5432))
    try:
        yield running
    finally:
        running.cut()


@pytest.fixture
def stack(tmp_path: Path, pg_url: str, relay: TcpRelay) -> Iterator[Stack]:
    through_relay = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    assert through_relay != pg_url
    with make_stack(tmp_path, through_relay) as running:
        yield running


def _assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert {"ErrorIdentifier", "ErrorCode", "ErrorMessage", "ErrorInfo"} <= set(body)
    assert body["StatusCode"] == 503


@pytest.mark.postgres
def test_postgresql_going_away_is_a_503_and_the_api_recovers(stack: Stack, relay: TcpRelay) -> None:
    (message_id,) = stack.send(**MESSAGE)
    assert stack.client.get(f"/v3/REST/message/{message_id}", auth=stack.auth).status_code == 200

    relay.cut()
    _assert_unavailable(stack.client.get(f"/v3/REST/message/{message_id}", auth=stack.auth))
    _assert_unavailable(stack.client.post("/v3.1/send", json={"Messages": [MESSAGE]}, auth=stack.auth))
    _assert_unavailable(stack.client.get("/api/v1/suppressions", auth=stack.auth))
    # An unknown key has to be looked up: the database's absence is no reason to answer 401.
    _assert_unavailable(stack.client.get("/api/v1/outbox", auth=("no-such-key", "secret")))
    assert stack.client.get("/healthz").status_code == 503

    relay.restore()
    deadline = time.monotonic() + 30
    while (answer := stack.client.get(f"/v3/REST/message/{message_id}", auth=stack.auth)).status_code != 200:
        assert answer.status_code == 503 and time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    assert answer.json()["Data"][0]["ID"] == message_id
    assert stack.send(**MESSAGE)


def test_a_full_sqlite_database_is_a_503_and_nothing_is_half_stored(tmp_path: Path) -> None:
    with make_stack(tmp_path, f"sqlite:///{tmp_path / 'mailstack.db'}") as stack:
        (first,) = stack.send(**MESSAGE)
        engine = stack.runtime.engine
        with engine.connect() as conn:
            pages = conn.execute(text("PRAGMA page_count")).scalar_one()
            stored = conn.execute(select(func.count()).select_from(messages)).scalar_one()

        def cap(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full

        event.listen(engine, "connect", cap)
        engine.dispose()  # every connection from now on sees the cap
        big = {**MESSAGE, "TextPart": "x" * 200_000}
        _assert_unavailable(stack.client.post("/v3.1/send", json={"Messages": [big]}, auth=stack.auth))
        event.remove(engine, "connect", cap)
        engine.dispose()
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(messages)).scalar_one() == stored
        (second,) = stack.send(**MESSAGE)  # the disk has room again
        assert second == first + 1


@pytest.mark.postgres
def test_only_unavailability_is_recognised(tmp_path: Path, pg_url: str) -> None:
    """A wrong query is a bug (500), not an outage: is_unavailable tells them apart on both backends."""
    for url in (pg_url, f"sqlite:///{tmp_path / 'x.db'}"):
        engine = create_storage_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT * FROM no_such_table"))
        except Exception as exc:
            assert not is_unavailable(exc), url
        else:
            pytest.fail("the query should have failed")
        finally:
            engine.dispose()
    closed = create_storage_engine(pg_url.replace("127.0.0.1:5432", "127.0.0.1:9"))
    try:
        with closed.connect():
            pass
    except Exception as exc:
        assert is_unavailable(exc)
    else:
        pytest.fail("nothing listens on port 9")
    finally:
        closed.dispose()
