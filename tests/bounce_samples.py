"""Synthetic bounces, complaints and replies for the feedback tests (shapes taken from real MTAs)."""

from __future__ import annotations


def dsn(
    *,
    to: str = "sender@example.com",
    recipients: tuple[tuple[str, str, str, str], ...] = (
        ("alice@example.org", "failed", "5.1.1", "smtp; 550 5.1.1 <alice@example.org>: User unknown"),
    ),
    return_path: str = "sender@example.com",
    message_id: str = "<orig-1@mail.example.com>",
    text: str = "",
) -> bytes:
    """A Postfix-style RFC 3464 report; ``recipients`` are (address, action, status, diagnostic)."""
    notes = text or "".join(
        f"<{addr}>: host mx.example.org[192.0.2.1] said: {diag.split(';', 1)[1].strip()} "
        "(in reply to RCPT TO command)\n\n"
        for addr, _action, _status, diag in recipients
    )
    blocks = "".join(
        f"Final-Recipient: rfc822; {addr}\nOriginal-Recipient: rfc822;{addr}\nAction: {action}\n"
        f"Status: {status}\nRemote-MTA: dns; mx.example.org\nDiagnostic-Code: {diag}\n\n"
        for addr, action, status, diag in recipients
    )
    return (
        "Return-Path: <>\n"
        f"To: {to}\n"
        "From: MAILER-DAEMON@mta.example.com (Mail Delivery System)\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B0UND"\n'
        "\n"
        "--B0UND\nContent-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n"
        "This is the mail system at host mta.example.com.\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.\n\n"
        f"{notes}"
        "--B0UND\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mta.example.com\nX-Postfix-Queue-ID: 4ABC\n"
        f"X-Postfix-Sender: rfc822; {return_path}\nArrival-Date: Mon, 1 Jan 2024 09:00:00 +0000\n\n"
        f"{blocks}"
        "--B0UND\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n"
        f"Return-Path: <{return_path}>\nFrom: Shop <shop@example.com>\n"
        f"To: {recipients[0][0]}\nSubject: Your order\nMessage-ID: {message_id}\n\n"
        "--B0UND--\n"
    ).encode()


def arf(*, rcpt_to: str | None = "bob@example.net", feedback_type: str = "abuse") -> bytes:
    """An RFC 5965 complaint with the reported message attached."""
    rcpt_line = f"Original-Rcpt-To: {rcpt_to}\n" if rcpt_to else ""
    return (
        "From: fbl@isp.example\nTo: abuse@example.com\nSubject: FW: Your order\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"\n\n'
        "--ARF\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n"
        "--ARF\nContent-Type: message/feedback-report\n\n"
        f"Feedback-Type: {feedback_type}\nUser-Agent: ISP-FBL/1.0\nVersion: 1\n"
        "Original-Mail-From: <b-2a-abcdefghijklmnop@bounces.example.com>\n"
        f"{rcpt_line}Source-IP: 192.0.2.25\nReported-Domain: example.com\n\n"
        "--ARF\nContent-Type: message/rfc822\n\n"
        "Return-Path: <b-2a-abcdefghijklmnop@bounces.example.com>\nFrom: shop@example.com\n"
        "To: Bob <bob@example.net>\nSubject: Your order\nMessage-ID: <orig-2@mail.example.com>\n\nHello\n\n"
        "--ARF--\n"
    ).encode()


EXIM = (
    b"From: Mail Delivery System <Mailer-Daemon@mx.example.com>\n"
    b"To: sender@example.com\n"
    b"Subject: Mail delivery failed: returning message to sender\n"
    b"X-Failed-Recipients: carol@example.org\n"
    b"Auto-Submitted: auto-replied\n\n"
    b"This message was created automatically by mail delivery software.\n\n"
    b"A message that you sent could not be delivered to one or more of its\n"
    b"recipients. This is a permanent error. The following address(es) failed:\n\n"
    b"  carol@example.org\n"
    b"    host mx.example.org [192.0.2.9]\n"
    b"    SMTP error from remote mail server after RCPT TO:<carol@example.org>:\n"
    b"    552 5.2.2 Mailbox full\n\n"
    b"------ This is a copy of the message, including all the headers. ------\n\n"
    b"Return-path: <sender@example.com>\nMessage-Id: <orig-3@example.com>\nFrom: sender@example.com\n"
    b"To: carol@example.org\nSubject: hi\n\nbody\n"
)

QMAIL = (
    b"From: MAILER-DAEMON@mx.example.com\nTo: sender@example.com\nSubject: failure notice\n\n"
    b"Hi. This is the qmail-send program at mx.example.com.\n"
    b"I'm afraid I wasn't able to deliver your message to the following addresses.\n"
    b"This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
    b"<dave@example.org>:\n"
    b"Sorry, I couldn't find any host named example.org. (#5.1.2)\n\n"
    b"--- Below this line is a copy of the message.\n\n"
    b"Return-Path: <sender@example.com>\nMessage-ID: <orig-4@example.com>\nTo: dave@example.org\n\nhi\n"
)

VACATION = (
    b"From: Erin <erin@example.org>\nTo: shop@example.com\nSubject: Out of Office: Your order\n"
    b"Auto-Submitted: auto-replied\n\n"
    b"I am out of the office until Monday and will respond to you upon my return.\n"
)

PLAIN = (
    b"From: Frank <frank@example.org>\nTo: shop@example.com\nSubject: Question about my order\n\n"
    b"Hello, when will my parcel arrive? Thanks, Frank\n"
)
