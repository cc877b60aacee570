"""The data directory's disk fills up (SQLite): the API answers 503 with Retry-After in Mailjet's shape
instead of accepting what it cannot store, and everything works again once space returns."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from chaos_support import Node, RecordingSink

pytestmark = pytest.mark.e2e

HEADROOM_KB = 768  # free space left on the data directory's file system when serve starts


def _mounted_on_a_small_tmpfs(stage: Path, mount: Path) -> tuple[str, ...]:
    """A wrapper that runs serve in a mount namespace of its own (nothing system-wide changes), with
    ``mount`` a tmpfs holding a copy of ``stage`` and a ballast file that leaves HEADROOM_KB free."""
    used_kb = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file()) // 1024
    size_kb = used_kb + 4096
    ballast_kb = size_kb - used_kb - HEADROOM_KB - 256  # 256 KB of tmpfs bookkeeping and rounding
    script = (
        f"mount -t tmpfs -o size={size_kb}k tmpfs {mount} && cp -a {stage}/. {mount}/ && "
        f'fallocate -l {ballast_kb}k {mount}/ballast && exec "$@"'
    )
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh")


def test_disk_full_answers_503_then_recovers_by_itself(tmp_path: Path, sink: RecordingSink) -> None:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        pytest.fail("unshare and nsenter (util-linux) are needed to give serve a small file system")
    staged = Node.initialise(tmp_path / "stage", sink.address, None)
    mount = tmp_path / "data"
    mount.mkdir()
    node = Node(mount, staged.env, sink.address, staged.credentials)
    node.wrapper = _mounted_on_a_small_tmpfs(staged.data_dir, mount)
    node.start()
    accepted: set[str] = set()
    refused: tuple[int, dict[str, object]] | None = None
    try:
        with httpx.Client(auth=node.auth, timeout=30) as client:
            for index in range(400):  # bounded: 768 KB fill up long before 8,000 messages
                body = {
                    "Messages": [
                        {
                            "From": {"Email": "news@example.com"},
                            "To": [{"Email": f"d{index}-{j}@example.net"}],
                            "Subject": f"Disk {index}-{j}",
                            "TextPart": "x" * 2000,
                        }
                        for j in range(20)
                    ]
                }
                response = client.post(
                    f"{node.url}/v3.1/send", json=body, headers={"Idempotency-Key": f"d{index}"}
                )
                assert response.status_code in (200, 503), response.text  # never a 500
                if response.status_code == 503:
                    assert int(response.headers["Retry-After"]) > 0
                    error = response.json()
                    assert error["StatusCode"] == 503 and "ErrorMessage" in error, error
                    refused = (index, body)
                    break
                accepted |= {m["To"][0]["Email"] for m in body["Messages"]}
            assert refused is not None, "the disk never filled up"
            assert node.process is not None and node.process.poll() is None  # still serving
            assert client.get(f"{node.url}/healthz").status_code in (200, 503)
            # Space returns (the operator deletes something): nothing to restart.
            subprocess.run(
                ["nsenter", "--target", str(node.process.pid), "--mount", "rm", f"{mount}/ballast"],
                check=True,
            )
            index, body = refused
            deadline = time.monotonic() + 60
            while True:
                response = client.post(
                    f"{node.url}/v3.1/send", json=body, headers={"Idempotency-Key": f"d{index}"}
                )
                if response.status_code == 200 or time.monotonic() > deadline:
                    break
                assert response.status_code == 503, response.text
                time.sleep(0.5)
            assert response.status_code == 200, response.text
            accepted |= {m["To"][0]["Email"] for m in body["Messages"]}  # type: ignore[index]
        deadline = time.monotonic() + 120
        while not accepted <= set(sink.counts()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert accepted <= set(sink.counts()), f"{len(accepted - set(sink.counts()))} accepted, never sent"
        assert node.terminate() == 0
    finally:
        node.kill()
