"""The stack configuration (``Pulumi.<stack>.yaml``), read through ``pulumi.Config`` and validated.

Every error names the exact key (``mailstack:fleet.maxSize``) and what was expected, and unknown keys are
refused, so a typo fails ``pulumi up`` at once instead of being silently ignored. Raised as
:class:`StackConfigError`, a ``pulumi.RunError``: Pulumi prints its message without a traceback.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import pulumi

from .database import RDS_MAX_STORAGE_GB

T = TypeVar("T")
Choice = TypeVar("Choice", bound=str)
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

Target = Literal["aws", "baremetal"]
Architecture = Literal["amd64", "arm64"]
DmarcPolicy = Literal["none", "quarantine", "reject"]
MtaStsMode = Literal["testing", "enforce"]
ARCHITECTURES: tuple[Architecture, ...] = ("amd64", "arm64")
DMARC_POLICIES: tuple[DmarcPolicy, ...] = ("none", "quarantine", "reject")
MTA_STS_MODES: tuple[MtaStsMode, ...] = ("testing", "enforce")


class StackConfigError(pulumi.RunError):
    """A stack configuration value is missing or wrong; the message names the key."""


@dataclass(frozen=True)
class NetworkConfig:
    cidr: str = "10.40.0.0/16"
    az_count: int = 2


@dataclass(frozen=True)
class WarmupConfig:
    """Daily sending cap of a new IP: ``first`` on day 1, times ``growth`` each day, up to ``ceiling``."""

    first: int = 50
    growth: float = 2.0
    ceiling: int = 100_000


@dataclass(frozen=True)
class FleetConfig:
    instance_type: str = "t3.small"
    architecture: Architecture = "amd64"
    min_size: int = 1
    max_size: int = 2
    volume_size_gb: int = 20
    backlog_per_instance: int = 2000
    ip_pool_size: int = 2
    hostname_prefix: str = "mta"
    warmup: WarmupConfig = field(default_factory=WarmupConfig)


@dataclass(frozen=True)
class QueueConfig:
    lease_seconds: int = 300
    max_receive_count: int = 13
    max_attempts: int = 8


@dataclass(frozen=True)
class DatabaseConfig:
    instance_class: str = "db.t4g.micro"
    allocated_storage_gb: int = 20
    multi_az: bool = False
    engine_version: str = "16"
    deletion_protection: bool = True


@dataclass(frozen=True)
class DnsConfig:
    zone_id: str
    dkim_rsa_selector: str
    dkim_ed25519_selector: str
    dmarc_policy: DmarcPolicy
    dmarc_reports: str
    mta_sts_mode: MtaStsMode
    tls_reports: str
    api_host: str
    tracking_host: str
    bounce_domain: str


@dataclass(frozen=True)
class AlertsConfig:
    email: str = ""
    queue_age_seconds: int = 900
    bounce_rate_percent: float = 5.0
    complaint_rate_percent: float = 0.1


@dataclass(frozen=True)
class ReleaseConfig:
    repository: str
    ref: str


@dataclass(frozen=True)
class AwsConfig:
    """Everything the AWS target needs."""

    domain: str
    network: NetworkConfig
    fleet: FleetConfig
    queue: QueueConfig
    database: DatabaseConfig
    dns: DnsConfig
    alerts: AlertsConfig
    release: ReleaseConfig
    api_allowed_cidrs: tuple[str, ...]


@dataclass(frozen=True)
class BaremetalHost:
    name: str
    address: str
    groups: tuple[str, ...]
    user: str
    # The address the database listens on and the firewall allows between hosts (the roles'
    # ``mailstack_private_address``); empty = ``address``.
    private_address: str = ""


@dataclass(frozen=True)
class BaremetalConfig:
    """Owned servers: the hosts, and how to run the playbook on them."""

    domain: str
    hosts: tuple[BaremetalHost, ...]
    playbook: str
    ssh_private_key_file: str
    extra_vars: Mapping[str, object]


@dataclass(frozen=True)
class StackConfig:
    target: Target
    aws: AwsConfig | None = None
    baremetal: BaremetalConfig | None = None


class _Object:
    """Typed access to one structured config value; remembers which keys were read to refuse the rest."""

    def __init__(self, key: str, raw: object) -> None:
        if not isinstance(raw, dict):
            raise StackConfigError(f"{key}: expected an object (a YAML mapping), got {_show(raw)}")
        self.key = key
        self._raw: dict[str, object] = raw  # JSON: the keys are text
        self._read: set[str] = set()

    def _get(self, name: str, check: Callable[[object], T | None], expected: str, default: T | None) -> T:
        self._read.add(name)
        if name not in self._raw or self._raw[name] is None:
            if default is None:
                raise StackConfigError(f"{self.key}.{name}: missing required value ({expected})")
            return default
        value = check(self._raw[name])
        if value is None:
            raise StackConfigError(f"{self.key}.{name}: expected {expected}, got {_show(self._raw[name])}")
        return value

    def integer(self, name: str, default: int | None = None, *, low: int = 0, high: int = 10**9) -> int:
        def check(value: object) -> int | None:
            if isinstance(value, bool) or not isinstance(value, int):
                return None
            return value if low <= value <= high else None

        return self._get(name, check, f"a whole number from {low} to {high}", default)

    def number(
        self, name: str, default: float | None = None, *, low: float = 0.0, high: float = 1e9
    ) -> float:
        def check(value: object) -> float | None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            return float(value) if low <= value <= high else None

        return self._get(name, check, f"a number from {low:g} to {high:g}", default)

    def boolean(self, name: str, default: bool | None = None) -> bool:
        def check(value: object) -> bool | None:
            return value if isinstance(value, bool) else None

        return self._get(name, check, "true or false", default)

    def string(
        self,
        name: str,
        default: str | None = None,
        *,
        pattern: re.Pattern[str] | None = None,
        choices: tuple[str, ...] = (),
        expected: str = "a string",
    ) -> str:
        def check(value: object) -> str | None:
            if not isinstance(value, str):
                return None
            if not value:
                # Empty means unset only where unset is allowed (default ""); elsewhere it is no value.
                return value if default == "" else None
            if choices and value not in choices:
                return None
            if pattern is not None and not pattern.match(value):
                return None
            return value

        label = f"one of {', '.join(choices)}" if choices else expected
        return self._get(name, check, label, default)

    def choice(self, name: str, default: Choice, choices: tuple[Choice, ...]) -> Choice:
        """One of ``choices`` (a Literal type's values), typed as that Literal."""
        text = self.string(name, default, choices=choices)
        return next(option for option in choices if option == text)

    def strings(
        self, name: str, default: list[str] | None = None, *, expected: str = "a list of strings"
    ) -> list[str]:
        def check(value: object) -> list[str] | None:
            if not isinstance(value, list):
                return None
            items = [item for item in value if isinstance(item, str) and item]
            return items if len(items) == len(value) else None

        return self._get(name, check, expected, default)

    def obj(self, name: str) -> _Object:
        self._read.add(name)
        value = self._raw.get(name)
        # Only an absent (or null) object is empty: `false`, `0`, `[]` or `""` are mistakes to name.
        return _Object(f"{self.key}.{name}", {} if value is None else value)

    def list_of_objects(self, name: str) -> list[_Object]:
        self._read.add(name)
        value = self._raw.get(name)
        if not isinstance(value, list) or not value:
            raise StackConfigError(
                f"{self.key}.{name}: expected a non-empty list of objects, got {_show(value)}"
            )
        return [_Object(f"{self.key}.{name}[{index}]", item) for index, item in enumerate(value)]

    def raw(self, name: str) -> object:
        self._read.add(name)
        return self._raw.get(name)

    def done(self) -> None:
        """Refuse keys nobody read: almost always a typo."""
        unknown = sorted(set(self._raw) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read))
            raise StackConfigError(f"{self.key}.{unknown[0]}: unknown key (known keys: {known})")


def _show(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _structured(config: pulumi.Config, name: str) -> _Object:
    """A structured key; Pulumi hands objects to the program as JSON text."""
    key = f"{config.name}:{name}"
    text = config.get(name)
    if text is None:
        return _Object(key, {})
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise StackConfigError(f"{key}: expected an object (a YAML mapping), got {text!r}") from None
    return _Object(key, value)


def _domain(config: pulumi.Config) -> str:
    key = f"{config.name}:domain"
    domain = config.get("domain")
    if not domain:
        raise StackConfigError(f"{key}: missing required value (the sending domain, e.g. example.com)")
    if not _HOSTNAME.match(domain):
        raise StackConfigError(f"{key}: expected a domain name like example.com, got {domain!r}")
    return domain


def load_stack_config(config: pulumi.Config | None = None) -> StackConfig:
    """Read and validate the whole stack configuration (project namespace ``mailstack``)."""
    config = config or pulumi.Config()
    target_key = f"{config.name}:target"
    target = config.get("target") or "aws"
    if target not in ("aws", "baremetal"):
        raise StackConfigError(f"{target_key}: expected aws or baremetal, got {target!r}")
    domain = _domain(config)
    if target == "baremetal":
        return StackConfig("baremetal", baremetal=_baremetal(config, domain))
    return StackConfig("aws", aws=_aws(config, domain))


def _aws(config: pulumi.Config, domain: str) -> AwsConfig:
    network_cfg = _structured(config, "network")
    network = NetworkConfig(
        cidr=network_cfg.string("cidr", NetworkConfig.cidr, expected="an IPv4 CIDR block"),
        az_count=network_cfg.integer("azCount", NetworkConfig.az_count, low=2, high=6),
    )
    network_cfg.done()
    try:
        block = ipaddress.IPv4Network(network.cidr)
    except ValueError:
        raise StackConfigError(
            f"{network_cfg.key}.cidr: expected an IPv4 CIDR block, got {network.cidr!r}"
        ) from None
    if block.prefixlen > 20:
        raise StackConfigError(
            f"{network_cfg.key}.cidr: needs at least a /20 for its subnets, got {network.cidr}"
        )

    fleet_cfg = _structured(config, "fleet")
    warmup_cfg = fleet_cfg.obj("warmup")
    warmup = WarmupConfig(
        first=warmup_cfg.integer("first", WarmupConfig.first, low=1),
        growth=warmup_cfg.number("growth", WarmupConfig.growth, low=1.01, high=10),
        ceiling=warmup_cfg.integer("ceiling", WarmupConfig.ceiling, low=1),
    )
    warmup_cfg.done()
    defaults = FleetConfig()
    fleet = FleetConfig(
        instance_type=fleet_cfg.string("instanceType", defaults.instance_type),
        architecture=fleet_cfg.choice("architecture", defaults.architecture, ARCHITECTURES),
        min_size=fleet_cfg.integer("minSize", defaults.min_size, low=1, high=100),
        max_size=fleet_cfg.integer("maxSize", defaults.max_size, low=1, high=100),
        volume_size_gb=fleet_cfg.integer("volumeSizeGb", defaults.volume_size_gb, low=8, high=1000),
        backlog_per_instance=fleet_cfg.integer("backlogPerInstance", defaults.backlog_per_instance, low=1),
        ip_pool_size=fleet_cfg.integer("ipPoolSize", defaults.ip_pool_size, low=1, high=100),
        hostname_prefix=fleet_cfg.string(
            "hostnamePrefix", defaults.hostname_prefix, pattern=_LABEL, expected="a DNS label like mta"
        ),
        warmup=warmup,
    )
    fleet_cfg.done()
    if warmup.ceiling < warmup.first:
        raise StackConfigError(f"{warmup_cfg.key}.ceiling: must be at least warmup.first ({warmup.first})")
    if fleet.max_size < fleet.min_size:
        raise StackConfigError(f"{fleet_cfg.key}.maxSize: must be at least minSize ({fleet.min_size})")
    if fleet.ip_pool_size < fleet.max_size:
        # Every sender needs its own Elastic IP (reputation and PTR belong to the IP, not the instance).
        raise StackConfigError(
            f"{fleet_cfg.key}.ipPoolSize: must be at least maxSize ({fleet.max_size}): "
            "each sender claims its own Elastic IP"
        )

    queue_cfg = _structured(config, "queue")
    queue = QueueConfig(
        lease_seconds=queue_cfg.integer("leaseSeconds", QueueConfig.lease_seconds, low=30, high=43_200),
        max_receive_count=queue_cfg.integer(
            "maxReceiveCount", QueueConfig.max_receive_count, low=1, high=1000
        ),
        max_attempts=queue_cfg.integer("maxAttempts", QueueConfig.max_attempts, low=1, high=100),
    )
    queue_cfg.done()
    if queue.max_receive_count <= queue.max_attempts:
        # The redrive policy is the safety net; mailstack's own dead-lettering must come first.
        raise StackConfigError(
            f"{queue_cfg.key}.maxReceiveCount: must exceed maxAttempts ({queue.max_attempts}) so that "
            "mailstack dead-letters a message before SQS's redrive does"
        )

    db_cfg = _structured(config, "database")
    db_defaults = DatabaseConfig()
    database = DatabaseConfig(
        instance_class=db_cfg.string("instanceClass", db_defaults.instance_class),
        allocated_storage_gb=db_cfg.integer(
            "allocatedStorageGb", db_defaults.allocated_storage_gb, low=20, high=RDS_MAX_STORAGE_GB
        ),
        multi_az=db_cfg.boolean("multiAz", db_defaults.multi_az),
        engine_version=db_cfg.string("engineVersion", db_defaults.engine_version, choices=("15", "16", "17")),
        deletion_protection=db_cfg.boolean("deletionProtection", db_defaults.deletion_protection),
    )
    db_cfg.done()

    dns_cfg = _structured(config, "dns")

    def hostname(name: str, default: str) -> str:
        return dns_cfg.string(name, default, pattern=_HOSTNAME, expected="a host name")

    dns = DnsConfig(
        zone_id=dns_cfg.string("zoneId", ""),
        dkim_rsa_selector=dns_cfg.string(
            "dkimRsaSelector", "ms-rsa1", pattern=_LABEL, expected="a DNS label"
        ),
        dkim_ed25519_selector=dns_cfg.string(
            "dkimEd25519Selector", "ms-ed1", pattern=_LABEL, expected="a DNS label"
        ),
        dmarc_policy=dns_cfg.choice("dmarcPolicy", "none", DMARC_POLICIES),
        dmarc_reports=dns_cfg.string(
            "dmarcReports", f"dmarc-reports@{domain}", pattern=_EMAIL, expected="an address"
        ),
        mta_sts_mode=dns_cfg.choice("mtaStsMode", "testing", MTA_STS_MODES),
        tls_reports=dns_cfg.string(
            "tlsReports", f"tls-reports@{domain}", pattern=_EMAIL, expected="an address"
        ),
        api_host=hostname("apiHost", f"api.{domain}"),
        tracking_host=hostname("trackingHost", f"click.{domain}"),
        bounce_domain=hostname("bounceDomain", f"bounces.{domain}"),
    )
    dns_cfg.done()
    if dns.dkim_rsa_selector == dns.dkim_ed25519_selector:
        raise StackConfigError(f"{dns_cfg.key}.dkimEd25519Selector: must differ from dkimRsaSelector")
    if not dns.zone_id:
        # Every record goes into the one zone; a new zone is the domain's, and Route53 refuses names
        # outside it only at `pulumi up`, halfway through.
        for key, host in (
            ("apiHost", dns.api_host),
            ("trackingHost", dns.tracking_host),
            ("bounceDomain", dns.bounce_domain),
        ):
            if host != domain and not host.endswith(f".{domain}"):
                raise StackConfigError(
                    f"{dns_cfg.key}.{key}: {host} is outside {domain}, the zone this stack creates; "
                    "use a name under it, or set dns.zoneId to a zone that holds every name"
                )
    if len({dns.api_host, dns.tracking_host, f"mta-sts.{dns.bounce_domain}"}) < 3:
        raise StackConfigError(
            f"{dns_cfg.key}.trackingHost: the API, tracking and MTA-STS hosts must differ (each gets its "
            "own record and certificate name)"
        )

    alerts_cfg = _structured(config, "alerts")
    alerts = AlertsConfig(
        email=alerts_cfg.string("email", "", pattern=_EMAIL, expected="an email address"),
        queue_age_seconds=alerts_cfg.integer("queueAgeSeconds", AlertsConfig.queue_age_seconds, low=60),
        bounce_rate_percent=alerts_cfg.number(
            "bounceRatePercent", AlertsConfig.bounce_rate_percent, high=100
        ),
        complaint_rate_percent=alerts_cfg.number(
            "complaintRatePercent", AlertsConfig.complaint_rate_percent, high=100
        ),
    )
    alerts_cfg.done()

    release_cfg = _structured(config, "release")
    release = ReleaseConfig(
        repository=release_cfg.string("repository", expected="the git URL sender nodes clone mailstack from"),
        ref=release_cfg.string("ref", expected="the git tag or commit to deploy"),
    )
    release_cfg.done()

    api_cfg = _structured(config, "api")
    cidrs = api_cfg.strings("allowedCidrs", ["0.0.0.0/0"], expected="a list of IPv4 CIDR blocks")
    api_cfg.done()
    for index, cidr in enumerate(cidrs):
        try:
            ipaddress.IPv4Network(cidr)
        except ValueError:
            raise StackConfigError(
                f"{api_cfg.key}.allowedCidrs[{index}]: expected an IPv4 CIDR, got {cidr!r}"
            ) from None

    return AwsConfig(
        domain=domain,
        network=network,
        fleet=fleet,
        queue=queue,
        database=database,
        dns=dns,
        alerts=alerts,
        release=release,
        api_allowed_cidrs=tuple(cidrs),
    )


def _private_address(host_cfg: _Object, address: str) -> str:
    """A host's private IP (``privateAddress``); defaults to ``address`` when that is an IP itself."""
    private = host_cfg.string("privateAddress", "", expected="the host's private IP address")
    if private:
        try:
            return str(ipaddress.ip_address(private))
        except ValueError:
            raise StackConfigError(
                f"{host_cfg.key}.privateAddress: expected an IP address, got {_show(private)}"
            ) from None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise StackConfigError(
            f"{host_cfg.key}.privateAddress: missing required value (the host's private IP address; "
            f"address {_show(address)} is a name, not an IP)"
        ) from None


def _baremetal(config: pulumi.Config, domain: str) -> BaremetalConfig:
    cfg = _structured(config, "baremetal")
    hosts: list[BaremetalHost] = []
    for host_cfg in cfg.list_of_objects("hosts"):
        name = host_cfg.string("name", pattern=_LABEL, expected="an inventory host name (a DNS label)")
        address = host_cfg.string("address", expected="the host's IP address or DNS name")
        groups = host_cfg.strings("groups", ["senders"], expected="a list of inventory groups")
        user = host_cfg.string("user", "root")
        private = _private_address(host_cfg, address)
        host_cfg.done()
        unknown_groups = sorted(set(groups) - {"senders", "db"})
        if unknown_groups:
            raise StackConfigError(
                f"{host_cfg.key}.groups: unknown group {unknown_groups[0]!r} (senders, db)"
            )
        hosts.append(BaremetalHost(name, address, tuple(groups), user, private))
    names = [host.name for host in hosts]
    if len(set(names)) != len(names):
        raise StackConfigError(f"{cfg.key}.hosts: each host name may appear once")
    seen: dict[str, int] = {}
    for index, host in enumerate(hosts):
        if host.private_address in seen:
            raise StackConfigError(
                f"{cfg.key}.hosts[{index}].privateAddress: {host.private_address} is already the private "
                f"address of hosts[{seen[host.private_address]}] ({hosts[seen[host.private_address]].name})"
            )
        seen[host.private_address] = index
    if not any("senders" in host.groups for host in hosts):
        raise StackConfigError(f"{cfg.key}.hosts: at least one host must be in the senders group")
    playbook = cfg.string("playbook", "site.yml")
    key_file = cfg.string("sshPrivateKeyFile", "")
    extra = cfg.raw("extraVars")
    extra = {} if extra is None else extra
    if not isinstance(extra, dict):
        raise StackConfigError(
            f"{cfg.key}.extraVars: expected an object of Ansible variables, got {_show(extra)}"
        )
    cfg.done()
    return BaremetalConfig(domain, tuple(hosts), playbook, key_file, extra)
