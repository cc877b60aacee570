"""Helpers and fixtures of the role tests: site.yml applied to this machine once per session, an outside host.

The deployment fixture converges this machine with ``inventories/local`` (as root), runs the playbook a
second time and in check mode, and hands the three results to the tests; everything else then inspects the
deployed machine. A file lock serialises sessions: several engineers' ``make test`` may run at once on the
same machine, and they all deploy to it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from netns_support import VethNamespace

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INVENTORY = REPO / "inventories" / "local"
LOCK_FILE = Path("/run/lock/mailstack-roles-tests.lock")
LOCK_WAIT_SECONDS = 900

# What inventories/local sets up; the tests read these, not guesses.
DATA_DIR = Path("/var/lib/mailstack")
CONTROLLER_DIR = Path("/var/lib/mailstack-controller/local")
API = "127.0.0.1:8825"
DOMAIN = "example.com"
BOUNCE_DOMAIN = f"bounces.{DOMAIN}"
SINK_DOMAIN = "example.net"  # routed by the transport map to the sink below
SINK_ADDRESS = ("127.0.0.2", 2625)
REFUSING_DOMAIN = "bounce.example.net"  # routed to a sink that refuses every recipient
REFUSING_SINK_ADDRESS = ("127.0.0.2", 2626)

# Sending IPs (inventories/local: mailstack_sending_ips): listener port -> the address mail leaves from.
SENDING_IPS = {10026: "127.0.0.2", 10027: "127.0.0.3"}

# Provided DKIM keys (mailstack_dkim_provided_keys, passed like the cloud's secret-vars.json): made once and
# kept with the controller's secrets, so every session provides the same keys (a new key under a selector
# that holds another would be refused, by design).
PROVIDED_DKIM = {"ansible-rsa": "rsa-sha256", "ansible-ed": "ed25519-sha256"}
PROVIDED_DKIM_DIR = CONTROLLER_DIR / "secret" / "test-provided-dkim"


def provided_dkim_keys() -> list[dict[str, str]]:
    """The provided keys as the dkim_keys role takes them (generated on first use, then reused)."""
    PROVIDED_DKIM_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = []
    for selector, algorithm in PROVIDED_DKIM.items():
        path = PROVIDED_DKIM_DIR / f"{selector}.pem"
        if not path.exists():
            key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = (
                rsa.generate_private_key(public_exponent=65537, key_size=2048)
                if algorithm == "rsa-sha256"
                else ed25519.Ed25519PrivateKey.generate()
            )
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
        keys.append({"selector": selector, "algorithm": algorithm, "private_key_pem": path.read_text()})
    return keys


# The outside host: a network namespace joined to this machine by a veth pair (msout0 is the interface the
# local inventory's firewall filters).
NETNS = "mailstack-outside"
HOST_IF, OUTSIDE_IF = "msout0", "msout1"
HOST_ADDRESS, OUTSIDE_ADDRESS = "10.200.0.1", "10.200.0.2"
OUTSIDE_NAMESPACE = VethNamespace(NETNS, HOST_IF, OUTSIDE_IF, HOST_ADDRESS, OUTSIDE_ADDRESS)


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the role tests deploy to this machine and must run as root (make test does)", False)


def require_commands(*names: str) -> None:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [name for name in names if shutil.which(name, path=path) is None]
    if missing:
        pytest.fail(f"missing commands: {', '.join(missing)} (make system-deps installs them)", False)


# The deployed service is the one its init script or unit started, not whatever runs under its name (a
# developer's own `make run` is a `mailstack serve` too).
INIT_SCRIPT = Path("/etc/init.d/mailstack")


def _service_main_pid() -> int:
    """The deployed service's main process: systemd's MainPID, else the init script's pid file."""
    if Path("/run/systemd/system").is_dir():
        shown = subprocess.run(
            ["systemctl", "show", "--property=MainPID", "--value", "mailstack"],
            capture_output=True,
            text=True,
            check=False,
        )
        if shown.returncode == 0 and shown.stdout.strip() not in {"", "0"}:
            return int(shown.stdout)
    if not INIT_SCRIPT.exists():
        pytest.fail(f"{INIT_SCRIPT} is missing: is mailstack deployed?", False)
    pid_file = next(
        (
            Path(line.partition("=")[2].strip().strip("\"'"))
            for line in INIT_SCRIPT.read_text().splitlines()
            if line.startswith("PIDFILE=")
        ),
        None,
    )
    if pid_file is None or not pid_file.exists():
        pytest.fail(f"the init script's pid file ({pid_file}) is missing: mailstack is not running", False)
    pid = int(pid_file.read_text().strip())
    if not Path(f"/proc/{pid}").exists():
        pytest.fail(f"{pid_file} names pid {pid}, which is not running", False)
    return pid


def deployed_service_pids() -> set[int]:
    """The deployed mailstack's processes: the init script's (or unit's) process and its descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces and parentheses: the ppid follows the last ")".
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # exited meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pids, todo = set(), [_service_main_pid()]
    while todo:
        pid = todo.pop()
        pids.add(pid)
        todo.extend(children.get(pid, []))
    return pids


@dataclass
class PlaybookRun:
    """One ansible-playbook run with the json callback: its recap and the tasks that changed."""

    args: list[str]
    returncode: int
    seconds: float
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    changed_tasks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    events: list[dict[str, str]] = field(default_factory=list)  # in order: play, start, host, task, outcome
    output: str = ""

    def total(self, key: str) -> int:
        return sum(host.get(key, 0) for host in self.stats.values())

    def describe(self) -> str:
        lines = [f"ansible-playbook {' '.join(self.args)}: rc={self.returncode} in {self.seconds:.0f}s"]
        lines += [f"  stats {host}: {counts}" for host, counts in self.stats.items()]
        lines += [f"  changed: {task}" for task in self.changed_tasks]
        lines += [f"  FAILED: {failure}" for failure in self.failures]
        if not self.stats:
            lines.append(self.output[-4000:])
        return "\n".join(lines)


def ansible_env(recap: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_CALLBACK_PLUGINS": str(Path(__file__).parent / "callback_plugins"),
            "ANSIBLE_CALLBACKS_ENABLED": "mailstack_recap",
            "MAILSTACK_RECAP_FILE": str(recap),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PATH": f"{BIN}:{env.get('PATH', '')}:/usr/sbin:/sbin",
        }
    )
    env.pop("MAILSTACK_DATABASE_URL", None)
    return env


def run_playbook(*args: str, timeout: float = 900, inventory: Path = INVENTORY) -> PlaybookRun:
    command = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / "site.yml"), *args]
    with tempfile.TemporaryDirectory(prefix="mailstack-recap-") as scratch:
        recap = Path(scratch) / "recap.json"
        started = time.monotonic()
        result = subprocess.run(
            command,
            cwd=REPO,
            env=ansible_env(recap),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        run = PlaybookRun(
            list(args), result.returncode, time.monotonic() - started, output=result.stdout + result.stderr
        )
        if recap.exists():
            report: dict[str, Any] = json.loads(recap.read_text())
            run.stats = report["stats"]
            run.changed_tasks = report["changed"]
            run.failures = report["failed"]
            run.events = report["events"]
    return run


@dataclass
class Deployment:
    first: PlaybookRun
    second: PlaybookRun
    check: PlaybookRun

    @property
    def credentials(self) -> dict[str, str]:
        return json.loads((DATA_DIR / "api-credentials.json").read_text())


@pytest.fixture(scope="session")
def roles_lock() -> Iterator[None]:
    """Held for the whole session: one deployment (and one outside host) at a time on this machine."""
    require_root()
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("w") as handle:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another session held {LOCK_FILE} for {LOCK_WAIT_SECONDS}s", False)
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def deployment(roles_lock: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """site.yml applied to this machine, then applied again, then run in check mode; with provided DKIM
    keys (as the cloud's boot script passes them). The playbook's own defaults otherwise: the wheel is
    built from this checkout as it is, as a user's run builds it (no copy, no mailstack__source_dir).
    At the end of the session the deployed service and firewall are stopped again, by their init
    scripts: left running, they took CPU from whatever ran next on this machine (benchmarks)."""
    require_commands("apt-get", "runuser", "setpriv", "start-stop-daemon")
    scratch = tmp_path_factory.mktemp("roles")
    provided = scratch / "provided-dkim.json"
    descriptor = os.open(provided, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"mailstack_dkim_provided_keys": provided_dkim_keys()}, handle)
    keys = ["-e", f"@{provided}"]
    first = run_playbook(*keys)
    if first.returncode != 0:
        pytest.fail(f"site.yml failed on this machine:\n{first.describe()}", False)
    second = run_playbook(*keys)
    check = run_playbook(*keys, "--check", "--diff")
    try:
        yield Deployment(first, second, check)
    finally:
        for service in ("mailstack", "mailstack-firewall"):
            subprocess.run(["service", service, "stop"], capture_output=True, timeout=120, check=False)


@dataclass
class OutsideHost:
    """A host outside this machine: commands run in the namespace, reaching us at HOST_ADDRESS."""

    address: str = OUTSIDE_ADDRESS
    target: str = HOST_ADDRESS

    def python(self, code: str, *args: str, timeout: float = 60) -> Any:
        """Run Python ``code`` in the namespace; it prints one JSON value, which is returned."""
        result = subprocess.run(
            OUTSIDE_NAMESPACE.command(sys.executable, "-c", code, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="session")
def outside(deployment: Deployment) -> Iterator[OutsideHost]:
    """A network namespace with a veth pair: 10.200.0.2 (outside) talks to this machine at 10.200.0.1."""
    require_commands("ip")
    try:
        OUTSIDE_NAMESPACE.create()
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"cannot create the outside host: {exc.stderr}", False)
    try:
        yield OutsideHost()
    finally:
        OUTSIDE_NAMESPACE.remove()


@dataclass
class Sink:
    """Postfix's smtp-sink standing in for a destination MX; every message is dumped to a file."""

    directory: Path
    process: subprocess.Popen[bytes]

    def messages(self) -> list[bytes]:
        return [path.read_bytes() for path in sorted(self.directory.glob("msg.*"))]

    def wait_for(self, marker: bytes, timeout: float = 60) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages():
                if marker in message:
                    return message
            time.sleep(0.2)
        pytest.fail(f"no message containing {marker!r} reached the sink in {timeout}s", False)


def _start_sink(address: tuple[str, int], directory: Path, *options: str) -> Sink:
    require_commands("smtp-sink")
    directory.chmod(0o777)  # smtp-sink writes as nobody (so not under pytest's private tmp_path)
    host, port = address
    process = subprocess.Popen(
        [
            "smtp-sink",
            "-u",
            "nobody",
            "-h",
            "mx.example.net",
            "-d",
            f"{directory}/msg.%H%M%S.",
            *options,
            f"{host}:{port}",
            "64",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(address, timeout=0.5).close()
            return Sink(directory, process)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"smtp-sink did not start on {host}:{port}: {stderr}", False)
            time.sleep(0.1)


def _stop_sink(sink: Sink) -> None:
    sink.process.terminate()
    try:
        sink.process.wait(10)
    except subprocess.TimeoutExpired:
        sink.process.kill()
        sink.process.wait()
    shutil.rmtree(sink.directory, ignore_errors=True)


def _flush_postfix() -> None:
    """Retry deferred mail now: a destination that was down (no sink) stays suspended for a while."""
    subprocess.run(["postqueue", "-f"], capture_output=True, check=False)


def purge_test_mail() -> None:
    """Delete queued mail for the tests' destinations, so nothing lingers in this machine's queue."""
    listing = subprocess.run(["postqueue", "-j"], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        entry = json.loads(line)
        domains = {r["address"].rpartition("@")[2] for r in entry.get("recipients", [])}
        if domains & {SINK_DOMAIN, REFUSING_DOMAIN, BOUNCE_DOMAIN}:
            subprocess.run(["postsuper", "-d", entry["queue_id"]], capture_output=True, check=False)


@pytest.fixture(scope="session")
def sink(deployment: Deployment) -> Iterator[Sink]:
    """example.net's MX: accepts everything."""
    started = _start_sink(SINK_ADDRESS, Path(tempfile.mkdtemp(prefix="mailstack-sink-")))
    _flush_postfix()
    try:
        yield started
    finally:
        _stop_sink(started)
        purge_test_mail()


@pytest.fixture(scope="session")
def refusing_sink(deployment: Deployment) -> Iterator[Sink]:
    """bounce.example.net's MX: refuses every recipient with a 5xx, so Postfix bounces the mail."""
    started = _start_sink(
        REFUSING_SINK_ADDRESS, Path(tempfile.mkdtemp(prefix="mailstack-sink-")), "-f", "RCPT"
    )
    try:
        yield started
    finally:
        _stop_sink(started)
