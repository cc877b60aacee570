"""The CrossGuard rules, as plain objects: ``policies/__main__.py`` serves them as a policy pack to
``pulumi preview/up --policy-pack policies``, and ``make compliance`` (``policies/compliance.py``) calls
their validate callbacks directly over a mocked run of the program.

Each rule has a name, a description, an enforcement level and remediation steps. Resource rules list
the resource types they apply to; stack rules see every resource at once (to pair a bucket with its
encryption, public access block and lifecycle, or a queue with its dead-letter queue). Properties use
Pulumi's camelCase names, as CrossGuard passes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from .retention import RetentionPolicy, load_retention

CLASSIFICATION_TAG = "data-classification"
RETENTION_TAG = "retention-class"
ROLE_TAG = "mailstack:role"
CLASSIFICATIONS = ("public", "internal", "confidential", "personal")

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
SSE = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
LIFECYCLE = (
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2",
)
VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
BUCKET_ACL = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
KMS_KEY = "aws:kms/key:Key"
QUEUE = "aws:sqs/queue:Queue"
TOPIC = "aws:sns/topic:Topic"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
SECRET = "aws:secretsmanager/secret:Secret"  # noqa: S105 - a type token
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
VOLUME = "aws:ebs/volume:Volume"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LISTENER = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
IAM_POLICY = "aws:iam/policy:Policy"
IAM_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IAM_ROLE = "aws:iam/role:Role"

# Actions that have no resource-level permissions, so "Resource": "*" is the only way to grant them.
RESOURCE_WILDCARD_ACTIONS = frozenset(
    {"ec2:describeaddresses", "ec2:describeinstances", "ec2:describetags", "cloudwatch:putmetricdata"}
)
# Load balancer security policies that allow TLS 1.2 and newer only.
TLS_POLICY_MARKERS = ("TLS13", "TLS-1-2", "FS-1-2")
WORLD = ("0.0.0.0/0", "::/0")


# The policy pack's level (policies/__main__.py): what a rule without a level of its own enforces.
PACK_ENFORCEMENT = EnforcementLevel.MANDATORY


@dataclass(frozen=True)
class Rule:
    """A CrossGuard policy and the resource types it judges (a stack rule needs at least one of them in
    the stack to apply at all)."""

    policy: ResourceValidationPolicy | StackValidationPolicy
    resource_types: frozenset[str]

    @property
    def name(self) -> str:
        """The policy's name."""
        return self.policy.name

    @property
    def enforcement(self) -> EnforcementLevel:
        """Mandatory rules block ``pulumi up`` (and fail ``make compliance``); advisory ones warn. A rule
        without its own level has the pack's (:data:`PACK_ENFORCEMENT`), as under the Pulumi CLI."""
        return self.policy.enforcement_level or PACK_ENFORCEMENT

    @property
    def remediation(self) -> str:
        """What to change when the rule is violated."""
        return self.policy.remediation_steps or ""

    @property
    def is_stack_rule(self) -> bool:
        """True when the rule judges the whole stack rather than one resource at a time."""
        return isinstance(self.policy, StackValidationPolicy)


# --- helpers ----------------------------------------------------------------------------------------


def _truthy(value: object) -> bool:
    # Launch templates carry booleans as strings ("true").
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _number(value: object) -> float | None:
    """A finite number from a property (numbers may come as text); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    # "NaN" compares false with every limit, so it would pass them all.
    return number if math.isfinite(number) else None


def _mapping(value: object) -> Mapping[str, object]:
    """An object property; anything else counts as an empty object (so its checks find nothing set)."""
    return value if isinstance(value, Mapping) else {}


def _tags(props: Mapping[str, object]) -> dict[str, str]:
    return {str(key): str(value) for key, value in _mapping(props.get("tags")).items()}


def _label(resource: PolicyResource) -> str:
    return f"{resource.resource_type.rsplit(':', 1)[-1]} {resource.name}"


def _of(resources: Iterable[PolicyResource], types: str | Sequence[str]) -> list[PolicyResource]:
    wanted = (types,) if isinstance(types, str) else tuple(types)
    return [resource for resource in resources if resource.resource_type in wanted]


def _bucket_name(props: Mapping[str, object]) -> str | None:
    name = props.get("bucket") or props.get("id")
    return str(name) if name else None


def _as_list(value: object) -> list[object]:
    # CrossGuard hands lists over as read-only Sequence proxies, not lists.
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return [value]


def _objects(value: object) -> list[Mapping[str, object]]:
    """The items of a list of objects (block device mappings, rules, actions); an item of another shape
    counts as an empty object, which sets nothing, so every check fails closed on it."""
    return [_mapping(item) for item in _as_list(value)]


def _document(value: object) -> Mapping[str, object]:
    if isinstance(value, str):
        try:
            parsed: object = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return _mapping(parsed)
    return _mapping(value)


def _covers_port(rule: Mapping[str, object], port: int) -> bool:
    protocol = str(rule.get("protocol", rule.get("ipProtocol", "tcp"))).lower()
    if protocol in ("-1", "all"):
        return True
    if protocol not in ("tcp", "6"):
        return False
    low, high = _number(rule.get("fromPort")), _number(rule.get("toPort"))
    if low is None or high is None:
        return False
    return low <= port <= high


def _open_to_world(rule: Mapping[str, object]) -> bool:
    blocks = [*_as_list(rule.get("cidrBlocks")), *_as_list(rule.get("ipv6CidrBlocks"))]
    single = [rule.get("cidrIpv4"), rule.get("cidrIpv6")]
    return any(block in WORLD for block in [*blocks, *single])


def _ports(rule: Mapping[str, object]) -> tuple[int, int] | None:
    protocol = str(rule.get("protocol", rule.get("ipProtocol", "tcp"))).lower()
    if protocol in ("-1", "all"):
        return (0, 65535)
    low, high = _number(rule.get("fromPort")), _number(rule.get("toPort"))
    if low is None or high is None:
        return None
    return (int(low), int(high))


def _resource_rule(
    name: str,
    description: str,
    enforcement: EnforcementLevel,
    remediation: str,
    types: Iterable[str],
    check: Callable[[str, Mapping[str, object], ReportViolation], None],
) -> Rule:
    wanted = frozenset(types)

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type in wanted:
            check(args.resource_type, args.props, report)

    policy = ResourceValidationPolicy(
        name=name,
        description=description,
        enforcement_level=enforcement,
        validate=validate,
        remediation_steps=remediation,
    )
    return Rule(policy, wanted)


def _stack_rule(
    name: str,
    description: str,
    enforcement: EnforcementLevel,
    remediation: str,
    types: Iterable[str],
    check: Callable[[list[PolicyResource], ReportViolation], None],
) -> Rule:
    wanted = frozenset(types)

    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = list(args.resources)
        if any(resource.resource_type in wanted for resource in resources):
            check(resources, report)

    policy = StackValidationPolicy(
        name=name,
        description=description,
        enforcement_level=enforcement,
        validate=validate,
        remediation_steps=remediation,
    )
    return Rule(policy, wanted)


# --- the rules --------------------------------------------------------------------------------------

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY


def _check_kms_at_rest(resource_type: str, props: Mapping[str, object], report: ReportViolation) -> None:
    if resource_type == RDS_INSTANCE:
        if not _truthy(props.get("storageEncrypted")) or not props.get("kmsKeyId"):
            report("the database is not encrypted with a customer-managed KMS key", None)
    elif resource_type in (QUEUE, TOPIC):
        if not props.get("kmsMasterKeyId"):
            report("not encrypted with a KMS key (kmsMasterKeyId)", None)
    elif resource_type in (LOG_GROUP, SECRET):
        if not props.get("kmsKeyId"):
            report("not encrypted with a customer-managed KMS key (kmsKeyId)", None)
    elif resource_type == VOLUME:
        if not _truthy(props.get("encrypted")) or not props.get("kmsKeyId"):
            report("the volume is not encrypted with a customer-managed KMS key", None)
    elif resource_type == LAUNCH_TEMPLATE:
        mappings = _objects(props.get("blockDeviceMappings"))
        if not mappings:
            report("no block device mappings: the root volume would not be encrypted", None)
        for mapping in mappings:
            ebs = _mapping(mapping.get("ebs"))
            if not _truthy(ebs.get("encrypted")) or not ebs.get("kmsKeyId"):
                report(f"volume {mapping.get('deviceName', '?')} is not encrypted with a KMS key", None)
    elif resource_type in SSE:
        for rule in _objects(props.get("rules")):
            default = _mapping(rule.get("applyServerSideEncryptionByDefault"))
            if default.get("sseAlgorithm") not in ("aws:kms", "aws:kms:dsse") or not default.get(
                "kmsMasterKeyId"
            ):
                report("bucket default encryption is not SSE-KMS with a customer-managed key", None)


def _check_rotation(resource_type: str, props: Mapping[str, object], report: ReportViolation) -> None:
    spec = props.get("customerMasterKeySpec") or props.get("keySpec") or "SYMMETRIC_DEFAULT"
    if spec == "SYMMETRIC_DEFAULT" and not _truthy(props.get("enableKeyRotation")):
        report("automatic key rotation is off (enableKeyRotation)", None)


def _check_imdsv2(resource_type: str, props: Mapping[str, object], report: ReportViolation) -> None:
    options = _mapping(props.get("metadataOptions"))
    if options.get("httpEndpoint") == "disabled":
        return  # no metadata service at all: nothing to steal credentials from
    if options.get("httpTokens") != "required":
        report("IMDSv1 is allowed: metadataOptions.httpTokens must be 'required'", None)


def _check_tags(retention: RetentionPolicy) -> Callable[[str, Mapping[str, object], ReportViolation], None]:
    def check(resource_type: str, props: Mapping[str, object], report: ReportViolation) -> None:
        tags = _tags(props)
        level = tags.get(CLASSIFICATION_TAG)
        if level not in CLASSIFICATIONS:
            report(
                f"tag {CLASSIFICATION_TAG} missing or not one of {', '.join(CLASSIFICATIONS)}: {level!r}",
                None,
            )
            return
        if level == "personal" and tags.get(RETENTION_TAG) not in retention.classes:
            report(
                f"personal data without a valid {RETENTION_TAG} tag ({tags.get(RETENTION_TAG)!r}); "
                f"classes: {', '.join(retention.classes)}",
                None,
            )

    return check


def _check_log_retention(
    retention: RetentionPolicy,
) -> Callable[[str, Mapping[str, object], ReportViolation], None]:
    def check(resource_type: str, props: Mapping[str, object], report: ReportViolation) -> None:
        data_class = _tags(props).get(RETENTION_TAG)
        days = _number(props.get("retentionInDays"))
        if not days:
            report("logs are kept forever (retentionInDays unset or 0)", None)
            return
        if data_class is None or data_class not in retention.classes:
            report(f"no valid {RETENTION_TAG} tag ({data_class!r}): the retention cannot be checked", None)
            return
        limit = retention.max_age(data_class)
        if days > limit:
            report(f"logs kept {days:g} days; the retention policy allows {data_class} {limit} days", None)

    return check


def _check_rds(retention: RetentionPolicy) -> Callable[[str, Mapping[str, object], ReportViolation], None]:
    limit = retention.max_age("backups")

    def check(resource_type: str, props: Mapping[str, object], report: ReportViolation) -> None:
        if _truthy(props.get("publiclyAccessible")):
            report("the database is publicly accessible", None)
        if not _truthy(props.get("storageEncrypted")):
            report("the database storage is not encrypted", None)
        days = _number(props.get("backupRetentionPeriod"))
        if not days or days < 1:
            report("automated backups are off (backupRetentionPeriod < 1)", None)
        elif days > limit:
            report(f"backups kept {days:g} days; the retention policy allows backups {limit} days", None)

    return check


def _check_multi_az(resource_type: str, props: Mapping[str, object], report: ReportViolation) -> None:
    if not _truthy(props.get("multiAz")):
        report("single availability zone: an AZ outage stops sending until the database is restored", None)


def _statements(document: Mapping[str, object]) -> list[Mapping[str, object]]:
    return [s for s in _as_list(document.get("Statement")) if isinstance(s, Mapping)]


def _check_iam(resource_type: str, props: Mapping[str, object], report: ReportViolation) -> None:
    documents = [props.get("policy")]
    if resource_type == IAM_ROLE:
        documents = [inline.get("policy") for inline in _objects(props.get("inlinePolicies"))]
    for raw in documents:
        for statement in _statements(_document(raw)):
            if statement.get("Effect") != "Allow":
                continue
            sid = statement.get("Sid", "(no Sid)")
            if "NotAction" in statement or "NotResource" in statement:
                report(f"statement {sid}: NotAction/NotResource grant everything else", None)
                continue
            actions = [str(action).lower() for action in _as_list(statement.get("Action"))]
            for action in actions:
                if action == "*" or action.endswith(":*"):
                    report(f"statement {sid}: wildcard action {action!r}", None)
            if "*" in _as_list(statement.get("Resource")):
                broad = [action for action in actions if action not in RESOURCE_WILDCARD_ACTIONS]
                if broad:
                    report(f"statement {sid}: Resource '*' for {', '.join(broad)}", None)


def _check_s3_encryption(resources: list[PolicyResource], report: ReportViolation) -> None:
    encrypted: set[str] = set()
    for config in _of(resources, SSE):
        defaults = [
            _mapping(rule.get("applyServerSideEncryptionByDefault"))
            for rule in _objects(config.props.get("rules"))
        ]
        if defaults and all(
            default.get("sseAlgorithm") in ("aws:kms", "aws:kms:dsse") and default.get("kmsMasterKeyId")
            for default in defaults
        ):
            name = _bucket_name(config.props)
            if name:
                encrypted.add(name)
    for bucket in _of(resources, (BUCKET, BUCKET_V2)):
        name = _bucket_name(bucket.props)
        inline = _mapping(bucket.props.get("serverSideEncryptionConfiguration"))
        inline_default = _mapping(_mapping(inline.get("rule")).get("applyServerSideEncryptionByDefault"))
        if name in encrypted or (
            inline_default.get("sseAlgorithm") == "aws:kms" and inline_default.get("kmsMasterKeyId")
        ):
            continue
        report(f"{_label(bucket)}: no SSE-KMS default encryption with a customer-managed key", bucket.urn)


_PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")
_BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _check_s3_public(resources: list[PolicyResource], report: ReportViolation) -> None:
    blocked = {
        _bucket_name(block.props)
        for block in _of(resources, PUBLIC_ACCESS_BLOCK)
        if all(_truthy(block.props.get(flag)) for flag in _BLOCK_FLAGS)
    }
    for bucket in _of(resources, (BUCKET, BUCKET_V2)):
        if _bucket_name(bucket.props) not in blocked:
            report(f"{_label(bucket)}: no public access block with all four settings on", bucket.urn)
        if bucket.props.get("acl") in _PUBLIC_ACLS:
            report(f"{_label(bucket)}: public ACL {bucket.props.get('acl')}", bucket.urn)
    for acl in _of(resources, BUCKET_ACL):
        if acl.props.get("acl") in _PUBLIC_ACLS:
            report(f"{_label(acl)}: public ACL {acl.props.get('acl')}", acl.urn)
    for policy in _of(resources, BUCKET_POLICY):
        for statement in _statements(_document(policy.props.get("policy"))):
            principal = statement.get("Principal")
            public = principal == "*" or (
                isinstance(principal, Mapping) and "*" in _as_list(principal.get("AWS"))
            )
            if statement.get("Effect") == "Allow" and public and not statement.get("Condition"):
                report(f"{_label(policy)}: allows anyone (Principal '*') without a condition", policy.urn)


def _rule_prefix(rule: Mapping[str, object]) -> str | None:
    """The key prefix a lifecycle rule applies to ('' = every object); None for narrower filters."""
    flt = rule.get("filter")
    if flt is None:
        return str(rule.get("prefix") or "")
    if not isinstance(flt, Mapping):
        return None
    if flt.get("tag") or flt.get("and") or flt.get("objectSizeGreaterThan") or flt.get("objectSizeLessThan"):
        return None
    return str(flt.get("prefix") or "")


def _check_lifecycle(retention: RetentionPolicy) -> Callable[[list[PolicyResource], ReportViolation], None]:
    def check(resources: list[PolicyResource], report: ReportViolation) -> None:
        lifecycles: dict[str, list[PolicyResource]] = {}
        for lifecycle in _of(resources, LIFECYCLE):
            lifecycles.setdefault(_bucket_name(lifecycle.props) or "", []).append(lifecycle)
        versioned = {
            _bucket_name(v.props)
            for v in _of(resources, VERSIONING)
            if _mapping(v.props.get("versioningConfiguration")).get("status") == "Enabled"
        }
        for bucket in _of(resources, (BUCKET, BUCKET_V2)):
            name = _bucket_name(bucket.props) or ""
            label = _label(bucket)
            data_class = _tags(bucket.props).get(RETENTION_TAG)
            if data_class is None or data_class not in retention.classes:
                report(
                    f"{label}: no valid {RETENTION_TAG} tag ({data_class!r}); expiry cannot be checked",
                    bucket.urn,
                )
                continue
            rules = [
                rule
                for lifecycle in lifecycles.get(name, [])
                for rule in _objects(lifecycle.props.get("rules"))
                if rule.get("status") == "Enabled"
            ]
            if not rules:
                report(f"{label}: no lifecycle expiry: objects are kept forever", bucket.urn)
                continue
            catch_all = False
            for rule in rules:
                rule_id = str(rule.get("id", ""))
                rule_class = rule_id if rule_id in retention.classes else data_class
                limit = retention.max_age(rule_class)
                days = _number(_mapping(rule.get("expiration")).get("days"))
                noncurrent = _number(_mapping(rule.get("noncurrentVersionExpiration")).get("noncurrentDays"))
                if days is None:
                    report(f"{label}: lifecycle rule {rule_id!r} has no expiration in days", bucket.urn)
                    continue
                total = days
                if name in versioned:
                    if noncurrent is None:
                        report(
                            f"{label}: rule {rule_id!r} expires current versions only; "
                            "old versions stay forever",
                            bucket.urn,
                        )
                        continue
                    total = days + noncurrent
                if total > limit:
                    report(
                        f"{label}: rule {rule_id!r} keeps objects up to {total:g} days; "
                        f"{rule_class} allows {limit}",
                        bucket.urn,
                    )
                if _rule_prefix(rule) == "" and rule_class == data_class:
                    catch_all = True
            if not catch_all:
                report(
                    f"{label}: no lifecycle rule covering every object within {data_class}'s limit",
                    bucket.urn,
                )

    return check


def _check_port25(resources: list[PolicyResource], report: ReportViolation) -> None:
    groups = _of(resources, SECURITY_GROUP)
    role_by_id = {str(g.props.get("id")): _tags(g.props).get(ROLE_TAG) for g in groups if g.props.get("id")}
    for group in groups:
        if _tags(group.props).get(ROLE_TAG) == "sender":
            continue
        for rule in _objects(group.props.get("egress")):
            if _covers_port(rule, 25):
                report(f"{_label(group)}: allows port 25 out but is not the sender security group", group.urn)
    for standalone in [*_of(resources, SG_RULE), *_of(resources, SG_EGRESS_RULE)]:
        if standalone.resource_type == SG_RULE and standalone.props.get("type") != "egress":
            continue
        if not _covers_port(standalone.props, 25):
            continue
        owner = str(standalone.props.get("securityGroupId"))
        if role_by_id.get(owner) != "sender":
            report(
                f"{_label(standalone)}: opens port 25 out on {owner}, which is not the sender group",
                standalone.urn,
            )


def _check_sqs(resources: list[PolicyResource], report: ReportViolation) -> None:
    queues = _of(resources, QUEUE)
    arns = {str(queue.props.get("arn")): queue for queue in queues if queue.props.get("arn")}
    targets: set[str] = set()
    for queue in queues:
        target = _document(queue.props.get("redrivePolicy")).get("deadLetterTargetArn")
        if target:
            targets.add(str(target))
    for queue in queues:
        label = _label(queue)
        if not queue.props.get("kmsMasterKeyId"):
            report(f"{label}: not encrypted with a KMS key", queue.urn)
        if str(queue.props.get("arn")) in targets:
            continue  # this is a dead-letter queue
        target = _document(queue.props.get("redrivePolicy")).get("deadLetterTargetArn")
        if not target:
            report(f"{label}: no dead-letter queue (redrivePolicy)", queue.urn)
        elif str(target) not in arns:
            report(f"{label}: its dead-letter queue {target} is not part of this stack", queue.urn)


def _secure_listener(props: Mapping[str, object]) -> str | None:
    protocol = str(props.get("protocol", "")).upper()
    if protocol in ("HTTPS", "TLS"):
        policy = str(props.get("sslPolicy") or "")
        if not any(marker in policy for marker in TLS_POLICY_MARKERS):
            return f"TLS policy {policy or '(default)'} allows TLS versions older than 1.2"
        return None
    actions = _objects(props.get("defaultActions"))
    redirects = [a for a in actions if a.get("type") == "redirect"]
    to_https = all(str(_mapping(a.get("redirect")).get("protocol", "")).upper() == "HTTPS" for a in redirects)
    if actions and len(redirects) == len(actions) and to_https:
        return None
    return f"{protocol or 'plain'} listener serves without TLS (only a redirect to HTTPS is allowed)"


def _check_api_tls(resources: list[PolicyResource], report: ReportViolation) -> None:
    for listener in _of(resources, LISTENER):
        problem = _secure_listener(listener.props)
        if problem:
            report(f"{_label(listener)}: {problem}", listener.urn)
    # Open to the world: SMTP on the senders (bounces), HTTPS and the HTTP redirect on the load balancer.
    allowed = {"sender": {(25, 25)}, "load-balancer": {(443, 443), (80, 80)}}
    groups = _of(resources, SECURITY_GROUP)
    role_by_id = {str(g.props.get("id")): _tags(g.props).get(ROLE_TAG) for g in groups if g.props.get("id")}
    found: list[tuple[PolicyResource, str | None, Mapping[str, object]]] = [
        (group, _tags(group.props).get(ROLE_TAG), rule)
        for group in groups
        for rule in _objects(group.props.get("ingress"))
    ]
    for standalone in _of(resources, SG_RULE):
        if standalone.props.get("type") == "ingress":
            owner = role_by_id.get(str(standalone.props.get("securityGroupId")))
            found.append((standalone, owner, standalone.props))
    for standalone in _of(resources, SG_INGRESS_RULE):
        owner = role_by_id.get(str(standalone.props.get("securityGroupId")))
        found.append((standalone, owner, standalone.props))
    for resource, role, entry in found:
        if not _open_to_world(entry):
            continue
        ports = _ports(entry)
        if ports is None or ports not in allowed.get(role or "", set()):
            report(
                f"{_label(resource)}: ports {ports} open to the internet; only HTTPS (and its redirect) "
                "on the load balancer and SMTP on the senders may be",
                resource.urn,
            )


def _alarm_names(props: Mapping[str, object]) -> list[str]:
    names = [str(props.get("metricName") or "")]
    for query in _objects(props.get("metricQueries")):
        metric = _mapping(query.get("metric"))
        names.append(str(metric.get("metricName") or ""))
    return [name.lower() for name in names if name]


def _check_alarms(resources: list[PolicyResource], report: ReportViolation) -> None:
    alarms = [a for a in _of(resources, METRIC_ALARM) if _as_list(a.props.get("alarmActions"))]
    for word, what in (("bounce", "bounce rate"), ("complain", "complaint rate")):
        if not any(any(word in name for name in _alarm_names(alarm.props)) for alarm in alarms):
            report(f"no alarm with an action watches the {what}", None)


def build_rules(retention: RetentionPolicy) -> list[Rule]:
    """Every rule, judging retention against ``retention``."""
    return [
        _resource_rule(
            "kms-encryption-at-rest",
            "Data at rest (database, queues, topics, logs, secrets, volumes, bucket defaults) is encrypted "
            "with a customer-managed KMS key.",
            MANDATORY,
            "Pass the stack's KMS key: storageEncrypted+kmsKeyId (RDS), kmsMasterKeyId (SQS, SNS), kmsKeyId "
            "(log groups, secrets), ebs.encrypted+kmsKeyId (launch templates), SSE-KMS (buckets).",
            [RDS_INSTANCE, QUEUE, TOPIC, LOG_GROUP, SECRET, VOLUME, LAUNCH_TEMPLATE, *SSE],
            _check_kms_at_rest,
        ),
        _stack_rule(
            "s3-encrypted-with-kms",
            "Every bucket has SSE-KMS default encryption with a customer-managed key.",
            MANDATORY,
            "Add an aws.s3.BucketServerSideEncryptionConfiguration with sse_algorithm 'aws:kms' and the "
            "storage key for the bucket.",
            [BUCKET, BUCKET_V2],
            _check_s3_encryption,
        ),
        _stack_rule(
            "s3-no-public-access",
            "No bucket is public: a public access block with all four settings, no public ACL or policy.",
            MANDATORY,
            "Add an aws.s3.BucketPublicAccessBlock with block_public_acls, block_public_policy, "
            "ignore_public_acls and restrict_public_buckets true; remove public ACLs and Principal '*' "
            "grants.",
            [BUCKET, BUCKET_V2, *BUCKET_ACL, BUCKET_POLICY],
            _check_s3_public,
        ),
        _stack_rule(
            "s3-lifecycle-within-retention",
            "Every bucket expires its objects (current and old versions together) no later than "
            "policies/retention.yaml allows for its retention class.",
            MANDATORY,
            "Tag the bucket retention-class=<class> and add lifecycle rules (id = class) whose expiration "
            "days plus noncurrent-version days stay within the class's max_age_days, including a rule for "
            "every object.",
            [BUCKET, BUCKET_V2],
            _check_lifecycle(retention),
        ),
        _resource_rule(
            "log-retention-within-policy",
            "Log groups keep logs no longer than their retention class allows (never forever).",
            MANDATORY,
            "Tag the log group retention-class=<class> and set retention_in_days to at most its "
            "max_age_days.",
            [LOG_GROUP],
            _check_log_retention(retention),
        ),
        _resource_rule(
            "kms-key-rotation",
            "Symmetric KMS keys rotate automatically.",
            MANDATORY,
            "Set enable_key_rotation=True on the key.",
            [KMS_KEY],
            _check_rotation,
        ),
        _resource_rule(
            "rds-private-encrypted-backed-up",
            "The database is not publicly accessible, is encrypted, and keeps automated backups within the "
            "retention policy's backups limit.",
            MANDATORY,
            "Set publicly_accessible=False, storage_encrypted=True and backup_retention_period between 1 and "
            "the backups class's max_age_days; put it in private subnets.",
            [RDS_INSTANCE],
            _check_rds(retention),
        ),
        _resource_rule(
            "rds-multi-az",
            "Production databases run in two availability zones.",
            ADVISORY,
            "Set database.multiAz: true in the stack configuration.",
            [RDS_INSTANCE],
            _check_multi_az,
        ),
        _resource_rule(
            "senders-imdsv2",
            "Instances and launch templates require IMDSv2 session tokens (no IMDSv1 credential theft).",
            MANDATORY,
            "Set metadata_options.http_tokens='required' (and a hop limit of 1).",
            [LAUNCH_TEMPLATE, INSTANCE],
            _check_imdsv2,
        ),
        _stack_rule(
            "port25-egress-only-senders",
            "Only the sender security group may send SMTP (port 25) out.",
            MANDATORY,
            "Remove port 25 (and all-protocol) egress from every group not tagged mailstack:role=sender.",
            [SECURITY_GROUP, SG_RULE, SG_EGRESS_RULE],
            _check_port25,
        ),
        _stack_rule(
            "sqs-encrypted-with-dead-letter-queue",
            "Every queue is KMS-encrypted and has a dead-letter queue in the stack (dead-letter queues "
            "themselves excepted).",
            MANDATORY,
            "Set kms_master_key_id and a redrive_policy whose deadLetterTargetArn is a queue of this stack.",
            [QUEUE],
            _check_sqs,
        ),
        _resource_rule(
            "data-classification-tags",
            "Every data store carries a data-classification tag, and personal data a valid retention-class.",
            MANDATORY,
            "Tag it data-classification=public|internal|confidential|personal; for personal data also "
            "retention-class=<a class of policies/retention.yaml>.",
            [BUCKET, BUCKET_V2, RDS_INSTANCE, RDS_CLUSTER, QUEUE, TOPIC, LOG_GROUP, SECRET, VOLUME],
            _check_tags(retention),
        ),
        _stack_rule(
            "api-tls-only",
            "The API and tracking are reachable only over TLS 1.2+; HTTP only redirects to HTTPS; nothing "
            "but HTTPS on the load balancer and SMTP on the senders is open to the internet.",
            MANDATORY,
            "Use HTTPS listeners with a TLS 1.2+ policy (e.g. ELBSecurityPolicy-TLS13-1-2-2021-06), make "
            "HTTP listeners redirect to HTTPS, and close other ports to 0.0.0.0/0.",
            [*LISTENER, SECURITY_GROUP, SG_RULE, SG_INGRESS_RULE],
            _check_api_tls,
        ),
        _stack_rule(
            "alarms-on-bounce-and-complaint-rates",
            "A sending fleet on AWS has CloudWatch alarms with actions on its bounce and complaint rates.",
            MANDATORY,
            "Add MetricAlarms on the Mailstack Bounced/Sent and Complained/Sent rates with alarm_actions "
            "to the alerts topic (infra/monitoring.py).",
            [LAUNCH_TEMPLATE, INSTANCE, "aws:autoscaling/group:Group"],
            _check_alarms,
        ),
        _resource_rule(
            "iam-least-privilege",
            "IAM policies grant no wildcard actions, no NotAction/NotResource, and Resource '*' only for "
            "actions without resource-level permissions.",
            MANDATORY,
            "Name the actions and scope them to the stack's resource ARNs (or tag conditions).",
            [IAM_POLICY, IAM_ROLE_POLICY, IAM_ROLE],
            _check_iam,
        ),
    ]


RULES: list[Rule] = build_rules(load_retention())
