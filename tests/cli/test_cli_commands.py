"""The command line as a user runs it: rotation, API keys, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MAILSTACK = str(Path(sys.executable).parent / "mailstack")


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAILSTACK, *args], capture_output=True, text=True, check=check)


def test_dkim_rotate_prints_new_records_and_keeps_the_old_ones(tmp_path: Path) -> None:
    init = json.loads(_run("init", "--data-dir", str(tmp_path), "--domain", "example.com", "--json").stdout)
    rotated = json.loads(
        _run("dkim", "rotate", "--data-dir", str(tmp_path), "--domain", "example.com", "--json").stdout
    )
    old = {k["selector"] for k in init["dkim"]}
    new = {k["selector"] for k in rotated["dkim"]}
    assert len(new) == 2 and old.isdisjoint(new)
    assert all(k["txt"].startswith("v=DKIM1; k=") for k in rotated["dkim"])
    listed = json.loads(_run("dkim", "list", "--data-dir", str(tmp_path), "--json").stdout)
    assert {k["selector"] for k in listed} == old | new


def test_apikey_create_gives_a_working_new_key(tmp_path: Path) -> None:
    _run("init", "--data-dir", str(tmp_path), "--domain", "example.com", "--json")
    created = json.loads(_run("apikey", "create", "--data-dir", str(tmp_path), "--json").stdout)
    assert len(created["api_key"]) == 32 and len(created["api_secret"]) == 64


def test_errors_are_clear_and_exit_non_zero(tmp_path: Path) -> None:
    bad_domain = _run("init", "--data-dir", str(tmp_path), "--domain", "not a domain", check=False)
    assert bad_domain.returncode == 2 and "not a valid domain" in bad_domain.stderr
    missing = _run("serve", "--data-dir", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 2 and "mailstack init" in missing.stderr
    _run("init", "--data-dir", str(tmp_path), "--domain", "example.com", "--json")
    bad_relay = _run("serve", "--data-dir", str(tmp_path), "--relay", "no-port", check=False)
    assert bad_relay.returncode == 2 and "delivery.relay" in bad_relay.stderr
    no_mail = _run("outbox", "show", "--data-dir", str(tmp_path), "99", check=False)
    assert no_mail.returncode == 1 and "no message 99" in no_mail.stderr
