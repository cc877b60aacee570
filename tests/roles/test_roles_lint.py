"""The roles and playbooks pass ansible-lint's production profile; both inventories parse."""

from __future__ import annotations

import json
import subprocess

import pytest
from roles_support import BIN, REPO, ansible_env

pytestmark = pytest.mark.timeout(600)


def test_ansible_lint_production_profile(tmp_path: pytest.TempPathFactory) -> None:
    result = subprocess.run(
        [
            str(BIN / "ansible-lint"),
            "--profile",
            "production",
            "--offline",
            "--nocolor",
            "site.yml",
            "roles/",
        ],
        cwd=REPO,
        env=ansible_env(tmp_path / "unused.json"),  # type: ignore[operator]
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


def inventory(name: str) -> dict[str, object]:
    result = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", f"inventories/{name}", "--list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


def test_example_inventory_documents_a_three_node_fleet() -> None:
    loaded = inventory("example")
    assert loaded["senders"] == {"hosts": ["mta1.example.com", "mta2.example.com"]}  # type: ignore[comparison-overlap]
    assert loaded["db"] == {"hosts": ["db1.example.com"]}  # type: ignore[comparison-overlap]
    hostvars = loaded["_meta"]["hostvars"]  # type: ignore[index]
    for host in ("mta1.example.com", "mta2.example.com", "db1.example.com"):
        assert hostvars[host]["mailstack_private_address"].startswith("10.0.0.")
        assert hostvars[host]["mailstack_throttle"]["google"] == {"rate": 50, "concurrency": 20}


def test_local_inventory_targets_this_machine() -> None:
    loaded = inventory("local")
    hostvars = loaded["_meta"]["hostvars"]["localhost"]  # type: ignore[index]
    assert hostvars["ansible_connection"] == "local"
    assert loaded["senders"] == loaded["db"] == {"hosts": ["localhost"]}  # type: ignore[comparison-overlap]


@pytest.mark.parametrize("name", ["example", "local"])
def test_site_yml_parses_with_each_inventory(name: str) -> None:
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", f"inventories/{name}", "site.yml", "--list-tasks"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for role in ("firewall", "postgresql", "mailstack", "postfix", "dkim_keys"):
        assert f"{role} :" in result.stdout
