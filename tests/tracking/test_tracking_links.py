"""Pure tracking parts: link rewriting, the pixel, token formats, the compose step, bot detection."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstack.model import Address, Envelope, MessageSpec, RecipientKind
from mailstack.tokens import InvalidToken, TokenSigner
from mailstack.tracking import (
    MAX_TRACKED_URL,
    Detector,
    Tracker,
    TrackingUrls,
    insert_pixel,
    rewrite_links,
    tracking_wanted,
)

SIGNER = TokenSigner(b"k" * 32)
URLS = TrackingUrls(SIGNER, "https://t.example.com/")


def fake(position: int, url: str) -> str:
    return f"https://t/{position}?u={url}"


# --- rewriting ------------------------------------------------------------------------------------


def test_rewrites_http_links_in_order_and_keeps_everything_else() -> None:
    doc = (
        '<p>Hi <a href="https://shop.example/a?x=1&amp;y=2" class=btn>Buy</a> '
        "<A HREF='http://example.org/b'>B</A> <a href=\"mailto:x@y.z\">mail</a> "
        '<a href="#top">top</a> <a name=anchor>no href</a> <area href="https://map.example/c"></p>'
    )
    out, links = rewrite_links(doc, fake)
    assert [(link.position, link.url) for link in links] == [
        (1, "https://shop.example/a?x=1&y=2"),  # entities decoded: the real URL is tracked
        (2, "http://example.org/b"),
        (3, "https://map.example/c"),
    ]
    assert 'href="https://t/1?u=https://shop.example/a?x=1&amp;y=2" class=btn>Buy</a>' in out
    assert '<A href="https://t/2?u=http://example.org/b">B</A>' in out
    assert '<a href="mailto:x@y.z">mail</a>' in out and '<a href="#top">top</a>' in out
    assert "<a name=anchor>no href</a>" in out


def test_skips_opted_out_placeholder_comment_and_overlong_links() -> None:
    long_url = "https://example.com/" + "a" * MAX_TRACKED_URL
    doc = (
        '<a href="https://a.example/" data-notrack>1</a>'
        '<a mj-notrack href="https://b.example/">2</a>'
        '<a href="https://c.example/?u={{var:id}}">3</a>'
        '<!--[if mso]><a href="https://d.example/">4</a><![endif]-->'
        f'<a href="{long_url}">5</a>'
        '<a href="https://t.example.com/unsubscribe/x.y">unsub</a>'
        '<a href="https://e.example/">6</a>'
    )
    out, links = rewrite_links(doc, fake, skip_prefix="https://t.example.com/unsubscribe/")
    assert [link.url for link in links] == ["https://e.example/"]
    assert out == doc.replace('href="https://e.example/"', 'href="https://t/1?u=https://e.example/"')


def test_attribute_values_containing_angle_brackets_do_not_confuse_the_parser() -> None:
    doc = '<a title="a > b" href="https://x.example/">x</a>'
    out, links = rewrite_links(doc, fake)
    assert [link.url for link in links] == ["https://x.example/"]
    assert out == '<a title="a > b" href="https://t/1?u=https://x.example/">x</a>'


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_documents_without_links_are_untouched(text: str) -> None:
    doc = text.replace("<", "&lt;")
    assert rewrite_links(doc, fake) == (doc, [])


@given(
    st.lists(st.from_regex(r"https://[a-z]{1,10}\.example/[a-z0-9/?=&]{0,20}", fullmatch=True), max_size=8)
)
def test_every_link_round_trips_through_a_real_click_token(targets: list[str]) -> None:
    doc = "".join(f'<p><a href="{html.escape(t)}">l</a></p>' for t in targets)
    out, links = rewrite_links(doc, lambda pos, url: URLS.click_url(7, pos, url))
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', out)]
    assert len(hrefs) == len(targets) == len(links)
    for position, (href, target) in enumerate(zip(hrefs, targets, strict=True), start=1):
        token = href.removeprefix("https://t.example.com/t/c/")
        resolved = URLS.click_target(token)
        assert (resolved.message_id, resolved.position, resolved.url) == (7, position, target)


def test_pixel_goes_before_the_last_body_end_or_at_the_end() -> None:
    assert insert_pixel("<html><body><p>x</p></BODY></html>", "https://p/o?a=1&b=2") == (
        '<html><body><p>x</p><img src="https://p/o?a=1&amp;b=2" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0" /></BODY></html>'
    )
    assert insert_pixel("<p>x</p>", "https://p/o").startswith('<p>x</p><img src="https://p/o"')


# --- tokens ---------------------------------------------------------------------------------------


def token_of(url: str, kind: str) -> str:
    return url.removeprefix(f"https://t.example.com/t/{kind}/")


def test_click_tokens_bind_message_position_and_target() -> None:
    token = token_of(URLS.click_url(42, 3, "https://shop.example/p?id=9"), "c")
    target = URLS.click_target(token)
    assert (target.message_id, target.position, target.url) == (42, 3, "https://shop.example/p?id=9")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # altered MAC
        lambda t: t.split(".")[0][:-2] + "xx." + t.split(".")[1],  # altered payload
        lambda t: t + "=",  # padding / non-canonical
        lambda t: "",
        lambda t: "." * 30,
        lambda t: t.split(".")[0],  # MAC stripped
    ],
)
def test_altered_click_tokens_are_refused(mangle: object) -> None:
    token = token_of(URLS.click_url(42, 1, "https://shop.example/"), "c")
    assert callable(mangle)
    with pytest.raises(InvalidToken):
        URLS.click_target(mangle(token))


def test_forged_tokens_are_refused() -> None:
    # Signed with another key, or for another purpose: the open/unsubscribe token of the same message
    # must not redirect, and a token naming evil.example can only come from the signer.
    other = TrackingUrls(TokenSigner(b"x" * 32), "https://t.example.com")
    forged = token_of(other.click_url(42, 1, "https://evil.example/"), "c")
    with pytest.raises(InvalidToken):
        URLS.click_target(forged)
    open_token = token_of(URLS.open_url(42), "o")
    with pytest.raises(InvalidToken):
        URLS.click_target(open_token)
    with pytest.raises(InvalidToken):
        URLS.open_message(SIGNER.sign("click", "42:1:https://x.example/"))
    # A well-signed payload that is not a web link is refused too (defence in depth).
    with pytest.raises(InvalidToken):
        URLS.click_target(SIGNER.sign("click", "42:1:javascript:alert(1)"))


def test_open_and_unsubscribe_tokens() -> None:
    assert URLS.open_message(token_of(URLS.open_url(99), "o")) == 99
    unsub = URLS.unsubscribe_url(99).removeprefix("https://t.example.com/unsubscribe/")
    assert URLS.unsubscribe_message(unsub) == 99
    # The composer signs List-Unsubscribe tokens with the same signer and purpose.
    assert URLS.unsubscribe_message(SIGNER.sign("unsubscribe", 5)) == 5


# --- the compose step -----------------------------------------------------------------------------


def envelope(**spec: object) -> Envelope:
    base: dict[str, object] = {
        "sender": Address("news@example.com"),
        "to": (Address("ana@example.net"),),
        "html": '<html><body><a href="https://shop.example/">Shop</a> [[UNSUB_LINK_EN]]</body></html>',
        "text": "Shop at https://shop.example/ or leave: [[UNSUB_LINK]]",
    }
    base.update(spec)
    return Envelope(11, "u-11", Address("ana@example.net"), RecipientKind.TO, MessageSpec(**base))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        ("enabled", False, True),
        ("disabled", True, False),
        ("account_default", True, True),
        ("account_default", False, False),
    ],
)
def test_tracking_wanted(value: str, default: bool, expected: bool) -> None:
    assert tracking_wanted(value, default) is expected


def test_tracker_tracks_by_default_and_fills_unsubscribe_links() -> None:
    tracked = Tracker(URLS).apply(envelope())
    doc = tracked.spec.html
    assert doc is not None
    assert "https://t.example.com/t/c/" in doc and "https://t.example.com/t/o/" in doc
    assert 'href="https://shop.example/"' not in doc
    unsubscribe = URLS.unsubscribe_url(11)
    assert html.escape(unsubscribe, quote=True) in doc
    assert tracked.spec.text == f"Shop at https://shop.example/ or leave: {unsubscribe}"


def test_tracker_honours_per_message_choices() -> None:
    tracker = Tracker(URLS, opens=True, clicks=True)
    none = tracker.apply(
        envelope(
            track_opens="disabled", track_clicks="disabled", text=None, html="<a href='https://a.b/'>x</a>"
        )
    )
    assert none.spec.html == "<a href='https://a.b/'>x</a>"
    off_by_default = Tracker(URLS, opens=False, clicks=False)
    opens_only = off_by_default.apply(envelope(track_opens="enabled"))
    assert opens_only.spec.html is not None
    assert "/t/o/" in opens_only.spec.html and "/t/c/" not in opens_only.spec.html
    clicks_only = off_by_default.apply(envelope(track_clicks="enabled"))
    assert clicks_only.spec.html is not None
    assert "/t/o/" not in clicks_only.spec.html and "/t/c/" in clicks_only.spec.html


def test_tracker_leaves_smtp_submitted_mail_alone() -> None:
    raw = envelope(raw=b"Subject: x\r\n\r\n<a href='https://a.b/'>x</a>\r\n")
    assert Tracker(URLS).apply(raw) is raw


# --- machine detection ----------------------------------------------------------------------------

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"


def test_open_detection() -> None:
    detector = Detector(proxy_networks=["198.51.100.0/24"])
    assert detector.open(BROWSER, "203.0.113.9").machine is False
    apple = detector.open("Mozilla/5.0", "203.0.113.9")
    assert apple.machine and apple.proxy == "apple"
    assert detector.open(BROWSER, "17.58.1.2").machine  # Apple's network
    assert detector.open(BROWSER, "::ffff:17.58.1.2").machine
    google = detector.open(
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        "66.249.1.1",
    )
    assert google.machine is False and google.proxy == "google"  # fetched when a person opens
    assert detector.open(BROWSER, "198.51.100.7").machine  # configured proxy network
    assert detector.open("", "203.0.113.9").machine
    assert detector.open("python-requests/2.31", "203.0.113.9").machine


def test_click_detection() -> None:
    detector = Detector(scanner_networks=["192.0.2.0/24"])
    assert detector.click(BROWSER, "203.0.113.9", "GET").machine is False
    assert detector.click(BROWSER, "203.0.113.9", "HEAD").reason == "method-head"
    assert detector.click(BROWSER, "192.0.2.5", "GET").reason == "scanner-network"
    assert detector.click("Mozilla/5.0 (compatible; Barracuda Sentinel)", "203.0.113.9", "GET").machine
    assert detector.click("Microsoft Office Existence Discovery", "203.0.113.9", "GET").machine
    assert detector.click("", "203.0.113.9", "GET").machine
