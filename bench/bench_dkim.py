"""DKIM signing throughput of mailstack.signing.Signer against the raw `cryptography` sign rate.

Usage: .venv/bin/python bench/bench_dkim.py [--only dkim-rsa|dkim-ed25519]

Each benchmark signs a ~4 KB HTML mail through a Signer holding one key of its algorithm (From-domain
lookup, canonicalization, body hash, header folding and the signature itself), and measures in the same
run the raw `cryptography` sign rate for the same key type as the baseline: RSA-2048 PKCS#1 v1.5 over a
512-byte payload, Ed25519 over a 32-byte digest (what RFC 8463 signs). Rounds of the two alternate so
that CPU frequency drift hits both alike; the best of 3 rounds of each is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import mailstack.signing  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mailstack.signing import Algorithm, DkimKey, Signer, generate_key

ROUNDS = 3
SECONDS_PER_MEASUREMENT = 2.4  # split over ROUNDS rounds
MESSAGE_SIZE = 4096

BENCHMARKS: dict[str, tuple[Algorithm, str]] = {
    "dkim-rsa": ("rsa-sha256", "cryptography-rsa2048-sign"),
    "dkim-ed25519": ("ed25519-sha256", "cryptography-ed25519-sign"),
}


def html_mail(size: int = MESSAGE_SIZE) -> bytes:
    """A CRLF newsletter-style HTML message of about ``size`` bytes."""
    headers = (
        "From: Example News <news@example.com>\r\n"
        "To: Reader <reader@example.org>\r\n"
        "Subject: Your weekly digest: 12 new articles\r\n"
        "Date: Mon, 01 Jan 2024 09:00:00 +0000\r\n"
        "Message-ID: <20240101090000.abcdef@mail.example.com>\r\n"
        "Reply-To: support@example.com\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "List-Unsubscribe: <mailto:unsub-123@example.com>,\r\n <https://example.com/u/123abc>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "Feedback-ID: 123:newsletter:example\r\n"
        "\r\n"
    )
    head = "<!DOCTYPE html>\r\n<html><head><title>Digest</title></head>\r\n<body>\r\n<table>\r\n"
    tail = "</table>\r\n</body></html>\r\n"
    message = (headers + head).encode("utf-8")
    i = 0
    while True:
        # Indentation, double spaces and 8-bit text give relaxed canonicalization real work to do.
        row = (
            f'  <tr><td class="title">Article {i}: caf\u00e9 news  </td>'
            f'<td><a href="https://example.com/a/{i}">read</a></td></tr>\r\n'
        ).encode()
        if len(message) + len(row) + len(tail) > size:
            break
        message += row
        i += 1
    return message + tail.encode("utf-8")


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (checking the clock once per batch)."""
    batch = 1
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        calls += batch
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)
        if now - start < seconds / 50:
            batch *= 2


def _raw_signer(key: DkimKey) -> Callable[[], bytes]:
    private_key = key.private_key
    if isinstance(private_key, rsa.RSAPrivateKey):
        payload = bytes(range(256)) * 2
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        return lambda: private_key.sign(payload, pkcs1, sha256)
    assert isinstance(private_key, ed25519.Ed25519PrivateKey)
    digest = bytes(32)
    return lambda: private_key.sign(digest)


def _bench(name: str, seconds: float) -> dict[str, Any]:
    algorithm, baseline_name = BENCHMARKS[name]
    key = generate_key("example.com", "bench", algorithm)
    signer = Signer([key])
    message = html_mail()
    raw = _raw_signer(key)

    def sign() -> bytes:
        return signer.sign(message)

    sign()  # warm-up (and a sanity check that the message signs)
    raw()
    per_round = seconds / ROUNDS
    values, baselines = [], []
    for _ in range(ROUNDS):
        values.append(_rate(sign, per_round))
        baselines.append(_rate(raw, per_round))
    value, baseline = max(values), max(baselines)
    return {
        "name": name,
        "unit": "signatures/s",
        "value": round(value, 1),
        "baseline_name": baseline_name,
        "baseline_value": round(baseline, 1),
        "ratio": round(value / baseline, 3),
    }


def run(only: str | None = None, seconds: float = SECONDS_PER_MEASUREMENT) -> list[dict[str, Any]]:
    """Run the benchmarks (all, or just ``only``) and return one result dict per benchmark."""
    if only is not None and only not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {only!r}; choose from {', '.join(BENCHMARKS)}")
    names = [only] if only is not None else list(BENCHMARKS)
    return [_bench(name, seconds) for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=list(BENCHMARKS), help="run a single benchmark")
    parser.add_argument(
        "--seconds", type=float, default=SECONDS_PER_MEASUREMENT, help="time per measurement (all rounds)"
    )
    args = parser.parse_args(argv)
    for result in run(args.only, args.seconds):
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
