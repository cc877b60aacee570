"""The three-node example fleet (inventories/example), rendered on the controller: each host gets the
firewall, database settings, Postfix and mailstack configuration of its groups, and they agree."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from roles_support import BIN, REPO, ansible_env

from mailstack.config import load_settings

pytestmark = pytest.mark.timeout(600)

SENDERS = {"mta1.example.com": "10.0.0.11", "mta2.example.com": "10.0.0.12"}
# More settings through the role's escape hatch: nested tables and arrays of tables render as TOML.
CONFIG_EXTRA = {
    "delivery": {"workers": 8},
    "throttle": {
        "mx_lookup": True,
        "api_key": {"rate": 100, "burst": 200},
    },
}
DB = "db1.example.com"


@pytest.fixture(scope="module")
def rendered() -> Iterator[Path]:
    out = Path(tempfile.mkdtemp(prefix="mailstack-example-"))
    try:
        with tempfile.TemporaryDirectory() as scratch:
            result = subprocess.run(
                [
                    str(BIN / "ansible-playbook"),
                    *("-i", "inventories/example", "tests/roles/render/render-example.yml"),
                    *("-e", f"render_dir={out}"),
                    *("-e", json.dumps({"mailstack__config_extra": CONFIG_EXTRA})),
                ],
                cwd=REPO,
                env=ansible_env(Path(scratch) / "recap.json"),
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


def rules(path: Path) -> str:
    text = path.read_text()
    check = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    return text


def test_each_host_opens_only_its_groups_ports(rendered: Path) -> None:
    for host in SENDERS:
        text = rules(rendered / host / "etc/nftables.d/mailstack.nft")
        for port in (25, 443, 587):
            assert re.search(rf"^\s+tcp dport {port} accept", text, re.M), (host, port)
        assert "dport 5432" not in text
        assert "ip saddr { 198.51.100.0/24 } tcp dport 22 accept" in text  # SSH from the operators only
    text = rules(rendered / DB / "etc/nftables.d/mailstack.nft")
    assert "ip saddr { 10.0.0.11, 10.0.0.12 } tcp dport 5432 accept" in text
    assert not re.search(r"dport (25|443|587) ", text)


def test_the_database_listens_on_its_private_address_and_admits_the_senders(rendered: Path) -> None:
    conf = (rendered / DB / "etc/postgresql/mailstack.conf").read_text()
    assert "listen_addresses = 'localhost,10.0.0.5'" in conf and "ssl = on" in conf
    derived = json.loads((rendered / DB / "derived.json").read_text())
    assert derived["clients"] == list(SENDERS.values())


def postconf(directory: Path, *names: str) -> list[str]:
    result = subprocess.run(
        ["postconf", "-c", str(directory), "-h", *names], capture_output=True, text=True, check=True
    )
    assert result.stderr == "", result.stderr
    return result.stdout.splitlines()


def test_senders_get_postfix_with_their_own_names_and_the_fleets_throttle(rendered: Path) -> None:
    for host in SENDERS:
        postfix = rendered / host / "etc/postfix"
        assert postconf(postfix, "myhostname", "relay_domains", "default_transport") == [
            host,
            "bounces.example.com",
            "other",
        ]
        assert postconf(postfix, "google_destination_concurrency_limit", "other_destination_rate_delay") == [
            "20",
            "0s",
        ]
        transport = (postfix / "transport").read_text()
        assert "bounces.example.com\tsmtp:[127.0.0.1]:2526" in transport
        assert "gmail.com\tgoogle:" in transport


def test_senders_share_one_database_and_one_throttle(rendered: Path, tmp_path: Path) -> None:
    configs: list[dict[str, Any]] = []
    for host in SENDERS:
        text = (rendered / host / "var/lib/mailstack/mailstack.toml").read_text()
        configs.append(tomllib.loads(text))
        # mailstack itself accepts the rendered file.
        (tmp_path / host).mkdir()
        (tmp_path / host / "mailstack.toml").write_text(text)
        settings = load_settings(tmp_path / host)
        assert settings.mail.domain == "example.com" and settings.mail.hostname == host
    first, second = configs
    assert first["database"] == second["database"]
    assert first["database"]["url"].startswith("postgresql://mailstack:")
    assert first["database"]["url"].endswith("@10.0.0.5:5432/mailstack?sslmode=require")
    # The throttle is the fleet's, except each host's own sending IPs.
    assert {**first["throttle"], "ips": None} == {**second["throttle"], "ips": None}
    assert first["throttle"]["providers"]["google"] == {"rate": 50, "concurrency": 20}
    assert first["server"]["public_url"] == "https://api.example.com"
    assert first["delivery"]["workers"] == 8 and first["throttle"]["mx_lookup"] is True
    assert first["throttle"]["api_key"] == {"rate": 100, "burst": 200}


def test_each_sending_ip_is_a_throttle_entry_and_a_postfix_listener_sending_from_it(
    rendered: Path, tmp_path: Path
) -> None:
    """mta1's mailstack_sending_ips (host_vars), rendered into both mailstack.toml and Postfix."""
    text = (rendered / "mta1.example.com" / "var/lib/mailstack/mailstack.toml").read_text()
    (tmp_path / "mailstack.toml").write_text(text)
    ips = load_settings(tmp_path).throttle.ips
    assert [(ip.address, ip.relay) for ip in ips] == [
        ("203.0.113.10", "127.0.0.1:10026"),
        ("203.0.113.20", "127.0.0.1:10027"),
    ]
    assert ips[1].warmup_first == 50 and ips[1].warmup_ceiling == 100000 and ips[0].warmup_start is None
    postfix = rendered / "mta1.example.com" / "etc/postfix"
    services = postconf_services(postfix)
    for address, port, helo in (
        ("203.0.113.10", 10026, "mta1.example.com"),
        ("203.0.113.20", 10027, "mta1-b.example.com"),
    ):
        key = "ip" + address.replace(".", "_")
        listener = services[f"127.0.0.1:{port}/inet"]
        assert (
            f"content_filter=other_{key}:" in listener
            and f"texthash:/etc/postfix/sending_ips/{key}" in listener
        )
        for provider in ("google", "microsoft", "yahoo", "other"):
            transport = services[f"{provider}_{key}/unix"]
            assert f"smtp_bind_address={address}" in transport and f"smtp_helo_name={helo}" in transport
            assert "inet_protocols=ipv4" in transport
        assert postconf(
            postfix, f"google_{key}_destination_concurrency_limit", f"other_{key}_destination_rate_delay"
        ) == ["20", "0s"]
        routes = (postfix / "sending_ips" / key).read_text()
        assert (
            f"gmail.com\tFILTER google_{key}:\n" in routes and f"yahoo.com\tFILTER yahoo_{key}:\n" in routes
        )
        assert "bounces.example.com\tFILTER smtp:[127.0.0.1]:2526\n" in routes
    # mta2 has none: nothing but port 25.
    assert not [
        name
        for name in postconf_services(rendered / "mta2.example.com" / "etc/postfix")
        if name.startswith("127.0.0.1:")
    ]


def postconf_services(directory: Path) -> dict[str, str]:
    """master.cf service name/type -> the whole entry, as Postfix itself parses it."""
    result = subprocess.run(
        ["postconf", "-c", str(directory), "-M"], capture_output=True, text=True, check=True
    )
    assert result.stderr == "", result.stderr
    return {" ".join(line.split()[:2]).replace(" ", "/"): line for line in result.stdout.splitlines()}


def test_dns_records_cover_every_sender(rendered: Path) -> None:
    zone = (rendered / "mta1.example.com" / "dns-records.zone").read_text()
    for host in SENDERS:
        assert f"bounces.example.com.\t3600\tIN\tMX\t10 {host}." in zone
    assert '"v=spf1 ip4:203.0.113.10 ip4:203.0.113.11 ip4:203.0.113.20 -all"' in zone  # mta1 has two
    assert ";   203.0.113.20 -> mta1-b.example.com" in zone  # its PTR
