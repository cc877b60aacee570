"""Test helpers shared by several packages' tests (importable as ``support``)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from mailstack.keyring import Keyring
from mailstack.storage import LocalKeyProvider, Store, Vault


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class SmtpSink:
    """An aiosmtpd server on loopback that keeps what it receives.

    ``replies`` maps a recipient address to the reply its RCPT gets (e.g. ``"450 4.2.0 busy"``).
    It offers PIPELINING, as Postfix does, unless ``pipelining`` is false.
    """

    host: str
    port: int
    received: list[ReceivedMail] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering DATA: a slow relay
    pipelining: bool = True

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

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


TEST_MASTER_SECRET = bytes(range(32))


def make_vault(engine: Engine, secret: bytes = TEST_MASTER_SECRET) -> Vault:
    """A vault (local key provider) for tests that call storage functions directly."""
    keyring = Keyring(secret)
    return Vault(engine, keyring, LocalKeyProvider(keyring))


def make_store(engine: Engine, secret: bytes = TEST_MASTER_SECRET) -> Store:
    """The store of ``engine`` with :func:`make_vault`'s vault, for tests of the parts that take one."""
    return Store(engine, make_vault(engine, secret))


def stored_bytes(engine: Engine, *, dead_rows: bool = False) -> bytes:
    """Every byte the database holds now: its SQLite files (WAL included), or a ``pg_dump`` of it and
    (``dead_rows``) every heap tuple of every table, live and dead, read page by page with ``pageinspect``.

    Search it (lower-cased) for a marker to prove the marker is not stored in the clear anywhere. Leave
    the dead rows out where background jobs of a running app may hold a snapshot while VACUUM runs,
    which keeps it from pruning for that moment (test_erasure_vacuum.py proves the pruning where nothing
    else runs).
    """
    if engine.dialect.name == "sqlite":
        database = Path(engine.url.database or "")
        return b"".join(p.read_bytes() for p in sorted(database.parent.glob(database.name + "*")))
    chunks = _heap_tuples(engine) if dead_rows else []
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    dump = subprocess.run(["pg_dump", url], capture_output=True, check=False)
    assert dump.returncode == 0, dump.stderr.decode()
    assert b"CREATE TABLE public.messages" in dump.stdout
    return b"".join(chunks) + dump.stdout


def _heap_tuples(engine: Engine) -> list[bytes]:
    with engine.connect() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
        conn.commit()
        # The tables, and the TOAST tables that hold their long values.
        relations = (
            conn.execute(
                text(
                    "SELECT oid::regclass::text FROM pg_class WHERE relkind = 'r'"
                    " AND relnamespace = 'public'::regnamespace UNION"
                    " SELECT reltoastrelid::regclass::text FROM pg_class WHERE reltoastrelid <> 0"
                    " AND relnamespace = 'public'::regnamespace"
                )
            )
            .scalars()
            .all()
        )
        chunks: list[bytes] = []
        for relation in relations:
            pages = conn.execute(
                text("SELECT pg_relation_size(CAST(:r AS regclass)) / current_setting('block_size')::int"),
                {"r": relation},
            ).scalar_one()
            for page in range(int(pages)):
                rows = conn.execute(
                    text("SELECT t_data FROM heap_page_items(get_raw_page(:r, :p)) WHERE t_data IS NOT NULL"),
                    {"r": relation, "p": page},
                ).scalars()
                chunks.extend(bytes(row) for row in rows)
    return chunks
