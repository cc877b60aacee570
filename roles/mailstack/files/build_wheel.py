"""Build mailstack's wheel from a checkout, reproducibly, and prove it holds the whole package.

    build_wheel.py --source CHECKOUT --out-dir DIR [--uv UV]

The mailstack role runs this on the controller (with the playbook's Python). It prints the path of the
wheel it leaves in DIR. The checkout is only read: its build inputs (pyproject.toml, README.md and the
package) are copied to a fresh directory, links followed, and built there with ``uv build`` and a fixed
SOURCE_DATE_EPOCH, so the same sources give the same wheel (re-runs do not reinstall) and nothing stale
(a setuptools ``build/`` directory, a link the copy cannot carry) decides what ships.

The wheel is then compared with the checkout: every file of the package (code, migrations, the
retention policy, any data file) must be in it with the same bytes, or the build fails naming the
missing files. A service installed from an incomplete wheel fails only when it starts, on the host.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "mailstack"
# What the build reads besides the package (pyproject's `readme`).
BUILD_FILES = ("pyproject.toml", "README.md")
# Fixed timestamps inside the wheel: its bytes depend on the sources only.
SOURCE_DATE_EPOCH = "315532800"
# Without these the service cannot start; named so a failure says what is at stake.
REQUIRED = (
    f"{PACKAGE}/privacy/retention.yaml",
    f"{PACKAGE}/storage/migrations/env.py",
    f"{PACKAGE}/storage/migrations/script.py.mako",
)
MIGRATIONS = f"{PACKAGE}/storage/migrations/versions/"


class BuildError(Exception):
    """The wheel cannot be built or is incomplete; the message says what to fix."""


def _is_build_litter(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in {".pyc", ".pyo"}


def package_files(source: Path) -> dict[str, Path]:
    """Every file of the package in the checkout, by its name inside the wheel (links followed)."""
    root = source / PACKAGE
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(source)
        if _is_build_litter(relative) or path.is_dir():
            continue
        if not path.exists():
            raise BuildError(f"{relative} is a link to {os.readlink(path)!r}, which does not exist")
        files[relative.as_posix()] = path
    return files


def copy_build_inputs(source: Path, work: Path) -> None:
    for name in BUILD_FILES:
        if not (source / name).is_file():
            raise BuildError(f"{source / name} is missing: is {source} a mailstack checkout?")
        shutil.copyfile(source / name, work / name)
    # copytree follows links (symlinks=False): the copy holds real files whatever the checkout holds.
    shutil.copytree(
        source / PACKAGE,
        work / PACKAGE,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"),
    )


def check_wheel(wheel: Path, expected: dict[str, Path]) -> None:
    """The wheel holds every file of the package, byte for byte, including what the service needs."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        missing = sorted(name for name in expected if name not in names)
        differing = sorted(
            name for name in expected if name in names and archive.read(name) != expected[name].read_bytes()
        )
    missing += [name for name in REQUIRED if name not in names and name not in missing]
    if not any(name.startswith(MIGRATIONS) and name.endswith(".py") for name in names):
        missing.append(f"{MIGRATIONS}*.py (the database migrations)")
    problems = []
    if missing:
        problems.append(
            "not in the wheel (declare it in pyproject.toml [tool.setuptools.package-data], or add the "
            "package's __init__.py): " + ", ".join(missing)
        )
    if differing:
        problems.append("different in the wheel than in the checkout: " + ", ".join(differing))
    if problems:
        raise BuildError(f"{wheel.name} is incomplete; " + "; ".join(problems))


def build(source: Path, out_dir: Path, uv: str) -> Path:
    """Build the wheel of ``source`` into ``out_dir`` (replacing one of the same name) and return it."""
    expected = package_files(source)
    with tempfile.TemporaryDirectory(prefix="mailstack-wheel-") as scratch:
        work = Path(scratch) / "src"
        work.mkdir()
        copy_build_inputs(source, work)
        dist = Path(scratch) / "dist"
        env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH)
        result = subprocess.run(
            [uv, "build", "--quiet", "--wheel", "--out-dir", str(dist), str(work)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BuildError(f"uv build failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        wheels = sorted(dist.glob(f"{PACKAGE}-*.whl"))
        if len(wheels) != 1:
            raise BuildError(f"uv build made {[w.name for w in wheels]}, not one {PACKAGE} wheel")
        check_wheel(wheels[0], expected)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / wheels[0].name
        # Through a temporary name: a reader of out_dir never sees half a wheel.
        partial = out_dir / f".{wheels[0].name}.partial"
        shutil.copyfile(wheels[0], partial)
        partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--source", type=Path, required=True, help="the mailstack checkout")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the wheel is left")
    parser.add_argument(
        "--uv", default=str(Path(sys.executable).parent / "uv"), help="uv (default: beside this Python)"
    )
    args = parser.parse_args(argv)
    try:
        wheel = build(args.source.resolve(), args.out_dir, args.uv)
    except (BuildError, OSError, shutil.Error) as exc:
        print(f"build_wheel: {exc}", file=sys.stderr)
        return 1
    print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
