"""The HMAC signature of a webhook request, and its verification (for receivers and tests).

Header ``X-Mailstack-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``. Signing the
time with the body lets a receiver refuse replays older than a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "sign", "verify"]

SIGNATURE_HEADER = "X-Mailstack-Signature"
DEFAULT_TOLERANCE = 300.0


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body``."""
    when = int(time.time()) if timestamp is None else timestamp
    return f"t={when},v1={_mac(secret, when, body)}"


def verify(
    secret: bytes, body: bytes, header: str, *, now: float | None = None, tolerance: float = DEFAULT_TOLERANCE
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` seconds old."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp, given = fields.get("t", ""), fields.get("v1", "")
    if not stamp.isdigit() or not given:
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance:
        return False
    return hmac.compare_digest(_mac(secret, int(stamp), body), given)
