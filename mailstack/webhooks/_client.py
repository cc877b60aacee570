"""POSTing a webhook to the address that was checked, and to nothing else.

``http.client`` is used directly so that the connection goes to :attr:`Destination.address` while the
Host header and the TLS server name (and certificate check) use the URL's host name. Redirects are not
followed: a 3xx is a failed delivery, since following it would reach an unchecked destination.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
from dataclasses import dataclass

from ._ssrf import Destination

__all__ = ["PostResult", "post"]

MAX_RESPONSE = 64 * 1024


@dataclass(frozen=True, slots=True)
class PostResult:
    status: int  # 0 when no HTTP answer came back
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, destination: Destination, timeout: float) -> None:
        super().__init__(destination.host, destination.port, timeout=timeout)
        self._address = destination.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, destination: Destination, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(destination.host, destination.port, timeout=timeout, context=context)
        self._address = destination.address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def post(
    destination: Destination,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float = 10.0,
    tls: ssl.SSLContext | None = None,
) -> PostResult:
    """POST ``body``; never raises for network or HTTP failures (they are in the result)."""
    connection: http.client.HTTPConnection
    if destination.scheme == "https":
        connection = _PinnedHTTPS(destination, timeout, tls or ssl.create_default_context())
    else:
        connection = _PinnedHTTP(destination, timeout)
    all_headers = {"Content-Type": "application/json", "User-Agent": "mailstack-webhooks/1", **headers}
    if destination.username is not None:
        # Mailjet's advice for receivers: basic auth in the URL (https://user:pass@host/...).
        credentials = f"{destination.username}:{destination.password or ''}".encode()
        all_headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
    try:
        connection.request("POST", destination.path, body=body, headers=all_headers)
        response = connection.getresponse()
        response.read(MAX_RESPONSE)
        return PostResult(response.status, "" if 200 <= response.status < 300 else f"HTTP {response.status}")
    except (OSError, http.client.HTTPException) as exc:
        return PostResult(0, f"{type(exc).__name__}: {exc}"[:500])
    finally:
        connection.close()
