"""Helpers of the SMTP submission tests.

:func:`smtp_stack` builds in-process what ``mailstack serve --smtp`` runs: settings in a data directory,
a migrated database, DKIM keys for ``example.com``, an API key, the runtime, the SMTP listener on a free
loopback port, and a delivery worker that keeps mail in the sandbox outbox. :class:`RawSession` speaks
SMTP byte by byte (over STARTTLS), for what smtplib would refuse to send.
"""

from __future__ import annotations

import base64
import secrets
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
from sqlalchemy import func, select

from mailstack.config import load_settings, render_default_config
from mailstack.delivery import DeliveryWorker, SandboxOutbox
from mailstack.domains import create_domain_keys, published_keys
from mailstack.runtime import Runtime
from mailstack.smtp import SmtpIngress, server_tls_context
from mailstack.storage import create_api_key, list_outbox
from mailstack.storage.schema import messages

DOMAIN = "example.com"
TIMEOUT = 30  # seconds a socket read may block before the test fails (never an assertion on time)


def client_context(cafile: Path) -> ssl.SSLContext:
    """A client context that trusts exactly ``cafile`` (the server's self-signed certificate)."""
    return ssl.create_default_context(cafile=str(cafile))


@dataclass
class SmtpStack:
    runtime: Runtime
    ingress: SmtpIngress
    api_key: str
    api_secret: str
    cafile: Path
    worker: DeliveryWorker

    def connect(self, *, tls: bool = True, login: bool = True) -> smtplib.SMTP:
        """An smtplib client; by default after STARTTLS (certificate verified) and AUTH."""
        client = smtplib.SMTP("127.0.0.1", self.ingress.port, timeout=TIMEOUT)
        client.ehlo("client.example.net")
        if tls:
            client.starttls(context=client_context(self.cafile))
            client.ehlo("client.example.net")
        if login:
            client.login(self.api_key, self.api_secret)
        return client

    def raw(self) -> RawSession:
        """A byte-level session, after STARTTLS and AUTH PLAIN."""
        return RawSession.open(self.ingress.port, self.cafile, self.api_key, self.api_secret)

    def message_count(self) -> int:
        with self.runtime.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(messages)).scalar_one())

    def deliver(self) -> int:
        """Run the delivery worker until the queue is empty; returns the jobs handled."""
        handled = 0
        while worked := self.worker.run_once():
            handled += worked
        return handled

    def outbox(self, message_id: int) -> tuple[str, str, bytes]:
        """``(mail_from, rcpt_to, data)`` of a delivered message, as it left."""
        with self.runtime.engine.connect() as conn:
            (item,) = list_outbox(
                conn, message_id=message_id, limit=1, with_data=True, vault=self.runtime.vault
            )
        assert item.data is not None
        return item.mail_from, item.rcpt_to, item.data

    def dkim_selectors(self, data: bytes) -> list[str]:
        """Verify every DKIM-Signature of ``data`` with dkimpy; return the selectors."""
        with self.runtime.engine.connect() as conn:
            keys = published_keys(conn, self.runtime.keyring)
        records = {k.dns_name.encode() + b".": k.txt.encode() for k in keys}

        def lookup(name: bytes, timeout: int = 5) -> bytes | None:
            return records.get(name if name.endswith(b".") else name + b".")

        selectors = []
        for index in range(data.count(b"DKIM-Signature:")):
            verifier = dkim.DKIM(data)
            assert verifier.verify(idx=index, dnsfunc=lookup), f"signature {index} does not verify"
            selectors.append(verifier.selector.decode())
        return selectors


@contextmanager
def smtp_stack(
    tmp_path: Path, db_url: str, overrides: dict[str, dict[str, Any]] | None = None
) -> Iterator[SmtpStack]:
    """A running SMTP listener on ``db_url``; everything stops on exit."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "secret.key").write_text(secrets.token_hex(32) + "\n")
    (data_dir / "mailstack.toml").write_text(render_default_config(DOMAIN))
    merged: dict[str, dict[str, Any]] = {"database": {"url": db_url}}
    for section, values in (overrides or {}).items():
        merged[section] = {**merged.get(section, {}), **values}
    settings = load_settings(data_dir, merged)
    runtime = Runtime.open(settings)
    ingress = None
    try:
        with runtime.engine.begin() as conn:
            create_domain_keys(conn, runtime.keyring, DOMAIN)
            api_key, api_secret = create_api_key(conn, "default")
        context, cafile, _self_signed = server_tls_context(settings, "127.0.0.1")
        ingress = SmtpIngress(runtime, "127.0.0.1", 0, context)
        ingress.start()
        worker = DeliveryWorker(
            runtime.engine,
            runtime.queue,
            runtime.preparer,
            SandboxOutbox(runtime.engine, runtime.vault),
            runtime.worker_settings(),
            runtime.metrics,
            vault=runtime.vault,
        )
        yield SmtpStack(runtime, ingress, api_key, api_secret, cafile, worker)
    finally:
        if ingress is not None:
            ingress.stop()
        runtime.close()


class RawSession:
    """SMTP written as raw bytes on a TLS socket; replies read as ``(code, text)``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    @classmethod
    def connect(cls, port: int) -> RawSession:
        session = cls(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
        assert session.reply()[0] == 220
        return session

    @classmethod
    def open(cls, port: int, cafile: Path, api_key: str, api_secret: str) -> RawSession:
        session = cls.connect(port)
        assert session.command(b"EHLO client.example.net")[0] == 250
        assert session.command(b"STARTTLS")[0] == 220
        tls = client_context(cafile).wrap_socket(session.sock, server_hostname="127.0.0.1")
        session = cls(tls)
        assert session.command(b"EHLO client.example.net")[0] == 250
        token = base64.b64encode(f"\0{api_key}\0{api_secret}".encode())
        assert session.command(b"AUTH PLAIN " + token)[0] == 235
        return session

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply; ``(0, "")`` when the server has closed the connection."""
        lines = []
        while True:
            line = self.reader.readline()
            if not line:
                return 0, ""
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(text[4:] for text in lines)

    def command(self, line: bytes) -> tuple[int, str]:
        self.send(line + b"\r\n")
        return self.reply()

    def replies_until_closed(self) -> list[int]:
        """The codes of every reply still to come, until the server hangs up."""
        codes = []
        while (code := self.reply()[0]) != 0:
            codes.append(code)
        return codes

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
