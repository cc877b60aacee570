"""Link rewriting on hostile and mangled HTML: what a browser sees as a link is tracked, nothing else
changes, nothing raises. (Its cost, linear in the document, is measured by ``bench/bench_tracking.py``
``tracking-links``.)"""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailstack.tracking import MAX_TRACKED_LINKS, MAX_TRACKED_URL, insert_pixel, rewrite_links

MARK = "https://t.invalid/c/"
_MARKED = re.compile(r'href="https://t\.invalid/c/([0-9]+)"')


def mark(position: int, _url: str) -> str:
    return f"{MARK}{position}"


def identity(_position: int, url: str) -> str:
    return url


# --- what a browser sees as a link ----------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "<a " * 8000,  # the reported one: every "<a" an unclosed tag
        "<area " * 6000,
        '<a x="' * 5000,
        "<a href=" * 4000,
        "<!--" * 8000,
        "<!--x--!>" * 3000,
        "<a\t/ / /" * 4000,
        "</a " * 8000,
        "<style>" * 5000,
        "&#" + "1" * 20000,
    ],
)
def test_hostile_documents_are_left_as_they_are(hostile: str) -> None:
    assert rewrite_links(hostile, mark) == (hostile, [])


def test_a_numeric_reference_of_thousands_of_digits_does_not_raise() -> None:
    # html.unescape() raises ValueError on it (int() refuses > 4300 digits): a browser reads U+FFFD.
    doc = f'<a href="https://x.example/?q=&#{"9" * 5000};">x</a>'
    _out, links = rewrite_links(doc, mark)
    assert [link.url for link in links] == ["https://x.example/?q=%EF%BF%BD"]


def test_legacy_entity_names_in_a_query_stay_as_written() -> None:
    # In an href "&copy=2" is not "©=2" for a browser (no ";", then "="), nor "&notit" "¬it" (then
    # a letter); "&amp;" is "&", "&notin;" "∉".
    doc = '<a href="https://x.example/?a=1&copy=2&amp;b=3&lt;&notin;&notit">x</a>'
    _out, links = rewrite_links(doc, mark)
    assert [link.url for link in links] == ["https://x.example/?a=1&copy=2&b=3%3C%E2%88%89&notit"]


def test_links_the_browser_does_not_see_are_not_tracked() -> None:
    doc = (
        "<!-- <a href='https://in-comment.example/'> -->"
        "<!--> <a href='https://after-abrupt-comment.example/'>"  # "<!-->" closes the comment at once
        "<style>a::after{content:'<a href=\"https://in-style.example/\">'}</style>"
        "<title><a href='https://in-title.example/'></title>"
        "<textarea><a href='https://in-textarea.example/'></TEXTAREA >"
        "<p>href='https://in-text.example/' and a lone < sign</p>"
        "</a href='https://end-tag.example/'>"
        "<![CDATA[<a href='https://cdata.example/'>]]>"  # a bogus comment up to its first ">"
        "<abbr href='https://other-tag.example/'>"
        "<a/href='https://after-slash.example/'>"
        '<a title="x"href="https://no-space.example/">'
        "<a href = 'https://spaced.example/' >"
        "<A HREF=https://unquoted.example/x>"
        "<a href='https://first.example/' href='https://duplicate.example/'>"
    )
    _out, links = rewrite_links(doc, mark)
    urls = [link.url for link in links]
    assert urls == [
        "https://after-abrupt-comment.example/",
        "https://after-slash.example/",
        "https://no-space.example/",
        "https://spaced.example/",
        "https://unquoted.example/x",
        "https://first.example/",
    ]


def test_markup_never_closed_hides_the_rest_as_in_a_browser() -> None:
    for opening in ("<!-- unclosed ", '<a title="unclosed ', "<script>", "<plaintext>", "<p class=x "):
        doc = f"<a href='https://before.example/'>{opening}<a href='https://after.example/'>x</a>"
        _out, links = rewrite_links(doc, mark)
        assert [link.url for link in links] == ["https://before.example/"], opening


def test_only_the_first_links_up_to_the_cap_are_tracked() -> None:
    doc = "".join(f'<a href="https://x.example/{i}">{i}</a>' for i in range(MAX_TRACKED_LINKS + 20))
    out, links = rewrite_links(doc, mark)
    assert len(links) == MAX_TRACKED_LINKS
    assert [link.position for link in links] == list(range(1, MAX_TRACKED_LINKS + 1))
    cut = f'<a href="https://x.example/{MAX_TRACKED_LINKS}">'
    assert out.endswith(doc[doc.index(cut) :])  # the rest as written


def test_the_pixel_goes_before_the_last_body_end_of_a_hostile_document() -> None:
    doc = "</body " * 5000 + "</BODY\t>" + "</body" * 3000
    img = insert_pixel("", "https://p/o")
    at = doc.index("</BODY\t>")
    assert insert_pixel(doc, "https://p/o") == doc[:at] + img + doc[at:]


# --- properties over generated and mangled HTML ---------------------------------------------------

URL = st.one_of(
    st.from_regex(r"https?://[a-z]{1,8}\.example/[a-zA-Z0-9/?=&;%._~-]{0,24}", fullmatch=True),
    st.builds(
        lambda host, path: f"https://{host}.example/{path}",
        st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=6),
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    ),
    st.sampled_from(["mailto:a@b.example", "#top", "javascript:x()", "https://{{var:x}}/", "", "http://"]),
)
ATTRIBUTE = st.one_of(
    st.builds(lambda q, url: f"href={q}{html.escape(url, quote=True)}{q}", st.sampled_from(['"', "'"]), URL),
    st.builds(lambda url: "href=" + re.sub(r"[\t\n\f\r >\"']", "", url), URL),
    st.sampled_from(
        ["data-notrack", "mj-notrack", 'class="x > y"', "title='<a href=x>'", "/", "=", "x=", "a"]
    ),
)
FRAGMENT = st.one_of(
    st.builds(
        lambda name, attributes, end: f"<{name} {' '.join(attributes)}{end}",
        st.sampled_from(["a", "A", "area", "AREA", "abbr", "p", "img", "style", "title", "script", "x"]),
        st.lists(ATTRIBUTE, max_size=3),
        st.sampled_from([">", "/>", " >", "", '"', "'"]),
    ),
    st.sampled_from(
        [
            "</a>",
            "</style>",
            "</title >",
            "</script>",
            "<!--",
            "-->",
            "--!>",
            "<!-->",
            "<!DOCTYPE html>",
            "<?php ?>",
            "<![CDATA[",
            "]]>",
            "<",
            ">",
            '"',
            "'",
            "=",
            "&amp;",
            "&#",
            "&copy",
            "</",
            "</>",
            "</body>",
            "\t",
            "\n",
            "\x0c",
            " ",
        ]
    ),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=10),
)
DOCUMENT = st.lists(FRAGMENT, max_size=40).map("".join)
# Arbitrary text from the characters that matter to markup: deletions and insertions anywhere.
MANGLED = st.text(alphabet=st.sampled_from("<>!-/=\"'&#; \taAhrefs:./x"), max_size=300)
ANY_DOCUMENT = st.one_of(DOCUMENT, MANGLED)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_DOCUMENT)
def test_only_href_attributes_change_and_everything_else_is_kept(doc: str) -> None:
    out, links = rewrite_links(doc, mark)
    pieces = _MARKED.split(out)
    texts, positions = pieces[0::2], [int(p) for p in pieces[1::2]]
    assert positions == [link.position for link in links] == list(range(1, len(links) + 1))
    # Putting each replaced href back gives the document: what lies between them is untouched.
    at = 0
    for index, text in enumerate(texts):
        found = doc.find(text, at) if index else (0 if doc.startswith(text) else -1)
        assert found >= 0, (doc, out)
        if index:
            replaced = doc[at:found]
            assert replaced[:4].lower() == "href" and "=" in replaced, (doc, replaced)
        at = found + len(text)
    assert at == len(doc)
    # Output grows by at most the new attributes, and only the first MAX_TRACKED_LINKS are tracked.
    assert len(links) <= MAX_TRACKED_LINKS
    assert len(out) <= len(doc) + sum(len(f'href="{mark(link.position, "")}"') for link in links)
    for link in links:
        assert len(link.url) <= MAX_TRACKED_URL and re.fullmatch(r"https?://[!-~]+", link.url), link.url


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_DOCUMENT)
def test_rewriting_twice_gives_the_same_links_and_the_same_document(doc: str) -> None:
    once, first = rewrite_links(doc, identity)
    twice, second = rewrite_links(once, identity)
    assert twice == once and second == first


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["", "<!-- ", " -->", "<style>", "</style>", "<title>", "</title>", "<p>"]),
        max_size=6,
    ),
    URL,
)
def test_hrefs_outside_tags_are_never_touched(context: list[str], url: str) -> None:
    # The same text as a link would be, but in text, a comment or raw text: never a tag of its own.
    written = f'href="{html.escape(url, quote=True)}"'
    doc = "".join(context) + f"<p>{written}</p><!-- <a {written}> --><style><a {written}></style>"
    out, _links = rewrite_links(doc, mark)
    assert out.count(written) == doc.count(written)
