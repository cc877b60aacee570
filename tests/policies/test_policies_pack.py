"""The policy pack as the Pulumi CLI drives it: CrossGuard's own analyzer servicer (the gRPC service
`pulumi up --policy-pack policies` talks to, called here without the network) over the dev stack."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

from infra.harness import REPO_ROOT, ProgramRun, RecordedResource, run_stack_file
from policies.rules import RULES


def _servicer() -> Any:
    return _PolicyAnalyzerServicer(
        "mailstack",
        "0.1.0",
        [rule.policy for rule in RULES],
        EnforcementLevel.MANDATORY,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )


def _struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(json.loads(json.dumps(dict(props))), struct)
    return struct


def _analyze_each(run: ProgramRun) -> list[tuple[str, str]]:
    servicer = _servicer()
    found = []
    for resource in run.resources:
        request = proto.AnalyzeRequest(
            type=resource.type, properties=_struct(resource.props), urn=resource.urn, name=resource.name
        )
        for diagnostic in servicer.Analyze(request, None).diagnostics:
            found.append((diagnostic.policyName, resource.name))
    return found


def _analyze_stack(resources: list[RecordedResource]) -> list[Any]:
    request = proto.AnalyzeStackRequest(
        resources=[
            proto.AnalyzerResource(
                type=r.type, properties=_struct(r.props), urn=r.urn, name=r.name, parent=r.parent or ""
            )
            for r in resources
        ]
    )
    return list(_servicer().AnalyzeStack(request, None).diagnostics)


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    return run_stack_file(REPO_ROOT / "Pulumi.dev.yaml")


def test_the_pack_describes_every_rule() -> None:
    info = _servicer().GetAnalyzerInfo(None, None)
    assert [policy.name for policy in info.policies] == [rule.name for rule in RULES]
    assert all(policy.description and policy.remediation_steps for policy in info.policies)


def test_the_dev_stack_passes_the_pack_resource_by_resource(dev: ProgramRun) -> None:
    assert _analyze_each(dev) == [("rds-multi-az", "database-postgres")]  # advisory only


def test_the_dev_stack_passes_the_stack_rules(dev: ProgramRun) -> None:
    assert _analyze_stack(dev.resources) == []


def test_the_pack_blocks_a_public_bucket(dev: ProgramRun) -> None:
    resources = [
        RecordedResource(
            r.type, r.name, r.urn, r.parent, r.custom, {**r.props, "restrictPublicBuckets": False}
        )
        if r.type == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
        else r
        for r in dev.resources
    ]
    (diagnostic,) = _analyze_stack(resources)
    assert diagnostic.policyName == "s3-no-public-access"
    assert diagnostic.enforcementLevel == proto.MANDATORY
    assert "no public access block" in diagnostic.message
