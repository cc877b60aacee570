"""Bounce classification: throughput, and accuracy on mail the rules were not written from.

Usage: .venv/bin/python bench/bench_classify.py [--only NAME] [--table]
   or: .venv/bin/python bench/run.py --only bounce-generalisation --table

``bounce-classify`` classifies every message of tests/data/bounces/sisimai (489 real bounces,
complaints and auto-replies, vendored) and reports messages per CPU second (one core, whatever the
load of the machine); the baseline, measured in
the same run, is only parsing the same messages with ``email.message_from_bytes(..., policy=compat32)``,
the first step of the classifier. Rounds of the two alternate so that CPU frequency drift hits both
alike; the best of 3 rounds of each is reported, with the in-set accuracy and the growth of CPU time
on hostile input (repeated words, unclosed tags, a line of dashes) from 20 KB to 80 KB (linear: ~4).

``bounce-generalisation`` scores every labelled message twice: with every rule (in-set), and
leave-one-family-out (LOFO). Each message belongs to the family of the MTA or provider that wrote it
(FAMILIES below: Postfix, Exim, Sendmail, Microsoft, Google, ...). A rule-based classifier is not
trained, so "leaving a family out" means switching off, while that family is scored, every rule that
could only have been learnt from it:

* a phrase of a table (``phrase_tables()``; an entry's top-level alternatives are phrases of their own)
  is *attributed* to a family when the only labelled
  messages that contain it (in ``evidence_text``) come from that family, or when the only messages
  that contain it *with a label the table stands for* come from that family. Attribution is computed
  from the data in every run, so a phrase added later for one sample is caught the same way;
* the rules written from a vendor's own documentation (``SOURCES``: Microsoft's NDR codes, Orange's
  error numbers, Gmail's states, PowerMTA's categories, SES's JSON) are off for that vendor's family.

What stays on is what other families also show, and what standards fix: the RFC 3463 / IANA status
code tables, RFC 3464 and RFC 5965 parsing, the wording of RFC 5321 replies, RFC 3463 code
descriptions and POSIX error strings (``standard_phrases()``), and phrases seen in at least two
families. The decision order itself was written
with every family in view; that part cannot be left out and is the remaining optimism of the number.

When Debian's Sisimai is installed (``apt-get install libsisimai-perl``), the same messages are also
classified by it and its scores printed as a comparison anchor (nothing depends on it; the development
set is Sisimai's own, so only the other corpora compare fairly).

Scores are per labelled recipient: recipient found (the labelled address when the label has one,
else any address), category (hard/soft/complaint/not_bounce) and reason (Sisimai's vocabulary; the
other corpora's own labels are translated by the table in their README).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import mailstack.bounce_classify  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailstack.bounce_classify import (
    SOURCES,
    BounceResult,
    Category,
    RuleSet,
    classify,
    evidence_text,
    phrase_in,
    phrase_tables,
    standard_phrases,
)

ROUNDS = 3
SECONDS_PER_MEASUREMENT = 6.0  # split over ROUNDS rounds, for each of the two
DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
CORPUS = DATA / "bounces"
NAME = "bounce-classify"
GENERALISATION = "bounce-generalisation"
NAMES = (NAME, GENERALISATION)

# Sisimai's module names (the file name prefixes of the development set) grouped by who wrote the
# bounce: one family per MTA or provider, several modules where one company runs several systems.
_GROUPS = {
    "microsoft": ("exchange2003", "exchange2007", "office365", "outlook", "microsoft"),
    "google": ("gmail", "gsuite", "googlegroups", "google"),
    "yahoo": ("yahoo", "yahooinc"),
    "amazon": ("amazonses", "receivingses", "amazonworkmail"),
    "sendmail": ("sendmail", "v5sendmail"),
    "kddi": ("kddi", "ezweb"),
    "orange": ("franceptt",),
    "lotus": ("domino", "notes"),
    "mcafee": ("mcafee", "mxlogic"),
}
FAMILIES = {module: family for family, modules in _GROUPS.items() for module in modules}
# Which reasons a phrase table can lead to (the decision turns "no such user" after DATA into
# filtered, and a temporary host-unknown into networkerror).
_TABLE_YIELDS = {
    "userunknown": {"userunknown", "filtered"},
    "userunknown-definite": {"userunknown"},
    "hostunknown": {"hostunknown", "networkerror"},
}


def family_of(file_name: str) -> str:
    """The MTA/provider family of a development-set file (``lhost-postfix-03.eml`` -> ``postfix``)."""
    module = re.sub(r"^(?:lhost|rhost)-", "", re.sub(r"-\d+\.eml$", "", file_name))
    return FAMILIES.get(module, module)


def expected_category(label: dict[str, Any]) -> str:
    """The category a Sisimai label stands for."""
    if label["reason"] == "feedback":
        return "complaint"
    if label["reason"] in ("vacation", "delivered"):
        return "not_bounce"
    return "hard" if label["hardbounce"] else "soft"


@dataclass(slots=True)
class Expected:
    """One labelled recipient. ``None`` fields are not scored (the source's label says nothing)."""

    recipient: str | None = None  # the address, when the label names it
    categories: frozenset[str] | None = None  # accepted categories
    reasons: frozenset[str] | None = None  # accepted reasons
    score_recipient: bool = True  # False for messages that are no bounce: nobody to find


@dataclass(slots=True)
class Sample:
    corpus: str
    name: str
    raw: bytes
    family: str
    expected: list[Expected] = field(default_factory=list)
    path: Path | None = None


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


def development_set() -> list[Sample]:
    messages, labels = load_corpus()
    return [
        Sample(
            "sisimai",
            name,
            messages[name],
            family_of(name),
            [
                Expected(None, frozenset({expected_category(lab)}), frozenset({lab["reason"]}))
                for lab in expected
            ],
            CORPUS / "sisimai" / name,
        )
        for name, expected in labels.items()
    ]


def other_corpora() -> list[Sample]:
    """Labelled messages vendored from other projects' test suites (tests/data/*/labels.jsonl)."""
    samples = []
    for labels_file in sorted(DATA.glob("*/labels.jsonl")):
        root = labels_file.parent
        for line in labels_file.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            expected = [
                Expected(
                    item.get("recipient"),
                    frozenset(item["categories"]) if item.get("categories") else None,
                    frozenset(item["reasons"]) if item.get("reasons") else None,
                    item.get("score_recipient", True),
                )
                for item in entry["expected"]
            ]
            path = root / entry["file"]
            samples.append(
                Sample(root.name, entry["file"], path.read_bytes(), entry["family"], expected, path)
            )
    return samples


# ---------------------------------------------------------------------------------------------------
# Scoring


@dataclass(slots=True)
class Score:
    recipients: int = 0
    found: int = 0
    categories: int = 0
    category: int = 0
    reasons: int = 0
    reason: int = 0

    def add(self, other: Score) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def percent(self) -> dict[str, float | None]:
        def pct(hit: int, total: int) -> float | None:
            return round(100 * hit / total, 1) if total else None

        return {
            "recipient_pct": pct(self.found, self.recipients),
            "category_pct": pct(self.category, self.categories),
            "reason_pct": pct(self.reason, self.reasons),
        }


def score_sample(sample: Sample, results: list[BounceResult]) -> Score:
    """Compare ``results`` with the sample's labels: by address when the label names one, else the
    n-th label against the n-th result."""
    score = Score()
    by_address = {a.lower(): r for r in results for a in (r.recipient, r.original_recipient) if a}
    for index, expected in enumerate(sample.expected):
        positional = results[index] if index < len(results) else None
        if expected.recipient is not None:
            result = by_address.get(expected.recipient.lower())
            score.found += result is not None
            result = result or positional  # category and reason are still scored
        else:
            result = positional
            score.found += bool(result and result.recipient and expected.score_recipient)
        score.recipients += expected.score_recipient
        if expected.categories is not None:
            score.categories += 1
            score.category += bool(result and result.category in expected.categories)
        if expected.reasons is not None:
            score.reasons += 1
            score.reason += bool(result and result.reason in expected.reasons)
    return score


def accuracy(messages: dict[str, bytes], labels: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Percent of labelled recipients of the development set whose recipient was found, and whose
    category and reason match (the n-th label of a file against the n-th result)."""
    total = Score()
    for name, expected in labels.items():
        sample = Sample(
            "sisimai",
            name,
            messages[name],
            family_of(name),
            [
                Expected(None, frozenset({expected_category(lab)}), frozenset({lab["reason"]}))
                for lab in expected
            ],
        )
        total.add(score_sample(sample, classify(sample.raw)))
    return {**total.percent(), "labelled_recipients": total.recipients}


# ---------------------------------------------------------------------------------------------------
# Leave-one-family-out


def _label_reasons(sample: Sample) -> set[str]:
    return {reason for e in sample.expected for reason in (e.reasons or ())}


def attribution(samples: Iterable[Sample]) -> dict[tuple[str, str], tuple[set[str], set[str]]]:
    """(table, phrase) -> (families whose messages contain it, families whose messages contain it with
    a label the table can lead to), over the phrases found in at least one message."""
    texts = [(s.family, evidence_text(s.raw), _label_reasons(s)) for s in samples]
    standard = standard_phrases()
    out: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for table, phrases in phrase_tables().items():
        yields = _TABLE_YIELDS.get(table, {table})
        for phrase in phrases:
            if (table, phrase) in standard:
                continue  # wording fixed by an RFC or POSIX: no family taught it
            seen: set[str] = set()
            supporting: set[str] = set()
            for family, text, reasons in texts:
                if phrase_in(phrase, text):
                    seen.add(family)
                    if reasons & yields:
                        supporting.add(family)
            if seen:
                out[(table, phrase)] = (seen, supporting)
    return out


def held_out_rules(family: str, attributed: dict[tuple[str, str], tuple[set[str], set[str]]]) -> RuleSet:
    """The rules in force while ``family`` is scored: none learnt only from it."""
    without = frozenset(
        key
        for key, (seen, supporting) in attributed.items()
        if seen == {family} or (supporting and supporting <= {family})
    )
    return RuleSet(without_phrases=without, without_sources=frozenset(SOURCES.keys() & {family}))


def generalisation(samples: list[Sample]) -> dict[str, Any]:
    """In-set and leave-one-family-out scores, per corpus and family."""
    attributed = attribution(samples)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    totals: dict[str, dict[str, Score]] = defaultdict(lambda: {"in_set": Score(), "lofo": Score()})
    disabled: dict[str, int] = {}
    for sample in samples:
        key = (sample.corpus, sample.family)
        row = rows.setdefault(key, {"in_set": Score(), "lofo": Score(), "messages": 0})
        rules = held_out_rules(sample.family, attributed)
        disabled[sample.family] = len(rules.without_phrases) + len(rules.without_sources)
        in_set = score_sample(sample, classify(sample.raw))
        lofo = score_sample(sample, classify(sample.raw, rules=rules))
        row["in_set"].add(in_set)
        row["lofo"].add(lofo)
        row["messages"] += 1
        totals[sample.corpus]["in_set"].add(in_set)
        totals[sample.corpus]["lofo"].add(lofo)
    families = [
        {
            "corpus": corpus,
            "family": family,
            "messages": row["messages"],
            "recipients": row["in_set"].recipients,
            "rules_off": disabled[family],
            "in_set": row["in_set"].percent(),
            "lofo": row["lofo"].percent(),
        }
        for (corpus, family), row in sorted(rows.items())
    ]
    return {
        "corpora": {
            corpus: {
                "recipients": score["in_set"].recipients,
                "in_set": score["in_set"].percent(),
                "lofo": score["lofo"].percent(),
            }
            for corpus, score in sorted(totals.items())
        },
        "families": families,
        "attributed_phrases": sum(1 for seen, sup in attributed.values() if len(seen) == 1 or len(sup) == 1),
    }


# ---------------------------------------------------------------------------------------------------
# Comparison anchor: Debian's Sisimai (libsisimai-perl), when it is installed. Never required.

_SISIMAI = r"""
use strict; use warnings; use Sisimai; use JSON::PP;
my $json = JSON::PP->new->canonical;
print $json->encode({ version => "$Sisimai::VERSION" }), "\n";
while (my $path = <STDIN>) {
    chomp $path;
    my $list = eval { Sisimai->make($path, 'delivered' => 1) } || [];
    my @out = map { { recipient => $_->recipient->address, reason => $_->reason,
                      softbounce => $_->softbounce, status => $_->deliverystatus } } @$list;
    print $json->encode({ file => $path, results => \@out }), "\n";
}
"""


def _sisimai_results(samples: list[Sample]) -> tuple[str, dict[str, list[BounceResult]]] | None:
    """Sisimai's verdicts per file, as BounceResults (its own softbounce flag decides hard/soft)."""
    perl = shutil.which("perl")
    if perl is None:
        return None
    paths = [str(s.path) for s in samples if s.path is not None]
    try:
        done = subprocess.run(
            [perl, "-e", _SISIMAI],
            input="\n".join(paths) + "\n",
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.splitlines()
    if done.returncode != 0 or not lines:
        return None  # Sisimai is not installed
    version = json.loads(lines[0]).get("version", "?")
    out: dict[str, list[BounceResult]] = {}
    for line in lines[1:]:
        entry = json.loads(line)
        results = []
        for item in entry["results"]:
            reason = str(item["reason"])
            category: Category
            if reason == "feedback":
                category = "complaint"
            elif reason in ("delivered", "vacation"):
                category = "not_bounce"
            else:
                category = "hard" if str(item["softbounce"]) == "0" else "soft"
            results.append(BounceResult(recipient=str(item["recipient"]), category=category, reason=reason))
        out[entry["file"]] = results or [
            BounceResult(recipient="", category="not_bounce", reason="undefined")
        ]
    return version, out


def anchor_scores(samples: list[Sample]) -> dict[str, Any] | None:
    """Debian's Sisimai on the same labelled messages (its own sample set is its development set)."""
    found = _sisimai_results(samples)
    if found is None:
        return None
    version, results = found
    totals: dict[str, Score] = defaultdict(Score)
    for sample in samples:
        if sample.path is not None and str(sample.path) in results:
            totals[sample.corpus].add(score_sample(sample, results[str(sample.path)]))
    return {
        "name": f"Sisimai {version} (libsisimai-perl)",
        "corpora": {c: s.percent() for c, s in totals.items()},
    }


def table(result: dict[str, Any]) -> str:
    """A Markdown table of a ``bounce-generalisation`` result."""

    def cell(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}"

    def pair(scores: dict[str, Any], key: str) -> str:
        return f"{cell(scores['in_set'][key])} / {cell(scores['lofo'][key])}"

    lines = [
        "| corpus | family | msgs | rcpts | rules off | recipient % in-set / LOFO | "
        "category % in-set / LOFO | reason % in-set / LOFO |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for row in result["families"]:
        lines.append(
            f"| {row['corpus']} | {row['family']} | {row['messages']} | {row['recipients']} | "
            f"{row['rules_off']} | {pair(row, 'recipient_pct')} | {pair(row, 'category_pct')} | "
            f"{pair(row, 'reason_pct')} |"
        )
    for corpus, scores in result["corpora"].items():
        lines.append(
            f"| **{corpus}** | **all** | | {scores['recipients']} | | {pair(scores, 'recipient_pct')} | "
            f"{pair(scores, 'category_pct')} | {pair(scores, 'reason_pct')} |"
        )
    anchor = result.get("anchor")
    if anchor:
        for corpus, scores in anchor["corpora"].items():
            lines.append(
                f"| {corpus} | {anchor['name']} | | | | {cell(scores['recipient_pct'])} | "
                f"{cell(scores['category_pct'])} | {cell(scores['reason_pct'])} |"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Throughput


def _rate(fn: Callable[[bytes], object], corpus: list[bytes], seconds: float) -> float:
    """Messages per CPU second of ``fn`` over whole passes of ``corpus`` for about ``seconds``.

    CPU time of this process, not wall time: the classifier is single-threaded, so this is the rate
    of one core, whatever else the (shared) machine is running."""
    count = 0
    start = time.process_time()
    while True:
        for raw in corpus:
            fn(raw)
        count += len(corpus)
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return count / elapsed


def _parse_only(raw: bytes) -> object:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


# Hostile shapes that once made the classifier quadratic (a rescan from every repeated prefix).
_HOSTILE_UNITS = ("user ", "<", "<br", "-", "host domain ", "x@", "mailbox ")


def _hostile(unit: str, size: int) -> bytes:
    text = unit * (size // len(unit))
    return (
        "From: MAILER-DAEMON@example.com\nSubject: Undelivered Mail\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        f"--B\nContent-Type: text/plain\n\n{text}\n--B\nContent-Type: text/html\n\n{text}\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\n"
        f"Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.0.0\n"
        f"Diagnostic-Code: smtp; 550 {text}\n\n--B--\n"
    ).encode()


def hostile_growth(size: int = 20_000) -> dict[str, float]:
    """CPU time on 4x the input over CPU time on 1x, per hostile shape (linear: about 4)."""
    out = {}
    for unit in _HOSTILE_UNITS:
        times = []
        for n in (size, 4 * size):
            raw = _hostile(unit, n)
            start = time.process_time()
            classify(raw)
            times.append(time.process_time() - start)
        out[unit.strip() or repr(unit)] = round(times[1] / max(times[0], 1e-3), 1)
    return out


def _throughput(seconds: float) -> dict[str, Any]:
    messages, labels = load_corpus()
    corpus = list(messages.values())
    quality = accuracy(messages, labels)  # also the warm-up
    per_round = seconds / ROUNDS
    values, baselines = [], []
    for _ in range(ROUNDS):
        values.append(_rate(classify, corpus, per_round))
        baselines.append(_rate(_parse_only, corpus, per_round))
    value, baseline = max(values), max(baselines)
    growth = hostile_growth()
    return {
        "name": NAME,
        "unit": "messages per CPU second (one core)",
        "value": round(value, 1),
        "baseline_name": "email-parse-compat32",
        "baseline_value": round(baseline, 1),
        "ratio": round(value / baseline, 3),
        "messages": len(corpus),
        **quality,
        # Linear growth on hostile input: the worst 4x/1x CPU-time ratio over the shapes (about 4).
        "hostile_growth_4x": max(growth.values()),
        "hostile_growth_by_shape": growth,
    }


def _generalisation() -> dict[str, Any]:
    samples = development_set() + other_corpora()
    start = time.perf_counter()
    result = generalisation(samples)
    result["anchor"] = anchor_scores(samples)
    dev = result["corpora"]["sisimai"]
    return {
        "name": GENERALISATION,
        "unit": "% of labelled recipients, leave-one-family-out",
        # The headline: the development set's reason accuracy with each family's own rules off.
        "value": dev["lofo"]["reason_pct"],
        "baseline_name": "in-set (every rule on)",
        "baseline_value": dev["in_set"]["reason_pct"],
        "ratio": round(dev["lofo"]["reason_pct"] / dev["in_set"]["reason_pct"], 3),
        "seconds": round(time.perf_counter() - start, 1),
        **result,
    }


def run(only: str | None = None, seconds: float = SECONDS_PER_MEASUREMENT) -> list[dict[str, Any]]:
    """Run the benchmarks (or only ``only``) and return their result dicts."""
    if only is not None and only not in NAMES:
        raise ValueError(f"unknown benchmark {only!r}; choose one of {', '.join(NAMES)}")
    results = []
    if only in (None, NAME):
        results.append(_throughput(seconds))
    if only in (None, GENERALISATION):
        results.append(_generalisation())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=SECONDS_PER_MEASUREMENT, help="time per measurement (all rounds)"
    )
    parser.add_argument("--only", choices=NAMES, help="run one benchmark")
    parser.add_argument("--table", action="store_true", help="also print the per-family table")
    args = parser.parse_args(argv)
    for result in run(args.only, args.seconds):
        print(json.dumps(result), flush=True)
        if args.table and result["name"] == GENERALISATION:
            print(table(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
