"""A suppression's ExpiresAt must name a real moment (1970 to the end of year 9999) before it is stored;
rows that an older version stored anyway (infinities, NaN, years past 9999) never break a listing — the
API, the dashboard and the CLI show them (as "until removed", or lapsed) and the log reports them."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from engagement_support import Stack, make_stack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_support import MAILSTACK
from sqlalchemy import func, select, update
from structlog.testing import capture_logs

from mailstack.dashboard import create_user
from mailstack.storage.schema import suppressions

BASE = "/api/v1/suppressions"
PASSWORD = "correct horse battery staple"
# Raw JSON bodies: Python's json.dumps would refuse some of these, a hostile client does not.
REFUSED = [
    b"1e308",
    b"1e400",  # parsed as infinity
    b"-1e400",
    b"Infinity",
    b"-Infinity",
    b"NaN",
    b"253402300800",  # one second after 9999-12-31T23:59:59Z
    b"1000000000000000000000000000000",
    b"-1",
    b'"10000-01-01T00:00:00Z"',
    b'"9999-12-31T23:59:59-01:00"',  # 10000-01-01T00:59:59Z
    b'"1969-12-31T23:59:59Z"',
    b'"+inf"',
    b'"nan"',
]


@pytest.fixture
def stack(tmp_path: Path, db_url: str) -> Iterator[Stack]:
    with make_stack(tmp_path, db_url) as running:
        yield running


def _add(stack: Stack, email: str, expires: bytes) -> int:
    body = b'{"Email": "' + email.encode() + b'", "ExpiresAt": ' + expires + b"}"
    response = stack.client.post(BASE, content=body, auth=stack.auth)
    assert response.status_code < 500, response.text
    return response.status_code


def _stored(stack: Stack) -> int:
    with stack.runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(suppressions)).scalar_one())


@pytest.mark.parametrize("expires", REFUSED)
def test_an_impossible_expiry_is_refused_and_not_stored(stack: Stack, expires: bytes) -> None:
    assert _add(stack, "ana@example.net", expires) == 400
    assert _stored(stack) == 0
    listing = stack.client.get(BASE, params={"include_expired": "true"}, auth=stack.auth)
    assert listing.status_code == 200 and listing.json()["Total"] == 0


def test_the_last_second_of_year_9999_is_accepted(stack: Stack) -> None:
    for expires in (b"253402300799", b'"9999-12-31T23:59:59Z"'):
        assert _add(stack, "ana@example.net", expires) == 201
        (entry,) = stack.client.get(BASE, auth=stack.auth).json()["Data"]
        assert entry["ExpiresAt"] == "9999-12-31T23:59:59Z"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    expires=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.datetimes().map(lambda moment: moment.isoformat() + "Z"),
    )
)
def test_any_expiry_is_either_stored_and_listed_or_refused(stack: Stack, expires: object) -> None:
    raw = json.dumps(expires).encode()  # NaN and Infinity are written as such
    status = _add(stack, "ana@example.net", raw)
    assert status in (201, 400), raw
    listing = stack.client.get(BASE, params={"include_expired": "true"}, auth=stack.auth)
    assert listing.status_code == 200
    assert listing.json()["Total"] == (1 if status == 201 else 0)
    stack.client.delete(f"{BASE}/ana@example.net", auth=stack.auth)


def test_rows_stored_with_impossible_expiries_do_not_break_listings(stack: Stack, db_url: str) -> None:
    """What an older version stored: every listing still works, shows the entry, and the log says so."""
    bad = [1e308, float("inf"), float("-inf"), 1e12]
    if db_url.startswith("postgresql"):
        bad.append(float("nan"))  # SQLite stores NaN as NULL
    addresses = [f"user{index}@example.net" for index in range(len(bad))]
    for address in addresses:
        assert _add(stack, address, b"null") == 201
    with stack.runtime.engine.begin() as conn:
        for address, value in zip(addresses, bad, strict=True):
            index = stack.runtime.vault.index(address)
            conn.execute(
                update(suppressions).where(suppressions.c.address_index == index).values(expires_at=value)
            )
        create_user(conn, "marta", PASSWORD)

    with capture_logs() as logs:
        listing = stack.client.get(BASE, params={"include_expired": "true"}, auth=stack.auth)
    assert listing.status_code == 200, listing.text
    expiries = {entry["Email"]: entry["ExpiresAt"] for entry in listing.json()["Data"]}
    assert set(expiries) == set(addresses)
    # In force for ever in the database (above any clock): "until removed"; below 1970: lapsed.
    assert expiries["user2@example.net"] == "1970-01-01T00:00:00Z"
    assert all(expiries[a] is None for a in addresses if a != "user2@example.net")
    reported = [log for log in logs if log["event"] == "suppression with an unreadable expiry"]
    assert len(reported) == len(bad)
    in_force = stack.client.get(BASE, auth=stack.auth).json()
    assert {entry["Email"] for entry in in_force["Data"]} == set(addresses) - {"user2@example.net"}

    signed_in = stack.client.post(
        "/dashboard/login",
        content=f"username=marta&password={PASSWORD.replace(' ', '+')}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://track.example.com"},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    dashboard = stack.client.get("/dashboard/api/suppressions")
    assert dashboard.status_code == 200, dashboard.text
    assert {entry["Email"] for entry in dashboard.json()["Data"]} == set(addresses) - {"user2@example.net"}

    settings_dir = stack.runtime.settings.data_dir
    env = {**os.environ, "MAILSTACK_DATABASE_URL": db_url}
    for extra in ([], ["--json"]):
        listed = subprocess.run(
            [MAILSTACK, "suppression", "list", "--all", "--data-dir", str(settings_dir), *extra],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert all(address in listed.stdout for address in addresses)


def test_the_cli_refuses_an_impossible_expiry(stack: Stack, db_url: str) -> None:
    env = {**os.environ, "MAILSTACK_DATABASE_URL": db_url}
    for days in ("inf", "nan", "1e300"):
        added = subprocess.run(
            [MAILSTACK, "suppression", "add", "ana@example.net", "--expires-in-days", days, "--data-dir",
             str(stack.runtime.settings.data_dir)],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        # A clear refusal (click's own range check refuses nan), never a traceback.
        assert added.returncode == 2 and "Traceback" not in added.stderr, (days, added.stderr)
    assert _stored(stack) == 0
