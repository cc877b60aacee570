"""The dashboard's login, sessions and data routes (in-process; the browser test drives the page)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from engagement_support import Stack, make_stack, pixel_in
from sqlalchemy import select

from mailstack.api._dashboard import COOKIE
from mailstack.dashboard import create_user, set_password
from mailstack.storage.schema import dashboard_users

PASSWORD = "correct horse battery staple"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
ORIGIN = {"Origin": "https://track.example.com"}


@pytest.fixture
def stack(tmp_path: Path, db_url: str) -> Iterator[Stack]:
    with make_stack(tmp_path, db_url) as running:
        with running.runtime.engine.begin() as conn:
            create_user(conn, "marta", PASSWORD)
        yield running


def sign_in(stack: Stack, password: str = PASSWORD, headers: dict[str, str] | None = None) -> httpx.Response:
    return stack.client.post(
        "/dashboard/login",
        content=f"username=marta&password={password.replace(' ', '+')}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or ORIGIN)},
        follow_redirects=False,
    )


def test_passwords_are_stored_as_argon2id_hashes(stack: Stack) -> None:
    with stack.runtime.engine.connect() as conn:
        stored = conn.execute(select(dashboard_users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    with stack.runtime.engine.begin() as conn, pytest.raises(ValueError, match="12"):
        create_user(conn, "weak", "short")
    with stack.runtime.engine.begin() as conn, pytest.raises(ValueError, match="already exists"):
        create_user(conn, "marta", PASSWORD)


def test_the_page_and_its_data_need_a_session(stack: Stack) -> None:
    page = stack.client.get("/dashboard", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
    for path in ("/dashboard/api/keys", "/dashboard/api/overview", "/dashboard/api/messages?q=x",
                 "/dashboard/api/suppressions", "/dashboard/api/messages/1/events"):  # fmt: skip
        assert stack.client.get(path).status_code == 401, path
    stack.client.cookies.set(COOKIE, "forged.AAAAAAAAAAAAAAAAAAAAAA", path="/dashboard")
    assert stack.client.get("/dashboard/api/keys").status_code == 401


def test_signing_in_sets_a_strict_http_only_cookie(stack: Stack) -> None:
    wrong = sign_in(stack, "not the password")
    assert wrong.status_code == 401 and COOKIE not in wrong.headers.get("set-cookie", "")
    right = sign_in(stack)
    assert right.status_code == 303 and right.headers["location"] == "/dashboard"
    cookie = right.headers["set-cookie"]
    assert cookie.startswith(COOKIE + "=")
    for attribute in ("HttpOnly", "SameSite=strict", "Secure", "Path=/dashboard"):
        assert attribute.lower() in cookie.lower(), attribute
    page = stack.client.get("/dashboard")
    assert page.status_code == 200 and "marta" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert stack.client.get("/dashboard/api/keys").json()["Data"][0]["ID"] == 1
    # A password change ends existing sessions.
    with stack.runtime.engine.begin() as conn:
        set_password(conn, "marta", "another long passphrase")
    assert stack.client.get("/dashboard/api/keys").status_code == 401


def test_forms_posted_from_another_site_are_refused(stack: Stack) -> None:
    assert sign_in(stack, headers={"Origin": "https://evil.example"}).status_code == 403
    assert COOKIE not in stack.client.cookies


def test_repeated_failures_are_throttled(stack: Stack) -> None:
    for _ in range(10):
        assert sign_in(stack, "guess guess guess").status_code == 401
    assert sign_in(stack).status_code == 429


def test_overview_numbers_are_the_apis_numbers(stack: Stack) -> None:
    ids = stack.send(
        To=[{"Email": "ana@gmail.com"}, {"Email": "bo@yahoo.com"}],
        CustomCampaign="spring",
        HTMLPart="<p>Hi</p>",
    )
    stack.deliver()
    pixel = pixel_in(stack.html_of(ids[0]))
    assert pixel is not None
    stack.client.get(pixel.removeprefix("https://track.example.com"), headers={"User-Agent": BROWSER})
    stack.flush_tracking()
    stack.node.aggregator.catch_up()
    sign_in(stack)
    overview = stack.client.get("/dashboard/api/overview?key=1").json()
    api = stack.client.get(
        "/v3/REST/statcounters",
        params={"CounterSource": "APIKey", "CounterTiming": "Message", "CounterResolution": "Lifetime"},
        auth=stack.auth,
    ).json()["Data"][0]
    assert overview["Totals"] == api
    assert overview["Totals"]["MessageOpenedCount"] == 1
    assert [c["SourceID"] for c in overview["Campaigns"]] == ["spring"]
    assert {p["ESPName"]: p["AttemptedMessagesCount"] for p in overview["Providers"]}["yahoo"] == 1
    assert sum(day["Opened"] for day in overview["Series"]) == 1 and len(overview["Series"]) == 30
    found = stack.client.get("/dashboard/api/messages", params={"key": 1, "q": "ana@gmail.com"}).json()[
        "Data"
    ]
    assert [m["MessageID"] for m in found] == [ids[0]]
    header = found[0]["MessageIDHeader"]
    assert (
        stack.client.get("/dashboard/api/messages", params={"q": header}).json()["Data"][0]["MessageID"]
        == ids[0]
    )
    assert stack.client.get("/dashboard/api/messages", params={"q": str(ids[1])}).json()["Data"][0][
        "Recipient"
    ] == ("bo@yahoo.com")
    events = stack.client.get(f"/dashboard/api/messages/{ids[0]}/events").json()["Data"]
    assert [e["Type"] for e in events] == ["queued", "sent", "open"]
    assert stack.client.get("/dashboard/api/overview?key=99").status_code == 404


def test_cli_adds_users_with_a_password_from_stdin(tmp_path: Path) -> None:
    mailstack = str(Path(sys.executable).parent / "mailstack")
    data_dir = tmp_path / "data"
    subprocess.run(
        [mailstack, "init", "--data-dir", str(data_dir), "--domain", "example.com", "--json"],
        check=True,
        capture_output=True,
    )
    added = subprocess.run(
        [
            mailstack,
            "dashboard",
            "user-add",
            "--data-dir",
            str(data_dir),
            "--username",
            "ops",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    weak = subprocess.run(
        [
            mailstack,
            "dashboard",
            "user-add",
            "--data-dir",
            str(data_dir),
            "--username",
            "x",
            "--password-stdin",
        ],
        input="short\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert weak.returncode == 2 and "12" in weak.stderr
