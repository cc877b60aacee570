"""Memory of ``mailstack serve`` under oversized uploads to its unauthenticated form routes.

Usage: .venv/bin/python bench/bench_body_limit.py [--megabytes N]

``body-limit-rss``: a real ``mailstack serve`` (sandbox, SQLite) receives one N MB upload (default 300)
on each of ``/dashboard/login``, ``/consent/confirm`` and ``/unsubscribe/{token}``, once with a
Content-Length and once chunked, each sent until the server answers. Reported: the process's resident
memory when idle (the baseline), its peak (VmHWM) before and after the uploads and its resident memory
afterwards, in MB; the ratio is peak / idle. Without a streaming limit the peak grows with the upload;
with it, it stays at start-up's own peak.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

MAILSTACK = str(Path(sys.executable).parent / "mailstack")
ROUTES = ("/dashboard/login", "/consent/confirm", "/unsubscribe/not-a-token")
_PIECE = b"x" * 65536


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _memory_mb(pid: int) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values


def _upload(address: tuple[str, int], path: str, total: int, *, declared: bool) -> tuple[int, str]:
    """Send ``total`` bytes until the server answers; returns (bytes sent, status line)."""
    sent = 0
    with socket.create_connection(address, timeout=120) as sock:
        framing = f"Content-Length: {total}" if declared else "Transfer-Encoding: chunked"
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: bench\r\n{framing}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
        )
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(_PIECE if declared else b"10000\r\n" + _PIECE + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(_PIECE)
        if not declared and sent >= total:
            sock.sendall(b"0\r\n\r\n")
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    return sent, answer.split(b"\r\n", 1)[0].decode(errors="replace")


def measure(megabytes: int) -> dict[str, Any]:
    total = megabytes * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        env = {k: v for k, v in os.environ.items() if k != "MAILSTACK_DATABASE_URL"}
        subprocess.run(
            [MAILSTACK, "init", "--data-dir", str(data_dir), "--domain", "example.com", "--json"],
            check=True,
            capture_output=True,
            env=env,
        )
        port = _free_port()
        log = (Path(tmp) / "serve.log").open("wb")
        process = subprocess.Popen(
            [MAILSTACK, "serve", "--data-dir", str(data_dir), "--http", f"127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            time.sleep(1)
            idle = _memory_mb(process.pid)
            uploads = []
            for path in ROUTES:
                for declared in (True, False):
                    sent, status = _upload(("127.0.0.1", port), path, total, declared=declared)
                    sent_mb = round(sent / 2**20, 1)
                    uploads.append({"path": path, "declared": declared, "sent_mb": sent_mb, "answer": status})
            time.sleep(1)
            after = _memory_mb(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
            log.close()
    return {
        "name": "body-limit-rss",
        "upload_mb": megabytes,
        "idle_rss_mb": round(idle["VmRSS"], 1),
        "peak_before_uploads_mb": round(idle["VmHWM"], 1),  # start-up's own peak
        "peak_rss_mb": round(after["VmHWM"], 1),
        "after_rss_mb": round(after["VmRSS"], 1),
        "ratio": round(after["VmHWM"] / idle["VmRSS"], 2),
        "uploads": uploads,
    }


def run(only: str | None = None) -> list[dict[str, Any]]:
    return [measure(300)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=300)
    print(json.dumps(measure(parser.parse_args().megabytes), indent=2))
