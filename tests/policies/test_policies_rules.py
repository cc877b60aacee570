"""Every CrossGuard rule, called through its validate callback: a compliant case and violating ones."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.rules import RULES, Rule

REPO = Path(__file__).resolve().parents[2]
KEY = "arn:aws:kms:eu-west-1:123456789012:key/k"
OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _rule(name: str) -> Rule:
    return next(rule for rule in RULES if rule.name == name)


class _Found(list[str]):
    """A report_violation callback that keeps the messages."""

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.append(message)


def _resource_violations(name: str, resource_type: str, props: Mapping[str, Any]) -> list[str]:
    found = _Found()
    args = ResourceValidationArgs(resource_type, props, f"urn:x::{resource_type}::r", "r", OPTS, None)
    policy = _rule(name).policy
    assert isinstance(policy, ResourceValidationPolicy)
    policy.validate(args, found)
    return found


def _stack_violations(name: str, resources: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    found = _Found()
    policy_resources = [
        PolicyResource(kind, props, f"urn:x::{kind}::r{i}", f"r{i}", OPTS, None, None, [], {})
        for i, (kind, props) in enumerate(resources)
    ]
    policy = _rule(name).policy
    assert isinstance(policy, StackValidationPolicy)
    policy.validate(StackValidationArgs(policy_resources), found)
    return found


BUCKET = "aws:s3/bucket:Bucket"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
SG = "aws:ec2/securityGroup:SecurityGroup"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
QUEUE = "aws:sqs/queue:Queue"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
LISTENER = "aws:lb/listener:Listener"
KMS_SSE = {
    "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY}}]
}
ENCRYPTED_EBS = [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true", "kmsKeyId": KEY}}]

# (rule, resource type, compliant props, [(violating props, message fragment)])
RESOURCE_CASES: list[tuple[str, str, dict[str, Any], list[tuple[dict[str, Any], str]]]] = [
    (
        "kms-encryption-at-rest",
        "aws:rds/instance:Instance",
        {"storageEncrypted": True, "kmsKeyId": KEY},
        [({"storageEncrypted": False}, "not encrypted"), ({"storageEncrypted": True}, "customer-managed")],
    ),
    ("kms-encryption-at-rest", QUEUE, {"kmsMasterKeyId": KEY}, [({}, "kmsMasterKeyId")]),
    ("kms-encryption-at-rest", "aws:sns/topic:Topic", {"kmsMasterKeyId": KEY}, [({}, "kmsMasterKeyId")]),
    ("kms-encryption-at-rest", "aws:cloudwatch/logGroup:LogGroup", {"kmsKeyId": KEY}, [({}, "kmsKeyId")]),
    ("kms-encryption-at-rest", "aws:secretsmanager/secret:Secret", {"kmsKeyId": KEY}, [({}, "kmsKeyId")]),
    (
        "kms-encryption-at-rest",
        LT,
        {"blockDeviceMappings": ENCRYPTED_EBS},
        [
            (
                {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "false"}}]},
                "/dev/xvda",
            ),
            ({}, "no block device mappings"),
        ],
    ),
    (
        "kms-encryption-at-rest",
        SSE,
        KMS_SSE,
        [({"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}, "SSE-KMS")],
    ),
    (
        "kms-key-rotation",
        "aws:kms/key:Key",
        {"enableKeyRotation": True},
        [({"enableKeyRotation": False}, "rotation is off"), ({}, "rotation is off")],
    ),
    (
        "rds-private-encrypted-backed-up",
        "aws:rds/instance:Instance",
        {"publiclyAccessible": False, "storageEncrypted": True, "backupRetentionPeriod": 35},
        [
            ({"publiclyAccessible": True, "storageEncrypted": True, "backupRetentionPeriod": 7}, "publicly"),
            ({"storageEncrypted": False, "backupRetentionPeriod": 7}, "not encrypted"),
            ({"storageEncrypted": True, "backupRetentionPeriod": 0}, "backups are off"),
            ({"storageEncrypted": True, "backupRetentionPeriod": 36}, "allows backups 35 days"),
        ],
    ),
    (
        "rds-multi-az",
        "aws:rds/instance:Instance",
        {"multiAz": True},
        [({"multiAz": False}, "single availability")],
    ),
    (
        "senders-imdsv2",
        LT,
        {"metadataOptions": {"httpTokens": "required"}},
        [({"metadataOptions": {"httpTokens": "optional"}}, "IMDSv1"), ({}, "IMDSv1")],
    ),
    (
        "log-retention-within-policy",
        "aws:cloudwatch/logGroup:LogGroup",
        {"retentionInDays": 90, "tags": {"retention-class": "delivery_logs"}},
        [
            ({"retentionInDays": 0, "tags": {"retention-class": "delivery_logs"}}, "kept forever"),
            (
                {"retentionInDays": 365, "tags": {"retention-class": "delivery_logs"}},
                "allows delivery_logs 90",
            ),
            ({"retentionInDays": 30}, "no valid retention-class"),
        ],
    ),
    (
        "data-classification-tags",
        BUCKET,
        {"tags": {"data-classification": "personal", "retention-class": "archives"}},
        [
            ({"tags": {}}, "data-classification missing"),
            ({"tags": {"data-classification": "secret"}}, "data-classification missing"),
            ({"tags": {"data-classification": "personal"}}, "without a valid retention-class"),
            ({"tags": {"data-classification": "personal", "retention-class": "forever"}}, "without a valid"),
        ],
    ),
    (
        "iam-least-privilege",
        "aws:iam/rolePolicy:RolePolicy",
        {
            "policy": json.dumps(
                {
                    "Statement": [
                        {
                            "Sid": "A",
                            "Effect": "Allow",
                            "Action": ["sqs:ReceiveMessage"],
                            "Resource": ["arn:q"],
                        },
                        {"Sid": "B", "Effect": "Allow", "Action": "ec2:DescribeAddresses", "Resource": "*"},
                        {"Sid": "C", "Effect": "Deny", "Action": "*", "Resource": "*"},
                    ]
                }
            )
        },
        [
            (
                {
                    "policy": json.dumps(
                        {
                            "Statement": [
                                {"Sid": "A", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:b"}
                            ]
                        }
                    )
                },
                "wildcard action 's3:*'",
            ),
            (
                {
                    "policy": json.dumps(
                        {
                            "Statement": [
                                {"Sid": "B", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
                            ]
                        }
                    )
                },
                "Resource '*' for s3:getobject",
            ),
            (
                {
                    "policy": json.dumps(
                        {
                            "Statement": [
                                {"Sid": "C", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
                            ]
                        }
                    )
                },
                "NotAction",
            ),
        ],
    ),
]


@pytest.mark.parametrize(
    ("name", "resource_type", "good", "bad"),
    RESOURCE_CASES,
    ids=[f"{case[0]}:{case[1].rsplit(':', 1)[-1]}" for case in RESOURCE_CASES],
)
def test_resource_rules(
    name: str, resource_type: str, good: dict[str, Any], bad: list[tuple[dict[str, Any], str]]
) -> None:
    assert _resource_violations(name, resource_type, good) == []
    for props, fragment in bad:
        found = _resource_violations(name, resource_type, props)
        assert found and any(fragment in message for message in found), (props, found)


def test_resource_rules_ignore_other_types() -> None:
    assert _resource_violations("kms-key-rotation", QUEUE, {"enableKeyRotation": False}) == []
    assert _resource_violations("kms-key-rotation", "aws:kms/key:Key", {"keySpec": "RSA_2048"}) == []


def _bucket(tags: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    return (BUCKET, {"bucket": "b1", "tags": {"retention-class": "archives"} if tags is None else tags})


def _lifecycle(*rules: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return (LIFECYCLE, {"bucket": "b1", "rules": list(rules)})


def _expiry(rule_id: str, prefix: str, days: int, noncurrent: int | None) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": rule_id,
        "status": "Enabled",
        "filter": {"prefix": prefix},
        "expiration": {"days": days},
    }
    if noncurrent is not None:
        rule["noncurrentVersionExpiration"] = {"noncurrentDays": noncurrent}
    return rule


VERSIONED = (VERSIONING, {"bucket": "b1", "versioningConfiguration": {"status": "Enabled"}})
ALL_BLOCKED = {
    "bucket": "b1",
    "blockPublicAcls": True,
    "blockPublicPolicy": True,
    "ignorePublicAcls": True,
    "restrictPublicBuckets": True,
}


def _sg(
    role: str, ingress: list[dict[str, Any]] | None = None, egress: list[dict[str, Any]] | None = None
) -> tuple[str, dict[str, Any]]:
    return (
        SG,
        {
            "id": f"sg-{role}",
            "tags": {"mailstack:role": role},
            "ingress": ingress or [],
            "egress": egress or [],
        },
    )


def _port(port: int, protocol: str = "tcp", cidr: str = "0.0.0.0/0") -> dict[str, Any]:
    return {"protocol": protocol, "fromPort": port, "toPort": port, "cidrBlocks": [cidr]}


def _alarm(metric: str, actions: list[str] | None = None) -> tuple[str, dict[str, Any]]:
    queries = [{"id": "bad", "metric": {"metricName": metric}}, {"id": "rate", "expression": "bad"}]
    return (ALARM, {"metricQueries": queries, "alarmActions": ["arn:topic"] if actions is None else actions})


HTTPS = (LISTENER, {"protocol": "HTTPS", "port": 443, "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06"})
REDIRECT = (
    LISTENER,
    {
        "protocol": "HTTP",
        "port": 80,
        "defaultActions": [{"type": "redirect", "redirect": {"protocol": "HTTPS"}}],
    },
)
MAIN_QUEUE = (
    QUEUE,
    {"arn": "arn:q", "kmsMasterKeyId": KEY, "redrivePolicy": json.dumps({"deadLetterTargetArn": "arn:dlq"})},
)
DEAD_QUEUE = (QUEUE, {"arn": "arn:dlq", "kmsMasterKeyId": KEY})

# (rule, compliant stack, [(violating stack, message fragment)])
STACK_CASES: list[
    tuple[str, list[tuple[str, dict[str, Any]]], list[tuple[list[tuple[str, dict[str, Any]]], str]]]
] = [
    (
        "s3-encrypted-with-kms",
        [_bucket(), (SSE, {"bucket": "b1", **KMS_SSE})],
        [
            ([_bucket()], "no SSE-KMS"),
            ([_bucket(), (SSE, {"bucket": "other", **KMS_SSE})], "no SSE-KMS"),
        ],
    ),
    (
        "s3-no-public-access",
        [_bucket(), (PAB, ALL_BLOCKED)],
        [
            ([_bucket()], "no public access block"),
            ([_bucket(), (PAB, {**ALL_BLOCKED, "restrictPublicBuckets": False})], "no public access block"),
            ([_bucket(), (PAB, ALL_BLOCKED), (BUCKET, {"bucket": "b1", "acl": "public-read"})], "public ACL"),
            (
                [
                    _bucket(),
                    (PAB, ALL_BLOCKED),
                    (
                        "aws:s3/bucketPolicy:BucketPolicy",
                        {
                            "policy": {
                                "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}]
                            }
                        },
                    ),
                ],
                "allows anyone",
            ),
        ],
    ),
    (
        "s3-lifecycle-within-retention",
        [
            _bucket(),
            VERSIONED,
            _lifecycle(_expiry("archives", "", 358, 7), _expiry("exports", "exports/", 6, 1)),
        ],
        [
            ([_bucket()], "no lifecycle expiry"),
            ([_bucket({}), _lifecycle(_expiry("archives", "", 300, None))], "no valid retention-class"),
            ([_bucket(), VERSIONED, _lifecycle(_expiry("archives", "", 365, 7))], "archives allows 365"),
            (
                [_bucket(), VERSIONED, _lifecycle(_expiry("archives", "", 300, None))],
                "old versions stay forever",
            ),
            (
                [_bucket(), _lifecycle(_expiry("exports", "exports/", 6, None))],
                "no lifecycle rule covering every",
            ),
            (
                [
                    _bucket(),
                    _lifecycle(_expiry("exports", "exports/", 30, None), _expiry("archives", "", 1, None)),
                ],
                "exports allows 7",
            ),
        ],
    ),
    (
        "port25-egress-only-senders",
        [_sg("sender", egress=[_port(25)]), _sg("load-balancer", egress=[_port(8800, cidr="10.0.0.0/16")])],
        [
            ([_sg("load-balancer", egress=[_port(25)])], "not the sender security group"),
            (
                [
                    _sg(
                        "database",
                        egress=[{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}],
                    )
                ],
                "port 25",
            ),
            (
                [
                    _sg("database"),
                    (
                        "aws:ec2/securityGroupRule:SecurityGroupRule",
                        {"type": "egress", "securityGroupId": "sg-database", **_port(25)},
                    ),
                ],
                "not the sender group",
            ),
        ],
    ),
    (
        "sqs-encrypted-with-dead-letter-queue",
        [MAIN_QUEUE, DEAD_QUEUE],
        [
            ([(QUEUE, {"arn": "arn:q", "kmsMasterKeyId": KEY})], "no dead-letter queue"),
            ([(QUEUE, {**MAIN_QUEUE[1], "kmsMasterKeyId": None}), DEAD_QUEUE], "not encrypted"),
            ([MAIN_QUEUE], "not part of this stack"),
        ],
    ),
    (
        "api-tls-only",
        [
            HTTPS,
            REDIRECT,
            _sg("load-balancer", ingress=[_port(443), _port(80)]),
            _sg("sender", ingress=[_port(25)]),
        ],
        [
            ([(LISTENER, {"protocol": "HTTP", "defaultActions": [{"type": "forward"}]})], "without TLS"),
            ([(LISTENER, {"protocol": "HTTPS", "sslPolicy": "ELBSecurityPolicy-2016-08"})], "older than 1.2"),
            ([HTTPS, _sg("sender", ingress=[_port(8800)])], "open to the internet"),
            ([HTTPS, _sg("database", ingress=[_port(5432)])], "open to the internet"),
        ],
    ),
    (
        "alarms-on-bounce-and-complaint-rates",
        [(LT, {}), _alarm("Bounced"), _alarm("Complained")],
        [
            ([(LT, {}), _alarm("Bounced")], "complaint rate"),
            ([(LT, {}), _alarm("Bounced"), _alarm("Complained", actions=[])], "complaint rate"),
            ([(LT, {})], "bounce rate"),
        ],
    ),
]


@pytest.mark.parametrize(("name", "good", "bad"), STACK_CASES, ids=[case[0] for case in STACK_CASES])
def test_stack_rules(
    name: str,
    good: list[tuple[str, dict[str, Any]]],
    bad: list[tuple[list[tuple[str, dict[str, Any]]], str]],
) -> None:
    assert _stack_violations(name, good) == []
    for resources, fragment in bad:
        found = _stack_violations(name, resources)
        assert found and any(fragment in message for message in found), (resources, found)


def test_stack_rules_do_not_apply_to_stacks_without_their_resources() -> None:
    # The owned-servers target has no AWS sender fleet: no alarm is demanded of it.
    assert _stack_violations("alarms-on-bounce-and-complaint-rates", [("command:local:Command", {})]) == []


def test_every_rule_is_tested_and_documented() -> None:
    tested = {case[0] for case in RESOURCE_CASES} | {case[0] for case in STACK_CASES}
    assert tested == {rule.name for rule in RULES}
    required = {
        "kms-encryption-at-rest", "s3-no-public-access", "s3-lifecycle-within-retention", "kms-key-rotation",
        "rds-private-encrypted-backed-up", "senders-imdsv2", "port25-egress-only-senders",
        "sqs-encrypted-with-dead-letter-queue", "data-classification-tags", "api-tls-only",
        "alarms-on-bounce-and-complaint-rates",
    }  # fmt: skip
    assert required <= tested
    for rule in RULES:
        assert rule.policy.description and rule.remediation and rule.resource_types
        assert rule.enforcement in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY)


def test_a_rule_without_its_own_level_enforces_the_packs_as_the_cli_does() -> None:
    # The CLI applies PolicyPack(enforcement_level=...) to such a rule; make compliance must agree.
    bare = Rule(
        ResourceValidationPolicy("bare", "no level of its own", validate=lambda args, report: None),
        frozenset(),
    )
    assert bare.enforcement == EnforcementLevel.MANDATORY
    assert "enforcement_level=PACK_ENFORCEMENT" in (REPO / "policies" / "__main__.py").read_text()


def test_the_policy_pack_is_declared_for_the_pulumi_cli() -> None:
    manifest = yaml.safe_load((REPO / "policies" / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    main = (REPO / "policies" / "__main__.py").read_text()
    assert "PolicyPack(" in main and "RULES" in main
    # The rules module must not start the analyzer server when imported.
    assert "PolicyPack(" not in (REPO / "policies" / "rules.py").read_text()


# Properties the rules read, so that generated resources reach their branches.
_PROPERTY_NAMES = (
    "tags", "data-classification", "retention-class", "mailstack:role", "blockDeviceMappings", "ebs",
    "encrypted", "kmsKeyId", "rules", "applyServerSideEncryptionByDefault", "sseAlgorithm", "metadataOptions",
    "httpTokens", "httpEndpoint", "inlinePolicies", "policy", "Statement", "Effect", "Action", "Resource",
    "Principal", "defaultActions", "type", "redirect", "protocol", "sslPolicy", "metricQueries", "metric",
    "metricName", "alarmActions", "egress", "ingress", "fromPort", "toPort", "cidrBlocks", "id", "bucket",
    "arn", "expiration", "days", "noncurrentVersionExpiration", "noncurrentDays", "versioningConfiguration",
    "status", "filter", "prefix", "retentionInDays", "backupRetentionPeriod", "storageEncrypted",
    "serverSideEncryptionConfiguration", "rule", "redrivePolicy", "kmsMasterKeyId", "securityGroupId",
)  # fmt: skip
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from(["*", "true", "NaN", "Enabled"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_PROPERTY_NAMES) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
_PROPS = st.dictionaries(st.sampled_from(_PROPERTY_NAMES), _JSON, max_size=6)
_TYPES = sorted({kind for rule in RULES for kind in rule.resource_types})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resources=st.lists(st.tuples(st.sampled_from(_TYPES), _PROPS), min_size=1, max_size=4))
def test_resources_of_any_shape_are_judged_never_crash_a_rule(
    resources: list[tuple[str, dict[str, Any]]],
) -> None:
    # A rule that raises fails `pulumi preview` with a traceback instead of a violation and its remedy.
    for rule in RULES:
        if rule.is_stack_rule:
            _stack_violations(rule.name, resources)
        else:
            for kind, props in resources:
                _resource_violations(rule.name, kind, props)


@pytest.mark.parametrize(
    ("name", "resource_type", "props", "fragment"),
    [
        # Non-finite numbers compare false with every limit: NaN days used to pass every check.
        (
            "log-retention-within-policy",
            "aws:cloudwatch/logGroup:LogGroup",
            {"retentionInDays": "NaN", "tags": {"retention-class": "delivery_logs"}},
            "kept forever",
        ),
        (
            "rds-private-encrypted-backed-up",
            "aws:rds/instance:Instance",
            {"storageEncrypted": True, "backupRetentionPeriod": "NaN"},
            "backups are off",
        ),
        # Objects of another shape configure nothing: they are violations, not crashes.
        ("senders-imdsv2", LT, {"metadataOptions": "required"}, "IMDSv1"),
        ("kms-encryption-at-rest", LT, {"blockDeviceMappings": ["/dev/xvda"]}, "not encrypted"),
        ("kms-encryption-at-rest", SSE, {"rules": ["aws:kms"]}, "SSE-KMS"),
    ],
)
def test_malformed_properties_are_violations(
    name: str, resource_type: str, props: dict[str, Any], fragment: str
) -> None:
    found = _resource_violations(name, resource_type, props)
    assert any(fragment in message for message in found), found


def test_a_listener_whose_actions_are_not_objects_is_not_taken_for_a_redirect() -> None:
    found = _stack_violations(
        "api-tls-only", [(LISTENER, {"protocol": "HTTP", "defaultActions": ["redirect"]})]
    )
    assert any("without TLS" in message for message in found), found
