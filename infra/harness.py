"""Run the Pulumi program offline under Pulumi's own mocks and record what it would create.

No Pulumi CLI, provider plugin or cloud account is involved: :class:`MailstackMocks` answers every
resource registration and data-source call with plausible computed values (ids, ARNs, real DKIM keys),
and :class:`RecordingMonitor` keeps each registration with its parent. The tests and ``make compliance``
use :func:`run_stack_file` to get a :class:`ProgramRun` for every example stack.

Pulumi's mocks and configuration are process-wide: each run installs fresh ones, so runs must not overlap
(tests run them one at a time, in one thread).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import runpy
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.proto import resource_pb2

REPO_ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINT = REPO_ROOT / "infra" / "__main__.py"
ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "eu-west-1"


@dataclass(frozen=True)
class RecordedResource:
    """One registration: its type token, logical name, URN, parent URN and properties (inputs plus the
    mocked computed outputs, with Pulumi's camelCase names, as CrossGuard sees them)."""

    type: str
    name: str
    urn: str
    parent: str | None
    custom: bool
    props: Mapping[str, Any]
    secret_props: frozenset[str] = frozenset()  # top-level properties that were Pulumi secrets


@dataclass
class ProgramRun:
    """What one run of the program registered and exported."""

    stack: str
    config: Mapping[str, str]
    resources: list[RecordedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, type_token: str) -> list[RecordedResource]:
        """Every resource of one type (``aws:s3/bucket:Bucket``)."""
        return [resource for resource in self.resources if resource.type == type_token]

    def one(self, type_token: str, name: str | None = None) -> RecordedResource:
        """The single resource of a type (and logical name); AssertionError otherwise."""
        found = [r for r in self.of_type(type_token) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_token} {name or ''}, found {[r.name for r in found]}"
        return found[0]


@cache
def _real_key(algorithm: str) -> dict[str, str]:
    """Real key material, so that DKIM records computed from the mocked keys are real records."""
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return {"privateKeyPem": pkcs8, "privateKeyPemPkcs8": pkcs8, "publicKeyPem": public}


class MailstackMocks(pulumi.runtime.Mocks):
    """Plausible computed values for the resource types the program uses; inputs pass through."""

    def __init__(self, region: str = DEFAULT_REGION) -> None:
        self.region = region
        self._counter = itertools.count(1)

    def _arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        region = self.region if regional else ""
        return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{resource}"

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        """Answer a registration with an id and the state (inputs plus computed outputs)."""
        state = dict(args.inputs)
        number = next(self._counter)
        name = str(state.get("name") or args.name)
        rid = f"{args.name}-id"
        computed: dict[str, Any] = {}
        kind = args.typ
        if kind == "aws:s3/bucket:Bucket":
            bucket = (
                state.get("bucket") or f"{args.name}-{hashlib.sha256(args.name.encode()).hexdigest()[:7]}"
            )
            rid = bucket
            computed = {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}", "region": self.region}
        elif kind == "aws:sqs/queue:Queue":
            url = f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{name}"
            rid = url
            computed = {"url": url, "arn": self._arn("sqs", name), "name": name}
        elif kind == "aws:kms/key:Key":
            key_id = f"{number:08d}-0000-4000-8000-{number:012d}"
            rid = key_id
            computed = {"keyId": key_id, "arn": self._arn("kms", f"key/{key_id}")}
        elif kind == "aws:ec2/eip:Eip":
            rid = f"eipalloc-{number:08x}"
            computed = {"allocationId": rid, "publicIp": f"203.0.113.{number % 250 + 1}"}
        elif kind == "aws:ec2/securityGroup:SecurityGroup":
            rid = f"sg-{number:08x}"
            computed = {"arn": self._arn("ec2", f"security-group/{rid}")}
        elif kind == "aws:ec2/launchTemplate:LaunchTemplate":
            rid = f"lt-{number:08x}"
            computed = {"latestVersion": 1, "arn": self._arn("ec2", f"launch-template/{rid}")}
        elif kind == "aws:rds/instance:Instance":
            address = f"{name}.abcdefghij.{self.region}.rds.amazonaws.com"
            computed = {
                "address": address,
                "endpoint": f"{address}:5432",
                "port": 5432,
                "arn": self._arn("rds", f"db:{name}"),
                "masterUserSecrets": [
                    {
                        "secretArn": self._arn("secretsmanager", f"secret:rds!db-{number}"),
                        "secretStatus": "active",
                    }
                ],
            }
        elif kind == "aws:lb/loadBalancer:LoadBalancer":
            computed = {
                "arn": self._arn("elasticloadbalancing", f"loadbalancer/app/{name}/{number:016x}"),
                "arnSuffix": f"app/{name}/{number:016x}",
                "dnsName": f"{name}-{number}.{self.region}.elb.amazonaws.com",
                "zoneId": "Z32O12XQLNTSW2",
            }
        elif kind == "aws:lb/targetGroup:TargetGroup":
            computed = {
                "arn": self._arn("elasticloadbalancing", f"targetgroup/{name}/{number:016x}"),
                "arnSuffix": f"targetgroup/{name}/{number:016x}",
            }
        elif kind == "aws:acm/certificate:Certificate":
            domains = [state.get("domainName"), *state.get("subjectAlternativeNames", [])]
            computed = {
                "arn": self._arn("acm", f"certificate/{number}"),
                "domainValidationOptions": [
                    {
                        "domainName": domain,
                        "resourceRecordName": f"_{number}.{domain}.",
                        "resourceRecordType": "CNAME",
                        "resourceRecordValue": f"_{number}.acm-validations.aws.",
                    }
                    for domain in domains
                ],
            }
        elif kind == "aws:acm/certificateValidation:CertificateValidation":
            computed = {"certificateArn": state.get("certificateArn")}
        elif kind == "aws:route53/zone:Zone":
            rid = f"Z{number:012d}"
            computed = {"zoneId": rid, "nameServers": [f"ns-{i}.awsdns-{i}.org" for i in range(1, 5)]}
        elif kind == "aws:route53/record:Record":
            computed = {"fqdn": str(state.get("name", "")).rstrip(".")}
        elif kind == "tls:index/privateKey:PrivateKey":
            computed = _real_key(str(state.get("algorithm", "RSA")))
        elif kind == "random:index/randomId:RandomId":
            computed = {"hex": hashlib.sha256(args.name.encode()).hexdigest()[:32]}
        elif kind == "random:index/randomPassword:RandomPassword":
            computed = {"result": hashlib.sha256(b"password" + args.name.encode()).hexdigest()[:40]}
        elif kind == "random:index/randomBytes:RandomBytes":
            secret = hashlib.sha256(b"secret" + args.name.encode()).hexdigest()
            computed = {"hex": secret, "base64": secret}
        elif kind == "command:local:Command":
            computed = {"stdout": "", "stderr": ""}
        elif kind.startswith("aws:"):
            service = kind.split(":")[1].split("/")[0]
            computed = {"arn": self._arn(service, name), "name": name}
        for key, value in computed.items():
            state.setdefault(key, value)
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        """Answer data-source calls (AMI, zones, identity, region), with no check failures."""
        return self._call_result(args), []

    def _call_result(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        kind = args.token
        if kind == "aws:ec2/getAmi:getAmi":
            names = [f["values"][0] for f in args.args.get("filters", []) if f.get("name") == "name"]
            pattern = names[0] if names else "debian-12-amd64-*"
            image = pattern.replace("*", "20250610-2137")
            return {"id": "ami-0123456789abcdef0", "imageId": "ami-0123456789abcdef0", "name": image}
        if kind == "aws:index/getAvailabilityZones:getAvailabilityZones":
            zones = [f"{self.region}{suffix}" for suffix in "abc"]
            return {"names": zones, "zoneIds": [f"euw1-az{i}" for i in range(1, 4)], "id": self.region}
        if kind == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/deployer",
                "id": ACCOUNT_ID,
                "userId": "AIDAEXAMPLE",
            }
        if kind == "aws:index/getRegion:getRegion":
            return {"region": self.region, "name": self.region, "id": self.region}
        return {}


# How the Pulumi wire format marks a secret value inside a property map.
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105 - a marker, not a secret


def _is_secret(value: object) -> bool:
    return isinstance(value, dict) and value.get(_SIG_KEY) == _SECRET_SIG


def unwrap_secrets(value: Any) -> Any:
    """Plain values for policy checks (CrossGuard sees secrets' plaintext too)."""
    if _is_secret(value):
        return unwrap_secrets(value.get("value"))
    if isinstance(value, dict):
        return {key: unwrap_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(item) for item in value]
    return value


class RecordingMonitor(MockMonitor):
    """Pulumi's mock monitor, also remembering each registration's parent (mocks only see inputs)."""

    def __init__(self, mocks: MailstackMocks) -> None:
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []

    def RegisterResource(  # noqa: N802 - the gRPC method name
        self, request: resource_pb2.RegisterResourceRequest
    ) -> resource_pb2.RegisterResourceResponse:
        """Register through the mocks, then keep the result."""
        # pulumi's MockMonitor is unannotated; its answer is the response its gRPC method promises.
        response: resource_pb2.RegisterResourceResponse = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack" and not request.type.startswith("pulumi:providers:"):
            registration = self.resources.get(response.urn)
            state = dict(registration.state) if registration is not None else {}
            if request.custom:
                # Bridged providers report the id among a resource's outputs; stack rules match on it.
                state["id"] = response.id
            self.recorded.append(
                RecordedResource(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent or None,
                    custom=bool(request.custom),
                    props=unwrap_secrets(state),
                    secret_props=frozenset(key for key, value in state.items() if _is_secret(value)),
                )
            )
        return response


def config_from_stack_file(path: Path, project: str = "mailstack") -> dict[str, str]:
    """The config map Pulumi would hand the program for ``Pulumi.<stack>.yaml``: objects as JSON text,
    scalars as text. Encrypted (``secure:``) values cannot be read offline and are refused."""
    document: object = yaml.safe_load(path.read_text())
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ValueError(f"{path}: a stack file is a mapping (with a 'config' key)")
    raw: object = document.get("config") or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: 'config' must be a mapping")
    config: dict[str, str] = {}
    for name, value in raw.items():
        key = str(name)  # YAML keys may be numbers
        full = key if ":" in key else f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            raise ValueError(f"{path}: {key} is encrypted; example stacks must not hold secrets")
        if isinstance(value, bool):
            config[full] = "true" if value else "false"
        elif isinstance(value, dict | list):
            config[full] = json.dumps(value)
        else:
            config[full] = str(value)
    return config


def stack_files(root: Path = REPO_ROOT) -> list[Path]:
    """The example stacks: every ``Pulumi.<stack>.yaml`` next to ``Pulumi.yaml``."""
    return sorted(root.glob("Pulumi.*.yaml"))


def stack_name(path: Path) -> str:
    """``dev`` for ``Pulumi.dev.yaml``."""
    return path.name.removeprefix("Pulumi.").removesuffix(".yaml")


def _run_entry_point() -> None:
    runpy.run_path(str(ENTRY_POINT), run_name="__main__")


@cache
def _mocks_event_loop() -> asyncio.AbstractEventLoop:
    """The one event loop every run under the mocks uses: Pulumi keeps futures of the loop current when
    mocks are installed, and fails on any other ("attached to a different loop"). An asyncio.run()
    earlier in the process leaves the thread with no current loop at all."""
    return asyncio.new_event_loop()


def install_mocks(stack: str, config: Mapping[str, str], *, project: str = "mailstack") -> RecordingMonitor:
    """Fresh mocks (in the region ``config`` names) and ``config``, on the mocks' event loop; returns
    the monitor that records what gets registered."""
    asyncio.set_event_loop(_mocks_event_loop())
    mocks = MailstackMocks(config.get("aws:region", DEFAULT_REGION))
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(dict(config), [])
    return monitor


def run_program(
    stack: str,
    config: Mapping[str, str],
    program: Callable[[], object] | None = None,
    *,
    project: str = "mailstack",
) -> ProgramRun:
    """Run ``program`` (default: ``infra/__main__.py``, as ``pulumi up`` would) under fresh mocks with
    ``config``; returns what it registered and exported. Errors of the program propagate."""
    monitor = install_mocks(stack, config, project=project)
    root = pulumi.runtime.get_root_resource()
    outputs: dict[str, Any] = getattr(root, "outputs", {})
    outputs.clear()
    run = ProgramRun(stack=stack, config=dict(config))

    async def collect() -> None:
        for name, value in list(outputs.items()):
            output = pulumi.Output.from_input(value)
            run.outputs[name] = await output.future()
            if await output.is_secret():
                run.secret_outputs.add(name)

    # pulumi.runtime.test is unannotated: it runs the function and awaits what it returns.
    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def execute() -> Coroutine[Any, Any, None]:
        (program or _run_entry_point)()
        return collect()

    execute()
    run.resources = list(monitor.recorded)
    return run


def run_stack_file(path: Path) -> ProgramRun:
    """Run the program with the configuration of an example stack file."""
    return run_program(stack_name(path), config_from_stack_file(path))
