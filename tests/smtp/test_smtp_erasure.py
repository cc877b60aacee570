"""Erasing a recipient of mail submitted over SMTP: the submitted message the others share is rewritten
without the address (headers and text parts, however encoded) and still goes out signed and valid."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

from erasure_support import mentions
from smtp_helpers import SmtpStack, smtp_stack
from support import stored_bytes

from mailstack.privacy import erase_subject, vacuum_erased
from mailstack.storage import get_message

SENDER = "news@example.com"
ANA = "ana.smtp-7f3@example.net"
BOB = "bob.smtp-2c9@example.org"
HIDDEN = "hidden.smtp-5e1@example.org"


def submission() -> bytes:
    """A message naming Ana everywhere a client may: To, Reply-To, an encoded Subject, a free header,
    a quoted-printable text part, a base64 HTML part (mailto: and %40) and a CSV attachment."""
    message = EmailMessage()
    message["From"] = f"Example News <{SENDER}>"
    message["To"] = f"Ana Probe <{ANA}>"
    message["Cc"] = BOB
    message["Reply-To"] = ANA
    message["Subject"] = f"Commande pour {ANA} : confirmée"
    message["X-Requested-By"] = ANA
    message.set_content(f"Bonjour, café for {ANA} and Bob.\nkeepmarker-plain\n", cte="quoted-printable")
    message.add_alternative(
        f"<p>Write to <a href='mailto:{ANA}'>Ana</a> or https://x.example/u?e={ANA.replace('@', '%40')}"
        " keepmarker-html é</p>",
        subtype="html",
        cte="base64",
    )
    message.add_attachment(f"name,email\nAna,{ANA.upper()}\nBob,{BOB}\n", subtype="csv", filename="list.csv")
    return message.as_bytes(policy=email.policy.SMTP)


def submit(stack: SmtpStack, *recipients: str) -> list[int]:
    with stack.connect() as client:
        assert client.mail(SENDER)[0] == 250
        for recipient in recipients:
            assert client.rcpt(recipient)[0] == 250
        code, reply = client.data(submission())
    assert code == 250, reply
    return [int(n) for n in re.findall(r"\d+", reply.decode().replace("2.0.0", ""))]


def erase(stack: SmtpStack, address: str) -> dict[str, object]:
    """What ``mailstack privacy erase`` does: erase in a transaction, then vacuum."""
    runtime = stack.runtime
    with runtime.engine.begin() as conn:
        report = erase_subject(conn, runtime.vault, runtime.keyring, address, actor="test")
    assert vacuum_erased(runtime.engine)
    return report.as_dict()


def texts(data: bytes) -> str:
    """Every header (decoded) and every part (decoded), lower-case."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    found = [data.decode("utf-8", "replace")]
    for part in parsed.walk():
        found.extend(f"{name}: {value}" for name, value in part.items())
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            found.append(payload.decode(part.get_content_charset() or "utf-8"))
    return "\n".join(found).lower()


def assert_nothing_left(stack: SmtpStack) -> None:
    runtime = stack.runtime
    assert mentions(runtime.engine, runtime.vault, ANA) == []
    on_disk = stored_bytes(runtime.engine, dead_rows=True).lower()
    assert ANA.encode() not in on_disk and ANA.replace("@", "%40").encode() not in on_disk


def test_erasing_before_delivery_sends_the_others_a_valid_message_without_the_address(
    tmp_path: Path, db_url: str
) -> None:
    with smtp_stack(tmp_path, db_url) as stack:
        ana, bob, hidden = submit(stack, ANA, BOB, HIDDEN)
        runtime = stack.runtime
        assert "contents.spec" in mentions(runtime.engine, runtime.vault, ANA)  # the submitted message

        report = erase(stack, ANA)
        assert report["messages_deleted"] == 1 and report["contents_redacted"] == 1

        assert stack.deliver() == 2  # Bob and the blind copy; Ana's copy is cancelled
        for message_id, recipient in ((bob, BOB), (hidden, HIDDEN)):
            _mail_from, rcpt_to, data = stack.outbox(message_id)
            assert rcpt_to == recipient
            assert len(stack.dkim_selectors(data)) == 2  # still signed, and the signatures verify
            parsed = email.message_from_bytes(data, policy=email.policy.default)
            assert parsed["To"] == "undisclosed-recipients:;"  # Ana was the only To
            assert parsed["Cc"] == BOB and parsed["Reply-To"] is None
            assert parsed["Subject"] == "Commande pour erased@invalid : confirmée"
            assert parsed["X-Requested-By"] == "erased@invalid"
            everything = texts(data)
            assert ANA not in everything and ANA.replace("@", "%40") not in everything
            # The rest is as submitted: other recipients, text, the non-ASCII characters.
            assert "keepmarker-plain" in everything and "keepmarker-html é" in everything
            assert "café" in everything and BOB in everything
            assert "mailto:erased@invalid" in everything and "e=erased%40invalid" in everything
            assert "ana,erased@invalid" in everything  # the CSV attachment
        assert_nothing_left(stack)
        with runtime.engine.connect() as conn:
            assert get_message(conn, ana, 1, vault=runtime.vault) is None

        # The next submission to the address is stored blocked, never sent.
        (again,) = submit(stack, ANA)
        assert stack.deliver() == 0
        with runtime.engine.connect() as conn:
            record = get_message(conn, again, 1, vault=runtime.vault)
        assert record is not None and record.status == "blocked"


def test_erasing_after_delivery_redacts_the_others_sandbox_copies(tmp_path: Path, db_url: str) -> None:
    with smtp_stack(tmp_path, db_url) as stack:
        ana, bob = submit(stack, ANA, BOB)
        assert stack.deliver() == 2
        runtime = stack.runtime
        assert ANA in texts(stack.outbox(bob)[2])

        report = erase(stack, ANA)
        assert (report["messages_deleted"], report["outbox_deleted"]) == (1, 1)
        assert (report["contents_redacted"], report["sandbox_copies_redacted"]) == (1, 1)

        _mail_from, rcpt_to, data = stack.outbox(bob)
        assert rcpt_to == BOB
        everything = texts(data)
        assert ANA not in everything and "keepmarker-plain" in everything
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert parsed["To"] == "undisclosed-recipients:;" and parsed["Cc"] == BOB
        assert_nothing_left(stack)
        with runtime.engine.connect() as conn:
            record = get_message(conn, bob, 1, vault=runtime.vault)
            assert get_message(conn, ana, 1, vault=runtime.vault) is None
        assert record is not None and record.status == "sent"
