"""The Pulumi program: read the stack configuration, build the chosen target, export what operators need."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from policies.retention import load_retention

from .archive import ArchiveBucket
from .baremetal import Baremetal
from .boot_types import CloudVars
from .common import METRICS_NAMESPACE, prefix
from .config import AwsConfig, BaremetalConfig, StackConfigError, load_stack_config
from .database import Database
from .dns import Alias, HostedZone, MailDns
from .edge import MAX_FIXED_RESPONSE, ApiEdge, mta_sts_id, mta_sts_policy
from .fleet import SenderAccess, SenderFleet, sender_hostnames
from .kms import KmsKeys
from .monitoring import AlarmTargets, Monitoring
from .network import Network
from .queue import MailQueue
from .secrets import MailSecrets

API_PORT = 8800


def main() -> None:
    """Entry point (``infra/__main__.py``): one ``pulumi up`` converges the AWS or the baremetal target."""
    config = load_stack_config()
    if config.target == "baremetal":
        assert config.baremetal is not None
        build_baremetal(config.baremetal)
    else:
        assert config.aws is not None
        build_aws(config.aws)


def build_baremetal(config: BaremetalConfig) -> Baremetal:
    """Owned servers: the playbook run, and the inventory as an output."""
    target = Baremetal("baremetal", config=config)
    pulumi.export("target", "baremetal")
    pulumi.export("hosts", target.hosts)
    return target


def build_aws(config: AwsConfig) -> None:
    """The AWS fleet, component by component, wired together."""
    try:
        retention = load_retention()
    except ValueError as exc:  # the retention file is part of the deployment: fail as a config error
        raise StackConfigError(str(exc)) from None
    dns_cfg = config.dns
    hostnames = sender_hostnames(config.fleet.hostname_prefix, config.domain, config.fleet.ip_pool_size)

    keys = KmsKeys("keys")
    network = Network(
        "network",
        cidr=config.network.cidr,
        az_count=config.network.az_count,
        api_allowed_cidrs=list(config.api_allowed_cidrs),
        api_port=API_PORT,
    )
    secrets = MailSecrets(
        "secrets",
        domain=config.domain,
        rsa_selector=dns_cfg.dkim_rsa_selector,
        ed25519_selector=dns_cfg.dkim_ed25519_selector,
        kms_key_arn=keys.arn("secrets"),
    )
    queue = MailQueue(
        "queue",
        kms_key_arn=keys.arn("queue"),
        lease_seconds=config.queue.lease_seconds,
        max_receive_count=config.queue.max_receive_count,
    )
    database = Database(
        "database",
        subnet_ids=network.private_subnet_ids,
        security_group_id=network.database_security_group.id,
        storage_key_arn=keys.arn("storage"),
        secrets_key_arn=keys.arn("secrets"),
        backup_days=retention.max_age("backups"),
        instance_class=config.database.instance_class,
        allocated_storage_gb=config.database.allocated_storage_gb,
        multi_az=config.database.multi_az,
        engine_version=config.database.engine_version,
        deletion_protection=config.database.deletion_protection,
    )
    try:
        archive = ArchiveBucket("archive", kms_key_arn=keys.arn("storage"), retention=retention)
    except ValueError as exc:
        raise StackConfigError(str(exc)) from None
    zone = HostedZone("zone", domain=config.domain, zone_id=dns_cfg.zone_id)
    policy_text = mta_sts_policy(dns_cfg.mta_sts_mode, hostnames)
    if len(policy_text) > MAX_FIXED_RESPONSE:
        raise StackConfigError(
            f"{pulumi.Config().name}:fleet.ipPoolSize: {len(hostnames)} sender host names make an MTA-STS "
            f"policy of {len(policy_text)} characters; the load balancer serves at most {MAX_FIXED_RESPONSE}"
        )
    edge = ApiEdge(
        "edge",
        vpc_id=network.vpc.id,
        subnet_ids=network.public_subnet_ids,
        security_group_id=network.lb_security_group.id,
        zone_id=zone.zone_id,
        api_host=dns_cfg.api_host,
        tracking_host=dns_cfg.tracking_host,
        mta_sts_host=f"mta-sts.{dns_cfg.bounce_domain}",
        mta_sts_policy_text=policy_text,
        api_port=API_PORT,
    )
    monitoring = Monitoring(
        "monitoring",
        kms_key_arn=keys.arn("observability"),
        log_max_age_days=retention.max_age("delivery_logs"),
        targets=AlarmTargets(
            queue_name=queue.queue.name,
            dead_letter_queue_name=queue.dead_letter.name,
            load_balancer_arn_suffix=edge.load_balancer.arn_suffix,
            target_group_arn_suffix=edge.target_group.arn_suffix,
        ),
        alert_email=config.alerts.email,
        queue_age_seconds=config.alerts.queue_age_seconds,
        bounce_rate_percent=config.alerts.bounce_rate_percent,
        complaint_rate_percent=config.alerts.complaint_rate_percent,
    )
    ip_pool = prefix()
    region = aws.get_region().region
    cloud_vars: CloudVars[pulumi.Input[str]] = {
        "stack": pulumi.get_stack(),
        "region": region,
        "domain": config.domain,
        "bounce_domain": dns_cfg.bounce_domain,
        "public_url": f"https://{dns_cfg.api_host}",
        "tracking_url": f"https://{dns_cfg.tracking_host}",
        "http_port": API_PORT,
        "queue": {
            "backend": "sqs",
            "sqs_url": queue.queue.url,
            "sqs_dead_letter_url": queue.dead_letter.url,
            "lease_seconds": config.queue.lease_seconds,
            "max_attempts": config.queue.max_attempts,
        },
        "database": {
            "host": database.endpoint,
            "port": 5432,
            "name": "mailstack",
            "user": "mailstack",
            "password_secret_arn": database.password_secret_arn,
            "sslmode": "require",
        },
        "api_key_secret_arn": secrets.api_secret_arn,
        "master_key_secret_arn": secrets.master_key_secret_arn,
        "dkim": [
            {"selector": key.selector, "algorithm": key.algorithm, "secret_arn": key.secret_arn}
            for key in secrets.dkim
        ],
        "archive_bucket": archive.bucket.bucket,
        "log_groups": {stream: group.name for stream, group in monitoring.log_groups.items()},
        "metrics_namespace": METRICS_NAMESPACE,
        "ip_pool": ip_pool,
        "warmup": {
            "first": config.fleet.warmup.first,
            "growth": config.fleet.warmup.growth,
            "ceiling": config.fleet.warmup.ceiling,
        },
    }
    fleet = SenderFleet(
        "fleet",
        subnet_ids=network.public_subnet_ids,
        security_group_id=network.sender_security_group.id,
        target_group_arn=edge.target_group.arn,
        queue_name=queue.queue.name,
        access=SenderAccess(
            queue_arns=[queue.queue.arn, queue.dead_letter.arn],
            queue_key_arn=keys.arn("queue"),
            secrets_key_arn=keys.arn("secrets"),
            storage_key_arn=keys.arn("storage"),
            secret_arns=[*secrets.secret_arns, database.password_secret_arn],
            bucket_arn=archive.bucket.arn,
            log_group_arns=[group.arn for group in monitoring.log_groups.values()],
            ip_pool=ip_pool,
        ),
        cloud_vars=cloud_vars,
        # The roles' own inventory variables (roles/*/defaults): the same names owned servers set.
        role_vars={
            "mailstack_domain": config.domain,
            "mailstack_bounce_domain": dns_cfg.bounce_domain,
            "mailstack_public_url": f"https://{dns_cfg.api_host}",
            "mailstack_database_host": database.endpoint,
            "mailstack_database_port": 5432,
            "mailstack_database_name": "mailstack",
            "mailstack_database_user": "mailstack",
            "mailstack_database_sslmode": "require",
            # mailstack's [metrics]: the counters the bounce- and complaint-rate alarms divide.
            "mailstack_metrics_enabled": True,
            "mailstack_metrics_namespace": METRICS_NAMESPACE,
            "mailstack_metrics_stack": pulumi.get_stack(),
            "mailstack_metrics_region": region,
        },
        repository=config.release.repository,
        ref=config.release.ref,
        hostnames=hostnames,
        instance_type=config.fleet.instance_type,
        architecture=config.fleet.architecture,
        volume_size_gb=config.fleet.volume_size_gb,
        min_size=config.fleet.min_size,
        max_size=config.fleet.max_size,
        backlog_per_instance=config.fleet.backlog_per_instance,
    )
    MailDns(
        "dns",
        zone_id=zone.zone_id,
        domain=config.domain,
        bounce_domain=dns_cfg.bounce_domain,
        hostnames=hostnames,
        addresses=fleet.addresses,
        dkim=secrets.dkim,
        dmarc_policy=dns_cfg.dmarc_policy,
        dmarc_reports=dns_cfg.dmarc_reports,
        tls_reports=dns_cfg.tls_reports,
        mta_sts_id=mta_sts_id(policy_text),
        load_balancer=Alias(edge.load_balancer.dns_name, edge.load_balancer.zone_id),
        api_host=dns_cfg.api_host,
        tracking_host=dns_cfg.tracking_host,
    )

    pulumi.export("target", "aws")
    pulumi.export("api_url", f"https://{dns_cfg.api_host}")
    pulumi.export("api_key", secrets.api_key)
    # Secret: shown only with `pulumi stack output --show-secrets api_secret`, encrypted in the state.
    pulumi.export("api_secret", pulumi.Output.secret(secrets.api_secret))
    pulumi.export("queue_url", queue.queue.url)
    pulumi.export("dead_letter_queue_url", queue.dead_letter.url)
    pulumi.export("database_endpoint", database.endpoint)
    pulumi.export("archive_bucket", archive.bucket.bucket)
    pulumi.export("sending_ips", [address.public_ip for address in fleet.addresses])
    pulumi.export("sender_hostnames", hostnames)
    pulumi.export("dkim_records", [{"name": key.dns_name, "txt": key.txt} for key in secrets.dkim])
    pulumi.export("name_servers", zone.name_servers)
    pulumi.export("alerts_topic", monitoring.topic.arn)
