"""The types of :mod:`infra.boot`: the variables the Pulumi program writes for a booting sender (and the
roles read), the secret documents it keeps in Secrets Manager, and the AWS calls the boot script makes.

They live here, not in boot.py, because boot.py travels in the sender's user data (16 KB at most) and
imports these only for type checking.
"""

from __future__ import annotations

from typing import Generic, NotRequired, Protocol, TypedDict, TypeVar

# --- cloud-vars.json: written by the Pulumi program (infra/program.py), read here and by the roles ------
# A value only Pulumi knows once the resources exist: ``pulumi.Input[str]`` in the program, ``str`` here.
Value = TypeVar("Value")


class QueueVars(TypedDict, Generic[Value]):
    """mailstack's ``[queue]`` and ``[delivery]`` on SQS (the roles render it)."""

    backend: str
    sqs_url: Value
    sqs_dead_letter_url: Value
    lease_seconds: int
    max_attempts: int


class DatabaseVars(TypedDict, Generic[Value]):
    host: Value
    port: int
    name: str
    user: str
    password_secret_arn: Value
    sslmode: str


class DkimVars(TypedDict, Generic[Value]):
    selector: str
    algorithm: str  # mailstack's name: rsa-sha256 | ed25519-sha256
    secret_arn: Value


class WarmupVars(TypedDict):
    first: int
    growth: float
    ceiling: int


class CloudVars(TypedDict, Generic[Value]):
    """``mailstack_cloud``: what the fleet's resources are called, for the boot script and the roles."""

    stack: str
    region: str
    domain: str
    bounce_domain: str
    public_url: str
    tracking_url: str
    http_port: int
    queue: QueueVars[Value]
    database: DatabaseVars[Value]
    api_key_secret_arn: Value
    master_key_secret_arn: Value
    dkim: list[DkimVars[Value]]
    archive_bucket: Value
    log_groups: dict[str, Value]
    metrics_namespace: str
    ip_pool: str
    warmup: WarmupVars


# --- Secrets Manager documents: written by infra/secrets.py and infra/database.py, read here ----------


class MasterKeySecret(TypedDict, Generic[Value]):
    secret_key: Value


class DatabaseSecret(TypedDict, Generic[Value]):
    username: str
    password: Value


class ApiKeySecret(TypedDict, Generic[Value]):
    api_key: Value
    api_secret: Value


class DkimSecret(TypedDict, Generic[Value]):
    """One provided key, as the dkim_keys role takes it (``mailstack_dkim_provided_keys``)."""

    domain: str
    selector: str
    algorithm: str
    private_key_pem: Value


class SecretVars(TypedDict):
    """secret-vars.json: the playbook's secret variables."""

    mailstack_secret_key: str
    mailstack_database_password: str
    mailstack_api_key: str
    mailstack_api_secret: str
    mailstack_dkim_provided_keys: list[DkimSecret[str]]


# --- what the boot script asks of AWS (boto3 clients; Debian's python3-boto3 has no type stubs) -------


class Tag(TypedDict):
    Key: str
    Value: str


class AddressFilter(TypedDict):
    Name: str
    Values: list[str]


class AddressDescription(TypedDict):
    """One entry of EC2 DescribeAddresses (the fields the claim reads)."""

    AllocationId: str
    PublicIp: str
    InstanceId: NotRequired[str]
    AssociationId: NotRequired[str]
    Tags: NotRequired[list[Tag]]


class DescribeAddressesResult(TypedDict):
    Addresses: list[AddressDescription]


class Ec2Client(Protocol):
    """The EC2 calls of the claim."""

    def describe_addresses(self, *, Filters: list[AddressFilter]) -> DescribeAddressesResult: ...  # noqa: N803

    def associate_address(
        self,
        *,
        AllocationId: str,  # noqa: N803
        InstanceId: str,  # noqa: N803
        AllowReassociation: bool,  # noqa: N803
    ) -> object: ...

    def create_tags(self, *, Resources: list[str], Tags: list[Tag]) -> object: ...  # noqa: N803


class SecretValue(TypedDict):
    SecretString: str


class SecretsManagerClient(Protocol):
    """The Secrets Manager call of the secret fetch."""

    def get_secret_value(self, *, SecretId: str) -> SecretValue: ...  # noqa: N803


class Claim(TypedDict):
    """A claimed pool address (``mailstack_cloud_ip``)."""

    address: str
    allocation_id: str
    hostname: str
    warmup_start: str


class IpVars(TypedDict):
    """ip-vars.json: the roles' variables for the claimed address."""

    mailstack_cloud_ip: Claim
    mailstack_hostname: str
    mailstack_public_address: str
    mailstack_private_address: str


class Identity(TypedDict):
    region: str
    instance_id: str
    private_address: str
