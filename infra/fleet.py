"""The sender fleet: an autoscaling group of Debian 12 instances that claim Elastic IPs from a pool."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import pulumi
import pulumi_aws as aws

from .boot_types import CloudVars
from .common import (
    HOSTNAME_TAG,
    METRICS_NAMESPACE,
    POOL_TAG,
    ROLE_TAG,
    WARMUP_TAG,
    PolicyStatement,
    b64,
    policy_document,
    prefix,
    stack_tags,
)
from .userdata import render_user_data

# Debian's own AWS account publishes the official images.
DEBIAN_OWNER = "136693071363"
INSTANCE_WARMUP_SECONDS = 600
# Bootstrapping (packages, checkout, Ansible) takes minutes; the load balancer's verdict waits for it.
HEALTH_CHECK_GRACE_SECONDS = 900


def sender_hostnames(prefix_label: str, domain: str, count: int) -> list[str]:
    """The pool's host names (HELO, PTR and MX targets): ``mta-1.example.com`` ..."""
    return [f"{prefix_label}-{index + 1}.{domain}" for index in range(count)]


@dataclass(frozen=True)
class SenderAccess:
    """What a sender may touch: the resources its instance role is scoped to."""

    queue_arns: list[pulumi.Input[str]]
    queue_key_arn: pulumi.Input[str]
    secrets_key_arn: pulumi.Input[str]
    storage_key_arn: pulumi.Input[str]
    secret_arns: list[pulumi.Input[str]]
    bucket_arn: pulumi.Input[str]
    log_group_arns: list[pulumi.Input[str]]
    ip_pool: str


def sender_policy_statements(access: SenderAccess, *, region: str, account_id: str) -> list[PolicyStatement]:
    """Least privilege for a sender: its queues, its secrets, its bucket, its log groups, its IP pool."""
    stack = pulumi.get_stack()
    return [
        {
            "Sid": "Queue",
            "Effect": "Allow",
            "Action": [
                "sqs:SendMessage",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
            ],
            "Resource": access.queue_arns,
        },
        {
            "Sid": "QueueKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": [access.queue_key_arn],
        },
        {
            "Sid": "Secrets",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": access.secret_arns,
        },
        {
            "Sid": "SecretsKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": [access.secrets_key_arn],
            "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
        },
        {
            "Sid": "Archive",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject"],
            "Resource": [pulumi.Output.from_input(access.bucket_arn).apply(lambda arn: f"{arn}/*")],
        },
        {
            "Sid": "ArchiveList",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [access.bucket_arn],
        },
        {
            "Sid": "ArchiveKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": [access.storage_key_arn],
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        },
        {
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [
                pulumi.Output.from_input(arn).apply(lambda a: f"{a}:*") for arn in access.log_group_arns
            ],
        },
        {
            "Sid": "Metrics",
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData"],
            # PutMetricData has no resources; the namespace condition is the scope.
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
        },
        {
            "Sid": "FindPoolAddresses",
            "Effect": "Allow",
            "Action": ["ec2:DescribeAddresses"],
            # Describe calls have no resource-level permissions.
            "Resource": "*",
        },
        {
            "Sid": "ClaimPoolAddress",
            "Effect": "Allow",
            "Action": ["ec2:AssociateAddress"],
            "Resource": f"arn:aws:ec2:{region}:{account_id}:elastic-ip/*",
            "Condition": {"StringEquals": {f"aws:ResourceTag/{POOL_TAG}": access.ip_pool}},
        },
        {
            "Sid": "ClaimForOwnStackInstances",
            "Effect": "Allow",
            "Action": ["ec2:AssociateAddress"],
            "Resource": [
                f"arn:aws:ec2:{region}:{account_id}:instance/*",
                f"arn:aws:ec2:{region}:{account_id}:network-interface/*",
            ],
            "Condition": {"StringEquals": {"aws:ResourceTag/mailstack:stack": stack}},
        },
        {
            "Sid": "StartWarmup",
            "Effect": "Allow",
            "Action": ["ec2:CreateTags"],
            "Resource": f"arn:aws:ec2:{region}:{account_id}:elastic-ip/*",
            "Condition": {
                "StringEquals": {f"aws:ResourceTag/{POOL_TAG}": access.ip_pool},
                "ForAllValues:StringEquals": {"aws:TagKeys": [WARMUP_TAG]},
            },
        },
    ]


class SenderFleet(pulumi.ComponentResource):
    """Launch template, autoscaling group, backlog-per-instance scaling and the Elastic IP pool.

    * Launch template: the newest official Debian 12 image, IMDSv2 only, encrypted gp3 root volume, the
      boot script of :mod:`infra.userdata`. A changed template starts an instance refresh (rolling, half
      the fleet kept in service).
    * Scaling: target tracking on SQS messages visible ÷ senders in service; never more senders than
      addresses in the pool, since a sender without an Elastic IP has no reputation and no PTR.
    * IP pool: Elastic IPs that outlive instances. A new address starts its warm-up on its first claim
      (tag ``mailstack:warmup-start``), and booting senders prefer the warmest free address.
    """

    def __init__(
        self,
        name: str,
        *,
        subnet_ids: list[pulumi.Output[str]],
        security_group_id: pulumi.Input[str],
        target_group_arn: pulumi.Input[str],
        queue_name: pulumi.Input[str],
        access: SenderAccess,
        cloud_vars: CloudVars[pulumi.Input[str]],
        role_vars: Mapping[str, pulumi.Input[object]],
        repository: str,
        ref: str,
        hostnames: list[str],
        instance_type: str,
        architecture: str,
        volume_size_gb: int,
        min_size: int,
        max_size: int,
        backlog_per_instance: int,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mailstack:infra:SenderFleet", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(parent=self)
        region = aws.get_region(opts=invoke).region
        account_id = aws.get_caller_identity(opts=invoke).account_id

        # The pool: one address per host name, tagged so that only this stack's senders claim them.
        self.addresses: list[aws.ec2.Eip] = []
        for index, hostname in enumerate(hostnames):
            self.addresses.append(
                aws.ec2.Eip(
                    f"{name}-ip-{index + 1}",
                    domain="vpc",
                    tags=stack_tags("fleet", **{POOL_TAG: access.ip_pool, HOSTNAME_TAG: hostname}),
                    # The boot script adds the warm-up tag on first use; Pulumi must not take it away.
                    opts=pulumi.ResourceOptions(parent=self, ignore_changes=["tags", "tagsAll"]),
                )
            )

        role = aws.iam.Role(
            f"{name}-role",
            name=f"{prefix()}-sender",
            assume_role_policy=policy_document(
                [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            ),
            tags=stack_tags("fleet"),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=policy_document(sender_policy_statements(access, region=region, account_id=account_id)),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=child)

        image = aws.ec2.get_ami(
            most_recent=True,
            owners=[DEBIAN_OWNER],
            filters=[
                {"name": "name", "values": [f"debian-12-{architecture}-*"]},
                {"name": "virtualization-type", "values": ["hvm"]},
            ],
            opts=invoke,
        )
        # from_input resolves nested Inputs (the Outputs in the variables become their values), which
        # Pulumi's types cannot say.
        resolved_cloud = cast(pulumi.Output[CloudVars[str]], pulumi.Output.from_input(cloud_vars))
        resolved_roles = cast(pulumi.Output[Mapping[str, object]], pulumi.Output.from_input(role_vars))

        def boot_script(cloud: CloudVars[str]) -> pulumi.Output[str]:
            return resolved_roles.apply(
                lambda roles: render_user_data(cloud, repository=repository, ref=ref, role_vars=roles)
            )

        user_data: pulumi.Output[str] = resolved_cloud.apply(boot_script)
        instance_tags = stack_tags("fleet", Name=f"{prefix()}-sender", **{ROLE_TAG: "sender"})
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-template",
            name_prefix=f"{prefix()}-sender-",
            image_id=image.id,
            instance_type=instance_type,
            iam_instance_profile={"arn": profile.arn},
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                "http_put_response_hop_limit": 1,
                "instance_metadata_tags": "disabled",
            },
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {
                        "volume_size": volume_size_gb,
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "kms_key_id": access.storage_key_arn,
                        "delete_on_termination": "true",
                    },
                }
            ],
            network_interfaces=[
                {
                    "device_index": 0,
                    "associate_public_ip_address": "true",
                    "security_groups": [security_group_id],
                    "delete_on_termination": "true",
                }
            ],
            monitoring={"enabled": True},
            user_data=b64(user_data),
            tag_specifications=[
                {"resource_type": kind, "tags": instance_tags}
                for kind in ("instance", "volume", "network-interface")
            ],
            tags=stack_tags("fleet", **{ROLE_TAG: "sender"}),
            opts=child,
        )
        self.group = aws.autoscaling.Group(
            f"{name}-group",
            name=f"{prefix()}-senders",
            vpc_zone_identifiers=subnet_ids,
            min_size=min_size,
            max_size=min(max_size, len(hostnames)),
            launch_template={
                "id": self.launch_template.id,
                "version": self.launch_template.latest_version.apply(str),
            },
            health_check_type="ELB",
            health_check_grace_period=HEALTH_CHECK_GRACE_SECONDS,
            target_group_arns=[target_group_arn],
            default_instance_warmup=INSTANCE_WARMUP_SECONDS,
            enabled_metrics=[
                aws.autoscaling.Metric.GROUP_IN_SERVICE_INSTANCES,
                aws.autoscaling.Metric.GROUP_DESIRED_CAPACITY,
                aws.autoscaling.Metric.GROUP_TOTAL_INSTANCES,
            ],
            termination_policies=["OldestLaunchTemplate", "OldestInstance"],
            instance_refresh={
                "strategy": "Rolling",
                "preferences": {
                    "min_healthy_percentage": 50,
                    "instance_warmup": str(INSTANCE_WARMUP_SECONDS),
                },
            },
            tags=[
                aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                for key, value in instance_tags.items()
            ],
            opts=child,
        )
        aws.autoscaling.Policy(
            f"{name}-backlog",
            autoscaling_group_name=self.group.name,
            policy_type="TargetTrackingScaling",
            estimated_instance_warmup=INSTANCE_WARMUP_SECONDS,
            target_tracking_configuration={
                "target_value": float(backlog_per_instance),
                "customized_metric_specification": {
                    "metrics": [
                        {
                            "id": "backlog",
                            "label": "Messages waiting in the queue",
                            "metric_stat": {
                                "metric": {
                                    "namespace": "AWS/SQS",
                                    "metric_name": "ApproximateNumberOfMessagesVisible",
                                    "dimensions": [{"name": "QueueName", "value": queue_name}],
                                },
                                "stat": "Sum",
                            },
                            "return_data": False,
                        },
                        {
                            "id": "senders",
                            "label": "Senders in service",
                            "metric_stat": {
                                "metric": {
                                    "namespace": "AWS/AutoScaling",
                                    "metric_name": "GroupInServiceInstances",
                                    "dimensions": [
                                        {"name": "AutoScalingGroupName", "value": self.group.name}
                                    ],
                                },
                                "stat": "Average",
                            },
                            "return_data": False,
                        },
                        {
                            "id": "backlog_per_sender",
                            "label": "Backlog per sender",
                            "expression": "backlog / senders",
                            "return_data": True,
                        },
                    ]
                },
            },
            opts=child,
        )
        self.register_outputs(
            {
                "group_name": self.group.name,
                "addresses": [address.public_ip for address in self.addresses],
                "launch_template_id": self.launch_template.id,
            }
        )
