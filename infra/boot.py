#!/usr/bin/python3
"""What a booting sender does before Ansible runs (shipped in the user data as ``mailstack-boot``).

``mailstack-boot claim-ip CLOUD_VARS OUT``
    Sending reputation and reverse DNS belong to IP addresses, not to instances that come and go, so the
    pool is created once by Pulumi and every sender claims one of its free addresses at boot: the one
    whose warm-up started earliest, so that scaling out uses warm addresses first. An address used for
    the first time gets its warm-up start date as a tag; mailstack's throttle caps the new IP's daily
    volume from that date. The variables also carry the instance's private address
    (``mailstack_private_address``, from the instance metadata), which the roles bind and allow.

``mailstack-boot fetch-secrets CLOUD_VARS OUT``
    Reads the fleet's secrets from Secrets Manager with the instance role (the fleet-wide master secret,
    the database password, the first API key, the DKIM keys) into a root-only variables file for the
    playbook; the user data deletes it once the playbook has run. Nothing secret is in the user data.

Runs with Debian's python3 and python3-boto3 only; ``claim()`` and ``fetch_secrets()`` are importable for
tests (moto).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import random
import sys
import time
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the types live beside: this script rides in the 16 KB of EC2 user data
    from .boot_types import (
        AddressDescription,
        ApiKeySecret,
        Claim,
        CloudVars,
        DatabaseSecret,
        DkimSecret,
        Ec2Client,
        Identity,
        IpVars,
        MasterKeySecret,
        SecretsManagerClient,
        SecretVars,
    )

POOL_TAG = "mailstack:ip-pool"
HOSTNAME_TAG = "mailstack:hostname"
WARMUP_TAG = "mailstack:warmup-start"
# The instance metadata service; AWS_EC2_METADATA_SERVICE_ENDPOINT is botocore's own override of it.
_IMDS_ENDPOINT = "http://169.254.169.254"
_NOT_STARTED = "9999-12-31"


class NoFreeAddressError(RuntimeError):
    """Every address of the pool is taken; the fleet is larger than its pool."""


def _tags(address: AddressDescription) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in address.get("Tags", [])}


def claim(
    ec2: Ec2Client,
    pool: str,
    instance_id: str,
    *,
    today: datetime.date,
    attempts: int = 30,
    pause: float = 10.0,
) -> Claim:
    """Associate a free address of ``pool`` with ``instance_id`` (or keep the one it has); returns
    ``{"address", "allocation_id", "hostname", "warmup_start"}``.

    Two instances booting together may pick the same address; association refuses to steal
    (``AllowReassociation=False``), so the loser simply tries the next one.
    """
    for _attempt in range(attempts):
        addresses = ec2.describe_addresses(Filters=[{"Name": f"tag:{POOL_TAG}", "Values": [pool]}])[
            "Addresses"
        ]
        chosen = next((a for a in addresses if a.get("InstanceId") == instance_id), None)
        if chosen is None:
            free = [a for a in addresses if not a.get("AssociationId") and not a.get("InstanceId")]
            free.sort(key=lambda a: (_tags(a).get(WARMUP_TAG, _NOT_STARTED), a["AllocationId"]))
            for candidate in free:
                try:
                    ec2.associate_address(
                        AllocationId=candidate["AllocationId"],
                        InstanceId=instance_id,
                        AllowReassociation=False,
                    )
                except Exception as exc:  # taken by another booting sender a moment ago
                    print(f"address {candidate['PublicIp']} not claimed: {exc}", file=sys.stderr)
                    continue
                chosen = candidate
                break
        if chosen is not None:
            tags = _tags(chosen)
            start = tags.get(WARMUP_TAG)
            if not start:
                start = today.isoformat()
                ec2.create_tags(
                    Resources=[chosen["AllocationId"]], Tags=[{"Key": WARMUP_TAG, "Value": start}]
                )
            return {
                "address": chosen["PublicIp"],
                "allocation_id": chosen["AllocationId"],
                "hostname": tags.get(HOSTNAME_TAG, ""),
                "warmup_start": start,
            }
        time.sleep(pause * (0.5 + random.random()))  # noqa: S311 - spreading retries, not security
    raise NoFreeAddressError(f"no free Elastic IP in pool {pool!r}: raise fleet.ipPoolSize")


def ip_variables(claimed: Claim, private_address: str) -> IpVars:
    """The playbook variables for the claimed address and the instance's private address (the roles'
    names, plus the whole claim)."""
    try:
        private = str(ipaddress.ip_address(private_address.strip()))
    except ValueError:
        raise ValueError(
            f"mailstack_private_address: the instance metadata's local-ipv4 is not an IP address: "
            f"{private_address[:60]!r}"
        ) from None
    return {
        "mailstack_cloud_ip": claimed,
        "mailstack_hostname": claimed["hostname"],
        "mailstack_public_address": claimed["address"],
        "mailstack_private_address": private,
    }


def _secret(secretsmanager: SecretsManagerClient, arn: str) -> Any:
    # The JSON documents the program wrote (the *Secret types above).
    return json.loads(secretsmanager.get_secret_value(SecretId=arn)["SecretString"])


def fetch_secrets(secretsmanager: SecretsManagerClient, cloud: CloudVars[str]) -> SecretVars:
    """The playbook variables holding the fleet's secrets, read from Secrets Manager."""
    master: MasterKeySecret[str] = _secret(secretsmanager, cloud["master_key_secret_arn"])
    database: DatabaseSecret[str] = _secret(secretsmanager, cloud["database"]["password_secret_arn"])
    api: ApiKeySecret[str] = _secret(secretsmanager, cloud["api_key_secret_arn"])
    dkim: list[DkimSecret[str]] = [_secret(secretsmanager, key["secret_arn"]) for key in cloud["dkim"]]
    return {
        "mailstack_secret_key": master["secret_key"],
        "mailstack_database_password": database["password"],
        "mailstack_api_key": api["api_key"],
        "mailstack_api_secret": api["api_secret"],
        "mailstack_dkim_provided_keys": dkim,
    }


def _imds() -> str:
    endpoint = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or _IMDS_ENDPOINT
    return endpoint.rstrip("/") + "/latest/"


def _metadata(path: str, token: str) -> str:
    request = urllib.request.Request(_imds() + path, headers={"X-aws-ec2-metadata-token": token})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - the IMDS address
        return str(response.read().decode())


def _imds_token() -> str:
    # IMDSv2: a session token first (the launch template requires it).
    request = urllib.request.Request(  # noqa: S310
        _imds() + "api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return str(response.read().decode())


def instance_identity() -> Identity:
    """This instance's ``region``, ``instance_id`` and ``private_address``, from the metadata (IMDSv2)."""
    token = _imds_token()
    return {
        "region": _metadata("meta-data/placement/region", token),
        "instance_id": _metadata("meta-data/instance-id", token),
        "private_address": _metadata("meta-data/local-ipv4", token),
    }


def _write_private(path: str, document: Mapping[str, object]) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle)


def main(argv: list[str]) -> int:
    """``mailstack-boot claim-ip|fetch-secrets CLOUD_VARS.json OUT.json``."""
    import boto3  # type: ignore[import-untyped]  # noqa: PLC0415 - not needed by importers (tests)

    if len(argv) != 4 or argv[1] not in ("claim-ip", "fetch-secrets"):
        print("usage: mailstack-boot claim-ip|fetch-secrets CLOUD_VARS.json OUT.json", file=sys.stderr)
        return 2
    command, vars_path, out_path = argv[1:4]
    with open(vars_path) as handle:
        cloud: CloudVars[str] = json.load(handle)["mailstack_cloud"]
    identity = instance_identity()
    region = identity["region"]
    if command == "fetch-secrets":
        _write_private(out_path, fetch_secrets(boto3.client("secretsmanager", region_name=region), cloud))
        return 0
    ec2 = boto3.client("ec2", region_name=region)
    today = datetime.datetime.now(datetime.UTC).date()
    claimed = claim(ec2, cloud["ip_pool"], identity["instance_id"], today=today)
    _write_private(out_path, ip_variables(claimed, identity["private_address"]))
    print(f"claimed {claimed['address']} ({claimed['hostname']}), warm-up since {claimed['warmup_start']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
