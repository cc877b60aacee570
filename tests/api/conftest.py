"""Fixtures of the API tests: a running stack (the app in-process over a real database) and an admin key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engagement_support import Stack, make_stack

from mailstack.storage import create_api_key


@pytest.fixture
def stack(tmp_path: Path, db_url: str) -> Iterator[Stack]:
    with make_stack(tmp_path, db_url) as running:
        yield running


@pytest.fixture
def admin(stack: Stack) -> tuple[str, str]:
    """Credentials of a key holding only the admin ``privacy`` scope."""
    with stack.runtime.engine.begin() as conn:
        return create_api_key(conn, "dpo", ["privacy"])
