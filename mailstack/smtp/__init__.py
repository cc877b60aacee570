"""SMTP submission (RFC 6409): applications send through mailstack over SMTP instead of HTTP.

STARTTLS, then AUTH PLAIN or LOGIN with an API key and secret (offered only over TLS), then mail from a
domain this server holds DKIM keys for. Each accepted message is stored as the client's own MIME
message, one stored message per envelope recipient with its MessageID, queued, composed (VERP return
path, Message-ID if missing) and DKIM-signed at delivery exactly like API mail.

Public API:

* :class:`SmtpIngress` — the listener ``mailstack serve`` runs when ``[smtp] listen`` is set;
* :func:`smtp_ingress` — builds it from the settings (TLS included), for the lifecycle to start;
* :func:`accept_submission` / :class:`SubmissionRefused` — the accept step, usable without a socket;
* :func:`server_tls_context` / :func:`ensure_self_signed` — the STARTTLS certificate;
* :mod:`mailstack.smtp.replies` — the named replies.
"""

from __future__ import annotations

from mailstack.config import parse_hostport
from mailstack.observability import get_logger
from mailstack.runtime import Runtime

from . import replies
from ._accept import SubmissionRefused, accept_submission
from ._server import SmtpIngress
from ._tls import SELF_SIGNED_FILE, ensure_self_signed, server_tls_context

__all__ = [
    "SELF_SIGNED_FILE",
    "SmtpIngress",
    "SubmissionRefused",
    "accept_submission",
    "ensure_self_signed",
    "replies",
    "server_tls_context",
    "smtp_ingress",
]

log = get_logger("mailstack.smtp")


def smtp_ingress(runtime: Runtime, listen: str) -> SmtpIngress:
    """SMTP submission on ``listen`` (``HOST:PORT``) with the configured or self-signed certificate.

    Raises :class:`~mailstack.config.ConfigError` (certificate); starting it may raise OSError.
    """
    host, port = parse_hostport(listen, what="smtp.listen")
    context, cert, self_signed = server_tls_context(runtime.settings, host)
    log.info("smtp submission certificate", certificate=str(cert), self_signed=self_signed)
    return SmtpIngress(runtime, host, port, context)
