"""Fixtures of the SMTP submission tests; the end-to-end ones reuse tests/e2e's ``mailstack`` helpers."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/e2e is not a package: pytest makes its helpers importable only while collecting there, so make
# them importable here the same way (running tests/smtp alone must work too).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_helpers import instance, mailstack_env

__all__ = ["instance", "mailstack_env"]
