"""Tracking URLs and their tokens.

Every tracking URL carries a :class:`~mailstack.tokens.TokenSigner` token whose MAC binds the purpose, the
MessageID and, for clicks, the link position and the exact target URL. The click endpoint redirects only
to the URL inside a valid token, so a forged or altered link redirects nowhere (no open redirect) and the
endpoint needs no database lookup to answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailstack.tokens import InvalidToken, TokenSigner

from ._uri import web_uri

__all__ = ["ClickTarget", "TrackingUrls"]

OPEN = "open"
CLICK = "click"
UNSUBSCRIBE = "unsubscribe"  # the composer's List-Unsubscribe token purpose


@dataclass(frozen=True, slots=True)
class ClickTarget:
    message_id: int
    position: int
    url: str


def _message_id(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise InvalidToken("malformed token")
    return int(text)


class TrackingUrls:
    """Builds and checks the open, click and unsubscribe URLs under ``base_url``."""

    def __init__(self, signer: TokenSigner, base_url: str) -> None:
        self._signer = signer
        self._base = base_url.rstrip("/")

    @property
    def base_url(self) -> str:
        return self._base

    def open_url(self, message_id: int) -> str:
        return f"{self._base}/t/o/{self._signer.sign(OPEN, message_id)}"

    def click_url(self, message_id: int, position: int, url: str) -> str:
        return f"{self._base}/t/c/{self._signer.sign(CLICK, f'{message_id}:{position}:{url}')}"

    def unsubscribe_url(self, message_id: int) -> str:
        return f"{self._base}/unsubscribe/{self._signer.sign(UNSUBSCRIBE, message_id)}"

    def open_message(self, token: str) -> int:
        """The MessageID of an open-pixel token; raises :class:`InvalidToken`."""
        return _message_id(self._signer.verify(OPEN, token))

    def click_target(self, token: str) -> ClickTarget:
        """Where a click token leads; raises :class:`InvalidToken` for anything not minted here.

        The target is the ASCII URI a browser would request (:func:`web_uri`): links minted before
        IRIs were converted at rewriting time may hold ``https://例え.jp/`` or a control character,
        which no ``Location`` header can carry.
        """
        message, _, rest = self._signer.verify(CLICK, token).partition(":")
        position, sep, url = rest.partition(":")
        if not sep or not position.isdigit() or len(position) > 6:
            raise InvalidToken("malformed token")
        # Defence in depth: only web links are ever minted, so nothing else is ever followed.
        target = web_uri(url)
        if target is None:
            raise InvalidToken("not a web link")
        return ClickTarget(_message_id(message), int(position), target)

    def unsubscribe_message(self, token: str) -> int:
        """The MessageID of a List-Unsubscribe token; raises :class:`InvalidToken`."""
        return _message_id(self._signer.verify(UNSUBSCRIBE, token))
