"""Generated reports: RFC 3464 DSNs, RFC 5965 complaints and auto-replies built from their grammar.

What must hold for any such report, whoever wrote it: every recipient it names is found, in order,
with its own status; a delivered or relayed recipient is no bounce; a complaint is a complaint even
when its MIME type is wrong; the number of results stays bounded however many recipients are named.
"""

from __future__ import annotations

from bounce_samples import dsn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailstack.bounce_classify import classify
from mailstack.bounce_classify._classify import _classify

LOCAL = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20).filter(
    lambda s: s[0].isalnum() and s[-1].isalnum() and ".." not in s
)
DOMAIN = st.sampled_from(["example.org", "mail.example.net", "example.co.jp", "xn--bcher-kva.example"])
ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)
# Neutral remote texts: nothing in them names a reason, so the codes alone must carry the verdict.
TEXT = st.sampled_from(["", "Requested action not taken", "Error", "Rejected", "see the admin", "#"])
FAILED_STATUS = st.builds(
    lambda klass, subject, detail: f"{klass}.{subject}.{detail}",
    st.sampled_from("45"),
    st.integers(0, 7),
    st.integers(0, 30),
)


@st.composite
def recipients(draw: st.DrawFn) -> tuple[tuple[str, str, str, str], ...]:
    """(address, action, status, diagnostic) for 1-6 distinct recipients."""
    addresses = draw(st.lists(ADDRESS, min_size=1, max_size=6, unique_by=str.lower))
    out = []
    for address in addresses:
        action = draw(st.sampled_from(["failed", "failed", "delayed", "delivered", "relayed"]))
        status = "2.0.0" if action in ("delivered", "relayed") else draw(FAILED_STATUS)
        if action == "delayed":
            status = "4" + status[1:]
        reply = {"2": "250", "4": "450", "5": "550"}[status[0]]
        diagnostic = f"smtp; {reply} {status} <{address}>: {draw(TEXT)}"
        out.append((address, action, status, diagnostic))
    return tuple(out)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipients())
def test_every_recipient_of_a_generated_dsn_is_found_with_its_status(
    rcpts: tuple[tuple[str, str, str, str], ...],
) -> None:
    results = _classify(dsn(recipients=rcpts), None)
    assert [r.recipient.lower() for r in results] == [a.lower() for a, _, _, _ in rcpts]
    for result, (_, action, status, _) in zip(results, rcpts, strict=True):
        if action in ("delivered", "relayed"):
            assert (result.category, result.reason) == ("not_bounce", "delivered")
            continue
        assert result.status == status
        assert result.category in ("hard", "soft")
        assert result.reason not in ("", "delivered", "vacation", "feedback")
        if status in ("5.1.1", "5.1.2") and action == "failed":
            # RFC 3463: bad destination mailbox / system address, whatever the text says.
            assert result.category == "hard", (status, result)
        if status.startswith("4.") and action == "delayed" and status not in ("4.1.1", "4.1.2"):
            assert result.category == "soft", (status, result)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(480, 800))
def test_a_dsn_naming_many_recipients_gives_a_bounded_answer(count: int) -> None:
    rcpts = tuple(
        (f"user{i}@example.org", "failed", "5.1.1", f"smtp; 550 5.1.1 <user{i}@example.org>: unknown")
        for i in range(count)
    )
    results = classify(dsn(recipients=rcpts))
    assert len(results) == min(count, 500)
    assert {r.category for r in results} == {"hard"}


FEEDBACK_TYPES = st.sampled_from(["abuse", "fraud", "virus", "other", "not-spam", "Abuse"])


@st.composite
def complaints(draw: st.DrawFn) -> tuple[bytes, str]:
    """An ARF report, sometimes with the wrong container or part type (as some providers send)."""
    rcpt = draw(ADDRESS)
    container = draw(
        st.sampled_from(
            [
                'multipart/report; report-type=feedback-report; boundary="B"',
                'multipart/report; boundary="B"',
                'multipart/mixed; boundary="B"',
            ]
        )
    )
    part_type = draw(st.sampled_from(["message/feedback-report", "text/plain", "text/feedback-report"]))
    fields = (
        f"Feedback-Type: {draw(FEEDBACK_TYPES)}\nUser-Agent: {draw(st.sampled_from(['FBL/1', 'x']))}\n"
        f"Version: 1\nOriginal-Rcpt-To: {rcpt}\nArrival-Date: Mon, 1 Jan 2024 09:00:00 +0000\n"
    )
    subject = draw(st.sampled_from(["FW", "Report", ""]))
    raw = (
        f"From: fbl@isp.example\nTo: abuse@example.com\nSubject: {subject}\n"
        f"MIME-Version: 1.0\nContent-Type: {container}\n\n"
        "--B\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n"
        f"--B\nContent-Type: {part_type}\n\n{fields}\n"
        "--B\nContent-Type: message/rfc822\n\n"
        f"From: shop@example.com\nTo: {rcpt}\nSubject: hi\nMessage-ID: <m1@example.com>\n\nHello\n\n--B--\n"
    )
    return raw.encode(), rcpt


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(complaints())
def test_feedback_reports_are_complaints_whatever_their_mime_type(report: tuple[bytes, str]) -> None:
    raw, rcpt = report
    [result] = _classify(raw, None)
    assert (result.category, result.reason) == ("complaint", "feedback")
    assert result.recipient.lower() == rcpt.lower()


@st.composite
def auto_replies(draw: st.DrawFn) -> bytes:
    marker = draw(
        st.sampled_from(
            [
                "Auto-Submitted: auto-replied\n",
                "X-Autoreply: yes\n",
                "Precedence: auto_reply\n",
                "X-Auto-Response-Suppress: All\n",
            ]
        )
    )
    subject = draw(st.sampled_from(["Out of Office: hi", "Automatic reply: hi", "Re: hi", "Abwesenheit"]))
    body = draw(
        st.sampled_from(
            [
                "I am out of the office until Monday.",
                "I am away on vacation with limited access to email.",
                "Thank you for your message, I will answer upon my return.",
            ]
        )
    )
    head = f"From: Erin <erin@example.org>\nTo: shop@example.com\nSubject: {subject}\n{marker}"
    return f"{head}\n{body}\n".encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(auto_replies())
def test_auto_replies_are_not_bounces(raw: bytes) -> None:
    for result in _classify(raw, None):
        assert result.category == "not_bounce", result
