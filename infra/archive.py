"""The S3 bucket for archives, exports and backups: private, KMS-encrypted, versioned, and expiring its
objects as the retention policy says."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from policies.retention import RetentionPolicy

from .common import data_tags, policy_document

# Which retention class each key prefix holds; everything else in the bucket is an archive.
BUCKET_CLASS = "archives"
PREFIX_CLASSES: Mapping[str, str] = {"exports/": "exports", "backups/": "backups"}


@dataclass(frozen=True)
class ExpiryRule:
    """One lifecycle rule: objects under ``prefix`` are gone ``expire_days + noncurrent_days`` after
    creation at the latest (the current version expires, then its noncurrent copy)."""

    data_class: str
    prefix: str
    expire_days: int
    noncurrent_days: int


def noncurrent_days(max_age_days: int) -> int:
    """How long a deleted or overwritten version stays recoverable: a week, less for short-lived classes."""
    return max(1, min(7, max_age_days // 5))


def expiry_rules(policy: RetentionPolicy) -> list[ExpiryRule]:
    """The bucket's rules from the policy: with versioning, a version lives until its expiry plus the
    noncurrent window, so both together must fit in the class's ``max_age_days``."""
    rules = []
    for key_prefix, data_class in [("", BUCKET_CLASS), *PREFIX_CLASSES.items()]:
        max_age = policy.max_age(data_class)
        window = noncurrent_days(max_age)
        if max_age - window < 1:
            raise ValueError(
                f"{policy.source}: classes.{data_class}.max_age_days must be at least 2 for data kept in a "
                f"versioned bucket (a day current, a day recoverable), got {max_age}"
            )
        rules.append(ExpiryRule(data_class, key_prefix, max_age - window, window))
    return rules


class ArchiveBucket(pulumi.ComponentResource):
    """The bucket with its public access block, ownership, encryption, versioning, lifecycle and a policy
    refusing anything but TLS."""

    def __init__(
        self,
        name: str,
        *,
        kms_key_arn: pulumi.Input[str],
        retention: RetentionPolicy,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mailstack:infra:ArchiveBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            force_destroy=False,
            tags=data_tags("archive", "personal", BUCKET_CLASS),
            opts=child,
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=self.bucket.bucket,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.bucket,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.bucket,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": kms_key_arn,
                    },
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.bucket,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        self.rules = expiry_rules(retention)
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.bucket,
            rules=[
                {
                    "id": rule.data_class,
                    "status": "Enabled",
                    "filter": {"prefix": rule.prefix},
                    "expiration": {"days": rule.expire_days},
                    "noncurrent_version_expiration": {"noncurrent_days": rule.noncurrent_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                }
                for rule in self.rules
            ],
            # Lifecycle rules on versions need versioning in place first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=self.bucket.bucket,
            policy=policy_document(
                [
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [self.bucket.arn, self.bucket.arn.apply(lambda arn: f"{arn}/*")],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ]
            ),
            opts=child,
        )
        self.register_outputs({"bucket": self.bucket.bucket, "arn": self.bucket.arn})
