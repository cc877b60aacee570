"""The proof of encryption at rest: after real mail went through the real pipeline, no recipient address,
name, subject, body or clicked personalised link is readable in the database file, in a dump of the
database, or in the logs; and every personal column holds what its mark promises."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from engagement_support import html_part, links_in
from serve_support import Instance, initialised
from support import SmtpSink

from mailstack.storage import create_storage_engine, plaintext_values

pytestmark = pytest.mark.e2e

PROBE = "Zoe.Probe-7c1@example.net"
REJECTED = "rejected.probe-41b@example.net"
SUPPRESSED = "suppressed.probe-d90@example.net"
DEFERRED = "deferred.probe-3e8@example.net"
NAME = "Zoë Markername"
SUBJECT = "subjectmarker-5d2"
BODY = "bodymarker-93f1"
VARIABLE = "variablemarker-b7e"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
# A personalised link, as senders build them: it quotes the address (percent-encoded) and a token.
LINK_TOKEN = "linktokenmarker-e25"
LINK = f"https://shop.example/welcome/{LINK_TOKEN}?u={quote(PROBE)}"
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
    LINK_TOKEN,
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
        served.start(relay=f"{smtp_sink.host}:{smtp_sink.port}")
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
                "HTMLPart": f'<p>Hello {{{{var:who}}}}, {BODY} <a href="{LINK}">your offer</a></p>',
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
        # The recipient clicks the tracked link: the statistics still list the URL it led to.
        (tracked,) = [link for link in links_in(html_part(mail.data)) if "/t/c/" in link]
        clicked = httpx.get(tracked, headers={"User-Agent": BROWSER}, follow_redirects=False)
        assert (clicked.status_code, clicked.headers["location"]) == (302, LINK)
        assert _wait_for_link_stats(served) == [LINK]
        served.stop()

        assert _leaks(served.stored_bytes()) == []
        # Column by column, as the schema's personal-data marks promise: sealed, hashed or redacted.
        engine = create_storage_engine(served.database_url)
        try:
            with engine.connect() as conn:
                assert plaintext_values(conn) == {}
        finally:
            engine.dispose()
        logs = served.log()
        assert logs  # the service did log (requests, deliveries)
        assert _leaks(logs.encode()) == []


def _wait_for_link_stats(served: Instance, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    urls: list[str] = []
    while not urls and time.monotonic() < deadline:
        response = httpx.get(f"{served.url}/v3/REST/statistics/link-click", auth=served.auth)
        assert response.status_code == 200, response.text
        urls = [entry["URL"] for entry in response.json()["Data"]]
        time.sleep(0.2)
    return urls
