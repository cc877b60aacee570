"""Attacks on the dashboard's sign-in: password guessing (throttled across the fleet), cross-site forms,
and the browser-side protections every page carries."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from engagement_support import Stack, make_stack
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from mailstack.api import create_app
from mailstack.api._dashboard import COOKIE
from mailstack.dashboard import LoginThrottle, create_user
from mailstack.storage.schema import login_attempts

T = TypeVar("T")
PASSWORD = "correct horse battery staple"
ORIGIN = {"Origin": "https://track.example.com"}


@pytest.fixture
def stack(tmp_path: Path, db_url: str) -> Iterator[Stack]:
    with make_stack(tmp_path, db_url) as running:
        with running.runtime.engine.begin() as conn:
            create_user(conn, "marta", PASSWORD)
        yield running


def sign_in(
    client: TestClient, password: str, *, user: str = "marta", headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(
        "/dashboard/login",
        content=f"username={user}&password={password.replace(' ', '+')}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or ORIGIN)},
        follow_redirects=False,
    )


def test_password_guessing_locks_out_even_the_right_password(stack: Stack) -> None:
    for attempt in range(10):
        assert sign_in(stack.client, f"guess number {attempt:04d}").status_code == 401
    locked = sign_in(stack.client, PASSWORD)
    assert locked.status_code == 429 and COOKIE not in locked.headers.get("set-cookie", "")
    assert "Too many failed sign-ins" in locked.text


def test_the_lockout_holds_across_every_process_of_the_fleet(stack: Stack) -> None:
    # A second API process on the same database (as behind a load balancer) sees the same failures.
    with TestClient(
        create_app(stack.runtime, stack.node.recorder), base_url="https://track.example.com"
    ) as other:
        for attempt in range(5):
            assert sign_in(stack.client, f"guess number {attempt:04d}").status_code == 401
            assert sign_in(other, f"other guess {attempt:04d}").status_code == 401
        assert sign_in(other, PASSWORD).status_code == 429
        assert sign_in(stack.client, PASSWORD).status_code == 429


def test_guessing_one_users_password_from_many_addresses_is_throttled(stack: Stack) -> None:
    throttle = LoginThrottle(stack.runtime.engine, b"k" * 32, limit=10, user_limit=30)
    for n in range(30):
        address = f"198.51.100.{n}"  # a botnet: each address stays far below its own limit
        assert throttle.take(address, "marta")
    assert not throttle.take("203.0.113.9", "marta")
    assert not throttle.take("203.0.113.9", " MARTA ")  # spelling variants are the same account
    assert throttle.take("203.0.113.9", "someone-else")


def test_failures_expire_and_a_success_starts_afresh(stack: Stack) -> None:
    now = [1_000_000.0]
    throttle = LoginThrottle(stack.runtime.engine, b"k" * 32, limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.take("192.0.2.1", "marta")
    assert not throttle.take("192.0.2.1", "marta")
    now[0] += 61
    assert throttle.take("192.0.2.1", "marta")
    throttle.succeeded("192.0.2.1", "marta")
    for _ in range(3):
        assert throttle.take("192.0.2.1", "marta")


def test_the_attempt_table_holds_neither_addresses_nor_user_names(stack: Stack) -> None:
    sign_in(stack.client, "wrong password here")
    with stack.runtime.engine.connect() as conn:
        keys = conn.execute(select(login_attempts.c.client)).scalars().all()
    assert len(keys) == 2 and all(len(key) == 64 for key in keys)
    assert not any("marta" in key or "testclient" in key for key in keys)


def _at_once(count: int, attempt: Callable[[int], T]) -> list[T]:
    """``attempt(0..count-1)``, each on its own thread, all released together."""
    start = threading.Barrier(count)

    def run(n: int) -> T:
        start.wait()
        return attempt(n)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_simultaneous_guesses_from_one_address_check_only_the_limit(stack: Stack) -> None:
    # 40 wrong passwords at the same moment: each is counted before its check, so 10 are checked (401)
    # and 30 refused unchecked (429) — not 40 checks passing a count none of them had added to yet.
    answers = _at_once(40, lambda n: sign_in(stack.client, f"parallel guess {n:04d}").status_code)
    assert answers.count(401) == 10 and answers.count(429) == 30
    assert sign_in(stack.client, PASSWORD).status_code == 429


def test_simultaneous_guesses_against_one_user_check_only_the_user_limit(stack: Stack) -> None:
    throttle = LoginThrottle(stack.runtime.engine, b"k" * 32)  # the defaults: 10 per address, 50 per user
    taken = _at_once(120, lambda n: throttle.take(f"198.51.{n // 250}.{n % 250}", "marta"))
    assert taken.count(True) == 50
    assert not throttle.take("203.0.113.9", "marta") and throttle.take("203.0.113.9", "someone-else")


# --- the family: any interleaving of attempts, successes and time, against the rule written plainly ---

_CLIENTS = ["192.0.2.1", "192.0.2.2", "198.51.100.7"]
_USERS = ["marta", "MARTA ", "bob"]


class _Rule:
    """The throttle's rule, in memory: per counter, when its window started and how many attempts."""

    def __init__(self, limit: int, user_limit: int, window: float) -> None:
        self.limits = {"ip": limit, "user": user_limit}
        self.window = window
        self.counters: dict[tuple[str, str], tuple[float, int]] = {}

    def take(self, client: str, user: str, now: float) -> bool:
        keys = [("ip", client), ("user", user.strip().lower())]
        fresh = {}
        for key in keys:
            start, count = self.counters.get(key, (now - self.window, 0))
            if start <= now - self.window:
                start, count = now, 0
            if count >= self.limits[key[0]]:
                return False
            fresh[key] = (start, count + 1)
        self.counters.update(fresh)
        return True

    def succeeded(self, client: str, user: str) -> None:
        self.counters.pop(("ip", client), None)
        self.counters.pop(("user", user.strip().lower()), None)


_steps = st.lists(
    st.tuples(
        st.sampled_from(["take", "take", "take", "succeeded", "wait"]),
        st.sampled_from(_CLIENTS),
        st.sampled_from(_USERS),
        st.sampled_from([1.0, 30.0, 59.0, 60.0, 61.0]),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_steps)
def test_any_sequence_of_attempts_follows_the_rule(
    engine: Engine, steps: list[tuple[str, str, str, float]]
) -> None:
    with engine.begin() as conn:
        conn.execute(delete(login_attempts))
    now = [1_000_000.0]
    throttle = LoginThrottle(engine, b"k" * 32, limit=3, user_limit=5, window=60, clock=lambda: now[0])
    rule = _Rule(3, 5, 60)
    for action, client, user, seconds in steps:
        if action == "take":
            assert throttle.take(client, user) == rule.take(client, user, now[0])
        elif action == "succeeded":
            throttle.succeeded(client, user)
            rule.succeeded(client, user)
        else:
            now[0] += seconds


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # sandboxed iframes and data: URLs
        {"Referer": "https://evil.example/attack.html"},
        {"Origin": "https://track.example.com.evil.example"},
    ],
    ids=["foreign-origin", "null-origin", "foreign-referer", "lookalike-origin"],
)
def test_cross_site_sign_in_and_sign_out_are_refused(stack: Stack, headers: dict[str, str]) -> None:
    refused = sign_in(stack.client, PASSWORD, headers=headers)
    assert refused.status_code == 403 and COOKIE not in refused.headers.get("set-cookie", "")
    assert sign_in(stack.client, PASSWORD).status_code == 303
    logout = stack.client.post("/dashboard/logout", headers=headers, follow_redirects=False)
    assert logout.status_code == 403 and COOKIE not in logout.headers.get("set-cookie", "")
    assert stack.client.get("/dashboard/api/keys").status_code == 200  # still signed in


def test_pages_carry_the_security_headers_and_hsts_over_https(stack: Stack) -> None:
    page = stack.client.get("/dashboard/login")
    headers = page.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin" and headers["cache-control"] == "no-store"
    assert headers["strict-transport-security"] == "max-age=63072000"
    assert "strict-transport-security" in stack.client.get("/healthz").headers


def test_no_hsts_when_served_over_plain_http(tmp_path: Path, sqlite_url: str) -> None:
    with make_stack(tmp_path, sqlite_url, {"server": {"public_url": "http://127.0.0.1:8080"}}) as plain:
        assert "strict-transport-security" not in plain.client.get("/dashboard/login").headers
