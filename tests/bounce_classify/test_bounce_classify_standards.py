"""Verdicts that follow from the standards (RFC 5321 stages, RFC 3463 classes, RFC 6532 headers) rather
than from any one mail system's wording."""

from __future__ import annotations

from bounce_samples import dsn

from mailstack.bounce_classify import classify, phrase_in, phrase_tables
from mailstack.bounce_classify._reasons import _alternatives, normalise


def _one(address: str, action: str, status: str, diagnostic: str, text: str = "") -> tuple[str, str]:
    [result] = classify(dsn(recipients=((address, action, status, diagnostic),), text=text))
    return result.category, result.reason


def test_an_addressing_status_in_reply_to_mail_from_is_the_sender_refused() -> None:
    # RFC 5321 3.3: MAIL FROM carries the reverse-path; a 5.1.x there is about the sender.
    text = (
        "<alice@example.org>: host mx.example.org[192.0.2.1] said: 553 5.1.0 sender.example.com "
        "lookup failed (in reply to MAIL FROM command)\n"
    )
    assert _one("alice@example.org", "failed", "5.1.0", "smtp; 553 5.1.0 lookup failed", text) == (
        "soft",
        "rejected",
    )
    # The same status in reply to RCPT TO is the recipient.
    assert _one("alice@example.org", "failed", "5.1.1", "smtp; 550 5.1.1 lookup failed") == (
        "hard",
        "userunknown",
    )


def test_postfix_own_words_are_a_verdict_but_a_command_output_is_not() -> None:
    # local(8) has no such user: Postfix's own verdict, even with a generic 5.0.0.
    text = '<alice@example.org>: unknown user: "alice"\n'
    assert _one("alice@example.org", "failed", "5.0.0", 'X-Postfix; unknown user: "alice"', text) == (
        "hard",
        "userunknown",
    )
    # A delivery program's output quoted by pipe(8) is that program's words, not a verdict on the address.
    diagnostic = 'X-Postfix; Command died with status 67: "/usr/bin/procmail". Command output: no such user'
    text = f"<alice@example.org>: {diagnostic[11:]}\n"
    category, reason = _one("alice@example.org", "failed", "5.0.0", diagnostic, text)
    assert reason != "userunknown" and category == "soft"


def test_a_connection_lost_during_the_greeting_is_a_network_error_not_a_block() -> None:
    text = (
        "<alice@example.org>: lost connection with mx.example.org[192.0.2.1] while performing the "
        "HELO handshake\n"
    )
    diagnostic = (
        "X-Postfix; lost connection with mx.example.org[192.0.2.1] while performing the HELO handshake"
    )
    assert _one("alice@example.org", "failed", "4.4.2", diagnostic, text) == ("soft", "networkerror")
    # Refused at the greeting with a policy status: the connecting host is blocked.
    text = "<alice@example.org>: host mx.example.org[192.0.2.1] refused to talk to me: 554 5.7.1 go away\n"
    diagnostic = "X-Postfix; host mx.example.org[192.0.2.1] refused to talk to me: 554 5.7.1 go away"
    assert _one("alice@example.org", "failed", "5.7.1", diagnostic, text)[1] == "blocked"


def test_raw_utf8_headers_and_a_mislabelled_7bit_charset_are_read() -> None:
    # RFC 6532 allows UTF-8 in header fields; ISO-2022-JP is 7-bit, so 8-bit bytes under that label are
    # not ISO-2022-JP (text re-encoded on the way with its label left as it was).
    raw = (
        "From: no-reply@mail.example.jp\n"
        "To: sender@example.com\n"
        "Subject: メールエラー通知\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="B"\n\n'
        '--B\nContent-Type: text/plain; charset="ISO-2022-JP"\n\n'
        "送信先のメールボックスが一杯のため、送信できませんでした。\n"
        "     Could not be delivered to: <alice@example.jp>\n"
        "     As their mailbox is full.\n"
        "--B\nContent-Type: message/rfc822\n\n"
        "From: sender@example.com\nTo: alice@example.jp\nSubject: hello\n\nhello\n"
        "--B--\n"
    ).encode()
    [result] = classify(raw)
    assert (result.recipient, result.category, result.reason) == ("alice@example.jp", "soft", "mailboxfull")
    assert "メールボックス" in result.diagnostic


def test_a_system_storage_status_is_the_server_full_not_the_mailbox() -> None:
    # RFC 3463 X.4.5 (congestion) / X.3.1 (mail system full), RFC 5321 452: the server's own disk.
    text = (
        "<alice@example.org>: host mx.example.org[192.0.2.1] said: 452 4.4.5 Insufficient disk space; "
        "try again later (in reply to MAIL FROM command)\n"
    )
    diagnostic = "smtp; 452 4.4.5 Insufficient disk space; try again later"
    assert _one("alice@example.org", "failed", "4.4.5", diagnostic, text) == ("soft", "systemfull")
    # The same words with a mailbox status are the recipient's mailbox.
    assert _one("alice@example.org", "failed", "4.2.2", "smtp; 452 4.2.2 Insufficient disk space")[1] == (
        "mailboxfull"
    )


def test_a_rejection_naming_failed_authentication_checks_is_an_auth_failure() -> None:
    diagnostic = (
        "smtp; 550 5.7.1 Message refused: the authentication checks for example.com did not come "
        "out right. To protect our users from spam, the message has been blocked."
    )
    assert _one("alice@example.org", "failed", "5.7.1", diagnostic) == ("soft", "authfailure")


def test_a_null_sender_notice_naming_a_failure_is_a_bounce_and_a_null_sender_vacation_is_not() -> None:
    # Null reverse-path (RFC 5321 4.5.5), Auto-Submitted like any DSN, no layout the classifier knows.
    head = (
        "Return-Path: <>\nFrom: <>\nTo: sender@example.com\nAuto-Submitted: auto-replied\n"
        "Message-Id: <n1@mx.example.org>\nDate: Tue, 29 Dec 2009 12:12:54 +0000\n\n"
    )
    [notice] = classify(
        (head + "You sent mail to alice@example.org. That mailbox does not exist here.\n").encode()
    )
    assert notice.recipient == "alice@example.org"
    assert notice.category in ("hard", "soft")
    [reply] = classify(
        (head + "I am out of the office until Monday and will answer when I return.\n").encode()
    )
    assert (reply.category, reply.reason) == ("not_bounce", "vacation")


def test_relaying_refusals_in_any_wording_are_norelaying() -> None:
    for words in (
        "Recipient address rejected: No relaying",
        "This system is not configured to relay mail",
        "we cannot relay for example.org",
    ):
        diagnostic = f"smtp; 550 5.7.0 {words}"
        assert _one("alice@example.org", "failed", "5.7.0", diagnostic) == ("soft", "norelaying"), words


def _notice(body: str, subject: str = "Undeliverable: hello") -> bytes:
    return (
        "Return-Path: <>\nFrom: Mail Administrator <postmaster@mx.example.org>\nTo: sender@example.com\n"
        f"Subject: {subject}\nMessage-Id: <n2@mx.example.org>\nDate: Tue, 29 Dec 2009 12:12:54 +0000\n\n"
        + body
    ).encode()


def test_a_reporting_systems_own_unknown_recipient_verdict_is_userunknown() -> None:
    # No SMTP reply quoted, no status: the reporting system looked the name up in its own directory
    # (Exchange's "recipient name is not recognized", Domino's "not listed", GroupWise's "not found").
    body = (
        "Your message could not be delivered to the following recipient(s):\n\n"
        "alice@example.org on Tue, 29 Dec 2009 12:12:54 +0000\n"
        "    User not listed in the address book\n"
    )
    [result] = classify(_notice(body))
    assert (result.recipient, result.category, result.reason) == ("alice@example.org", "hard", "userunknown")
    # A remote server's 550 quoted without its SMTP stage may have come after DATA: a filter.
    body = "Your message could not be delivered to:\n\nalice@example.org\n    550 No such user\n"
    [result] = classify(_notice(body))
    assert (result.category, result.reason) == ("soft", "filtered")


def _heard(table: str, *texts: str) -> bool:
    """Every one of ``texts`` contains some form of ``table``."""
    return all(any(phrase_in(p, normalise(t)) for p in phrase_tables()[table]) for t in texts)


def test_a_failed_name_lookup_is_one_concept_in_either_voice() -> None:
    # "X not found" (Postfix, Sendmail) and "couldn't find X" (qmail, resolvers) say the same thing.
    wordings = (
        "Host or domain name not found. Name service error for name=example.org type=MX",
        "Sorry, I couldn't find any host named example.org. (#5.1.2)",
        "unable to resolve host example.org",
    )
    assert _heard("hostunknown", *wordings)
    body = (
        "Hi. This is the qmail-send program at mx.example.com.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<alice@example.org>:\nSorry, I couldn't find any host by that name.\n\n"
        "--- Below this line is a copy of the message.\n\n"
        "From: sender@example.com\nTo: alice@example.org\nSubject: hi\n\nhi\n"
    )
    [result] = classify(_notice(body, "failure notice"))
    assert (result.recipient, result.category, result.reason) == ("alice@example.org", "hard", "hostunknown")


def test_a_list_refusing_a_non_members_post_is_rejected_in_any_list_managers_words() -> None:
    wordings = (
        "You are not a member of this mailing list <list@example.org>.",
        "you may not have permission to post messages to the group",
        "You are not allowed to post to this mailing list",
    )
    for words in wordings:
        assert _heard("rejected", words), words
    body = f"Hello sender@example.com,\n\n{wordings[2]}: list@example.org\n\nYour message was rejected.\n"
    [result] = classify(_notice(body, "Delivery failure"))
    assert (result.recipient, result.category, result.reason) == ("list@example.org", "soft", "rejected")


def test_a_delivery_given_up_after_a_stated_time_is_expired() -> None:
    wordings = (
        "all hosts have been failing for a long time and were last tried after this message arrived",
        "Message could not be delivered for 5 days",
        "Delivery to the following recipients was aborted after 5.0 hour(s)",
    )
    assert _heard("expired", *wordings)
    body = f"{wordings[2]}:\n\n  * alice@example.org\n"
    [result] = classify(_notice(body, "Delivery Status Notification (Failure)"))
    assert (result.recipient, result.category, result.reason) == ("alice@example.org", "soft", "expired")


def test_an_unknown_recipient_is_heard_in_either_word_order() -> None:
    for pair in (
        ("550 5.1.1 Recipient not known here", '550 "alice@example.org" is not a known user'),
        ("550 Invalid recipient <alice@example.org>", "550 The mailbox is invalid"),
        ("550 No such user here", "550 ** No mail box available for this user **"),
    ):
        assert _heard("userunknown", *pair), pair
    text = (
        "<alice@example.org>: host mx.example.org[192.0.2.1] said: 550 No mailbox found "
        "(in reply to RCPT TO command)\n"
    )
    assert _one("alice@example.org", "failed", "5.0.0", "smtp; 550 No mailbox found", text) == (
        "hard",
        "userunknown",
    )


def test_a_name_service_failure_is_a_network_error_not_an_unknown_host() -> None:
    assert _heard(
        "networkerror",
        "Name service error for name=example.org type=MX: Malformed or unexpected name server reply",
        "DNS lookup failed for example.org",
    )
    # The resolver's TRY_AGAIN, as Postfix and as the C library (hstrerror) spell it.
    assert _heard(
        "dns-temporary",
        "Name service error for domain example.org: Host not found, try again",
        "Deferred: example.org: host name lookup failure",
    )
    text = "<alice@example.org>: Name service error for domain example.org: Host not found, try again\n"
    diagnostic = "X-Postfix; Name service error for domain example.org: Host not found, try again"
    assert _one("alice@example.org", "failed", "", diagnostic, text) == ("soft", "networkerror")


def test_every_form_is_attributed_on_its_own() -> None:
    # The leave-one-family-out measurement switches forms off one by one: a form that still joins two
    # with a top-level "|" would keep the one learnt from the family being scored switched on.
    for table, forms in phrase_tables().items():
        for form in forms:
            assert _alternatives(form) == [form], (table, form)
    assert _alternatives(r"re:a (?:b|c)|d[|]e") == [r"re:a (?:b|c)", r"re:d[|]e"]


def test_an_address_between_the_subject_and_the_verdict_does_not_hide_it() -> None:
    # MTAs quote the address between the noun and what is said of it; a long one is still one word.
    assert _heard(
        "userunknown",
        "550 Recipient <firstname.middlename.lastname@mail.subsidiary.example.org> unknown",
        "554 mailbox someone.with.a.long.name@department.example.net does not exist here",
        "User dept.head (dept.head@branch.example.com) not recognised by this server",
    )
    # Three words at most: a subject far away from the verdict is not its subject.
    assert not _heard("userunknown", "user a.b c.d e.f g.h i.j k.l m.n o.p q.r s.t unknown")


def test_not_listed_in_a_directory_is_no_blocklist_listing() -> None:
    body = (
        "Your message was not delivered to: carol@example.org\n"
        "because: Recipient carol.jones (carol@example.org) not listed in the staff directory\n"
    )
    [result] = classify(_notice(body))
    assert (result.recipient, result.category, result.reason) == ("carol@example.org", "hard", "userunknown")
    assert not _heard("blocked", "Recipient carol.jones not listed in the staff directory")
    assert _heard("blocked", "554 Service unavailable; client [192.0.2.7] listed in dnsbl.example.net")


def test_a_reply_code_that_names_one_cause_speaks_when_the_words_do_not() -> None:
    # RFC 5321 4.2.2: 451 local error in processing, 452 insufficient system storage, 552 exceeded
    # storage allocation. Wording no table knows, so only the code can tell.
    for code, status, reason in (("451", "4.0.0", "systemerror"), ("452", "4.0.0", "systemfull")):
        text = (
            f"<alice@example.org>: host mx.example.org[192.0.2.1] said: {code} Zorblax queue hiccup "
            "(in reply to RCPT TO command)\n"
        )
        assert _one("alice@example.org", "failed", status, f"smtp; {code} Zorblax queue hiccup", text) == (
            "soft",
            reason,
        )
    # A code with many meanings (550) still leaves the reason open.
    text = (
        "<alice@example.org>: host mx.example.org[192.0.2.1] said: 550 Zorblax (in reply to RCPT TO command)"
    )
    assert _one("alice@example.org", "failed", "5.0.0", "smtp; 550 Zorblax", text + "\n")[1] == "onhold"


def test_a_blocklist_is_named_by_a_word_not_by_three_letters_inside_one() -> None:
    assert _heard("blocked", "554 rejected: client listed by examplerbl (see policy)")
    assert not _heard("blocked", "451 Zorblax queue hiccup", "550 marble hall mailbox")
