"""Fixtures of the infra tests: fresh Pulumi mocks per test (see infra_mocks), on the mocks' event loop."""

from __future__ import annotations

import pytest
from infra_mocks import Mocked


@pytest.fixture
def mocked() -> Mocked:
    """Fresh Pulumi mocks and empty configuration for one test, on the mocks' event loop (whatever an
    earlier test did to the thread's)."""
    return Mocked()
