"""Route53: what receivers check before they trust mail — SPF, DKIM, DMARC, PTR, MTA-STS, TLS-RPT — plus
the bounce domain's MX and the API and tracking hosts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .common import stack_tags
from .config import DmarcPolicy
from .secrets import DkimKey

TTL = 300
_TXT_CHUNK = 255


def txt_value(text: str) -> str:
    """A TXT value for Route53 through the provider: strings longer than 255 characters (a 2048-bit DKIM
    key) are split into 255-character strings, written ``first""rest``."""
    chunks = [text[start : start + _TXT_CHUNK] for start in range(0, len(text), _TXT_CHUNK)] or [""]
    return '""'.join(chunks)


def spf_record(addresses: list[str]) -> str:
    """SPF for the bounce domain (the envelope sender of every message): only the pool may send."""
    return "v=spf1 " + " ".join(f"ip4:{address}" for address in sorted(addresses)) + " -all"


def dmarc_record(policy: DmarcPolicy, reports: str) -> str:
    """DMARC, relaxed alignment: From example.com, DKIM d=example.com, Return-Path bounces.example.com."""
    return f"v=DMARC1; p={policy}; rua=mailto:{reports}; adkim=r; aspf=r; fo=1"


@dataclass(frozen=True)
class Alias:
    """An A record that points at the load balancer."""

    dns_name: pulumi.Input[str]
    zone_id: pulumi.Input[str]


class MailDns(pulumi.ComponentResource):
    """Every record of the sending domain, the bounce domain and the pool's host names, and the pool's PTRs.

    The PTR of an Elastic IP (``EipDomainName``) is accepted by AWS only once the name resolves forward to
    the same address, so each waits for its A record.
    """

    def __init__(
        self,
        name: str,
        *,
        zone_id: pulumi.Input[str],
        domain: str,
        bounce_domain: str,
        hostnames: list[str],
        addresses: list[aws.ec2.Eip],
        dkim: list[DkimKey],
        dmarc_policy: DmarcPolicy,
        dmarc_reports: str,
        tls_reports: str,
        mta_sts_id: str,
        load_balancer: Alias,
        api_host: str,
        tracking_host: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mailstack:infra:MailDns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def record(
            label: str, record_name: str, kind: str, values: list[pulumi.Input[str]]
        ) -> aws.route53.Record:
            return aws.route53.Record(
                f"{name}-{label}",
                zone_id=zone_id,
                name=record_name,
                type=kind,
                ttl=TTL,
                records=values,
                opts=child,
            )

        for index, (hostname, address) in enumerate(zip(hostnames, addresses, strict=True)):
            forward = record(f"host-{index + 1}", hostname, "A", [address.public_ip])
            # HELO checks: the host name itself may send from its own address.
            record(f"host-{index + 1}-spf", hostname, "TXT", ["v=spf1 a -all"])
            aws.ec2.EipDomainName(
                f"{name}-ptr-{index + 1}",
                allocation_id=address.allocation_id,
                domain_name=hostname,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[forward]),
            )
        spf = pulumi.Output.all(*[address.public_ip for address in addresses]).apply(
            lambda ips: spf_record([str(ip) for ip in ips])
        )
        record("bounce-spf", bounce_domain, "TXT", [spf])
        record("bounce-mx", bounce_domain, "MX", [f"10 {hostname}" for hostname in hostnames])
        for key in dkim:
            record(f"dkim-{key.selector}", key.dns_name, "TXT", [key.txt.apply(txt_value)])
        record("dmarc", f"_dmarc.{domain}", "TXT", [dmarc_record(dmarc_policy, dmarc_reports)])
        # MTA-STS and TLS-RPT for the domain whose MX is this fleet: the bounce domain.
        record("mta-sts", f"_mta-sts.{bounce_domain}", "TXT", [f"v=STSv1; id={mta_sts_id}"])
        record("tls-rpt", f"_smtp._tls.{bounce_domain}", "TXT", [f"v=TLSRPTv1; rua=mailto:{tls_reports}"])
        for label, host in (
            ("api", api_host),
            ("tracking", tracking_host),
            ("mta-sts-host", f"mta-sts.{bounce_domain}"),
        ):
            aws.route53.Record(
                f"{name}-{label}",
                zone_id=zone_id,
                name=host,
                type="A",
                aliases=[
                    {
                        "name": load_balancer.dns_name,
                        "zone_id": load_balancer.zone_id,
                        "evaluate_target_health": True,
                    }
                ],
                opts=child,
            )
        self.register_outputs({"spf": spf, "dkim": {key.dns_name: key.txt for key in dkim}})


class HostedZone(pulumi.ComponentResource):
    """The Route53 zone of the sending domain: an existing one by id, or a new one (delegate to its name
    servers at your registrar)."""

    def __init__(
        self, name: str, *, domain: str, zone_id: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mailstack:infra:HostedZone", name, None, opts)
        if zone_id:
            self.zone_id: pulumi.Output[str] = pulumi.Output.from_input(zone_id)
            self.name_servers: pulumi.Output[Sequence[str]] = pulumi.Output.from_input([])
        else:
            zone = aws.route53.Zone(
                f"{name}-zone",
                name=domain,
                comment=f"mailstack {pulumi.get_stack()}",
                tags=stack_tags("dns"),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.zone_id = zone.zone_id
            self.name_servers = zone.name_servers
        self.register_outputs({"zone_id": self.zone_id, "name_servers": self.name_servers})
