"""Test helpers shared by several packages' tests (importable as ``support``)."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class SmtpSink:
    """An aiosmtpd server on loopback that keeps what it receives.

    ``replies`` maps a recipient address to the reply its RCPT gets (e.g. ``"450 4.2.0 busy"``).
    """

    host: str
    port: int
    received: list[ReceivedMail] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering DATA: a slow relay

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.received.append(
            ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"

    def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received

    def wait_for_recipients(self, recipients: set[str], timeout: float = 60.0) -> set[str]:
        """Wait until each of ``recipients`` got at least one message; returns who did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = {rcpt for mail in self.received for rcpt in mail.rcpt_tos}
            if recipients <= got:
                return got
            time.sleep(0.05)
        return {rcpt for mail in self.received for rcpt in mail.rcpt_tos}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
