"""Signatures checked by OpenDKIM's own verifier (`opendkim -t`), an independent C implementation.

How `opendkim -t FILE -x CONF` reports (OpenDKIM 2.11, checked on Debian 12): the exit status is 0
whether the signature passes or fails, so it only tells that the run worked. The verdict is printed on
stdout, one summary line for the first signature:

    opendkim: FILE: verification (s=SEL, d=DOMAIN, 2048-bit key) succeeded
    opendkim: FILE: verification (s=SEL d=DOMAIN, 2048-bit key, unknown) failed: signature verification failed

and, with -vv, the Authentication-Results header field it would add, with one dkim=pass|fail result
per signature (`dkim=pass ... header.s=SEL ...`). The tests assert on both.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from mailstack.signing import DkimKey, Signer, generate_key

T0 = 1_700_000_000
NOT_INSTALLED = "opendkim is not installed (apt-get install opendkim opendkim-tools)"


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


MESSAGES: dict[str, bytes] = {
    "simple": crlf(
        "From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: Hello\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\nMessage-ID: <1@example.com>\n\nHi Bob.\n"
    ),
    "folded-headers": crlf(
        "From: Alice\n  <alice@example.com>\nTo: bob@example.org,\n\tcarol@example.org\n"
        "Subject: a rather long subject that\n\tcontinues on\n  a third line\n"
        'Content-Type: multipart/alternative;\n boundary="xyz"\n\n--xyz\nbody\n--xyz--\n'
    ),
    "repeated-headers": crlf(
        "Received: from a by b\nReceived: from c by d\nFrom: alice@example.com\nTo: one@example.org\n"
        "Cc: x@example.org\nTo: two@example.org\nCc: y@example.org\nSubject: repeated\n\nbody\n"
    ),
    "trailing-whitespace": crlf(
        "From: alice@example.com \t\nTo:   bob@example.org  \nSubject:\t spaced   out \t \n\n"
        "line with trailing spaces   \nline\twith\t\ttabs\t\n  leading and   inner   \n \t \nend\n"
    ),
    "empty-body": crlf("From: alice@example.com\nSubject: nothing\n\n"),
    "trailing-blank-lines": crlf("From: alice@example.com\nSubject: blanks\n\nbody\n\n\n\n   \n\n"),
    "utf8-8bit": "From: Zo\u00eb <zoe@example.com>\r\nSubject: \u00fcber\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\nGr\u00fc\u00dfe \u2014 \u65e5\u672c\u8a9e\r\n".encode(),
    "dot-lines": crlf("From: alice@example.com\nSubject: dots\n\n.\n..\n.leading dot\n"),
}


def find_opendkim() -> str:
    """Path of the opendkim binary; fails the calling test (never skips) when it is missing."""
    # A plain helper, not a fixture, so a missing binary is a test failure rather than a setup error.
    # /usr/sbin is not on every user's PATH.
    path = shutil.which("opendkim") or shutil.which("opendkim", path="/usr/sbin:/usr/local/sbin")
    if path is None:
        pytest.fail(NOT_INSTALLED)
    return path


class Verdict:
    """What one `opendkim -t -vv` run said about a message."""

    def __init__(self, filename: Path, stdout: str) -> None:
        self.stdout = stdout
        summary = re.findall(rf"^opendkim: {re.escape(str(filename))}: (.*)$", stdout, re.MULTILINE)
        assert len(summary) == 1, stdout
        self.summary = summary[0]
        results = re.search(
            r"hname='Authentication-Results' hvalue='(.*?)'$", stdout, re.MULTILINE | re.DOTALL
        )
        assert results, stdout
        # selector -> "pass" / "fail (reason)"
        self.by_selector: dict[str, str] = {}
        for item in results.group(1).split(";")[1:]:
            match = re.match(r'\s*dkim=(\w+)(?: reason="([^"]*)")?.*\bheader\.s=(\S+)', item, re.DOTALL)
            if match:
                verdict, reason, selector = match.groups()
                self.by_selector[selector] = f"{verdict} ({reason})" if reason else verdict


def run_opendkim(tmp_path: Path, message: bytes, keys: Iterable[DkimKey]) -> Verdict:
    keyfile = tmp_path / "keys"
    keyfile.write_text("".join(f"{k.dns_name()} {k.dns_txt()}\n" for k in keys))
    conf = tmp_path / "opendkim.conf"
    conf.write_text(f"Mode v\nTestPublicKeys {keyfile}\nSyslog no\nMinimumKeyBits 1024\n")
    msgfile = tmp_path / "message.eml"
    msgfile.write_bytes(message)
    proc = subprocess.run(
        [find_opendkim(), "-t", str(msgfile), "-x", str(conf), "-vv"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"opendkim exited {proc.returncode}: {proc.stdout}{proc.stderr}"
    return Verdict(msgfile, proc.stdout)


def succeeded(key: DkimKey, bits: int) -> str:
    return f"verification (s={key.selector}, d={key.domain}, {bits}-bit key) succeeded"


def failed(key: DkimKey, bits: int) -> str:
    return (
        f"verification (s={key.selector} d={key.domain}, {bits}-bit key, unknown) "
        "failed: signature verification failed"
    )


BITS = {"rsa-sha256": 2048, "ed25519-sha256": 0}  # opendkim reports ed25519 keys as "0-bit"
FAIL = "fail (signature verification failed)"


def test_opendkim_supports_both_algorithms() -> None:
    proc = subprocess.run([find_opendkim(), "-V"], capture_output=True, text=True, timeout=60, check=False)
    algorithms = proc.stdout.split("Supported signing algorithms:")[1].split("Supported canon")[0].split()
    assert {"rsa-sha256", "ed25519-sha256"} <= set(algorithms), proc.stdout


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_signature_verifies_with_opendkim(name: str, any_key: DkimKey, tmp_path: Path) -> None:
    signed = Signer([any_key]).sign_message(MESSAGES[name], timestamp=T0)
    verdict = run_opendkim(tmp_path, signed, [any_key])
    assert verdict.summary == succeeded(any_key, BITS[any_key.algorithm])
    assert verdict.by_selector == {any_key.selector: "pass"}


def test_rsa_and_ed25519_signatures_on_one_message(rsa_key: DkimKey, ed_key: DkimKey, tmp_path: Path) -> None:
    signed = Signer([rsa_key, ed_key]).sign_message(MESSAGES["folded-headers"], timestamp=T0)
    verdict = run_opendkim(tmp_path, signed, [rsa_key, ed_key])
    assert verdict.by_selector == {rsa_key.selector: "pass", ed_key.selector: "pass"}


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda m: m.replace(b"Hi Bob.", b"Hi Bob!"), id="body"),
        pytest.param(lambda m: m.replace(b"Subject: Hello", b"Subject: Hallo"), id="subject"),
        pytest.param(lambda m: b"From: Mallory <mallory@example.net>\r\n" + m, id="from-added-on-top"),
        pytest.param(
            lambda m: m.replace(b"\r\n\r\n", b"\r\nFrom: mallory@example.net\r\n\r\n", 1),
            id="from-added-below",
        ),
    ],
)
def test_tampering_fails_with_opendkim(
    tamper: Callable[[bytes], bytes], any_key: DkimKey, tmp_path: Path
) -> None:
    signatures = Signer([any_key]).sign(MESSAGES["simple"], timestamp=T0)
    verdict = run_opendkim(tmp_path, signatures + tamper(MESSAGES["simple"]), [any_key])
    assert verdict.summary == failed(any_key, BITS[any_key.algorithm])
    assert verdict.by_selector == {any_key.selector: FAIL}


def test_whitespace_changes_pass_with_opendkim(rsa_key: DkimKey, tmp_path: Path) -> None:
    signed = Signer([rsa_key]).sign_message(MESSAGES["simple"], timestamp=T0)
    reflowed = signed.replace(b"Subject: Hello", b"Subject:  Hello\t").replace(b"Hi Bob.", b"Hi   Bob. ")
    verdict = run_opendkim(tmp_path, reflowed + b"\r\n\r\n", [rsa_key])
    assert verdict.by_selector == {rsa_key.selector: "pass"}


def test_oversigning_is_what_catches_a_from_added_on_top(rsa_key: DkimKey, tmp_path: Path) -> None:
    # Without oversigning, h=from covers only the bottom-most From, so OpenDKIM accepts a forged From
    # placed above it; this is why the signer oversigns From by default.
    signatures = Signer([rsa_key], oversigned=()).sign(MESSAGES["simple"], timestamp=T0)
    forged = signatures + b"From: Mallory <mallory@example.net>\r\n" + MESSAGES["simple"]
    verdict = run_opendkim(tmp_path, forged, [rsa_key])
    assert verdict.by_selector == {rsa_key.selector: "pass"}


def test_wrong_key_fails_with_opendkim(rsa_key: DkimKey, tmp_path: Path) -> None:
    other = generate_key("example.com", rsa_key.selector, "rsa-sha256")
    signed = Signer([rsa_key]).sign_message(MESSAGES["simple"], timestamp=T0)
    verdict = run_opendkim(tmp_path, signed, [other])
    assert verdict.by_selector == {rsa_key.selector: FAIL}
