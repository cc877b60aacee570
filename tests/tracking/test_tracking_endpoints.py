"""The tracking endpoints through the real app, on SQLite and PostgreSQL: pixel, clicks, conversions."""

from __future__ import annotations

from pathlib import Path

import pytest
from engagement_support import Stack, links_in, make_stack, pixel_in

from mailstack.tokens import TokenSigner
from mailstack.tracking import TrackingUrls

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
HTML = (
    "<html><body><p>Hi</p>"
    '<a href="https://shop.example/sale?c=1&amp;d=2">Sale</a> '
    '<a href="https://shop.example/about">About</a>'
    "</body></html>"
)


@pytest.fixture
def stack(tmp_path: Path, db_url: str) -> object:
    with make_stack(tmp_path, db_url) as running:
        yield running


def path_of(url: str) -> str:
    assert url.startswith("https://track.example.com/"), url
    return url.removeprefix("https://track.example.com")


def sent_html(stack: Stack, **message: object) -> tuple[int, str]:
    (message_id,) = stack.send(HTMLPart=HTML, **message)
    assert stack.deliver() == 1
    return message_id, stack.html_of(message_id)


def test_links_are_rewritten_and_clicks_redirect_to_the_exact_target(stack: Stack) -> None:
    message_id, document = sent_html(stack)
    links = links_in(document)
    assert len(links) == 2 and all(link.startswith("https://track.example.com/t/c/") for link in links)
    response = stack.client.get(path_of(links[0]), headers={"User-Agent": BROWSER}, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.example/sale?c=1&d=2"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "no-store" in response.headers["cache-control"]
    head = stack.client.head(path_of(links[1]), headers={"User-Agent": BROWSER}, follow_redirects=False)
    assert head.status_code == 302 and head.headers["location"] == "https://shop.example/about"
    stack.flush_tracking()
    clicks = [detail for kind, detail in stack.events_of(message_id) if kind == "click"]
    assert [(c["position"], c["url"]) for c in clicks] == [
        (1, "https://shop.example/sale?c=1&d=2"),
        (2, "https://shop.example/about"),
    ]
    assert "machine" not in clicks[0] and clicks[0]["agent"] == BROWSER
    assert clicks[1]["machine"] is True and clicks[1]["machine_reason"] == "method-head"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: token.replace(token.split(".")[0], token.split(".")[0][:-4] + "aGk"),
        lambda token: token + "x",
    ],
)
def test_altered_click_links_never_redirect(stack: Stack, mangle: object) -> None:
    message_id, document = sent_html(stack)
    token = path_of(links_in(document)[0]).removeprefix("/t/c/")
    assert callable(mangle)
    response = stack.client.get(f"/t/c/{mangle(token)}", follow_redirects=False)
    assert response.status_code == 404
    assert "location" not in response.headers
    stack.flush_tracking()
    assert [kind for kind, _ in stack.events_of(message_id) if kind == "click"] == []


def test_forged_click_link_to_another_site_is_refused(stack: Stack) -> None:
    (message_id,) = stack.send(HTMLPart=HTML)
    forger = TrackingUrls(TokenSigner(b"f" * 32), "https://x")
    forged = forger.click_url(message_id, 1, "https://evil.example/").removeprefix("https://x/t/c/")
    response = stack.client.get(f"/t/c/{forged}", follow_redirects=False)
    assert response.status_code == 404 and "location" not in response.headers
    assert "evil.example" not in response.text


def test_open_pixel_records_opens_and_flags_privacy_proxies(stack: Stack) -> None:
    message_id, document = sent_html(stack)
    pixel = pixel_in(document)
    assert pixel is not None and pixel.startswith("https://track.example.com/t/o/")
    human = stack.client.get(path_of(pixel), headers={"User-Agent": BROWSER})
    assert human.status_code == 200 and human.headers["content-type"] == "image/gif"
    assert human.content.startswith(b"GIF89a") and "no-store" in human.headers["cache-control"]
    apple = stack.client.get(path_of(pixel), headers={"User-Agent": "Mozilla/5.0"})
    assert apple.status_code == 200
    assert stack.client.get("/t/o/bogus.AAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    stack.flush_tracking()
    opens = [detail for kind, detail in stack.events_of(message_id) if kind == "open"]
    assert len(opens) == 2
    assert "machine" not in opens[0]
    assert opens[1]["machine"] is True and opens[1]["proxy"] == "apple"


def test_track_opens_and_clicks_disabled_per_message(stack: Stack) -> None:
    _, document = sent_html(stack, TrackOpens="disabled", TrackClicks="disabled")
    assert pixel_in(document) is None
    assert links_in(document) == ["https://shop.example/sale?c=1&d=2", "https://shop.example/about"]


def test_account_defaults_off_but_message_enables(tmp_path: Path, sqlite_url: str) -> None:
    with make_stack(tmp_path, sqlite_url, {"tracking": {"opens": False, "clicks": False}}) as stack:
        _, document = sent_html(stack)
        assert pixel_in(document) is None and links_in(document)[0] == "https://shop.example/sale?c=1&d=2"
        _, document = sent_html(stack, TrackOpens="enabled", TrackClicks="enabled")
        assert pixel_in(document) is not None
        assert links_in(document)[0].startswith("https://track.example.com/t/c/")


def test_conversions_are_tied_to_a_message_and_idempotent(stack: Stack) -> None:
    (message_id,) = stack.send(HTMLPart=HTML)
    body = {"MessageID": message_id, "Name": "purchase", "Value": 42.5, "EventID": "order-1"}
    assert stack.client.post("/api/v1/conversions", json=body).status_code == 401
    first = stack.client.post("/api/v1/conversions", json=body, auth=stack.auth)
    assert first.status_code == 201, first.text
    assert stack.client.post("/api/v1/conversions", json=body, auth=stack.auth).status_code == 201
    other = {"MessageID": message_id, "Name": "signup"}
    assert stack.client.post("/api/v1/conversions", json=other, auth=stack.auth).status_code == 201
    conversions = [d for kind, d in stack.events_of(message_id) if kind == "conversion"]
    assert conversions == [{"name": "purchase", "value": 42.5}, {"name": "signup"}]
    missing = stack.client.post("/api/v1/conversions", json={**body, "MessageID": 999999}, auth=stack.auth)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "JSON object"),
        ({"Name": "x"}, "MessageID"),
        ({"MessageID": True, "Name": "x"}, "MessageID"),
        ({"MessageID": 1}, "Name"),
        ({"MessageID": 1, "Name": "x" * 101}, "Name"),
        ({"MessageID": 1, "Name": "x", "Value": "9"}, "Value"),
        ({"MessageID": 1, "Name": "x", "Other": 1}, "Unknown properties: Other"),
    ],
)
def test_conversion_input_errors_are_explained(stack: Stack, body: object, problem: str) -> None:
    response = stack.client.post("/api/v1/conversions", json=body, auth=stack.auth)
    assert response.status_code == 400
    assert problem in response.json()["ErrorMessage"]
