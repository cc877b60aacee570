"""Customer-managed KMS keys, one per purpose, all rotated yearly by AWS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from .common import PolicyStatement, policy_document, prefix, stack_tags

# What each key protects; KmsKeys.arn takes only these names.
KeyName = Literal["storage", "queue", "secrets", "observability"]


@dataclass(frozen=True)
class KeyPurpose:
    """What a key protects and which AWS services (besides IAM principals of the account) may use it."""

    name: KeyName
    description: str
    services: tuple[str, ...] = ()


# Separate keys keep blast radius and grants small: a sender may decrypt queue messages and its secrets,
# but never backups in the archive bucket unless its role says so.
PURPOSES = (
    KeyPurpose("storage", "mailstack data at rest: RDS, the archive bucket, sender volumes"),
    KeyPurpose("queue", "mailstack delivery queue (SQS)"),
    KeyPurpose("secrets", "mailstack secrets: DKIM keys, API secret, database credentials"),
    # CloudWatch Logs and alarms publishing to the encrypted SNS topic need the key themselves.
    KeyPurpose(
        "observability",
        "mailstack logs and alert notifications",
        services=("logs.{region}.amazonaws.com", "cloudwatch.amazonaws.com"),
    ),
)


def key_policy(account_id: str, region: str, services: tuple[str, ...]) -> pulumi.Output[str]:
    """The account administers the key through IAM (so roles need explicit grants); listed services may
    encrypt and decrypt with it, for resources of this account only."""
    statements: list[PolicyStatement] = [
        {
            "Sid": "AccountAdministersThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    for service in services:
        statements.append(
            {
                "Sid": "Service" + service.split(".")[0].capitalize(),
                "Effect": "Allow",
                "Principal": {"Service": service.format(region=region)},
                "Action": [
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        )
    return policy_document(statements)


class KmsKeys(pulumi.ComponentResource):
    """One symmetric key per purpose in :data:`PURPOSES`, rotation on, 30-day deletion window, aliased."""

    def __init__(self, name: str, *, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailstack:infra:KmsKeys", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(parent=self)
        account_id = aws.get_caller_identity(opts=invoke).account_id
        region = aws.get_region(opts=invoke).region
        self.keys: dict[KeyName, aws.kms.Key] = {}
        for purpose in PURPOSES:
            key = aws.kms.Key(
                f"{name}-{purpose.name}",
                description=purpose.description,
                enable_key_rotation=True,
                deletion_window_in_days=30,
                policy=key_policy(account_id, region, purpose.services),
                tags=stack_tags("keys", Name=f"{prefix()}-{purpose.name}"),
                opts=child,
            )
            aws.kms.Alias(
                f"{name}-{purpose.name}",
                name=f"alias/{prefix()}-{purpose.name}",
                target_key_id=key.key_id,
                opts=child,
            )
            self.keys[purpose.name] = key
        self.register_outputs({purpose: key.arn for purpose, key in self.keys.items()})

    def arn(self, purpose: KeyName) -> pulumi.Output[str]:
        """The ARN of the key for ``purpose``."""
        return self.keys[purpose].arn
