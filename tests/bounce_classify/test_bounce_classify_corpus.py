"""Accuracy of the classifier on the real bounces vendored in tests/data/bounces (Sisimai's sample set)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from mailstack.bounce_classify import classify

# The labelled corpus is vendored with the tests (origin and licence in its README).
CORPUS = Path(__file__).resolve().parents[1] / "data" / "bounces"


def _category(label: dict[str, Any]) -> str:
    if label["reason"] == "feedback":
        return "complaint"
    if label["reason"] in ("vacation", "delivered"):
        return "not_bounce"
    return "hard" if label["hardbounce"] else "soft"


@pytest.fixture(scope="module")
def scores() -> dict[str, float]:
    labels_file = CORPUS / "sisimai-expected.jsonl"
    if not labels_file.is_file():
        pytest.fail(
            f"the bounce corpus is missing: looked for {labels_file} "
            "(tests/data/bounces, vendored with the project)",
            pytrace=False,
        )
    labels: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in labels_file.read_text().splitlines():
        if line.strip():
            label = json.loads(line)
            labels[label["file"]].append(label)
    total = found = category = reason = 0
    for name, expected in labels.items():
        results = classify((CORPUS / "sisimai" / name).read_bytes())
        for index, label in enumerate(expected):
            total += 1
            if index < len(results):
                found += bool(results[index].recipient)
                category += results[index].category == _category(label)
                reason += results[index].reason == label["reason"]
    assert total > 400, f"only {total} labelled recipients in {labels_file}"
    return {"recipient": found / total, "category": category / total, "reason": reason / total}


def test_recipient_found_for_95_percent(scores: dict[str, float]) -> None:
    assert scores["recipient"] >= 0.95, scores


def test_category_right_for_95_percent(scores: dict[str, float]) -> None:
    assert scores["category"] >= 0.95, scores


def test_reason_right_for_85_percent(scores: dict[str, float]) -> None:
    assert scores["reason"] >= 0.85, scores


def test_every_corpus_file_answers() -> None:
    files = sorted((CORPUS / "sisimai").glob("*.eml"))
    assert len(files) > 400, f"expected the Sisimai corpus in {CORPUS / 'sisimai'}"
    for path in files:
        results = classify(path.read_bytes())
        assert results, path.name
        for result in results:
            assert result.category in ("hard", "soft", "complaint", "not_bounce"), path.name
            assert result.reason, path.name


# Other parsers' labelled corpora, vendored as held-out material (tests/data/*/labels.jsonl): their
# labels are translated into mailstack's terms by a fixed table (see each README).
DATA = CORPUS.parent


@pytest.fixture(scope="module")
def held_out_scores() -> dict[str, float]:
    total = found = categories = category = reasons = reason = 0
    files = sorted(DATA.glob("*/labels.jsonl"))
    assert files, f"no held-out corpus under {DATA}"
    for labels_file in files:
        for line in labels_file.read_text().splitlines():
            entry = json.loads(line)
            results = classify((labels_file.parent / entry["file"]).read_bytes())
            by_address = {a.lower(): r for r in results for a in (r.recipient, r.original_recipient) if a}
            for index, expected in enumerate(entry["expected"]):
                result = results[index] if index < len(results) else None
                if expected.get("score_recipient", True):
                    total += 1
                    if expected["recipient"]:
                        hit = by_address.get(expected["recipient"].lower())
                        found += hit is not None
                        result = hit or result
                    else:
                        found += bool(result and result.recipient)
                if expected["categories"]:
                    categories += 1
                    category += bool(result and result.category in expected["categories"])
                if expected["reasons"]:
                    reasons += 1
                    reason += bool(result and result.reason in expected["reasons"])
    assert total > 100, total
    return {"recipient": found / total, "category": category / categories, "reason": reason / reasons}


def test_held_out_corpora_keep_their_scores(held_out_scores: dict[str, float]) -> None:
    # Measured when they were added and after general fixes (bench: bounce-generalisation).
    assert held_out_scores["recipient"] >= 0.95, held_out_scores
    assert held_out_scores["category"] >= 0.88, held_out_scores
    assert held_out_scores["reason"] >= 0.93, held_out_scores
