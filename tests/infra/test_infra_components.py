"""Each ComponentResource under Pulumi's mocks: what it registers, wired how, parented where."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from infra_mocks import Mocked
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from infra.archive import ArchiveBucket, expiry_rules
from infra.baremetal import Baremetal, inventory, playbook_digest
from infra.config import BaremetalConfig, BaremetalHost
from infra.database import Database, backup_retention_days
from infra.dns import Alias, HostedZone, MailDns, spf_record, txt_value
from infra.edge import SSL_POLICY, ApiEdge, mta_sts_id, mta_sts_policy
from infra.fleet import SenderAccess, SenderFleet, sender_hostnames
from infra.kms import PURPOSES, KmsKeys
from infra.monitoring import AlarmTargets, Monitoring, log_retention_days
from infra.network import Network, subnet_cidrs
from infra.queue import MailQueue
from infra.secrets import MailSecrets
from policies.retention import RETENTION_FILE, load_retention, parse_retention
from policies.rules import RULES

KEY = "arn:aws:kms:eu-west-1:123456789012:key/test"


def _document(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_network_spans_zones_with_public_senders_and_a_private_database(mocked: Mocked) -> None:
    def build() -> pulumi.Output[Any]:
        network = Network("net", cidr="10.40.0.0/16", az_count=2, api_allowed_cidrs=["0.0.0.0/0"])
        return pulumi.Output.all(network.vpc.id, *network.public_subnet_ids, *network.private_subnet_ids)

    assert len(mocked.run(build)) == 5
    subnets = mocked.of_type("aws:ec2/subnet:Subnet")
    public = [s.props for s in subnets if s.props["mapPublicIpOnLaunch"]]
    private = [s.props for s in subnets if not s.props["mapPublicIpOnLaunch"]]
    assert len(public) == len(private) == 2
    assert (
        {s["availabilityZone"] for s in public}
        == {s["availabilityZone"] for s in private}
        == {
            "eu-west-1a",
            "eu-west-1b",
        }
    )
    tables = {r.name: r.props for r in mocked.of_type("aws:ec2/routeTable:RouteTable")}
    assert tables["net-public"]["routes"][0]["cidrBlock"] == "0.0.0.0/0"
    assert not tables["net-private"].get("routes")  # the database subnets have no way out
    groups = {
        r.props["tags"]["mailstack:role"]: r.props
        for r in mocked.of_type("aws:ec2/securityGroup:SecurityGroup")
    }
    assert any(rule["fromPort"] == 25 for rule in groups["sender"]["egress"])
    assert not any(rule["fromPort"] <= 25 <= rule["toPort"] for rule in groups["load-balancer"]["egress"])
    (db_in,) = groups["database"]["ingress"]
    assert db_in["fromPort"] == 5432 and "cidrBlocks" not in db_in and db_in["securityGroups"]
    mocked.assert_parented("mailstack:infra:Network")


def test_subnets_never_overlap() -> None:
    public, private = subnet_cidrs("10.40.0.0/16", 6)
    assert len(set(public + private)) == 12
    assert public[0] == "10.40.0.0/20" and private[0] == "10.40.128.0/20"


def test_kms_keys_rotate_and_let_only_the_named_services_in(mocked: Mocked) -> None:
    def build() -> pulumi.Output[Any]:
        keys = KmsKeys("keys")
        return pulumi.Output.all(*[keys.arn(p.name) for p in PURPOSES])

    assert all(arn.startswith("arn:aws:kms:") for arn in mocked.run(build))
    keys = mocked.of_type("aws:kms/key:Key")
    assert len(keys) == len(PURPOSES) and all(key.props["enableKeyRotation"] for key in keys)
    services = {
        key.name: [s["Principal"].get("Service") for s in _document(key.props["policy"])["Statement"]]
        for key in keys
    }
    assert "logs.eu-west-1.amazonaws.com" in services["keys-observability"]
    assert services["keys-storage"] == [None]  # only the account (through IAM grants)
    mocked.assert_parented("mailstack:infra:KmsKeys")


def test_dkim_keys_make_valid_records_and_the_api_secret_stays_secret(mocked: Mocked) -> None:
    holder: dict[str, MailSecrets] = {}

    def build() -> pulumi.Output[Any]:
        secrets = MailSecrets(
            "s", domain="example.com", rsa_selector="r1", ed25519_selector="e1", kms_key_arn=KEY
        )
        holder["s"] = secrets
        return pulumi.Output.all(*[key.txt for key in secrets.dkim], secrets.api_key)

    rsa_txt, ed_txt, api_key = mocked.run(build)
    rsa_key = load_der_public_key(base64.b64decode(rsa_txt.split("p=")[1]))
    assert rsa_txt.startswith("v=DKIM1; k=rsa; p=") and isinstance(rsa_key, rsa.RSAPublicKey)
    assert rsa_key.key_size == 2048
    raw = base64.b64decode(ed_txt.split("p=")[1])
    assert ed_txt.startswith("v=DKIM1; k=ed25519; p=") and len(raw) == 32  # RFC 8463: the bare key
    ed25519.Ed25519PublicKey.from_public_bytes(raw)
    assert [key.dns_name for key in holder["s"].dkim] == [
        "r1._domainkey.example.com",
        "e1._domainkey.example.com",
    ]
    assert len(api_key) == 32

    secret_flag: dict[str, bool] = {}

    def secretness() -> pulumi.Output[Any]:
        async def check() -> bool:
            secret_flag["api_secret"] = await holder["s"].api_secret.is_secret()
            return True

        return pulumi.Output.from_input(check())

    mocked.run(secretness)
    assert secret_flag == {"api_secret": True}
    stored = [r.props for r in mocked.of_type("aws:secretsmanager/secret:Secret")]
    assert len(stored) == 4 and all(props["kmsKeyId"] == KEY for props in stored)
    versions = {
        r.name: _document(r.props["secretString"])
        for r in mocked.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    assert versions["s-dkim-r1"]["private_key_pem"].startswith("-----BEGIN PRIVATE KEY-----")
    assert set(versions["s-api"]) == {"api_key", "api_secret"}
    assert len(versions["s-master-key"]["secret_key"]) == 64  # the fleet's shared master secret
    assert len(holder["s"].secret_arns) == 4
    api_version = mocked.one("aws:secretsmanager/secretVersion:SecretVersion", "s-api")
    assert "secretString" in api_version.secret_props  # encrypted in the state, hidden in the CLI
    mocked.assert_parented("mailstack:infra:MailSecrets")


def test_queue_has_a_kms_encrypted_dead_letter_queue(mocked: Mocked) -> None:
    def build() -> pulumi.Output[Any]:
        queue = MailQueue("q", kms_key_arn=KEY, lease_seconds=300, max_receive_count=13)
        return pulumi.Output.all(queue.queue.url, queue.dead_letter.arn)

    url, dead_arn = mocked.run(build)
    main = mocked.one("aws:sqs/queue:Queue", "q-main").props
    dead = mocked.one("aws:sqs/queue:Queue", "q-dead").props
    assert main["visibilityTimeoutSeconds"] == 300  # the lease
    assert _document(main["redrivePolicy"]) == {"deadLetterTargetArn": dead_arn, "maxReceiveCount": 13}
    assert main["kmsMasterKeyId"] == dead["kmsMasterKeyId"] == KEY
    assert dead["messageRetentionSeconds"] == 14 * 86400
    allow = mocked.one("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy").props
    assert _document(allow["redriveAllowPolicy"])["sourceQueueArns"] == [main["arn"]]
    assert url.endswith("/mailstack-test")
    mocked.assert_parented("mailstack:infra:MailQueue")


def _database(
    mocked: Mocked, *, backup_days: int, multi_az: bool, allocated_storage_gb: int = 20
) -> dict[str, Any]:
    def build() -> pulumi.Output[Any]:
        db = Database(
            "db",
            subnet_ids=[pulumi.Output.from_input("subnet-a"), pulumi.Output.from_input("subnet-b")],
            security_group_id="sg-db",
            storage_key_arn=KEY,
            secrets_key_arn=KEY + "-secrets",
            backup_days=backup_days,
            instance_class="db.t4g.micro",
            allocated_storage_gb=allocated_storage_gb,
            multi_az=multi_az,
            engine_version="16",
            deletion_protection=True,
        )
        return pulumi.Output.all(db.endpoint, db.password_secret_arn)

    endpoint, secret_arn = mocked.run(build)
    assert endpoint.endswith(".rds.amazonaws.com") and ":secretsmanager:" in secret_arn
    return dict(mocked.one("aws:rds/instance:Instance").props)


def test_database_is_private_encrypted_backed_up_and_multi_az_by_config(mocked: Mocked) -> None:
    props = _database(mocked, backup_days=35, multi_az=True)
    assert props["publiclyAccessible"] is False and props["storageEncrypted"] is True
    assert props["kmsKeyId"] == KEY and props["backupRetentionPeriod"] == 35 and props["multiAz"] is True
    instance = mocked.one("aws:rds/instance:Instance")
    assert "password" in instance.secret_props  # encrypted in the state, never shown
    stored = mocked.one("aws:secretsmanager/secretVersion:SecretVersion", "db-password")
    assert _document(stored.props["secretString"])["password"] == props["password"]
    assert "secretString" in stored.secret_props
    assert mocked.one("aws:secretsmanager/secret:Secret").props["kmsKeyId"] == KEY + "-secrets"
    assert props["skipFinalSnapshot"] is True  # a final snapshot would outlive the retention policy
    params = mocked.one("aws:rds/parameterGroup:ParameterGroup").props
    assert {"name": "rds.force_ssl", "value": "1"} in params["parameters"]
    mocked.assert_parented("mailstack:infra:Database")


def test_database_single_az_and_backups_capped_by_rds(mocked: Mocked) -> None:
    props = _database(mocked, backup_days=10, multi_az=False)
    assert props["multiAz"] is False and props["backupRetentionPeriod"] == 10
    assert backup_retention_days(400) == 35


def test_database_storage_grows_by_itself_within_what_rds_allows(mocked: Mocked) -> None:
    props = _database(mocked, backup_days=7, multi_az=False, allocated_storage_gb=20_000)
    # Five times the start, but RDS PostgreSQL stops at 64 TiB (the bound of database.allocatedStorageGb).
    assert (props["allocatedStorage"], props["maxAllocatedStorage"]) == (20_000, 65_536)


def test_archive_bucket_is_private_encrypted_versioned_and_expires_by_policy(mocked: Mocked) -> None:
    retention = load_retention()

    def build() -> pulumi.Output[Any]:
        archive = ArchiveBucket("a", kms_key_arn=KEY, retention=retention)
        return archive.bucket.bucket

    name = mocked.run(build)
    block = mocked.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").props
    assert block["bucket"] == name and all(
        block[flag]
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    sse = mocked.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).props["rules"][0]["applyServerSideEncryptionByDefault"]
    assert sse == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY}
    assert (
        mocked.one("aws:s3/bucketVersioning:BucketVersioning").props["versioningConfiguration"]["status"]
        == "Enabled"
    )
    rules = {
        r["id"]: r
        for r in mocked.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").props["rules"]
    }
    for data_class, rule in rules.items():
        lived = rule["expiration"]["days"] + rule["noncurrentVersionExpiration"]["noncurrentDays"]
        assert lived <= retention.max_age(data_class)
    assert rules["archives"]["filter"]["prefix"] == ""  # every object expires
    assert rules["exports"]["filter"]["prefix"] == "exports/"
    statement = _document(mocked.one("aws:s3/bucketPolicy:BucketPolicy").props["policy"])["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    mocked.assert_parented("mailstack:infra:ArchiveBucket")


def test_lifecycle_follows_the_retention_file(tmp_path: Path) -> None:
    document = yaml.safe_load(RETENTION_FILE.read_text())
    document["classes"]["archives"]["max_age_days"] = 100
    shorter = parse_retention(document, tmp_path / "retention.yaml")
    rule = next(r for r in expiry_rules(shorter) if r.data_class == "archives")
    assert (rule.expire_days, rule.noncurrent_days) == (93, 7)
    document["classes"]["exports"]["max_age_days"] = 1
    too_short = parse_retention(document, tmp_path / "retention.yaml")
    try:
        expiry_rules(too_short)
    except ValueError as exc:
        assert "classes.exports.max_age_days must be at least 2" in str(exc)
    else:
        raise AssertionError("a 1-day class in a versioned bucket must be refused")


def test_edge_serves_only_tls_and_answers_mta_sts(mocked: Mocked) -> None:
    policy = mta_sts_policy("enforce", ["mta-1.example.com", "mta-2.example.com"])

    def build() -> pulumi.Output[Any]:
        edge = ApiEdge(
            "edge",
            vpc_id="vpc-1",
            subnet_ids=[pulumi.Output.from_input("subnet-a"), pulumi.Output.from_input("subnet-b")],
            security_group_id="sg-lb",
            zone_id="Z1",
            api_host="api.example.com",
            tracking_host="click.example.com",
            mta_sts_host="mta-sts.bounces.example.com",
            mta_sts_policy_text=policy,
        )
        return edge.load_balancer.dns_name

    assert mocked.run(build).endswith(".elb.amazonaws.com")
    listeners = {r.props["port"]: r.props for r in mocked.of_type("aws:lb/listener:Listener")}
    assert listeners[443]["protocol"] == "HTTPS" and listeners[443]["sslPolicy"] == SSL_POLICY
    assert listeners[80]["defaultActions"][0]["redirect"]["protocol"] == "HTTPS"
    certificate = mocked.one("aws:acm/certificate:Certificate").props
    assert certificate["subjectAlternativeNames"] == ["click.example.com", "mta-sts.bounces.example.com"]
    assert len(mocked.of_type("aws:route53/record:Record")) == 3  # one validation record per name
    rule = mocked.one("aws:lb/listenerRule:ListenerRule").props
    assert rule["actions"][0]["fixedResponse"]["messageBody"] == policy
    assert "mx: mta-2.example.com" in policy and "mode: enforce" in policy
    assert mta_sts_id(policy) != mta_sts_id(mta_sts_policy("testing", ["mta-1.example.com"]))
    mocked.assert_parented("mailstack:infra:ApiEdge")


def test_an_mta_sts_policy_too_long_for_the_load_balancer_is_refused(mocked: Mocked) -> None:
    hosts = [f"sender-{index}.a-rather-long-sending-domain.example.com" for index in range(30)]

    def build() -> pulumi.Output[Any]:
        ApiEdge(
            "edge",
            vpc_id="vpc-1",
            subnet_ids=[],
            security_group_id="sg",
            zone_id="Z1",
            api_host="api.example.com",
            tracking_host="click.example.com",
            mta_sts_host="mta-sts.bounces.example.com",
            mta_sts_policy_text=mta_sts_policy("enforce", hosts),
        )
        return pulumi.Output.from_input("unreachable")

    with pytest.raises(ValueError, match="at most 1024"):
        mocked.run(build)
    assert mocked.resources == []  # refused before anything was registered


def _access() -> SenderAccess:
    return SenderAccess(
        queue_arns=["arn:aws:sqs:eu-west-1:123456789012:q", "arn:aws:sqs:eu-west-1:123456789012:q-dead"],
        queue_key_arn=KEY,
        secrets_key_arn=KEY,
        storage_key_arn=KEY,
        secret_arns=["arn:aws:secretsmanager:eu-west-1:123456789012:secret:dkim"],
        bucket_arn="arn:aws:s3:::archive",
        log_group_arns=["arn:aws:logs:eu-west-1:123456789012:log-group:/mailstack-test/postfix"],
        ip_pool="mailstack-test",
    )


def test_sender_fleet_boots_hardened_instances_that_claim_pool_ips(mocked: Mocked) -> None:
    hostnames = sender_hostnames("mta", "example.com", 3)

    def build() -> pulumi.Output[Any]:
        fleet = SenderFleet(
            "fleet",
            subnet_ids=[pulumi.Output.from_input("subnet-a"), pulumi.Output.from_input("subnet-b")],
            security_group_id="sg-senders",
            target_group_arn="arn:tg",
            queue_name="mailstack-test",
            access=_access(),
            cloud_vars={"queue": {"sqs_url": "https://sqs.example/q"}, "ip_pool": "mailstack-test"},
            role_vars={"mailstack_domain": "example.com"},
            repository="https://git.example.com/mailstack.git",
            ref="v1.2.3",
            hostnames=hostnames,
            instance_type="t3.small",
            architecture="amd64",
            volume_size_gb=20,
            min_size=1,
            max_size=5,
            backlog_per_instance=1000,
        )
        return pulumi.Output.all(*[address.public_ip for address in fleet.addresses])

    assert len(mocked.run(build)) == 3
    template = mocked.one("aws:ec2/launchTemplate:LaunchTemplate").props
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1
    ebs = template["blockDeviceMappings"][0]["ebs"]
    assert ebs["encrypted"] == "true" and ebs["kmsKeyId"] == KEY
    assert template["imageId"] == "ami-0123456789abcdef0"
    script = base64.b64decode(template["userData"]).decode()
    assert "ansible-playbook -i /etc/mailstack/inventory.ini -c local site.yml --limit senders" in script
    assert "[senders]" in script and "mailstack-boot claim-ip" in script and "v1.2.3" in script
    assert '"mailstack_domain": "example.com"' in script
    assert '"sqs_url": "https://sqs.example/q"' in script
    group = mocked.one("aws:autoscaling/group:Group").props
    assert group["maxSize"] == 3  # capped by the pool: every sender needs its own address
    assert group["vpcZoneIdentifiers"] == ["subnet-a", "subnet-b"] and group["healthCheckType"] == "ELB"
    assert group["instanceRefresh"]["strategy"] == "Rolling"
    assert group["launchTemplate"]["version"] == "1"
    tracking = mocked.one("aws:autoscaling/policy:Policy").props["targetTrackingConfiguration"]
    assert tracking["targetValue"] == 1000
    metrics = {m["id"]: m for m in tracking["customizedMetricSpecification"]["metrics"]}
    assert metrics["backlog_per_sender"]["expression"] == "backlog / senders"
    assert metrics["backlog"]["metricStat"]["metric"]["metricName"] == "ApproximateNumberOfMessagesVisible"
    addresses = mocked.of_type("aws:ec2/eip:Eip")
    assert sorted(a.props["tags"]["mailstack:hostname"] for a in addresses) == hostnames  # any order
    assert {a.props["tags"]["mailstack:ip-pool"] for a in addresses} == {"mailstack-test"}
    statements = _document(mocked.one("aws:iam/rolePolicy:RolePolicy").props["policy"])["Statement"]
    claim = next(s for s in statements if s["Sid"] == "ClaimPoolAddress")
    assert claim["Condition"] == {"StringEquals": {"aws:ResourceTag/mailstack:ip-pool": "mailstack-test"}}
    least = next(rule for rule in RULES if rule.name == "iam-least-privilege")
    problems: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        problems.append(message)

    role_policy = mocked.one("aws:iam/rolePolicy:RolePolicy")
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    args = ResourceValidationArgs(
        role_policy.type, role_policy.props, role_policy.urn, role_policy.name, options, None
    )
    assert isinstance(least.policy, ResourceValidationPolicy)
    least.policy.validate(args, report)
    assert problems == []
    mocked.assert_parented("mailstack:infra:SenderFleet")


def test_dns_publishes_what_receivers_check(mocked: Mocked) -> None:
    hostnames = sender_hostnames("mta", "example.com", 2)

    def build() -> pulumi.Output[Any]:
        secrets = MailSecrets(
            "s", domain="example.com", rsa_selector="r1", ed25519_selector="e1", kms_key_arn=KEY
        )
        addresses = [aws.ec2.Eip(f"ip-{i}", domain="vpc") for i in range(2)]
        zone = HostedZone("zone", domain="example.com", zone_id="")
        MailDns(
            "dns",
            zone_id=zone.zone_id,
            domain="example.com",
            bounce_domain="bounces.example.com",
            hostnames=hostnames,
            addresses=addresses,
            dkim=secrets.dkim,
            dmarc_policy="quarantine",
            dmarc_reports="dmarc@example.com",
            tls_reports="tls@example.com",
            mta_sts_id="abc123",
            load_balancer=Alias("lb.elb.amazonaws.com", "Z32O12XQLNTSW2"),
            api_host="api.example.com",
            tracking_host="click.example.com",
        )
        return pulumi.Output.all(*[a.public_ip for a in addresses])

    ips = mocked.run(build)
    records = {
        (r.props["name"], r.props["type"]): r.props for r in mocked.of_type("aws:route53/record:Record")
    }
    assert records[("bounces.example.com", "TXT")]["records"] == [spf_record(ips)]
    assert records[("bounces.example.com", "MX")]["records"] == [
        "10 mta-1.example.com",
        "10 mta-2.example.com",
    ]
    assert records[("mta-1.example.com", "A")]["records"] == [ips[0]]
    assert records[("_dmarc.example.com", "TXT")]["records"][0].startswith("v=DMARC1; p=quarantine;")
    assert records[("_mta-sts.bounces.example.com", "TXT")]["records"] == ["v=STSv1; id=abc123"]
    assert records[("_smtp._tls.bounces.example.com", "TXT")]["records"] == [
        "v=TLSRPTv1; rua=mailto:tls@example.com"
    ]
    rsa_record = records[("r1._domainkey.example.com", "TXT")]["records"][0]
    assert '""' in rsa_record and all(len(part) <= 255 for part in rsa_record.split('""'))
    assert records[("e1._domainkey.example.com", "TXT")]["records"][0].startswith("v=DKIM1; k=ed25519; p=")
    for host in ("api.example.com", "click.example.com", "mta-sts.bounces.example.com"):
        assert records[(host, "A")]["aliases"][0]["name"] == "lb.elb.amazonaws.com"
    ptrs = [r.props for r in mocked.of_type("aws:ec2/eipDomainName:EipDomainName")]
    assert sorted(p["domainName"] for p in ptrs) == hostnames
    assert mocked.one("aws:route53/zone:Zone").props["name"] == "example.com"


def test_txt_values_split_at_255_characters() -> None:
    assert txt_value("short") == "short"
    long = "x" * 600
    assert txt_value(long).split('""') == ["x" * 255, "x" * 255, "x" * 90]


def test_monitoring_alarms_reach_the_topic_and_logs_follow_the_policy(mocked: Mocked) -> None:
    def build() -> pulumi.Output[Any]:
        monitoring = Monitoring(
            "mon",
            kms_key_arn=KEY,
            log_max_age_days=100,
            targets=AlarmTargets("q", "q-dead", "app/lb/1", "targetgroup/tg/1"),
            alert_email="ops@example.com",
            queue_age_seconds=900,
            bounce_rate_percent=5,
            complaint_rate_percent=0.1,
        )
        return monitoring.topic.arn

    topic = mocked.run(build)
    alarms = {
        r.props["name"].removeprefix("mailstack-test-"): r.props
        for r in mocked.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    assert set(alarms) == {"queue-age", "dead-letters", "bounce-rate", "complaint-rate", "unhealthy-senders"}
    assert all(alarm["alarmActions"] == [topic] for alarm in alarms.values())
    rate = {q["id"]: q for q in alarms["complaint-rate"]["metricQueries"]}
    assert (
        rate["bad"]["metric"]["metricName"] == "Complained"
        and "100 * bad / sent" in rate["rate"]["expression"]
    )
    assert alarms["complaint-rate"]["threshold"] == 0.1
    assert alarms["dead-letters"]["dimensions"] == {"QueueName": "q-dead"}
    groups = [r.props for r in mocked.of_type("aws:cloudwatch/logGroup:LogGroup")]
    assert [g["retentionInDays"] for g in groups] == [90, 90]  # the longest allowed value within 100 days
    assert all(g["kmsKeyId"] == KEY for g in groups)
    assert mocked.one("aws:sns/topic:Topic").props["kmsMasterKeyId"] == KEY
    assert mocked.one("aws:sns/topicSubscription:TopicSubscription").props["endpoint"] == "ops@example.com"
    assert log_retention_days(1) == 1 and log_retention_days(395) == 365


def test_baremetal_runs_the_playbook_with_the_stack_inventory(mocked: Mocked, tmp_path: Path) -> None:
    config = BaremetalConfig(
        domain="example.com",
        hosts=(
            BaremetalHost("mta1", "192.0.2.10", ("senders",), "debian", "10.0.0.10"),
            BaremetalHost("db1", "192.0.2.20", ("db",), "debian"),
        ),
        playbook="site.yml",
        ssh_private_key_file="/keys/id",
        extra_vars={"mailstack_public_url": "https://api.example.com"},
    )

    def build() -> pulumi.Output[Any]:
        return Baremetal("metal", config=config).run.stdout

    assert mocked.run(build) == ""
    command = mocked.one("command:local:Command").props
    hosts = json.loads(command["environment"]["MAILSTACK_INVENTORY"])
    assert hosts == inventory(config)
    assert hosts["all"]["children"]["senders"]["hosts"]["mta1"] == {
        "ansible_host": "192.0.2.10",
        "ansible_user": "debian",
        "mailstack_private_address": "10.0.0.10",  # what PostgreSQL and the firewall use between hosts
    }
    assert hosts["all"]["children"]["db"]["hosts"]["db1"]["mailstack_private_address"] == "192.0.2.20"
    assert "db1" in hosts["all"]["children"]["db"]["hosts"]
    assert json.loads(command["environment"]["MAILSTACK_EXTRA_VARS"])["mailstack_domain"] == "example.com"
    assert "site.yml" in command["create"] and "--private-key /keys/id" in command["create"]
    assert command["create"] == command["update"]
    assert len(command["triggers"]) == 3
    mocked.assert_parented("mailstack:infra:Baremetal")


def test_the_playbook_digest_changes_with_the_roles(tmp_path: Path) -> None:
    (tmp_path / "roles" / "postfix").mkdir(parents=True)
    (tmp_path / "site.yml").write_text("- hosts: senders\n")
    (tmp_path / "roles" / "postfix" / "main.yml").write_text("a: 1\n")
    before = playbook_digest(tmp_path)
    assert playbook_digest(tmp_path) == before
    (tmp_path / "roles" / "postfix" / "main.yml").write_text("a: 2\n")
    assert playbook_digest(tmp_path) != before
