"""The wheel the mailstack role installs: built the way the role builds it, from the checkout as it is.

The role used to build from a ``tar`` copy of ``mailstack/``, which kept the retention policy as a link to
a file outside the copy: the wheel had no policy and the deployed ``mailstack serve`` exited with
"retention policy file not found". These tests build with the role's own build step, install the wheel
alone into a fresh virtualenv (as the role does on a sender) and start ``mailstack serve`` from it.
No root and nothing system-wide: the wheel, the virtualenv and the data directory live in tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from roles_support import REPO
from support import free_port

BIN = Path(sys.executable).parent
UV = str(BIN / "uv")
BUILD_SCRIPT = REPO / "roles" / "mailstack" / "files" / "build_wheel.py"
PACKAGE = REPO / "mailstack"
POLICY = "mailstack/privacy/retention.yaml"
MIGRATIONS = sorted(
    f"mailstack/storage/migrations/versions/{path.name}"
    for path in (PACKAGE / "storage" / "migrations" / "versions").glob("*.py")
)

pytestmark = pytest.mark.timeout(600)


def build_like_the_role(source: Path, out_dir: Path) -> subprocess.CompletedProcess[str]:
    """The role's build task: the playbook's Python runs files/build_wheel.py with the role's arguments."""
    if not BUILD_SCRIPT.is_file():
        pytest.fail(
            f"{BUILD_SCRIPT.relative_to(REPO)} is missing: the role has no checked wheel build", False
        )
    return subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--source", str(source), "--out-dir", str(out_dir), "--uv", UV],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's wheel, as the playbook's defaults build it (mailstack__source_dir: the checkout)."""
    result = build_like_the_role(REPO, tmp_path_factory.mktemp("dist"))
    assert result.returncode == 0, result.stderr
    built = Path(result.stdout.splitlines()[-1])
    assert built.is_file() and built.name.startswith("mailstack-") and built.suffix == ".whl", built
    return built


def test_the_role_builds_the_checkout_with_the_checked_build() -> None:
    tasks = yaml.safe_load((REPO / "roles" / "mailstack" / "tasks" / "install.yml").read_text())
    (build,) = [task for task in tasks if task["name"].startswith("Build the wheel")]
    argv = build["ansible.builtin.command"]["argv"]
    assert argv[:2] == ["{{ ansible_playbook_python }}", "{{ role_path }}/files/build_wheel.py"]
    assert argv[argv.index("--source") + 1] == "{{ mailstack__source_dir }}"
    defaults = yaml.safe_load((REPO / "roles" / "mailstack" / "defaults" / "main.yml").read_text())
    assert defaults["mailstack__source_dir"] == "{{ playbook_dir }}"  # the checkout site.yml is in


def test_the_package_holds_real_files_and_policies_links_to_its_policy() -> None:
    links = [str(path.relative_to(REPO)) for path in PACKAGE.rglob("*") if path.is_symlink()]
    assert not links, f"links inside the package (a copy or an archive may not carry them): {links}"
    repository_policy = REPO / "policies" / "retention.yaml"
    # One file, not two copies that can drift: policies/ reads the package's own policy.
    assert repository_policy.is_symlink(), "policies/retention.yaml must link to the package's policy"
    assert repository_policy.resolve() == (REPO / POLICY).resolve()


def test_the_wheel_holds_the_retention_policy_and_the_migrations(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert POLICY in names, "the wheel has no retention policy: mailstack serve cannot start"
        assert archive.read(POLICY) == (REPO / "policies" / "retention.yaml").read_bytes()
        assert MIGRATIONS, "no migrations in the checkout?"
        assert set(MIGRATIONS) <= names, f"migrations missing: {sorted(set(MIGRATIONS) - names)}"
        assert "mailstack/storage/migrations/env.py" in names


def test_the_same_checkout_gives_the_same_wheel(wheel: Path, tmp_path: Path) -> None:
    # The role reinstalls when the wheel's sha256 changes: a second build must not change it.
    again = build_like_the_role(REPO, tmp_path)
    assert again.returncode == 0, again.stderr
    assert Path(again.stdout.splitlines()[-1]).read_bytes() == wheel.read_bytes()


def _package_copy(tmp_path: Path) -> Path:
    source = tmp_path / "checkout"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, source / name)
    shutil.copytree(PACKAGE, source / "mailstack", ignore=shutil.ignore_patterns("__pycache__"))
    return source


def test_a_policy_link_that_leads_nowhere_fails_the_build_loudly(tmp_path: Path) -> None:
    # What the old tar copy held: the policy as a link to ../../policies/, which the copy did not carry.
    source = _package_copy(tmp_path)
    (source / POLICY).unlink()
    (source / POLICY).symlink_to("../../policies/retention.yaml")
    result = build_like_the_role(source, tmp_path / "dist")
    assert result.returncode != 0
    assert POLICY in result.stderr, result.stderr
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())


def test_a_package_file_the_wheel_would_lack_fails_the_build_loudly(tmp_path: Path) -> None:
    source = _package_copy(tmp_path)
    (source / "mailstack" / "privacy" / "extra-policy.yaml").write_text("version: 1\n")
    result = build_like_the_role(source, tmp_path / "dist")
    assert result.returncode != 0
    assert "mailstack/privacy/extra-policy.yaml" in result.stderr, result.stderr


@pytest.fixture(scope="module")
def sender_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding only the wheel and its locked dependencies, installed as the role installs it."""
    venv = tmp_path_factory.mktemp("sender") / "venv"
    subprocess.run([UV, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    constraints = ["--constraint", str(REPO / "requirements.lock")]
    installed = subprocess.run(
        [UV, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *constraints, str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    return venv


def _outside_the_checkout(tmp_path: Path) -> dict[str, str]:
    """An environment that cannot import the checkout: only the virtualenv's site-packages."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "MAILSTACK_DATABASE_URL"}}
    env["HOME"] = str(tmp_path)
    return env


@pytest.fixture
def serving(sender_venv: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    env = _outside_the_checkout(tmp_path)
    mailstack = str(sender_venv / "bin" / "mailstack")
    data = tmp_path / "data"
    init = subprocess.run(
        [mailstack, "init", "--data-dir", str(data), "--domain", "example.com", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    http = f"127.0.0.1:{free_port()}"
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [mailstack, "serve", "--data-dir", str(data), "--http", http],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
        )
    try:
        yield process, http, log
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.e2e
def test_serve_from_a_virtualenv_with_only_the_wheel_starts_with_its_policy(
    sender_venv: Path, serving: tuple[subprocess.Popen[bytes], str, Path], tmp_path: Path
) -> None:
    process, http, log = serving
    deadline = time.monotonic() + 60
    healthy = False
    while not healthy and time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mailstack serve exited with {process.returncode}:\n{log.read_text()}", False)
        try:
            healthy = httpx.get(f"http://{http}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            time.sleep(0.2)
    assert healthy, f"mailstack serve did not answer /healthz:\n{log.read_text()}"

    # The policy it enforces is the one inside the virtualenv (the checkout's, byte for byte).
    data_dir = ["--data-dir", str(tmp_path / "data")]
    purge = subprocess.run(
        [str(sender_venv / "bin" / "mailstack"), "privacy", "purge", "--dry-run", "--json", *data_dir],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_outside_the_checkout(tmp_path),
        check=False,
    )
    assert purge.returncode == 0, purge.stderr
    report = json.loads(purge.stdout)
    policy_file = Path(report["policy_file"])
    assert policy_file.is_relative_to(sender_venv), policy_file
    assert policy_file.read_bytes() == (REPO / "policies" / "retention.yaml").read_bytes()

    process.terminate()
    assert process.wait(60) == 0, log.read_text()
