"""Chaos scenarios run ``mailstack serve`` as subprocesses against a recording SMTP sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chaos_support import RecordingSink


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    sink = RecordingSink().start()
    try:
        yield sink
    finally:
        sink.stop()
