"""The suppression list through ``/api/v1/suppressions`` and ``mailstack suppression``, and what it blocks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from feedback_loop_helpers import Instance, history, init_instance, send, status, suppressions, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[Instance]:
    """``mailstack serve`` (sandbox outbox) holding DKIM keys for example.com and shop.example."""
    instance = init_instance(tmp_path, db_url)
    rotated = instance.run("dkim", "rotate", "--domain", "shop.example", "--activate-in", "0", check=False)
    assert rotated.returncode == 0, rotated.stderr
    instance.start()
    try:
        yield instance
        assert instance.stop() == 0
    finally:
        instance.kill()


def test_the_api_lists_adds_and_removes(served: Instance) -> None:
    base = f"{served.url}/api/v1/suppressions"
    assert httpx.get(base).status_code == 401
    assert (
        httpx.post(base, json={"Email": "a@example.net"}, auth=(served.auth[0], "wrong")).status_code == 401
    )

    added = httpx.post(
        base, auth=served.auth, json={"Email": " Zoe@Example.NET ", "Reason": "asked by phone"}
    )
    assert added.status_code == 201, added.text
    (entry,) = added.json()["Data"]
    assert entry["Email"] == "zoe@example.net" and entry["Scope"] == "global"
    assert (entry["Source"], entry["Reason"], entry["ExpiresAt"]) == ("manual", "asked by phone", None)
    scoped = httpx.post(
        base,
        auth=served.auth,
        json={"Email": "zoe@example.net", "Scope": "Shop.Example", "ExpiresAt": "2099-01-01T00:00:00Z"},
    )
    assert scoped.status_code == 201
    assert scoped.json()["Data"][0]["Scope"] == "shop.example"
    assert scoped.json()["Data"][0]["ExpiresAt"] == "2099-01-01T00:00:00Z"
    lapsed = httpx.post(base, auth=served.auth, json={"Email": "old@example.net", "ExpiresAt": 1_000_000})
    assert lapsed.status_code == 201

    listing = httpx.get(base, auth=served.auth).json()
    assert (listing["Count"], listing["Total"]) == (2, 2)  # the lapsed entry is not in force
    assert len(suppressions(served, include_expired="true")) == 3
    assert [e["Scope"] for e in suppressions(served, scope="shop.example")] == ["shop.example"]
    assert len(suppressions(served, email="ZOE@example.net")) == 2
    page = httpx.get(base, auth=served.auth, params={"limit": "1"}).json()
    assert (page["Count"], page["Total"]) == (1, 2)

    for bad in (
        {"Email": "not-an-address"},
        {"Email": "a b@example.net"},
        {"Email": "a@example.net", "Scope": "not a domain!"},
        {"Email": "a@example.net", "ExpiresAt": "soon"},
        {"Email": "a@example.net", "Reason": 42},
        [],
    ):
        response = httpx.post(base, auth=served.auth, json=bad)
        assert response.status_code == 400, bad
        assert response.json()["ErrorMessage"]
    malformed = httpx.post(base, auth=served.auth, content=b"{", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert httpx.get(base, auth=served.auth, params={"scope": "a b"}).status_code == 400

    removed = httpx.delete(f"{base}/zoe@example.net", auth=served.auth, params={"scope": "shop.example"})
    assert removed.status_code == 204
    assert [e["Scope"] for e in suppressions(served, email="zoe@example.net")] == ["global"]
    assert httpx.delete(f"{base}/ZOE@example.net", auth=served.auth).status_code == 204
    assert httpx.delete(f"{base}/zoe@example.net", auth=served.auth).status_code == 404
    assert httpx.delete(f"{base}/zoe@example.net").status_code == 401
    paths = httpx.get(f"{served.url}/openapi.json").json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/suppressions"])
    assert "delete" in paths["/api/v1/suppressions/{email}"]


def test_a_domain_entry_blocks_that_sender_only_and_a_global_one_every_sender(served: Instance) -> None:
    base = f"{served.url}/api/v1/suppressions"
    httpx.post(base, auth=served.auth, json={"Email": "yan@example.net", "Scope": "example.com"})
    blocked = send(served, "yan@example.net")
    allowed = send(served, "yan@example.net", From={"Email": "orders@shop.example"})
    assert status(served, blocked) == "blocked"
    assert [e["type"] for e in history(served, blocked)] == ["blocked"]
    wait_for(lambda: status(served, allowed) == "sent", "delivery from the other domain")

    httpx.post(base, auth=served.auth, json={"Email": "yan@example.net"})  # global
    assert status(served, send(served, "yan@example.net", From={"Email": "orders@shop.example"})) == "blocked"
    httpx.delete(f"{base}/yan@example.net", auth=served.auth)
    again = send(served, "yan@example.net")
    wait_for(lambda: status(served, again) == "sent", "delivery once removed")
    outbox = httpx.get(f"{served.url}/api/v1/outbox", auth=served.auth).json()
    assert sorted(item["MessageID"] for item in outbox["Data"]) == sorted([allowed, again])


def test_the_cli_lists_adds_and_removes(tmp_path: Path, db_url: str) -> None:
    instance = init_instance(tmp_path, db_url)
    added = instance.run(
        "suppression",
        "add",
        "Xi@Example.net",
        "--scope",
        "shop.example",
        "--reason",
        "court order",
        "--expires-in-days",
        "3",
        "--json",
        check=False,
    )
    assert added.returncode == 0, added.stderr
    entry = json.loads(added.stdout)
    assert (entry["email"], entry["scope"], entry["source"], entry["reason"]) == (
        "xi@example.net",
        "shop.example",
        "manual",
        "court order",
    )
    assert 2.9 * 86400 < entry["expires_at"] - entry["created_at"] <= 3 * 86400
    assert instance.run("suppression", "add", "xi@example.net", check=False).returncode == 0  # global

    listed = instance.run("suppression", "list", "--json", check=False)
    assert listed.returncode == 0, listed.stderr
    assert sorted(json.loads(line)["scope"] for line in listed.stdout.splitlines()) == [
        "global",
        "shop.example",
    ]
    table = instance.run("suppression", "list", "--scope", "shop.example", check=False)
    assert table.returncode == 0 and "xi@example.net" in table.stdout and "court order" in table.stdout

    other_scope = instance.run(
        "suppression", "remove", "xi@example.net", "--scope", "other.example", check=False
    )
    assert other_scope.returncode == 1
    removed = instance.run("suppression", "remove", "XI@example.net", check=False)
    assert removed.returncode == 0 and "removed 2 entries" in removed.stdout
    assert instance.run("suppression", "list", "--json", check=False).stdout == ""
    assert instance.run("suppression", "remove", "xi@example.net", check=False).returncode == 1
    assert instance.run("suppression", "add", "not-an-address", check=False).returncode == 2
    bad_scope = instance.run("suppression", "add", "a@example.net", "--scope", "bad scope", check=False)
    assert bad_scope.returncode == 2
