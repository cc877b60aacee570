"""The delivery queue on SQS: a main queue and its dead-letter queue, both under the queue KMS key."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from .common import data_tags, prefix, to_json

# SQS keeps a message at most 14 days; the dead letters get all of it for inspection and redrive.
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600
# The main queue keeps a message 4 days: far beyond mailstack's own retry schedule (8 attempts ≈ 2 h).
MESSAGE_RETENTION_SECONDS = 4 * 24 * 3600


class MailQueue(pulumi.ComponentResource):
    """Main queue (visibility timeout = mailstack's lease) and dead-letter queue.

    Messages carry only message ids (the content stays in the database), hence the ``internal``
    classification. The redrive policy is a safety net for jobs that crash every worker that takes them;
    mailstack dead-letters exhausted jobs itself, before ``max_receive_count`` is reached.
    """

    def __init__(
        self,
        name: str,
        *,
        kms_key_arn: pulumi.Input[str],
        lease_seconds: int,
        max_receive_count: int,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mailstack:infra:MailQueue", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.dead_letter = aws.sqs.Queue(
            f"{name}-dead",
            name=f"{prefix()}-dead",
            kms_master_key_id=kms_key_arn,
            kms_data_key_reuse_period_seconds=3600,
            message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
            tags=data_tags("queue", "internal", **{"mailstack:role": "dead-letter"}),
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-main",
            name=prefix(),
            kms_master_key_id=kms_key_arn,
            kms_data_key_reuse_period_seconds=3600,
            visibility_timeout_seconds=lease_seconds,
            message_retention_seconds=MESSAGE_RETENTION_SECONDS,
            redrive_policy=to_json(
                {"deadLetterTargetArn": self.dead_letter.arn, "maxReceiveCount": max_receive_count}
            ),
            tags=data_tags("queue", "internal"),
            opts=child,
        )
        # Only our main queue may dead-letter into this one.
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dead",
            queue_url=self.dead_letter.url,
            redrive_allow_policy=to_json(
                {"redrivePermission": "byQueue", "sourceQueueArns": [self.queue.arn]}
            ),
            opts=child,
        )
        self.register_outputs(
            {
                "url": self.queue.url,
                "arn": self.queue.arn,
                "dead_letter_url": self.dead_letter.url,
                "dead_letter_arn": self.dead_letter.arn,
            }
        )
