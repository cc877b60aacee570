"""The HTTPS front door: an application load balancer for the API, tracking links and the MTA-STS policy."""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_aws as aws

from .common import prefix, stack_tags
from .config import MtaStsMode

# TLS 1.2 and 1.3 only, forward-secret ciphers.
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
MTA_STS_PATH = "/.well-known/mta-sts.txt"
# An ALB fixed response carries at most 1024 characters.
MAX_FIXED_RESPONSE = 1024


def mta_sts_policy(mode: MtaStsMode, mx_hosts: list[str], max_age: int = 604_800) -> str:
    """The RFC 8461 policy file: which MX hosts senders must reach over verified TLS."""
    lines = ["version: STSv1", f"mode: {mode}", *[f"mx: {host}" for host in mx_hosts], f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


def mta_sts_id(policy: str) -> str:
    """The ``id=`` of the ``_mta-sts`` TXT record: changes whenever the policy does (1-32 alphanumerics)."""
    return hashlib.sha256(policy.encode()).hexdigest()[:20]


def _validation_option(
    certificate: aws.acm.Certificate, host: str
) -> pulumi.Output[aws.acm.outputs.CertificateDomainValidationOption]:
    """The DNS record ACM wants for ``host`` (the options come back in no particular order)."""
    return certificate.domain_validation_options.apply(
        lambda options: next(option for option in options if option.domain_name == host)
    )


class ApiEdge(pulumi.ComponentResource):
    """ALB in the public subnets; HTTPS (TLS 1.2+) to the senders' API port, HTTP only redirects.

    The certificate covers the API, tracking and MTA-STS hosts and is validated through Route53. The
    MTA-STS policy is answered by the load balancer itself (a fixed response), so it needs no web server.
    """

    def __init__(
        self,
        name: str,
        *,
        vpc_id: pulumi.Input[str],
        subnet_ids: list[pulumi.Output[str]],
        security_group_id: pulumi.Input[str],
        zone_id: pulumi.Input[str],
        api_host: str,
        tracking_host: str,
        mta_sts_host: str,
        mta_sts_policy_text: str,
        api_port: int = 8800,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        if len(mta_sts_policy_text) > MAX_FIXED_RESPONSE:
            raise ValueError(
                f"the MTA-STS policy is {len(mta_sts_policy_text)} characters; the load balancer serves "
                f"at most {MAX_FIXED_RESPONSE}: use fewer, shorter sender host names"
            )
        super().__init__("mailstack:infra:ApiEdge", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        hosts = [api_host, tracking_host, mta_sts_host]
        certificate = aws.acm.Certificate(
            f"{name}-certificate",
            domain_name=api_host,
            subject_alternative_names=hosts[1:],
            validation_method="DNS",
            tags=stack_tags("edge"),
            opts=child,
        )
        validation_fqdns = []
        for index, host in enumerate(hosts):
            option = _validation_option(certificate, host)
            record = aws.route53.Record(
                f"{name}-validation-{index}",
                zone_id=zone_id,
                name=option.apply(lambda o: o.resource_record_name or ""),
                type=option.apply(lambda o: o.resource_record_type or "CNAME"),
                records=[option.apply(lambda o: o.resource_record_value or "")],
                ttl=300,
                allow_overwrite=True,
                opts=child,
            )
            validation_fqdns.append(record.fqdn)
        validated = aws.acm.CertificateValidation(
            f"{name}-certificate",
            certificate_arn=certificate.arn,
            validation_record_fqdns=validation_fqdns,
            opts=child,
        )
        self.load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            name=f"{prefix()}-api"[:32].rstrip("-"),
            load_balancer_type="application",
            internal=False,
            subnets=subnet_ids,
            security_groups=[security_group_id],
            drop_invalid_header_fields=True,
            tags=stack_tags("edge"),
            opts=child,
        )
        self.target_group = aws.lb.TargetGroup(
            f"{name}-api",
            name=f"{prefix()}-api"[:32].rstrip("-"),
            port=api_port,
            protocol="HTTP",
            vpc_id=vpc_id,
            target_type="instance",
            deregistration_delay=60,
            health_check={"path": "/healthz", "matcher": "200", "interval": 15, "healthy_threshold": 2},
            tags=stack_tags("edge"),
            opts=child,
        )
        https = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=self.load_balancer.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=SSL_POLICY,
            certificate_arn=validated.certificate_arn,
            default_actions=[{"type": "forward", "target_group_arn": self.target_group.arn}],
            tags=stack_tags("edge"),
            opts=child,
        )
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=self.load_balancer.arn,
            port=80,
            protocol="HTTP",
            default_actions=[
                {
                    "type": "redirect",
                    "redirect": {"protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"},
                }
            ],
            tags=stack_tags("edge"),
            opts=child,
        )
        aws.lb.ListenerRule(
            f"{name}-mta-sts",
            listener_arn=https.arn,
            priority=10,
            conditions=[
                {"host_header": {"values": [mta_sts_host]}},
                {"path_pattern": {"values": [MTA_STS_PATH]}},
            ],
            actions=[
                {
                    "type": "fixed-response",
                    "fixed_response": {
                        "content_type": "text/plain",
                        "message_body": mta_sts_policy_text,
                        "status_code": "200",
                    },
                }
            ],
            tags=stack_tags("edge"),
            opts=child,
        )
        self.register_outputs(
            {"dns_name": self.load_balancer.dns_name, "target_group_arn": self.target_group.arn}
        )
