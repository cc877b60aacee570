"""The proof of encryption at rest: after real mail went through the real pipeline, no recipient address,
name, subject or body is readable in the database file, in a dump of the database, or in the logs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from privacy_helpers import database_bytes, initialised
from support import SmtpSink

pytestmark = pytest.mark.e2e

PROBE = "Zoe.Probe-7c1@example.net"
REJECTED = "rejected.probe-41b@example.net"
SUPPRESSED = "suppressed.probe-d90@example.net"
DEFERRED = "deferred.probe-3e8@example.net"
NAME = "Zoë Markername"
SUBJECT = "subjectmarker-5d2"
BODY = "bodymarker-93f1"
VARIABLE = "variablemarker-b7e"
# What must not appear (the domains may: they are not personal data and stay readable for statistics).
SECRETS = [
    "zoe.probe-7c1",
    "rejected.probe-41b",
    "suppressed.probe-d90",
    "deferred.probe-3e8",
    "Markername",
    SUBJECT,
    BODY,
    VARIABLE,
]


def _leaks(data: bytes) -> list[str]:
    lowered = data.lower()
    found = [s for s in SECRETS if s.lower().encode() in lowered]
    # JSON may escape non-ASCII text; the marker words are ASCII, so their plain bytes are what counts.
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_no_plaintext_personal_data_in_the_database_a_dump_or_the_logs(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    database_url = str(request.getfixturevalue("pg_url")) if backend == "postgresql" else None
    # The relay refuses one recipient quoting its address, as real servers do: replies are personal too.
    smtp_sink.replies[REJECTED] = f"550 5.1.1 <{REJECTED}>: Recipient address rejected: User unknown"
    smtp_sink.replies[DEFERRED] = f"450 4.2.0 <{DEFERRED}>: Mailbox busy, try later"
    with initialised(tmp_path, database_url) as served:
        served.start(f"{smtp_sink.host}:{smtp_sink.port}")
        added = httpx.post(
            f"{served.url}/api/v1/suppressions",
            json={"Email": SUPPRESSED, "Reason": "test"},
            auth=served.auth,
        )
        assert added.status_code == 201, added.text
        (probe,) = served.send(
            {
                "From": {"Email": "news@example.com", "Name": "News"},
                "To": [{"Email": PROBE, "Name": NAME}],
                "Subject": SUBJECT,
                "TextPart": f"Hello {{{{var:who}}}}, {BODY}",
                "HTMLPart": f"<p>Hello {{{{var:who}}}}, {BODY}</p>",
                "TemplateLanguage": True,
                "Variables": {"who": VARIABLE},
                "CustomID": "order-1",
            },
            headers={"Idempotency-Key": "probe-1"},
        )
        (rejected, suppressed, deferred) = served.send(
            {
                "From": {"Email": "news@example.com"},
                "To": [{"Email": REJECTED}, {"Email": SUPPRESSED}, {"Email": DEFERRED}],
                "Subject": SUBJECT,
                "TextPart": BODY,
            }
        )
        assert served.wait_status(probe, "sent")["Destination"] == PROBE  # readable through the API
        failed = served.wait_status(rejected, "failed")
        assert REJECTED in failed["LastSMTPReply"]
        assert served.wait_status(suppressed, "blocked")["Destination"] == SUPPRESSED
        assert DEFERRED in served.wait_status(deferred, "deferred")["LastSMTPReply"]  # queued for a retry
        (mail,) = [m for m in smtp_sink.wait_for(1) if m.rcpt_tos == [PROBE]]
        assert VARIABLE.encode() in mail.data and BODY.encode() in mail.data  # it did carry them
        served.stop()

        assert _leaks(database_bytes(served, database_url)) == []
        logs = served.log_text()
        assert logs  # the service did log (requests, deliveries)
        assert _leaks(logs.encode()) == []
