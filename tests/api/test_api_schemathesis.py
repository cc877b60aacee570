"""The OpenAPI document against the running service: schemathesis (every check, bounded examples) drives
``mailstack serve`` from ``/openapi.json`` with a key holding every scope. No server error, no
conformance failure (status, content type, headers, body), schema-violating data always refused.

The settings, and the few operations that may refuse schema-valid data and why, are in schemathesis.toml
beside this file. ``MAILSTACK_SCHEMATHESIS_SEED`` picks another seed (the default keeps runs repeatable).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from serve_support import Instance

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
SCHEMATHESIS = str(Path(sys.executable).parent / "st")


def test_the_openapi_document_holds_against_the_service(instance: Instance, tmp_path: Path) -> None:
    instance.run("apikey", "scopes", instance.auth[0], "--scope", "*")
    instance.start()
    seed = os.environ.get("MAILSTACK_SCHEMATHESIS_SEED", "20261207")
    config = str(HERE / "schemathesis.toml")
    result = subprocess.run(
        [SCHEMATHESIS, "--config-file", config, "run", f"{instance.url}/openapi.json", "--workers", "1",
         "--seed", seed, "--no-color"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # whatever the run leaves behind stays out of the checkout
        env={**os.environ, "MAILSTACK_API_KEY": instance.auth[0], "MAILSTACK_API_SECRET": instance.auth[1]},
        timeout=600,
        check=False,
    )  # fmt: skip
    summary = result.stdout[-6000:]
    assert result.returncode == 0, f"schemathesis found failures (seed {seed}):\n{summary}\n{result.stderr}"
    assert "Selected: " in result.stdout and "0 generated" not in result.stdout, summary
    assert instance.stop() == 0
