"""Naming, tagging and small helpers shared by the components."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Literal, Required, TypedDict

import pulumi

# Tag keys the CrossGuard pack reads (policies/rules.py): keep them in step.
CLASSIFICATION_TAG = "data-classification"
RETENTION_TAG = "retention-class"
ROLE_TAG = "mailstack:role"
POOL_TAG = "mailstack:ip-pool"
HOSTNAME_TAG = "mailstack:hostname"
WARMUP_TAG = "mailstack:warmup-start"

Classification = Literal["public", "internal", "confidential", "personal"]
# What mailstack publishes (mailstack/stats/_cloudwatch.py) and the alarms read: the namespace (also the
# scope of the senders' cloudwatch:PutMetricData), the counters and their one dimension. One publisher per
# fleet (a shared cursor in the database) publishes each event once, so a Sum over the Stack dimension is
# the whole fleet's count. tests/stats checks that mailstack's names are these.
METRICS_NAMESPACE = "Mailstack"
METRIC_SENT = "Sent"
METRIC_BOUNCED = "Bounced"  # hard bounces
METRIC_COMPLAINED = "Complained"
METRICS_DIMENSION = "Stack"


def stack_tags(component: str, **extra: str) -> dict[str, str]:
    """Tags every resource carries: who owns it, which stack, which component."""
    return {
        "mailstack:stack": pulumi.get_stack(),
        "mailstack:component": component,
        "managed-by": "pulumi",
        **extra,
    }


def data_tags(
    component: str, classification: Classification, retention_class: str | None = None, **extra: str
) -> dict[str, str]:
    """Tags of a resource that stores data: its classification and, for personal data, its retention class."""
    tags = stack_tags(component, **extra)
    tags[CLASSIFICATION_TAG] = classification
    if retention_class is not None:
        tags[RETENTION_TAG] = retention_class
    return tags


def prefix() -> str:
    """``mailstack-<stack>``: the start of every physical name, so stacks share an account safely."""
    return f"mailstack-{pulumi.get_stack()}"


class PolicyStatement(TypedDict, total=False):
    """One statement of an IAM or KMS key policy (the elements these policies use)."""

    Sid: str
    Effect: Required[Literal["Allow", "Deny"]]
    Principal: Literal["*"] | Mapping[Literal["AWS", "Service"], str]
    Action: Required[str | list[str]]
    Resource: pulumi.Input[str] | Sequence[pulumi.Input[str]]  # none in a trust policy
    # operator -> condition key -> value(s), e.g. {"StringEquals": {"kms:ViaService": "..."}}
    Condition: Mapping[str, Mapping[str, pulumi.Input[str] | list[str]]]


def to_json(value: object) -> pulumi.Output[str]:
    """JSON text of a structure that may contain Outputs (policies, redrive settings, variables)."""
    return pulumi.Output.from_input(value).apply(lambda resolved: json.dumps(resolved, sort_keys=True))


def policy_document(statements: Sequence[PolicyStatement]) -> pulumi.Output[str]:
    """An IAM (or KMS key) policy document from statements that may contain Outputs."""
    return to_json({"Version": "2012-10-17", "Statement": statements})


def b64(text: pulumi.Input[str]) -> pulumi.Output[str]:
    """Base64 of UTF-8 text (launch template user data)."""
    return pulumi.Output.from_input(text).apply(lambda value: base64.b64encode(value.encode()).decode())
