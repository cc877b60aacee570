"""The submission server's replies, by name: RFC 5321 reply codes with RFC 3463 enhanced status codes.

Replies aiosmtpd gives by itself, named here for reference: ``538 5.7.11`` (AUTH before STARTTLS),
``535 5.7.8`` (wrong credentials), ``552`` (SIZE too large or too much data), ``421 4.7.0`` (AUTH tried
too often on one connection).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ACCEPTED",
    "AUTH_REQUIRED",
    "BAD_ADDRESS",
    "BARE_LINE_ENDING",
    "CLOSING",
    "FROM_DOMAIN_REFUSED",
    "FROM_NOT_AUTHORIZED",
    "MALFORMED",
    "RECIPIENT_OK",
    "SENDER_NOT_AUTHORIZED",
    "SENDER_OK",
    "SENDING_DOMAIN_REFUSED",
    "SHUTTING_DOWN",
    "TEMPORARY_FAILURE",
    "TOO_MANY_RECIPIENTS",
    "accepted",
    "echo",
    "reason",
]

SENDER_OK = "250 2.1.0 Ok"
RECIPIENT_OK = "250 2.1.5 Ok"
ACCEPTED = "250 2.0.0 Ok: queued as MessageID"
# Never relay for a client that has not authenticated (aiosmtpd checks first; the handler again).
AUTH_REQUIRED = "530 5.7.0 Authentication required"
# MAIL FROM and the From header: only domains whose DKIM keys this server holds, as the HTTP API.
SENDER_NOT_AUTHORIZED = "553 5.7.1 Sender address not authorized: this server holds no DKIM key for {domain}"
FROM_NOT_AUTHORIZED = "550 5.7.1 From domain not authorized: this server holds no DKIM key for {domain}"
# A sender domain no DKIM record can ever be published for (mailstack.addresses.sending_domain's message).
SENDING_DOMAIN_REFUSED = "553 5.1.8 {reason}"
FROM_DOMAIN_REFUSED = "550 5.1.8 {reason}"
BAD_ADDRESS = "553 5.1.3 Bad recipient address syntax"
# RFC 5321 4.5.3.1.10: the client sends the remaining recipients in another transaction.
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients (at most {limit} per message)"
# SMTP smuggling defence: data with a bare CR or LF is refused, and the connection closed, so nothing a
# client pipelined after a differently-terminated DATA is ever read as commands.
BARE_LINE_ENDING = "550 5.5.2 Bare CR or LF in message data refused (lines must end with CRLF); closing"
MALFORMED = "550 5.6.0 Message refused: {reason}"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, message not accepted; try again later"
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, message not accepted; try again later"
CLOSING = "421 4.7.0 Connection closing"

# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF; stay well below.
_LINE = 400


def accepted(message_ids: Sequence[int]) -> str:
    """The reply to an accepted message: its MessageIDs in RCPT order, on several lines if needed."""
    lines: list[str] = []
    current = ACCEPTED
    for message_id in message_ids:
        word = f" {message_id}"
        if len(current) + len(word) > _LINE:
            lines.append(current)
            current = ACCEPTED
        current += word
    lines.append(current)
    # A multi-line reply: "250-" on every line but the last (RFC 5321 4.2.1).
    return "\r\n".join(["250-" + line[4:] for line in lines[:-1]] + [lines[-1]])


def reason(text: str) -> str:
    """A sentence made safe for a reply line: printable ASCII and spaces only, at most 400 characters."""
    return "".join(c if " " <= c < "\x7f" else "?" for c in text)[:_LINE]


def echo(text: str) -> str:
    """``text`` made safe to repeat in a reply line: printable ASCII only, at most 255 characters."""
    return "".join(c if " " < c < "\x7f" else "?" for c in text)[:255]
