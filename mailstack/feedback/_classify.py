"""Classifying a failure Postfix logged, with the same rules as a bounce received by mail.

Postfix's log gives a status code and the remote server's reply, not a message; the classifier
(:mod:`mailstack.bounce_classify`) reads messages. Writing the log line's facts as the RFC 3464 report Postfix
itself would send lets one classifier decide both ways, so a failure gets the same reason whether it is
learnt from the log or from the DSN. A small table by status code covers what the classifier leaves open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailstack.bounce_classify import BounceResult, category_of, classify

__all__ = ["LoggedFailure", "classify_logged", "pick_result"]

# Postfix's wording around a remote reply: "host mx[1.2.3.4] said: 550 ... (in reply to RCPT TO command)".
_SAID = re.compile(
    r"^host (?P<host>\S+) said: (?P<reply>.*?)(?: \(in reply to (?P<cmd>[^)]*)\))?$", re.DOTALL
)
_REPLY_CODE = re.compile(r"^([245]\d\d)[ -]")
# Enhanced status -> reason when the classifier has no verdict.
_FALLBACK = {
    "5.1.0": "userunknown",
    "5.1.1": "userunknown",
    "5.1.3": "userunknown",
    "5.1.2": "hostunknown",
    "5.4.4": "hostunknown",
    "5.1.10": "notaccept",
    "5.2.1": "suspend",
    "5.2.2": "mailboxfull",
    "5.2.3": "exceedlimit",
    "4.4.1": "expired",
    "4.4.7": "expired",
    "5.4.7": "expired",
}


@dataclass(frozen=True, slots=True)
class LoggedFailure:
    """A failure as the classifier sees it, plus the parts of Postfix's text worth keeping."""

    reason: str
    hard: bool
    reply: str  # the remote server's reply when there was one, else Postfix's own explanation
    reply_code: str
    remote_mta: str


def split_reply(text: str) -> tuple[str, str, str]:
    """``(reply, remote host, command)`` from the parenthesised text of a Postfix delivery line."""
    match = _SAID.match(text)
    if match is None:
        return text, "", ""
    return match.group("reply"), match.group("host"), (match.group("cmd") or "")


def _report(recipient: str, status: str, action: str, reply: str, remote: str, text: str) -> bytes:
    diagnostic = f"Diagnostic-Code: smtp; {reply}\n" if _REPLY_CODE.match(reply) else ""
    remote_line = f"Remote-MTA: dns; {remote}\n" if remote else ""
    return (
        "From: MAILER-DAEMON (Mail Delivery System)\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain; charset=utf-8\n\n"
        f"<{recipient}>: {text}\n\n"
        "--b\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; localhost\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: {action}\nStatus: {status}\n"
        f"{remote_line}{diagnostic}\n--b--\n"
    ).encode("utf-8", "replace")


def classify_logged(recipient: str, status: str, text: str, *, action: str = "failed") -> LoggedFailure:
    """Classify one recipient's failure from Postfix's ``dsn=`` code and the text after ``status=``."""
    reply, remote, _command = split_reply(text)
    code_match = _REPLY_CODE.match(reply)
    reply_code = code_match.group(1) if code_match else ""
    results = classify(_report(recipient, status, action, reply, remote, text))
    result = pick_result(results, recipient)
    if result is not None and result.category in ("hard", "soft"):
        reason = result.reason
        hard = result.category == "hard"
    else:
        reason = _FALLBACK.get(status, "onhold")
        hard = category_of(reason, status, reply_code) == "hard" and status.startswith("5")
    return LoggedFailure(reason, hard, reply, reply_code, remote)


def pick_result(results: list[BounceResult], recipient: str) -> BounceResult | None:
    """The result about ``recipient`` (any bounce or complaint when no result names it)."""
    wanted = recipient.strip().strip("<>").lower()
    useful = [r for r in results if r.category != "not_bounce"]
    for result in useful:
        if result.recipient.strip().strip("<>").lower() == wanted:
            return result
    return useful[0] if useful else None
