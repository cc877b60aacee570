"""The service's log: JSON lines that never carry an e-mail address, whoever wrote the line."""

from __future__ import annotations

import json
import subprocess
import sys

from mailstack.observability._logging import scrub_addresses

PROGRAM = """
import logging
from mailstack.observability import configure_logging, get_logger

configure_logging()
log = get_logger("mailstack.test")
log.info("relay said", reply="550 5.1.1 <ana.logprobe@example.net>: user unknown", ids=[1, 2])
log.info("nested", data_like={"to": ["bo.logprobe%40example.org"]}, count=3)
try:
    raise ValueError("cannot deliver to carl.logprobe@example.com")
except ValueError:
    log.exception("delivery batch failed")
logging.getLogger("uvicorn.error").warning("client dee.logprobe@mail.example.com went away")
"""


def test_no_address_reaches_the_log_whoever_logs_it() -> None:
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["event"] for line in lines] == [
        "relay said",
        "nested",
        "delivery batch failed",
        "client <address> went away",
    ]
    assert "logprobe" not in result.stderr
    assert lines[0]["reply"] == "550 5.1.1 <<address>>: user unknown" and lines[0]["ids"] == [1, 2]
    assert lines[1]["data_like"] == {"to": ["<address>"]} and lines[1]["count"] == 3
    assert "ValueError: cannot deliver to <address>" in lines[2]["exception"]  # the traceback stays useful


def test_values_without_addresses_are_left_alone() -> None:
    event = {"event": "serving", "api": "http://127.0.0.1:8800", "relay": "[10.0.0.5]:25", "n": 4, "ok": True}
    assert scrub_addresses(None, "info", dict(event)) == event
