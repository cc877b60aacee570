"""``mailstack bounce classify`` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bounce_samples import EXIM, arf, dsn

MAILSTACK = str(Path(sys.executable).parent / "mailstack")
CONTRACT_KEYS = {"file", "recipient", "category", "reason", "status", "reply_code"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAILSTACK, "bounce", "classify", *args], capture_output=True, text=True, check=False
    )


def test_one_json_line_per_recipient(tmp_path: Path) -> None:
    two = tmp_path / "two.eml"
    two.write_bytes(
        dsn(
            recipients=(
                ("a@example.org", "failed", "5.1.1", "smtp; 550 5.1.1 unknown user"),
                ("b@example.org", "failed", "5.2.2", "smtp; 552 5.2.2 mailbox full"),
            )
        )
    )
    (tmp_path / "arf.eml").write_bytes(arf())
    (tmp_path / "exim.eml").write_bytes(EXIM)
    done = _run(str(two), str(tmp_path / "arf.eml"), str(tmp_path / "exim.eml"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(set(line) >= CONTRACT_KEYS for line in lines)
    assert [(line["recipient"], line["category"], line["reason"]) for line in lines] == [
        ("a@example.org", "hard", "userunknown"),
        ("b@example.org", "soft", "mailboxfull"),
        ("bob@example.net", "complaint", "feedback"),
        ("carol@example.org", "soft", "mailboxfull"),
    ]
    assert lines[0]["file"] == str(two) and lines[0]["status"] == "5.1.1" and lines[0]["reply_code"] == "550"


def test_garbage_still_answers_and_unreadable_files_fail(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\xff garbage \x00")
    done = _run(str(junk), str(tmp_path / "missing.eml"))
    assert done.returncode == 1
    [line] = [json.loads(x) for x in done.stdout.splitlines()]
    assert (line["file"], line["category"], line["reason"], line["recipient"]) == (
        str(junk),
        "not_bounce",
        "undefined",
        "",
    )
    assert "missing.eml" in done.stderr and "cannot read" in done.stderr
