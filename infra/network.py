"""The VPC: public subnets for the senders (own public IPs, port 25 out), private ones for the database."""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_aws as aws

from .common import ROLE_TAG, prefix, stack_tags


def subnet_cidrs(cidr: str, count: int) -> tuple[list[str], list[str]]:
    """``count`` public and ``count`` private /24-or-larger blocks carved from ``cidr`` (public first)."""
    block = ipaddress.IPv4Network(cidr)
    # Room for 2 x 6 AZs: split into 16 equal parts (8 public, 8 private).
    parts = list(block.subnets(prefixlen_diff=4))
    return [str(part) for part in parts[:count]], [str(part) for part in parts[8 : 8 + count]]


class Network(pulumi.ComponentResource):
    """VPC across ``az_count`` availability zones, with security groups for the load balancer, the senders
    and the database.

    Public subnets route to an internet gateway (senders own Elastic IPs, so no NAT gateway is needed);
    private subnets have no route out at all: the database is reachable only from inside the VPC.
    """

    def __init__(
        self,
        name: str,
        *,
        cidr: str,
        az_count: int,
        api_allowed_cidrs: list[str],
        api_port: int = 8800,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mailstack:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zones = aws.get_availability_zones(state="available", opts=pulumi.InvokeOptions(parent=self))
        if len(zones.names) < az_count:
            raise pulumi.RunError(
                f"the region has {len(zones.names)} availability zones; {az_count} requested"
            )
        names = zones.names[:az_count]
        public_cidrs, private_cidrs = subnet_cidrs(cidr, az_count)

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=stack_tags("network", Name=prefix()),
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags=stack_tags("network"), opts=child
        )
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}],
            tags=stack_tags("network", Name=f"{prefix()}-public"),
            opts=child,
        )
        # No route out: nothing in the private subnets can reach, or be reached from, the internet.
        private_routes = aws.ec2.RouteTable(
            f"{name}-private",
            vpc_id=self.vpc.id,
            tags=stack_tags("network", Name=f"{prefix()}-private"),
            opts=child,
        )
        self.public_subnet_ids: list[pulumi.Output[str]] = []
        self.private_subnet_ids: list[pulumi.Output[str]] = []
        for index, zone in enumerate(names):
            public = aws.ec2.Subnet(
                f"{name}-public-{index}",
                vpc_id=self.vpc.id,
                cidr_block=public_cidrs[index],
                availability_zone=zone,
                # A booting sender needs the AWS APIs before it has claimed its Elastic IP; the claim
                # replaces this address.
                map_public_ip_on_launch=True,
                tags=stack_tags("network", Name=f"{prefix()}-public-{zone}", **{ROLE_TAG: "public"}),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{index}", subnet_id=public.id, route_table_id=public_routes.id, opts=child
            )
            private = aws.ec2.Subnet(
                f"{name}-private-{index}",
                vpc_id=self.vpc.id,
                cidr_block=private_cidrs[index],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags=stack_tags("network", Name=f"{prefix()}-private-{zone}", **{ROLE_TAG: "private"}),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}", subnet_id=private.id, route_table_id=private_routes.id, opts=child
            )
            self.public_subnet_ids.append(public.id)
            self.private_subnet_ids.append(private.id)

        # The API and tracking: HTTPS from the allowed networks; HTTP only to be redirected to HTTPS.
        self.lb_security_group = aws.ec2.SecurityGroup(
            f"{name}-lb",
            vpc_id=self.vpc.id,
            description="mailstack load balancer: HTTPS in (HTTP redirected)",
            ingress=[
                {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": api_allowed_cidrs},
                {"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr_blocks": api_allowed_cidrs},
            ],
            egress=[{"protocol": "tcp", "from_port": api_port, "to_port": api_port, "cidr_blocks": [cidr]}],
            tags=stack_tags("network", **{ROLE_TAG: "load-balancer"}),
            opts=child,
        )
        self.sender_security_group = aws.ec2.SecurityGroup(
            f"{name}-senders",
            vpc_id=self.vpc.id,
            description="mailstack senders: SMTP out to the world, bounces in, API from the load balancer",
            ingress=[
                # Bounces and feedback arrive at the bounce domain's MX: these hosts.
                {"protocol": "tcp", "from_port": 25, "to_port": 25, "cidr_blocks": ["0.0.0.0/0"]},
                {
                    "protocol": "tcp",
                    "from_port": api_port,
                    "to_port": api_port,
                    "security_groups": [self.lb_security_group.id],
                },
            ],
            egress=[
                {"protocol": "tcp", "from_port": 25, "to_port": 25, "cidr_blocks": ["0.0.0.0/0"]},
                # Package mirrors, the git checkout and the AWS APIs.
                {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]},
                {"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr_blocks": ["0.0.0.0/0"]},
                {"protocol": "udp", "from_port": 53, "to_port": 53, "cidr_blocks": ["0.0.0.0/0"]},
                {"protocol": "tcp", "from_port": 53, "to_port": 53, "cidr_blocks": ["0.0.0.0/0"]},
                {"protocol": "udp", "from_port": 123, "to_port": 123, "cidr_blocks": ["0.0.0.0/0"]},
                {"protocol": "tcp", "from_port": 5432, "to_port": 5432, "cidr_blocks": private_cidrs},
            ],
            tags=stack_tags("network", **{ROLE_TAG: "sender"}),
            opts=child,
        )
        self.database_security_group = aws.ec2.SecurityGroup(
            f"{name}-database",
            vpc_id=self.vpc.id,
            description="mailstack database: PostgreSQL from the senders only",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": 5432,
                    "to_port": 5432,
                    "security_groups": [self.sender_security_group.id],
                }
            ],
            tags=stack_tags("network", **{ROLE_TAG: "database"}),
            opts=child,
        )
        self.availability_zones = names
        self.register_outputs(
            {
                "vpc_id": self.vpc.id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
            }
        )
