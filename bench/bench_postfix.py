"""End to end with DKIM through a real Postfix: mailstack's path against Postfix + OpenDKIM, same run.

Usage: .venv/bin/python bench/bench_postfix.py [--messages N] [--backend sqlite|postgres]

``postfix-e2e``: messages/s from the Send API to a destination MX. ``mailstack serve`` (signing RSA-2048 and
Ed25519 itself) injects into a Postfix instance that relays everything to Postfix's ``smtp-sink``; the clock
stops when the sink has every message. The baseline, measured in the same run through the same Postfix
instance and sink with messages of the same size, is the classic setup: ``smtp-source`` feeding Postfix, which
has OpenDKIM (RSA-2048) as a milter. ratio = mailstack / (Postfix + OpenDKIM).

The Postfix instance is a private one (its own configuration, queue and loopback ports, started with
``postfix -c``), so the machine's own Postfix is not touched; everything runs on loopback and is bounded.
The value is mailstack on its embedded default (SQLite), one host like the baseline; the same run with
PostgreSQL (the fleet's backend, here on the same two cores) is reported beside it (postgres_*).
Needs root, Postfix (with smtp-sink/smtp-source), OpenDKIM and PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

MAILSTACK = str(Path(sys.executable).parent / "mailstack")
PG_ADMIN_URL = os.environ.get("MAILSTACK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"
CALIBRATION_DOMAIN = "calibrate.example.net"
BATCH = 20  # messages per API request
CLIENTS = 4  # concurrent API clients
SESSIONS = 20  # smtp-source's parallel sessions
WORKERS = int(os.environ.get("MAILSTACK_BENCH_WORKERS", "0"))  # mailstack serve --workers (0: its default)
DEADLINE_SECONDS = 600  # every wait is bounded
HTML = (
    "<html><body>"
    + "".join(
        f"<p>Paragraph {i}: our autumn collection is here, with free delivery on every order.</p>"
        for i in range(40)
    )
    + "</body></html>"
)  # ~4 KB, as in bench_pipeline


def _tool(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":" + SBIN)
    if path is None:
        raise SystemExit(f"{name} is missing: apt-get install postfix opendkim opendkim-tools")
    return path


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, what: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
            return
        except OSError:
            if process is not None and process.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start on 127.0.0.1:{port}")


class Sink:
    """smtp-sink with its running message counter (``-c``), read from its output."""

    def __init__(self) -> None:
        self.port = _port()
        self.count = 0
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [
                _tool("smtp-sink"),
                "-u",
                "nobody",
                "-c",
                "-h",
                "mx.example.net",
                f"127.0.0.1:{self.port}",
                "1024",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        threading.Thread(target=self._read, daemon=True).start()
        _wait_port(self.port, "smtp-sink", self.process)

    def _read(self) -> None:
        assert self.process.stdout is not None
        pending = b""
        while chunk := self.process.stdout.read1(65536):  # type: ignore[attr-defined]
            pending += chunk
            found = re.findall(rb"mesg=(\d+)", pending)
            pending = pending[-64:]
            if found:
                with self._changed:
                    self.count = max(self.count, int(found[-1]))
                    self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = DEADLINE_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.count < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"the sink has {self.count} of {count} messages after {timeout}s")
                self._changed.wait(min(left, 1.0))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class PostfixInstance:
    """A private Postfix: two loopback smtpd listeners (plain, and with the OpenDKIM milter) relaying
    everything to the sink. Its own config, queue and data directories; started with ``postfix -c``."""

    def __init__(self, root: Path, sink_port: int, milter_port: int, calibration_port: int) -> None:
        self.root = root
        self.config = root / "etc"
        self.plain_port, self.milter_port = _port(), _port()
        for name in ("etc", "queue", "data"):
            (root / name).mkdir(parents=True, exist_ok=True)
        shutil.chown(root / "data", "postfix", "postfix")
        self.log = root / "postfix.log"
        (self.config / "main.cf").write_text(
            f"""\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.mailstack.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{sink_port}
transport_maps = texthash:{self.config}/transport
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_destination_concurrency_limit = 50
default_process_limit = 200
disable_mime_output_conversion = yes
smtpd_client_connection_rate_limit = 0
maillog_file = {self.log}
maillog_file_prefixes = {root}
milter_default_action = tempfail
biff = no
"""
        )
        # Messages to the calibration domain go to a sink that keeps them, to compare delivered sizes.
        (self.config / "transport").write_text(f"{CALIBRATION_DOMAIN} smtp:[127.0.0.1]:{calibration_port}\n")
        services = [
            f"127.0.0.1:{self.plain_port} inet n - n - - smtpd",
            f"127.0.0.1:{self.milter_port} inet n - n - - smtpd",
            f"  -o smtpd_milters=inet:127.0.0.1:{milter_port}",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "local unix - n n - - local",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        (self.config / "master.cf").write_text("\n".join(services) + "\n")

    def postfix(self, *args: str) -> None:
        subprocess.run(
            [_tool("postfix"), "-c", str(self.config), *args], check=True, capture_output=True, timeout=120
        )

    def start(self) -> None:
        self.postfix("start")
        _wait_port(self.plain_port, "postfix (plain)")
        _wait_port(self.milter_port, "postfix (milter)")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.postfix("stop")


class OpenDkim:
    """OpenDKIM signing everything from 127.0.0.0/8 with one RSA-2048 key, on a TCP socket."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        shutil.chown(root, "opendkim", "opendkim")
        subprocess.run(
            [_tool("opendkim-genkey"), "-b", "2048", "-d", "example.com", "-s", "bench", "-D", str(root)],
            check=True,
            capture_output=True,
        )
        key = root / "bench.private"
        shutil.chown(key, "opendkim", "opendkim")
        key.chmod(0o600)
        self.port = _port()
        conf = root / "opendkim.conf"
        conf.write_text(
            f"""\
Mode s
Domain example.com
Selector bench
KeyFile {key}
Canonicalization relaxed/relaxed
SignatureAlgorithm rsa-sha256
Socket inet:{self.port}@127.0.0.1
InternalHosts 127.0.0.0/8
UserID opendkim:opendkim
Syslog no
SoftwareHeader no
RequireSafeKeys false
PidFile {root}/opendkim.pid
"""
        )
        self.process = subprocess.Popen(
            [_tool("opendkim"), "-f", "-x", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _wait_port(self.port, "opendkim", self.process)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def smtp_source(postfix: PostfixInstance, sink: Sink, count: int, body_size: int, port: int = 0) -> float:
    """Messages/s from smtp-source through Postfix + OpenDKIM (or ``port``) to the sink (persistent
    sessions)."""
    start_count = sink.count
    started = time.perf_counter()
    subprocess.run(
        [
            _tool("smtp-source"),
            "-d",  # keep each session open for the next message, as mailstack's relay pool does
            "-s",
            str(SESSIONS),
            "-m",
            str(count),
            "-l",
            str(body_size),
            "-f",
            "news@example.com",
            "-t",
            "reader@example.net",
            f"127.0.0.1:{port or postfix.milter_port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=DEADLINE_SECONDS,
    )
    sink.wait_for(start_count + count)
    return count / (time.perf_counter() - started)


class Mailstack:
    """``mailstack serve`` on a fresh data directory (and database), relaying to the Postfix instance."""

    def __init__(self, root: Path, backend: str, relay_port: int) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if k != "MAILSTACK_DATABASE_URL"}
        self.dbname = None
        if backend == "postgres":
            self.dbname = f"mailstack_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.dbname}"')
            self.env["MAILSTACK_DATABASE_URL"] = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.dbname}"
        init = subprocess.run(
            [MAILSTACK, "init", "--data-dir", str(root), "--domain", "example.com", "--json"],
            capture_output=True,
            env=self.env,
            check=True,
        )
        credentials = json.loads(init.stdout)
        self.auth = (credentials["api_key"], credentials["api_secret"])
        self.url = f"http://127.0.0.1:{_port()}"
        self.process = subprocess.Popen(
            [
                MAILSTACK,
                "serve",
                "--data-dir",
                str(root),
                "--http",
                self.url.removeprefix("http://"),
                "--relay",
                f"127.0.0.1:{relay_port}",
                *(["--workers", str(WORKERS)] if WORKERS else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(root / "serve.log").open("wb"),
            env=self.env,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError((root / "serve.log").read_text()[-3000:])
            time.sleep(0.1)

    def post(self, index: int, recipients: list[str], session: httpx.Client | None = None) -> None:
        """One Send API request: a ~4 KB newsletter to each recipient (one message each)."""
        body = {
            "Messages": [
                {
                    "From": {"Email": "news@example.com", "Name": "Example News"},
                    "To": [{"Email": recipient, "Name": "Reader"}],
                    "Subject": f"Autumn collection #{index}-{j}",
                    "TextPart": "Our autumn collection is here.",
                    "HTMLPart": HTML,
                }
                for j, recipient in enumerate(recipients)
            ]
        }
        client = session or httpx.Client(auth=self.auth, timeout=60)
        try:
            response = client.post(f"{self.url}/v3.1/send", json=body)
        finally:
            if session is None:
                client.close()
        if response.status_code != 200:
            raise RuntimeError(response.text)

    def send(self, count: int, sink: Sink) -> float:
        """Messages/s from the first API request until the sink has every message."""
        requests = iter(range(count // BATCH))
        lock = threading.Lock()
        errors: list[Exception] = []

        def client() -> None:
            with httpx.Client(auth=self.auth, timeout=60) as session:
                while not errors:
                    with lock:
                        index = next(requests, None)
                    if index is None:
                        return
                    try:
                        self.post(index, [f"reader{index}-{j}@example.net" for j in range(BATCH)], session)
                    except Exception as exc:  # reported below
                        errors.append(exc)

        start_count = sink.count
        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE_SECONDS)
        if errors:
            raise errors[0]
        sink.wait_for(start_count + (count // BATCH) * BATCH)
        return (count // BATCH) * BATCH / (time.perf_counter() - started)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.dbname is not None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


class DumpSink:
    """smtp-sink keeping each message in a file (for the calibration only)."""

    def __init__(self, root: Path) -> None:
        self.directory = root
        root.mkdir(parents=True)
        root.chmod(0o777)  # smtp-sink writes as nobody
        self.port = _port()
        self.process = subprocess.Popen(
            [_tool("smtp-sink"), "-u", "nobody", "-d", f"{root}/msg.", f"127.0.0.1:{self.port}", "64"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, "smtp-sink (calibration)", self.process)

    def delivered_size(self, marker: bytes) -> int:
        """Size of the delivered message containing ``marker`` (without smtp-sink's own header lines)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for path in self.directory.glob("msg.*"):
                data = path.read_bytes()
                if marker in data:
                    # smtp-sink prepends X-* lines and a three-line Received header; CRLF on the wire.
                    lines = data.split(b"\n")[8:]
                    return len(b"\r\n".join(lines).rstrip(b"\r\n")) + 2
            time.sleep(0.1)
        raise RuntimeError(f"the calibration message {marker!r} did not arrive")

    def contains(self, marker: bytes, text: bytes) -> bool:
        return any(
            text in data for data in (p.read_bytes() for p in self.directory.glob("msg.*")) if marker in data
        )

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _calibrate(postfix: PostfixInstance, dump: DumpSink, mailstack: Mailstack) -> tuple[int, int]:
    """smtp-source's body length making its messages, once OpenDKIM has signed them, the size mailstack's
    signed messages have when they reach the MX; returns (body length, delivered size)."""
    marker = f"calibration-{uuid.uuid4().hex[:8]}"
    mailstack.post(0, [f"{marker}@{CALIBRATION_DOMAIN}"])
    target = dump.delivered_size(f"<{marker}@".encode())
    probe = 2000
    subprocess.run(
        [
            _tool("smtp-source"),
            *("-m", "1", "-l", str(probe), "-f", "news@example.com"),
            *("-t", f"{marker}-source@{CALIBRATION_DOMAIN}", f"127.0.0.1:{postfix.milter_port}"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    signed = dump.delivered_size(f"<{marker}-source@".encode())
    if not dump.contains(f"<{marker}-source@".encode(), b"DKIM-Signature: v=1; a=rsa-sha256"):
        raise RuntimeError("OpenDKIM did not sign the calibration message")
    return max(1, probe + target - signed), target


def run_e2e(messages: int, backend: str, rounds: int = 2) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise SystemExit("bench_postfix needs root (a private Postfix instance, smtp-sink, opendkim)")
    root = Path(tempfile.mkdtemp(prefix="mailstack-bench-postfix-"))
    root.chmod(0o755)
    sink: Sink | None = None
    dump: DumpSink | None = None
    opendkim: OpenDkim | None = None
    postfix: PostfixInstance | None = None
    mailstack: Mailstack | None = None
    try:
        sink = Sink()
        dump = DumpSink(root / "calibration")
        opendkim = OpenDkim(root / "opendkim")
        postfix = PostfixInstance(root / "postfix", sink.port, opendkim.port, dump.port)
        postfix.start()
        mailstack = Mailstack(root / "mailstack", backend, postfix.plain_port)
        body_size, message_size = _calibrate(postfix, dump, mailstack)
        mailstack.send(BATCH * CLIENTS, sink)  # warm-up: connections, caches
        values, baselines = [], []
        for _ in range(rounds):  # alternate, so that drift on a shared machine hits both alike
            baselines.append(smtp_source(postfix, sink, messages, body_size))
            values.append(mailstack.send(messages, sink))
        return {"rate": max(values), "baseline": max(baselines), "message_size": message_size}
    finally:
        if mailstack is not None:
            mailstack.close()
        if postfix is not None:
            postfix.stop()
        for part in (opendkim, dump, sink):
            if part is not None:
                part.close()
        shutil.rmtree(root, ignore_errors=True)


BENCHMARKS = ("postfix-e2e",)


def run(only: str | None = None, messages: int = 3000, backend: str = "sqlite") -> list[dict[str, Any]]:
    """Run ``postfix-e2e`` (unless ``only`` names another benchmark) and return its result dict.

    The value is mailstack on its embedded default (SQLite: one host, like the baseline); the same
    measurement with PostgreSQL (the fleet's backend, served from this same machine) is reported beside it.
    """
    if only is not None and only not in BENCHMARKS:
        return []
    measured = run_e2e(messages, backend)
    result: dict[str, Any] = {
        "name": "postfix-e2e",
        "unit": "messages/s",
        "value": round(measured["rate"], 1),
        "baseline_name": "smtp-source-postfix-opendkim-rsa2048",
        "baseline_value": round(measured["baseline"], 1),
        "ratio": round(measured["rate"] / measured["baseline"], 3),
        "backend": backend,
        "message_size": measured["message_size"],
        "messages": messages,
    }
    if backend == "sqlite":
        fleet = run_e2e(messages, "postgres")
        result["postgres_value"] = round(fleet["rate"], 1)
        result["postgres_baseline_value"] = round(fleet["baseline"], 1)
        result["postgres_ratio"] = round(fleet["rate"] / fleet["baseline"], 3)
    return [result]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=BENCHMARKS)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="sqlite")
    args = parser.parse_args()
    for result in run(args.only, args.messages, args.backend):
        print(json.dumps(result))


if __name__ == "__main__":
    main()
