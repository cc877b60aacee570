"""Tracked links to IRIs, through the real HTTP click path (uvicorn on loopback, as ``serve`` runs it).

An href may hold non-ASCII text (``https://ru.wikipedia.org/wiki/Москва``, ``https://例え.jp/``,
``?q=ü``) or a control character; a ``Location`` header can hold neither. Links rewritten now carry
the ASCII URI a browser would request, and links minted before (stored in mail already sent) are
converted when clicked: the answer is a redirect with an ASCII ``Location`` or an error page, never a
500 and never a dropped connection.
"""

from __future__ import annotations

import html
import http.client
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from ada_url import URL
from engagement_support import DOMAIN, Stack, html_part, links_in, make_stack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import free_port

from mailstack.tracking import TrackingUrls, rewrite_links

PUBLIC = "https://track.example.com"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


@dataclass(frozen=True)
class Click:
    status: int
    location: bytes | None  # the header's bytes as sent
    text: str


@dataclass
class Served:
    stack: Stack  # the app, its runtime and a delivery worker
    client: httpx.Client  # the API over a real socket
    port: int
    urls: TrackingUrls

    def click(self, tracked: str) -> Click:
        """GET a click link with http.client, which (unlike httpx) leaves the Location unparsed."""
        assert tracked.startswith(f"{PUBLIC}/t/c/"), tracked
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", tracked.removeprefix(PUBLIC), headers={"User-Agent": BROWSER})
            response = connection.getresponse()
            location = response.getheader("Location")
            body = response.read().decode("utf-8", "replace")
        finally:
            connection.close()
        # http.client decodes header bytes as Latin-1: encoding back gives the bytes sent.
        return Click(response.status, None if location is None else location.encode("latin-1"), body)

    def mint(self, url: str) -> str:
        """A click link as earlier versions minted it: the href's text, unconverted, inside the MAC."""
        return self.urls.click_url(1, 1, url)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp_path = tmp_path_factory.mktemp("iri")
    with make_stack(tmp_path, f"sqlite:///{tmp_path / 'mailstack.db'}") as stack:
        port = free_port()
        # The stack's client already runs the app's lifespan (the tracking recorder): uvicorn only serves.
        app = stack.client.app
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        urls = TrackingUrls(stack.runtime.compose_settings.tokens, PUBLIC)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=stack.auth, timeout=10) as client:
                yield Served(stack, client, port, urls)
        finally:
            server.should_exit = True
            thread.join(30)


def sent_links(served: Served, document: str) -> list[str]:
    """Send ``document`` as HTMLPart through the API, deliver it, and return the hrefs of the copy."""
    message = {
        "From": {"Email": f"news@{DOMAIN}"},
        "To": [{"Email": "ana@example.net"}],
        "Subject": "Links",
        "HTMLPart": document,
    }
    response = served.client.post("/v3.1/send", json={"Messages": [message]})
    assert response.status_code == 200, response.text
    message_id = response.json()["Messages"][0]["To"][0]["MessageID"]
    assert served.stack.deliver() == 1
    outbox = served.client.get(f"/api/v1/outbox/{message_id}")
    assert outbox.status_code == 200, outbox.text
    return links_in(html_part(outbox.content))


IRIS = [
    (
        "https://ru.wikipedia.org/wiki/Москва",
        "https://ru.wikipedia.org/wiki/%D0%9C%D0%BE%D1%81%D0%BA%D0%B2%D0%B0",
    ),
    ("https://例え.jp/", "https://xn--r8jz45g.jp/"),
    ("https://shop.example/search?q=ü", "https://shop.example/search?q=%C3%BC"),
    ("https://shop.example/a\x0cb", "https://shop.example/a%0Cb"),  # a form feed
    ("https://shop.example/a b?c=d e#f g", "https://shop.example/a%20b?c=d%20e#f%20g"),
    ("https://BÜCHER.example/Straße", "https://xn--bcher-kva.example/Stra%C3%9Fe"),
]


def test_links_to_iris_are_rewritten_to_the_uri_a_browser_requests(served: Served) -> None:
    document = "".join(f'<p><a href="{html.escape(iri, quote=True)}">link</a></p>' for iri, _ in IRIS)
    tracked = sent_links(served, document)
    assert len(tracked) == len(IRIS)
    for link, (iri, uri) in zip(tracked, IRIS, strict=True):
        response = served.click(link)
        assert response.status == 302, (iri, response.status, response.text)
        assert response.location == uri.encode("ascii")


@pytest.mark.parametrize(("iri", "uri"), IRIS)
def test_links_minted_before_the_conversion_still_redirect(served: Served, iri: str, uri: str) -> None:
    # Mail already sent carries tokens over the raw IRI: the redirect converts it when clicked.
    response = served.click(served.mint(iri))
    assert response.status == 302, response.text
    assert response.location == uri.encode("ascii")


@pytest.mark.parametrize(
    "url",
    ["https://ex\x0cample.com/", "https://exa mple.com/", "https://ex.com:99999/", "https://1.2.3.999/"],
)
def test_stored_links_no_browser_would_follow_get_an_error_page(served: Served, url: str) -> None:
    response = served.click(served.mint(url))
    assert response.status == 404
    assert response.location is None and "not valid" in response.text
    assert served.client.get("/healthz").status_code == 200  # the connection and the server are fine


# --- generated IRIs ---------------------------------------------------------------------------------

LABEL = st.text(st.characters(codec="utf-8", categories=["L", "N", "M"]), min_size=1, max_size=10)
ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
IRI = st.builds(
    lambda scheme, labels, port, path, query, fragment: (
        f"{scheme}://{'.'.join(labels)}{port}/{path}{query}{fragment}"
    ),
    st.sampled_from(["http", "https", "HTTPS"]),
    st.lists(LABEL, min_size=1, max_size=3),
    st.sampled_from(["", ":8080", ":443"]),
    ANY_TEXT,
    st.one_of(st.just(""), ANY_TEXT.map(lambda q: f"?{q}")),
    st.one_of(st.just(""), ANY_TEXT.map(lambda f: f"#{f}")),
)


def browser_host(url: str) -> str | None:
    """The host a browser would go to for ``url``, or None when it would not follow it."""
    try:
        return URL(url).hostname
    except ValueError:
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(IRI)
def test_any_iri_redirects_to_an_ascii_location_on_the_same_host_or_gets_an_error_page(
    served: Served, iri: str
) -> None:
    host = browser_host(iri)
    _out, links = rewrite_links(f'<a href="{html.escape(iri, quote=True)}">x</a>', lambda _p, url: url)
    tracked = [served.urls.click_url(1, link.position, link.url) for link in links]
    for link in [served.mint(iri), *tracked]:
        response = served.click(link)
        if host is None:
            assert response.status == 404, (iri, response.status)
            assert links == []  # never rewritten either
            continue
        assert response.status == 302, (iri, response.status, response.text)
        location = response.location
        assert location is not None
        assert location.isascii() and all(0x21 <= byte <= 0x7E for byte in location), location
        assert URL(location.decode("ascii")).hostname == host
