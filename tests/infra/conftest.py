"""Fixtures of the infra tests: fresh Pulumi mocks per test (see infra_mocks)."""

from __future__ import annotations

import pytest
from infra_mocks import Mocked


@pytest.fixture
def mocked() -> Mocked:
    """Fresh Pulumi mocks and empty configuration for one test."""
    return Mocked()
