"""A sender's boot: the user data script, and the Elastic IP claim against moto's EC2."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support import free_port

from infra.boot import (
    HOSTNAME_TAG,
    POOL_TAG,
    WARMUP_TAG,
    NoFreeAddressError,
    _write_private,
    claim,
    fetch_secrets,
    instance_identity,
    ip_variables,
)
from infra.userdata import BOOT_SCRIPT, render_user_data

TODAY = datetime.date(2026, 3, 1)


def test_user_data_is_valid_bash_that_runs_the_same_playbook(tmp_path: Path) -> None:
    script = render_user_data(
        {"ip_pool": "p", "queue": {"sqs_url": "u"}}, repository="https://g/m.git", ref="v1"
    )
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)  # parses
    assert script.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in script
    lines = script.splitlines()
    claim_at = next(
        i for i, line in enumerate(lines) if line.startswith("/usr/local/sbin/mailstack-boot claim-ip")
    )
    playbook_at = next(i for i, line in enumerate(lines) if line.startswith("ansible-playbook"))
    assert claim_at < playbook_at  # the sending address is known before anything is installed
    assert "site.yml --limit senders" in lines[playbook_at]
    vars_text = script.split("<<'MAILSTACK_VARS'\n", 1)[1].split("\nMAILSTACK_VARS\n", 1)[0]
    assert json.loads(vars_text) == {"mailstack_cloud": {"ip_pool": "p", "queue": {"sqs_url": "u"}}}


def test_the_boot_script_runs_on_its_own_as_the_user_data_installs_it(tmp_path: Path) -> None:
    # Only boot.py travels in the user data: its types (infra/boot_types.py) must stay type-checking only.
    script = tmp_path / "mailstack-boot"
    script.write_text(BOOT_SCRIPT.read_text())
    result = subprocess.run(
        [sys.executable, "-I", str(script)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "usage: mailstack-boot claim-ip|fetch-secrets" in result.stderr


def test_user_data_refuses_a_ref_that_could_inject_shell() -> None:
    with pytest.raises(ValueError, match="release ref"):
        render_user_data({}, repository="https://g/m.git", ref="main; rm -rf /")


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("ec2", region_name="eu-west-1")


def _pool(ec2: Any, warmups: list[str | None], pool: str = "mailstack-test") -> list[str]:
    allocations = []
    for index, warmup in enumerate(warmups):
        tags = [
            {"Key": POOL_TAG, "Value": pool},
            {"Key": HOSTNAME_TAG, "Value": f"mta-{index + 1}.example.com"},
        ]
        if warmup:
            tags.append({"Key": WARMUP_TAG, "Value": warmup})
        allocation = ec2.allocate_address(
            Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": tags}]
        )["AllocationId"]
        allocations.append(allocation)
    return allocations


def _instances(ec2: Any, count: int) -> list[str]:
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    reservation = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count, InstanceType="t3.small")
    return [instance["InstanceId"] for instance in reservation["Instances"]]


def test_booting_senders_claim_distinct_addresses_warmest_first(ec2: Any) -> None:
    _pool(ec2, [None, "2026-01-10", "2025-12-01"])
    _pool(ec2, [None], pool="another-stack")
    first, second, third = _instances(ec2, 3)
    a = claim(ec2, "mailstack-test", first, today=TODAY, pause=0)
    b = claim(ec2, "mailstack-test", second, today=TODAY, pause=0)
    c = claim(ec2, "mailstack-test", third, today=TODAY, pause=0)
    assert [a["hostname"], b["hostname"], c["hostname"]] == [
        "mta-3.example.com",  # warming since December
        "mta-2.example.com",
        "mta-1.example.com",  # never used: its warm-up starts today
    ]
    assert (a["warmup_start"], c["warmup_start"]) == ("2025-12-01", "2026-03-01")
    assert len({a["address"], b["address"], c["address"]}) == 3
    tagged = ec2.describe_addresses(AllocationIds=[c["allocation_id"]])["Addresses"][0]["Tags"]
    assert {"Key": WARMUP_TAG, "Value": "2026-03-01"} in tagged
    assert claim(ec2, "mailstack-test", first, today=TODAY, pause=0) == a  # a reboot keeps its address


def test_a_full_pool_is_an_error_not_a_sender_without_reputation(ec2: Any) -> None:
    _pool(ec2, ["2026-01-01"])
    first, second = _instances(ec2, 2)
    claim(ec2, "mailstack-test", first, today=TODAY, pause=0)
    with pytest.raises(NoFreeAddressError, match="ipPoolSize"):
        claim(ec2, "mailstack-test", second, today=TODAY, attempts=2, pause=0)


class _StaleView:
    """An EC2 client whose first DescribeAddresses predates another sender's claim (two boots racing)."""

    def __init__(self, ec2: Any) -> None:
        self._ec2 = ec2
        self._first = True

    def describe_addresses(self, **kwargs: Any) -> Any:
        answer = self._ec2.describe_addresses(**kwargs)
        if self._first:
            self._first = False
            for address in answer["Addresses"]:
                for key in ("AssociationId", "InstanceId", "NetworkInterfaceId", "PrivateIpAddress"):
                    address.pop(key, None)
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ec2, name)


def test_two_senders_racing_for_the_same_address_never_share_it(ec2: Any) -> None:
    _pool(ec2, ["2025-12-01", "2026-01-10"])
    winner, loser = _instances(ec2, 2)
    taken = claim(ec2, "mailstack-test", winner, today=TODAY, pause=0)
    other = claim(_StaleView(ec2), "mailstack-test", loser, today=TODAY, pause=0)
    assert taken["hostname"] == "mta-1.example.com"
    assert other["hostname"] == "mta-2.example.com"  # the refused association moved it to the next one


def test_the_fleet_secrets_come_from_secrets_manager(ec2: Any) -> None:
    manager = boto3.client("secretsmanager", region_name="eu-west-1")

    def put(name: str, value: dict[str, str]) -> str:
        arn: str = manager.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]
        return arn

    cloud = {
        "master_key_secret_arn": put("master", {"secret_key": "ab" * 32}),
        "database": {"password_secret_arn": put("db", {"username": "mailstack", "password": "pw"})},
        "api_key_secret_arn": put("api", {"api_key": "k", "api_secret": "s"}),
        "dkim": [
            {"secret_arn": put("dkim", {"selector": "r1", "private_key_pem": "-----BEGIN PRIVATE KEY-----"})}
        ],
    }
    variables = fetch_secrets(manager, cloud)
    assert variables["mailstack_secret_key"] == "ab" * 32
    assert (variables["mailstack_database_password"], variables["mailstack_api_secret"]) == ("pw", "s")
    assert variables["mailstack_dkim_provided_keys"][0]["selector"] == "r1"
    claimed = {
        "address": "203.0.113.9",
        "allocation_id": "a",
        "hostname": "mta-1.example.com",
        "warmup_start": "x",
    }
    assert ip_variables(claimed, "10.40.1.17") == {
        "mailstack_cloud_ip": claimed,
        "mailstack_hostname": "mta-1.example.com",
        "mailstack_public_address": "203.0.113.9",
        "mailstack_private_address": "10.40.1.17",
    }


@pytest.fixture
def metadata_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto_server on loopback as the instance metadata service (IMDSv2), through botocore's own override."""
    server = Path(sys.executable).with_name("moto_server")
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/latest/meta-data/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto_server did not start; see {tmp_path / 'moto.log'}")
            time.sleep(0.1)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
    try:
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def test_the_private_address_comes_from_the_instance_metadata(metadata_service: str) -> None:
    identity = instance_identity()  # IMDSv2: a token first, then the metadata with it
    # moto's metadata service answers for a fixed instance.
    assert identity == {"region": "us-east-1", "instance_id": "i-fake", "private_address": "127.0.0.1"}
    claimed = {"address": "203.0.113.9", "allocation_id": "a", "hostname": "mta-1", "warmup_start": "x"}
    variables = ip_variables(claimed, identity["private_address"])
    assert variables["mailstack_private_address"] == "127.0.0.1"


def test_a_private_address_that_is_not_an_ip_is_refused_with_the_variable_named() -> None:
    claimed = {"address": "203.0.113.9", "allocation_id": "a", "hostname": "mta-1", "warmup_start": "x"}
    with pytest.raises(ValueError, match=r"mailstack_private_address: .*'<html>"):
        ip_variables(claimed, "<html>")


def test_the_secrets_file_is_readable_by_root_only(tmp_path: Path) -> None:
    target = tmp_path / "secret-vars.json"
    _write_private(str(target), {"mailstack_secret_key": "x"})
    assert target.stat().st_mode & 0o777 == 0o600
    assert json.loads(target.read_text()) == {"mailstack_secret_key": "x"}


def test_a_boot_script_over_the_ec2_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="EC2 accepts 16384"):
        render_user_data({"padding": "x" * 20_000}, repository="https://g/m.git", ref="v1")
