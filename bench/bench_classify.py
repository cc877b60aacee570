"""Bounce classification throughput of mailstack.bounce_classify.classify over the Sisimai corpus.

Usage: .venv/bin/python bench/bench_classify.py

The corpus is tests/data/bounces/sisimai (489 real bounces, complaints and auto-replies, vendored). The
benchmark classifies every message, on one core, and reports messages/s; the baseline, measured in the
same run, is only parsing the same messages with ``email.message_from_bytes(..., policy=compat32)``,
the first step of the classifier. Rounds of the two alternate so that CPU frequency drift hits both
alike; the best of 3 rounds of each is reported. The result also carries the accuracy against the
corpus labels (recipient found, category, reason, in %).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

try:
    import mailstack.bounce_classify  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailstack.bounce_classify import classify

ROUNDS = 3
SECONDS_PER_MEASUREMENT = 6.0  # split over ROUNDS rounds, for each of the two
CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "bounces"
NAME = "bounce-classify"


def expected_category(label: dict[str, Any]) -> str:
    """The category a Sisimai label stands for."""
    if label["reason"] == "feedback":
        return "complaint"
    if label["reason"] in ("vacation", "delivered"):
        return "not_bounce"
    return "hard" if label["hardbounce"] else "soft"


def load_corpus(root: Path = CORPUS) -> tuple[dict[str, bytes], dict[str, list[dict[str, Any]]]]:
    """(file name -> raw message, file name -> expected labels in recipient order)."""
    labels_file = root / "sisimai-expected.jsonl"
    if not labels_file.is_file():
        raise FileNotFoundError(f"bounce corpus not found: {labels_file} (vendored in tests/data/bounces)")
    labels: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in labels_file.read_text().splitlines():
        if line.strip():
            label = json.loads(line)
            labels[label["file"]].append(label)
    messages = {path.name: path.read_bytes() for path in sorted((root / "sisimai").glob("*.eml"))}
    return messages, dict(labels)


def accuracy(messages: dict[str, bytes], labels: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Percent of labelled recipients whose recipient was found, and whose category and reason match
    (the n-th label of a file against the n-th result)."""
    total = found = category = reason = 0
    for name, expected in labels.items():
        results = classify(messages[name])
        for index, label in enumerate(expected):
            total += 1
            if index >= len(results):
                continue
            result = results[index]
            found += bool(result.recipient)
            category += result.category == expected_category(label)
            reason += result.reason == label["reason"]
    return {
        "recipient_pct": round(100 * found / total, 1),
        "category_pct": round(100 * category / total, 1),
        "reason_pct": round(100 * reason / total, 1),
        "labelled_recipients": total,
    }


def _rate(fn: Any, corpus: list[bytes], seconds: float) -> float:
    """Messages per second of ``fn`` over whole passes of ``corpus`` for about ``seconds``."""
    count = 0
    start = time.perf_counter()
    while True:
        for raw in corpus:
            fn(raw)
        count += len(corpus)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def _parse_only(raw: bytes) -> object:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def run(only: str | None = None, seconds: float = SECONDS_PER_MEASUREMENT) -> list[dict[str, Any]]:
    """Run the benchmark and return its result dict (with the accuracy numbers as extra keys)."""
    if only is not None and only != NAME:
        raise ValueError(f"unknown benchmark {only!r}; choose {NAME}")
    messages, labels = load_corpus()
    corpus = list(messages.values())
    quality = accuracy(messages, labels)  # also the warm-up
    per_round = seconds / ROUNDS
    values, baselines = [], []
    for _ in range(ROUNDS):
        values.append(_rate(classify, corpus, per_round))
        baselines.append(_rate(_parse_only, corpus, per_round))
    value, baseline = max(values), max(baselines)
    return [
        {
            "name": NAME,
            "unit": "messages/s",
            "value": round(value, 1),
            "baseline_name": "email-parse-compat32",
            "baseline_value": round(baseline, 1),
            "ratio": round(value / baseline, 3),
            "messages": len(corpus),
            **quality,
        }
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=SECONDS_PER_MEASUREMENT, help="time per measurement (all rounds)"
    )
    args = parser.parse_args(argv)
    for result in run(None, args.seconds):
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
