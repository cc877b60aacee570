"""Classification of standard reports: RFC 3464 DSNs, RFC 5965 complaints, and what surrounds them."""

from __future__ import annotations

import json

import pytest
from bounce_samples import EXIM, PLAIN, QMAIL, VACATION, arf, dsn

from mailstack.bounce_classify import BounceResult, category_of, classify
from mailstack.compose import ComposeSettings, parse_verp, verp_address
from mailstack.tokens import TokenSigner

SETTINGS = ComposeSettings(
    hostname="mail.example.com",
    bounce_domain="bounces.example.com",
    tokens=TokenSigner(b"feedback-test-secret-0123456789ab"),
)


def test_user_unknown_dsn_is_a_hard_bounce_with_its_codes() -> None:
    [result] = classify(dsn())
    assert result.recipient == "alice@example.org"
    assert (result.category, result.reason) == ("hard", "userunknown")
    assert (result.status, result.reply_code) == ("5.1.1", "550")
    assert result.action == "failed"
    assert result.smtp_command == "RCPT"
    assert result.remote_mta == "mx.example.org"
    assert result.original_message_id == "orig-1@mail.example.com"
    assert "User unknown" in result.diagnostic


def test_each_recipient_of_a_dsn_gets_its_own_verdict() -> None:
    results = classify(
        dsn(
            recipients=(
                ("full@example.org", "failed", "5.2.2", "smtp; 552 5.2.2 Mailbox full"),
                ("gone@example.org", "failed", "5.1.1", "smtp; 550 5.1.1 No such user"),
                ("slow@example.org", "delayed", "4.4.1", "smtp; 421 4.4.1 Connection timed out"),
            )
        )
    )
    got = [(r.recipient, r.category, r.reason, r.status) for r in results]
    assert got == [
        ("full@example.org", "soft", "mailboxfull", "5.2.2"),
        ("gone@example.org", "hard", "userunknown", "5.1.1"),
        ("slow@example.org", "soft", "expired", "4.4.1"),
    ]


def test_a_generic_status_is_refined_by_the_remote_reply() -> None:
    [result] = classify(
        dsn(
            recipients=(
                (
                    "alice@example.org",
                    "failed",
                    "5.0.0",
                    "smtp; 554 5.7.1 Service unavailable; "
                    "Client host [192.0.2.7] blocked using zen.spamhaus.org",
                ),
            )
        )
    )
    assert (result.status, result.reason, result.category) == ("5.7.1", "blocked", "soft")


@pytest.mark.parametrize(
    ("diagnostic", "reason"),
    [
        (
            "smtp; 550 5.7.26 This message does not pass authentication checks "
            "(SPF and DKIM both do not pass)",
            "authfailure",
        ),
        ("smtp; 552 5.3.4 Message size exceeds fixed maximum message size", "mesgtoobig"),
        ("smtp; 554 5.7.1 Relay access denied", "norelaying"),
        ("smtp; 550 5.7.1 Message rejected as spam by Content Filtering", "spamdetected"),
        ("smtp; 550 5.1.2 Host unknown", "hostunknown"),
        ("smtp; 421 4.7.0 Too many connections from your host", "toomanyconn"),
        ("smtp; 550 5.2.1 The email account that you tried to reach is disabled", "suspend"),
    ],
)
def test_reasons_follow_the_diagnostic(diagnostic: str, reason: str) -> None:
    status = diagnostic.split()[2]
    [result] = classify(dsn(recipients=(("alice@example.org", "failed", status, diagnostic),)))
    assert result.reason == reason, result


def test_a_delivered_report_is_not_a_bounce() -> None:
    [result] = classify(dsn(recipients=(("alice@example.org", "delivered", "2.0.0", "smtp; 250 2.0.0 Ok"),)))
    assert (result.category, result.reason) == ("not_bounce", "delivered")


def test_arf_complaint_names_the_complaining_recipient() -> None:
    [result] = classify(arf())
    assert result.recipient == "bob@example.net"
    assert (result.category, result.reason, result.feedback_type) == ("complaint", "feedback", "abuse")
    assert result.original_message_id == "orig-2@mail.example.com"


def test_arf_without_original_rcpt_to_uses_the_reported_message() -> None:
    [result] = classify(arf(rcpt_to=None, feedback_type="fraud"))
    assert (result.recipient, result.category, result.feedback_type) == (
        "bob@example.net",
        "complaint",
        "fraud",
    )


def test_plain_text_bounces_from_exim_and_qmail() -> None:
    [exim] = classify(EXIM)
    assert (exim.recipient, exim.reason, exim.category, exim.status) == (
        "carol@example.org",
        "mailboxfull",
        "soft",
        "5.2.2",
    )
    assert exim.smtp_command == "RCPT" and exim.original_message_id == "orig-3@example.com"
    [qmail] = classify(QMAIL)
    assert (qmail.recipient, qmail.reason, qmail.category) == ("dave@example.org", "hostunknown", "hard")


def test_auto_reply_and_ordinary_mail_are_not_bounces() -> None:
    [vacation] = classify(VACATION)
    assert (vacation.recipient, vacation.category, vacation.reason) == (
        "erin@example.org",
        "not_bounce",
        "vacation",
    )
    [plain] = classify(PLAIN)
    assert (plain.recipient, plain.category, plain.reason) == ("", "not_bounce", "undefined")


def test_verp_return_path_is_recovered_from_the_bounce_headers() -> None:
    address = verp_address(4242, SETTINGS)
    [result] = classify(dsn(to=address, return_path=address))
    assert result.verp_address == address
    assert parse_verp(result.verp_address, SETTINGS) == 4242


def test_verp_from_the_returned_headers_and_from_the_envelope() -> None:
    address = verp_address(7, SETTINGS)
    # The bounce went to a forwarding mailbox: only the returned message still carries the VERP path.
    [result] = classify(dsn(to="ops@example.com", return_path=address))
    assert parse_verp(result.verp_address, SETTINGS) == 7
    [direct] = classify(QMAIL, envelope_recipient=address)
    assert parse_verp(direct.verp_address, SETTINGS) == 7


def test_without_verp_the_returned_message_id_identifies_the_message() -> None:
    [result] = classify(dsn(message_id="<abc.123@mail.example.com>"))
    assert result.verp_address == ""
    assert result.original_message_id == "abc.123@mail.example.com"


def test_amazon_ses_notification() -> None:
    notification = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bouncedRecipients": [
                {
                    "emailAddress": "gone@example.org",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
        },
        "mail": {"commonHeaders": {"messageId": "ses-1@example.com"}},
    }
    raw = (
        b"From: no-reply@sns.amazonaws.com\nTo: ops@example.com\nSubject: AWS Notification Message\n\n"
        + json.dumps(notification).encode()
    )
    [result] = classify(raw)
    assert (result.recipient, result.category, result.reason, result.status) == (
        "gone@example.org",
        "hard",
        "userunknown",
        "5.1.1",
    )
    assert result.original_message_id == "ses-1@example.com"


def test_category_mapping() -> None:
    assert category_of("feedback") == "complaint"
    assert category_of("vacation") == "not_bounce"
    assert category_of("hostunknown") == "hard"
    assert category_of("mailboxfull") == "soft"
    assert category_of("notaccept", "5.1.10") == "hard"
    assert category_of("notaccept", "4.3.2") == "soft"


def test_results_serialise_to_strings() -> None:
    [result] = classify(dsn())
    data = result.to_json()
    assert isinstance(result, BounceResult)
    assert all(isinstance(v, str) for v in data.values())
    assert data["recipient"] == "alice@example.org"
