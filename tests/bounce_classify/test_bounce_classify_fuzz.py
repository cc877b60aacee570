"""Bad input: malformed MIME, huge headers, broken charsets, truncated reports. Always an answer.

The public ``classify`` has a last-resort guard against any exception; these tests also drive the
parser beneath it directly, so that a crash is a test failure and not silently absorbed by the guard.
"""

from __future__ import annotations

from bounce_samples import EXIM, QMAIL, VACATION, arf, dsn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailstack.bounce_classify import classify
from mailstack.bounce_classify._classify import _classify
from mailstack.bounce_classify._reasons import _UNBOUNDED, ALL_RULES, phrase_tables

SEEDS = [dsn(), arf(), EXIM, QMAIL, VACATION]
CATEGORIES = {"hard", "soft", "complaint", "not_bounce"}


def _check(raw: bytes) -> None:
    inner = _classify(raw, None)  # must not raise
    results = classify(raw)
    assert results, "classify must always answer"
    assert inner == results or not inner
    for result in results:
        assert result.category in CATEGORIES
        assert result.reason
        assert isinstance(result.recipient, str) and isinstance(result.status, str)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real report, cut short, with bytes spliced in or replaced."""
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["cut", "insert", "replace"]))
        junk = draw(st.binary(max_size=64))
        if action == "cut":
            del raw[at:]
        elif action == "insert":
            raw[at:at] = junk
        else:
            raw[at : at + len(junk)] = junk
    return bytes(raw)


@st.composite
def broken_mime(draw: st.DrawFn) -> bytes:
    """Hand-built MIME with bad boundaries, charsets, encodings and nesting."""
    charset = draw(
        st.sampled_from(["utf-8", "x-unknown", "iso-2022-jp", "utf-7", "", '"', "unicode-1-1-utf-7"])
    )
    cte = draw(st.sampled_from(["7bit", "base64", "quoted-printable", "x-uuencode", "bogus"]))
    boundary = draw(st.sampled_from(["B", "", "=_a b", '"']))
    depth = draw(st.integers(0, 30))
    body = draw(st.binary(max_size=300))
    report = draw(st.sampled_from(["delivery-status", "feedback-report", "", "x"]))
    head = (
        f"From: MAILER-DAEMON@example.com\nSubject: =?{charset}?B?{draw(st.text(max_size=20))}?=\n"
        f"Content-Type: multipart/report; report-type={report}; boundary={boundary}\n\n"
    ).encode("utf-8", "surrogatepass")
    nested = b"".join(
        f"--{boundary}\nContent-Type: multipart/mixed; boundary={boundary}{i}\n\n".encode()
        for i in range(depth)
    )
    part = (
        (
            f"--{boundary}\nContent-Type: message/delivery-status; charset={charset}\n"
            f"Content-Transfer-Encoding: {cte}\n\n"
        ).encode()
        + body
        + b"\nFinal-Recipient: rfc822; x@example.org\nStatus: 5.1.1\n"
    )
    return head + nested + part


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_random_bytes(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_truncated_and_corrupted_reports(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_mime())
def test_malformed_mime_and_charsets(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(10_000, 400_000), st.sampled_from([b"Subject", b"X-Long", b"Final-Recipient"]))
def test_huge_headers(size: int, name: bytes) -> None:
    _check(name + b": " + b"a" * size + b"\n" + dsn())
    _check(
        dsn().replace(b"Reporting-MTA: dns; mta.example.com", b"Reporting-MTA: " + b"x@y.z " * (size // 6))
    )


def test_empty_and_degenerate_inputs() -> None:
    for raw in (
        b"",
        b"\n",
        b"\x00" * 100,
        b"From \n",
        b"Content-Type: multipart/report\n\n--",
        b"\xff\xfe" * 50,
    ):
        _check(raw)


def test_no_phrase_rescans_the_rest_of_the_text() -> None:
    """An unbounded ``.+``/``[^ ]+`` in a phrase is re-run from every place its prefix occurs: quadratic
    on "user user user ..." (80 KB took 5 s). Every compiled phrase table bounds its repetitions."""
    for name in phrase_tables():
        pattern = ALL_RULES.pattern(name)
        assert pattern is None or _UNBOUNDED.search(pattern.pattern) is None, name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["user ", "<", "<br", "-", "=", "host domain ", "x@", "<script ", "-- original "]),
    st.sampled_from(["text/plain", "text/html", "message/delivery-status"]),
)
def test_long_runs_of_one_token_are_read(unit: str, part_type: str) -> None:
    run = unit * (20_000 // len(unit))
    raw = (
        "From: MAILER-DAEMON@example.com\nSubject: Undelivered Mail\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        f"--B\nContent-Type: {part_type}\n\n{run}\n"
        "--B\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@example.org\n"
        f"Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 {run}\n\n--B--\n"
    ).encode()
    _check(raw)
    assert classify(raw)[0].recipient == "a@example.org"
