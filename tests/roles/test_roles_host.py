"""The deployed machine, inspected with pytest-testinfra: packages, services, sockets, modes, Postfix.

pytest-testinfra's ``host`` fixture is this machine (``--hosts=local://`` is its default).
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from roles_support import (
    API,
    BOUNCE_DOMAIN,
    CONTROLLER_DIR,
    DATA_DIR,
    PROVIDED_DKIM,
    REPO,
    SENDING_IPS,
    deployed_service_pids,
)
from serve_support import Instance

pytestmark = [pytest.mark.timeout(1500), pytest.mark.usefixtures("deployment")]


def config() -> dict[str, Any]:
    return tomllib.loads((DATA_DIR / "mailstack.toml").read_text())


def postconf(host: Any, name: str) -> str:
    return str(host.check_output("postconf -h %s", name)).strip()


@pytest.mark.parametrize(
    "package",
    ["postfix", "nginx", "nftables", "python3-venv", "ssl-cert", "ca-certificates", "postgresql-15"],
)
def test_packages_are_installed(host: Any, package: str) -> None:
    assert host.package(package).is_installed


@pytest.mark.parametrize("service", ["postfix", "mailstack", "nginx", "mailstack-firewall", "postgresql"])
def test_services_run_and_start_at_boot(host: Any, service: str) -> None:
    unit = host.service(service)
    assert unit.is_running, f"{service} is not running"
    assert unit.is_enabled, f"{service} does not start at boot"


def test_mailstack_runs_as_its_own_unprivileged_user(host: Any) -> None:
    user = host.user("mailstack")
    assert user.exists and user.uid < 1000 and user.shell == "/usr/sbin/nologin"
    assert "adm" in user.groups  # reads Postfix's log for delivery status
    processes = [host.process.get(pid=pid) for pid in sorted(deployed_service_pids())]
    assert all("/opt/mailstack/venv/bin/mailstack" in process.args for process in processes), processes
    assert {process.user for process in processes} == {"mailstack"}
    status = Path(f"/proc/{processes[0].pid}/status").read_text()
    effective = int(re.search(r"^CapEff:\s+([0-9a-f]+)", status, re.M).group(1), 16)
    assert effective == 1 << 10, f"capabilities {effective:#x}: only CAP_NET_BIND_SERVICE (for port 587)"
    assert re.search(r"^NoNewPrivs:\s+1", status, re.M)


SERVICE_OF = {"master": "postfix", "smtpd": "postfix", "nginx": "nginx"}


def _listeners() -> list[tuple[str, int, str]]:
    """(address, port, service) of every listening TCP socket. The service is "mailstack" for the deployed
    service's processes only (by its pid file, not its name: other `mailstack serve` may run here), ours
    by process name for Postfix and nginx, else "<first process name> pid <its pid>"."""
    mailstack = deployed_service_pids()
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        address, _, port = fields[3].rpartition(":")
        owners = re.findall(r'\("([^"]+)",pid=(\d+)', line)
        services = {"mailstack" for _, pid in owners if int(pid) in mailstack}
        services |= {SERVICE_OF[name] for name, _ in owners if name in SERVICE_OF}
        other = f"{owners[0][0]} pid {owners[0][1]}" if owners else ""
        service = services.pop() if len(services) == 1 else other
        found.append((address.strip("[]"), int(port), service))
    return found


def test_ports_are_bound_only_where_allowed(instance: Instance) -> None:
    # A developer's own `mailstack serve` on this machine (make run) is not the deployed service.
    instance.start()
    api_host, api_port = API.split(":")
    allowed = {
        # the bounce domain's MX (relay refused), and a loopback listener per sending IP
        "postfix": {("0.0.0.0", 25), ("::", 25)} | {("127.0.0.1", port) for port in SENDING_IPS},
        "nginx": {("0.0.0.0", 443), ("::", 443)},  # TLS in front of the API
        "mailstack": {
            ("0.0.0.0", 587),  # SMTP submission, STARTTLS + AUTH
            (api_host, int(api_port)),  # the API, loopback only (nginx publishes it)
            ("127.0.0.1", 2526),  # the bounce intake, loopback only (Postfix relays to it)
        },
    }
    ours = [listener for listener in _listeners() if listener[2] in allowed]
    assert {name for _, _, name in ours} == set(allowed), ours
    for address, port, name in ours:
        assert (address, port) in allowed[name], f"{name} listens on {address}:{port}"
    public = {(a, p) for a, p, _ in _listeners() if not (a.startswith("127.") or a == "::1")}
    assert not {p for _, p in public} & {465, 2526, 80, int(api_port), 5432}, public


@pytest.mark.parametrize(
    ("path", "owner", "group", "mode"),
    [
        (DATA_DIR, "mailstack", "mailstack", 0o750),
        (DATA_DIR / "secret.key", "root", "mailstack", 0o640),
        (DATA_DIR / "mailstack.toml", "root", "mailstack", 0o640),  # holds the database password
        (DATA_DIR / "api-credentials.json", "root", "mailstack", 0o640),
        (DATA_DIR / "tls" / "smtp.key", "root", "mailstack", 0o640),
        (Path("/etc/default/mailstack"), "root", "mailstack", 0o640),
        (Path("/var/log/postfix.log"), "root", "adm", 0o640),
        (CONTROLLER_DIR / "secret", "root", "root", 0o700),
        (CONTROLLER_DIR / "secret" / "mailstack" / "master-secret.key", "root", "root", 0o600),
        (CONTROLLER_DIR / "secret" / "mailstack" / "api-credentials.json", "root", "root", 0o600),
        (CONTROLLER_DIR / "secret" / "postgresql" / "mailstack.password", "root", "root", 0o600),
        (DATA_DIR / "dkim-provided", "mailstack", "mailstack", 0o700),
        *(
            (
                DATA_DIR / "dkim-provided" / f"{selector}._domainkey.example.com.pem",
                "mailstack",
                "mailstack",
                0o600,
            )
            for selector in PROVIDED_DKIM
        ),
    ],
)
def test_secrets_are_readable_only_by_the_service(
    host: Any, path: Path, owner: str, group: str, mode: int
) -> None:
    item = host.file(str(path))
    assert item.exists, f"{path} is missing"
    assert (item.user, item.group, item.mode) == (owner, group, mode), (
        f"{path}: {item.user}:{item.group} {item.mode:o}"
    )


def test_the_master_secret_is_the_controllers(host: Any) -> None:
    deployed = (DATA_DIR / "secret.key").read_text().strip()
    generated = (CONTROLLER_DIR / "secret" / "mailstack" / "master-secret.key").read_text().strip()
    assert deployed == generated and re.fullmatch(r"[0-9a-f]{64}", deployed)


def test_postfix_check_is_clean(host: Any) -> None:
    result = host.run("postfix check")
    assert result.rc == 0 and result.stdout == "" and result.stderr == "", result


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mynetworks", "127.0.0.0/8 [::1]/128"),
        ("smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination"),
        ("relay_domains", BOUNCE_DOMAIN),
        ("default_transport", "other"),
        ("myhostname", "mail.example.com"),
        ("smtpd_tls_security_level", "may"),
        ("smtp_tls_security_level", "may"),
        ("maillog_file", "/var/log/postfix.log"),
        ("disable_mime_output_conversion", "yes"),
        ("maximal_queue_lifetime", "2d"),
        ("header_checks", "regexp:/etc/postfix/header_checks"),
    ],
)
def test_postfix_settings(host: Any, name: str, expected: str) -> None:
    assert postconf(host, name) == expected


@pytest.mark.parametrize(
    ("domain", "route"),
    [
        ("gmail.com", "google:"),
        ("googlemail.com", "google:"),
        ("outlook.com", "microsoft:"),
        ("hotmail.com", "microsoft:"),
        ("live.com", "microsoft:"),
        ("yahoo.com", "yahoo:"),
        ("aol.com", "yahoo:"),
        (BOUNCE_DOMAIN, "smtp:[127.0.0.1]:2526"),
    ],
)
def test_transport_map_routes(host: Any, domain: str, route: str) -> None:
    assert host.check_output("postmap -q %s texthash:/etc/postfix/transport", domain) == route


def test_postfix_paces_providers_from_the_same_throttle_settings_as_mailstack(host: Any) -> None:
    providers = config()["throttle"]["providers"]
    assert set(providers) == {"google", "microsoft", "yahoo", "other"}
    master = Path("/etc/postfix/master.cf").read_text()
    for name, limits in providers.items():
        assert re.search(rf"^{name}\s+unix\s+-\s+-\s+y\s+-\s+-\s+smtp$", master, re.M), f"no {name} transport"
        assert int(postconf(host, f"{name}_destination_concurrency_limit")) == limits["concurrency"]
        delay = 0 if limits["rate"] >= 1 else -(-1 // limits["rate"])
        assert postconf(host, f"{name}_destination_rate_delay") == f"{int(delay)}s"


def test_postfix_routes_every_domain_mailstack_classifies_to_its_provider(host: Any) -> None:
    """One list: the transport map holds the installed mailstack's classifier domains."""
    known = json.loads(
        host.check_output(
            "/opt/mailstack/venv/bin/python -c %s",
            "import json; from mailstack.providers import WELL_KNOWN_DOMAINS as k; "
            "print(json.dumps({p: list(d) for p, d in k.items()}))",
        )
    )
    transport = {
        fields[0]: fields[1]
        for fields in (line.split() for line in Path("/etc/postfix/transport").read_text().splitlines())
        if len(fields) == 2 and not fields[0].startswith("#")
    }
    assert set(known) == {"google", "microsoft", "yahoo"}
    for provider, domains in known.items():
        for domain in domains:
            assert transport.get(domain) == f"{provider}:", domain


def test_both_roles_fall_back_to_the_same_throttle() -> None:
    postfix = yaml.safe_load((REPO / "roles/postfix/defaults/main.yml").read_text())
    mailstack = yaml.safe_load((REPO / "roles/mailstack/defaults/main.yml").read_text())
    assert postfix["postfix__throttle_builtin"] == mailstack["mailstack__throttle_builtin"]


def test_mailstack_config_points_at_the_local_postfix_and_postgresql() -> None:
    settings = config()
    assert settings["delivery"]["relay"] == "127.0.0.1:25"
    assert settings["server"]["http"] == API
    assert settings["mail"]["bounce_domain"] == BOUNCE_DOMAIN
    assert settings["feedback"] == {"postfix_log": "/var/log/postfix.log", "intake": "127.0.0.1:2526"}
    url = settings["database"]["url"]
    password = (CONTROLLER_DIR / "secret" / "postgresql" / "mailstack.password").read_text().strip()
    assert url == f"postgresql://mailstack:{password}@127.0.0.1:5432/mailstack?sslmode=prefer"


def test_the_database_and_its_owner_exist_with_a_scram_password(host: Any) -> None:
    query = (
        "SELECT r.rolcanlogin, left(r.rolpassword, 14), pg_get_userbyid(d.datdba) "
        "FROM pg_authid r, pg_database d WHERE r.rolname = 'mailstack' AND d.datname = 'mailstack'"
    )
    out = host.check_output("runuser -u postgres -- psql -X -At -c %s", query)
    assert out == "t|SCRAM-SHA-256$|mailstack"


def test_smtpd_offers_tls_with_the_certificate() -> None:
    with smtplib.SMTP("127.0.0.1", 25, timeout=10) as client:
        client.ehlo("tester.example.org")
        assert client.has_extn("starttls")
        client.starttls(context=ssl._create_unverified_context())
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[union-attr]


def test_the_api_is_served_behind_tls() -> None:
    response = httpx.get("https://127.0.0.1/healthz", verify=False, timeout=10)
    assert response.status_code == 200
    assert response.url.scheme == "https"


def test_nftables_table_of_our_own(host: Any) -> None:
    table = host.check_output("nft list table inet mailstack")
    assert 'iif "lo" accept' in table
    for port in ("25", "443", "587", "22"):
        assert re.search(rf"tcp dport {port} accept", table), f"port {port} is not open"
    assert "drop" in table.splitlines()[-3]
    # Only our table is managed: the rules file replaces that table and nothing else.
    rules = Path("/etc/nftables.d/mailstack.nft").read_text()
    assert not re.search(r"^\s*flush\s+ruleset", rules, re.M) and "delete table inet mailstack" in rules


@pytest.mark.parametrize("unit", ["mailstack.service", "mailstack-firewall.service"])
def test_systemd_units_verify(host: Any, unit: str) -> None:
    result = host.run("systemd-analyze verify /etc/systemd/system/%s", unit)
    assert result.rc == 0, result.stderr
    text = Path(f"/etc/systemd/system/{unit}").read_text()
    if unit == "mailstack.service":
        for setting in (
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
        ):
            assert setting in text


@pytest.mark.parametrize("script", ["mailstack", "mailstack-firewall"])
def test_each_unit_has_an_init_script(host: Any, script: str) -> None:
    item = host.file(f"/etc/init.d/{script}")
    assert item.exists and item.mode == 0o755
    assert "### BEGIN INIT INFO" in item.content_string
    assert host.run("/etc/init.d/%s status", script).rc == 0


def test_dns_records_are_written_on_the_controller_and_match_mailstack(host: Any) -> None:
    zone = (CONTROLLER_DIR / "dns-records.zone").read_text()
    listed = json.loads(
        host.check_output(
            "runuser -u mailstack -- /opt/mailstack/venv/bin/mailstack dkim list --data-dir %s --json",
            str(DATA_DIR),
        )
    )
    assert {key["algorithm"] for key in listed if key["domain"] == "example.com"} == {
        "rsa-sha256",
        "ed25519-sha256",
    }
    # The provided keys are imported (their records come from the keys the test provided).
    provided = {key["selector"]: key for key in listed if key["selector"] in PROVIDED_DKIM}
    assert {name: key["algorithm"] for name, key in provided.items()} == PROVIDED_DKIM
    records = zone_txt_records(zone)
    for key in listed:
        assert records[key["dns_name"]] == key["txt"]
    assert "_dmarc.example.com.\t3600\tIN\tTXT" in zone
    assert f"{BOUNCE_DOMAIN}.\t3600\tIN\tMX\t10 mail.example.com." in zone


def zone_txt_records(zone: str) -> dict[str, str]:
    """name -> TXT value (strings joined) of the zone file's TXT records."""
    records = {}
    for line in zone.splitlines():
        match = re.match(r"^(\S+)\.\s+\d+\s+IN\s+TXT\s+(.*)$", line)
        if match:
            records[match.group(1)] = "".join(re.findall(r'"([^"]*)"', match.group(2)))
    return records


_UNCOMPILED = """
import importlib.util, json, pathlib, sysconfig
site = pathlib.Path(sysconfig.get_paths()["purelib"])
print(json.dumps([
    str(source)
    for package in ("mailstack", "sqlalchemy", "fastapi", "pydantic", "uvicorn")
    for source in sorted((site / package).rglob("*.py"))
    if not pathlib.Path(importlib.util.cache_from_source(str(source))).is_file()
]))
"""


def test_the_service_starts_from_bytecode_compiled_at_install(host: Any) -> None:
    """A restart (after a crash, too) does not compile mailstack and its libraries again: the service's
    user may not write the cache, and compiling them took half of a 6 s start."""
    uncompiled = json.loads(host.check_output("/opt/mailstack/venv/bin/python -c %s", _UNCOMPILED))
    assert uncompiled == [], uncompiled[:10]
