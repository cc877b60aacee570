"""site.yml converges this machine, a second run changes nothing, and check mode runs clean."""

from __future__ import annotations

import pytest
from roles_support import Deployment

# The first test to ask for the deployment pays for it (three playbook runs on a busy machine).
pytestmark = pytest.mark.timeout(1500)


def test_site_converges_this_machine(deployment: Deployment) -> None:
    first = deployment.first
    assert first.returncode == 0 and not first.failures, first.describe()
    assert first.total("ok") > 0, first.describe()


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    second = deployment.second
    assert second.returncode == 0 and not second.failures, second.describe()
    assert second.total("changed") == 0, second.describe()


def test_check_mode_runs_clean_and_reports_no_change(deployment: Deployment) -> None:
    check = deployment.check
    assert check.returncode == 0 and not check.failures, check.describe()
    assert check.total("changed") == 0, check.describe()
