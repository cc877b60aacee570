from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from ._automation import AutomationSettings
from ._dashboard import DashboardSettings
from ._section import Section
from ._stats import StatsSettings
from ._tracking import TrackingSettings
from ._webhooks import WebhookSettings

CONFIG_FILE = "mailstack.toml"
DATABASE_URL_ENV = "MAILSTACK_DATABASE_URL"
SECRET_KEY_ENV = "MAILSTACK_SECRET_KEY"  # noqa: S105 - a variable name, not a secret


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the offending key."""


def parse_hostport(value: str, *, what: str = "address") -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6) and check the port range."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{what} must be HOST:PORT, got {value!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"{what} port must be 1-65535, got {port}")
    return host.strip("[]"), port


class ServerSettings(Section):
    http: str = "127.0.0.1:8800"
    # Base URL printed in MessageHref and used for tracking/unsubscribe links.
    public_url: str = ""
    max_body_bytes: Annotated[int, Field(gt=0)] = 30 * 1024 * 1024
    # Admission to the API (/v3…, /api/…) of this process; 0 = no limit. Beyond a limit: 429 with
    # Retry-After, before any work. Rates admit a second's worth at once (at least one request).
    max_requests_per_second: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    max_requests_per_second_per_key: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    max_concurrent_requests: Annotated[int, Field(ge=0)] = 0

    @field_validator("http")
    @classmethod
    def _check_http(cls, value: str) -> str:
        parse_hostport(value, what="server.http")
        return value


class DatabaseSettings(Section):
    url: str = "sqlite:///mailstack.db"


class MailSettings(Section):
    domain: str
    hostname: str = ""
    bounce_domain: str = ""
    max_recipients: Annotated[int, Field(gt=0, le=50)] = 50
    max_message_bytes: Annotated[int, Field(gt=0)] = 15 * 1024 * 1024


class DeliverySettings(Section):
    relay: str = ""  # HOST:PORT of the SMTP relay (Postfix); empty keeps mail in the sandbox outbox
    # 0: this node only accepts mail (API, SMTP); other nodes of the fleet deliver it.
    workers: Annotated[int, Field(ge=0, le=64)] = 4
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 50
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    retry_base_seconds: Annotated[float, Field(gt=0)] = 30.0
    retry_max_seconds: Annotated[float, Field(gt=0)] = 3600.0
    smtp_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    poll_seconds: Annotated[float, Field(gt=0)] = 0.5
    # STARTTLS to the relay(s), with the certificate verified: for a relay across a network rather than
    # on loopback. relay_ca_file (relative to the data directory) names the CA bundle; empty = the system's.
    relay_starttls: bool = False
    relay_ca_file: str = ""

    @field_validator("relay")
    @classmethod
    def _check_relay(cls, value: str) -> str:
        if value:
            parse_hostport(value, what="delivery.relay")
        return value


class QueueSettings(Section):
    # Renewed every third of it while the work goes on: a dead node's jobs are taken over after this.
    lease_seconds: Annotated[float, Field(gt=0)] = 30.0
    # "sql": the database's own queue (SQLite/PostgreSQL); "sqs": Amazon SQS with a database outbox.
    backend: Literal["sql", "sqs"] = "sql"
    sqs_url: str = ""
    sqs_dead_letter_url: str = ""  # empty = the target of the queue's redrive policy

    @model_validator(mode="after")
    def _check_sqs(self) -> QueueSettings:
        if self.backend == "sqs" and not self.sqs_url:
            raise ValueError("queue.backend = 'sqs' needs queue.sqs_url")
        return self


class FeedbackSettings(Section):
    """What comes back after delivery (``mailstack.feedback``): Postfix's log, bounce intake, suppression."""

    # Postfix's maillog_file; empty = no delivery status from Postfix (relay acceptance stays the last word).
    postfix_log: str = ""
    postfix_log_poll_seconds: Annotated[float, Field(gt=0)] = 0.5
    # HOST:PORT of the SMTP listener the bounce domain is routed to; empty = none.
    intake: str = ""
    intake_max_bytes: Annotated[int, Field(gt=0)] = 10 * 1024 * 1024
    # An address is suppressed after this many soft-bounced messages within soft_bounce_days ...
    soft_bounce_limit: Annotated[int, Field(ge=1)] = 3
    soft_bounce_days: Annotated[float, Field(gt=0)] = 7.0
    # ... for this many days (0 = until removed): a full mailbox or a suspended account may recover.
    soft_bounce_suppression_days: Annotated[float, Field(ge=0)] = 30.0

    @field_validator("intake")
    @classmethod
    def _check_intake(cls, value: str) -> str:
        if value:
            parse_hostport(value, what="feedback.intake")
        return value


class SmtpSettings(Section):
    """SMTP submission (``mailstack.smtp``): STARTTLS, then AUTH with an API key, then mail."""

    listen: str = ""  # HOST:PORT; empty = no SMTP listener
    # PEM certificate chain and key (relative to the data directory); both empty = a self-signed
    # certificate that serve generates once into DATA_DIR/smtp-tls.pem.
    tls_cert: str = ""
    tls_key: str = ""

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if value:
            parse_hostport(value, what="smtp.listen")
        return value

    @model_validator(mode="after")
    def _check_tls_pair(self) -> SmtpSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("smtp.tls_cert and smtp.tls_key must be set together")
        return self


# --- throttle ---------------------------------------------------------------------------------------
# One source of truth for pacing: mailstack enforces these values fleet-wide, and the Ansible roles render
# Postfix's per-provider transports (concurrency, rate delay) from the same keys. Keep the shape stable.

_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_BUILTIN_PROVIDERS = ("google", "microsoft", "yahoo", "other")


class ThrottleLimit(Section):
    """A sustained rate in messages per second and how many may go at once (default: a second's worth)."""

    rate: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    burst: Annotated[int, Field(ge=1)] | None = None


class ProviderThrottle(ThrottleLimit):
    """One mailbox provider's limit, fleet-wide. ``other`` applies to each remaining domain separately."""

    # Postfix's destination concurrency for this provider's transport (rendered by Ansible); unused here.
    concurrency: Annotated[int, Field(ge=1)] | None = None
    domains: tuple[str, ...] = ()  # recipient domains beyond the built-in list
    mx: tuple[str, ...] = ()  # MX host suffixes beyond the built-in list (with mx_lookup)

    @field_validator("domains", "mx")
    @classmethod
    def _normalise(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(value.strip().strip(".").lower() for value in values)
        if any(not name or " " in name or "@" in name for name in names):
            raise ValueError("must be domain names")
        return names


class SendingIpSettings(Section):
    """A source address (Postfix ``smtp_bind_address``) with an optional rate and warm-up schedule."""

    address: str
    relay: str = ""  # HOST:PORT of the Postfix listener sending from this IP; empty = delivery.relay
    rate: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    burst: Annotated[int, Field(ge=1)] | None = None
    warmup_start: date | None = None  # day 1 of the warm-up (UTC); the IP sends nothing before
    warmup_curve: tuple[Annotated[int, Field(ge=0)], ...] = ()  # daily caps of day 1, 2, …; the last stays
    warmup_first: Annotated[int, Field(ge=1)] | None = None  # or: day 1's cap, times growth daily, to ceiling
    warmup_growth: Annotated[float, Field(gt=1, allow_inf_nan=False)] = 2.0
    warmup_ceiling: Annotated[int, Field(ge=1)] | None = None

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        return str(ipaddress.ip_address(value.strip()))

    @field_validator("relay")
    @classmethod
    def _check_relay(cls, value: str) -> str:
        if value:
            parse_hostport(value, what="relay")
        return value

    @model_validator(mode="after")
    def _check_warmup(self) -> SendingIpSettings:
        geometric = self.warmup_first is not None or self.warmup_ceiling is not None
        if self.warmup_curve and geometric:
            raise ValueError("give warmup_curve or warmup_first/warmup_ceiling, not both")
        if geometric and (self.warmup_first is None or self.warmup_ceiling is None):
            raise ValueError("warmup_first and warmup_ceiling go together")
        if geometric and self.warmup_ceiling < self.warmup_first:  # type: ignore[operator]
            raise ValueError("warmup_ceiling must be at least warmup_first")
        if (bool(self.warmup_curve) or geometric) != (self.warmup_start is not None):
            raise ValueError("a warm-up needs warmup_start and a curve (warmup_curve or warmup_first)")
        if self.burst is not None and self.rate is None:
            raise ValueError("burst needs a rate")
        return self


class ThrottleSettings(Section):
    """Pacing per API key, per destination provider and per sending IP; nothing is limited by default."""

    mx_lookup: bool = False  # classify unknown domains by their MX (Workspace, Microsoft 365, Yahoo)
    api_key: ThrottleLimit | None = None  # every API key
    api_keys: dict[str, ThrottleLimit] = Field(default_factory=dict)  # by public key, overriding api_key
    providers: dict[str, ProviderThrottle] = Field(default_factory=dict)
    ips: tuple[SendingIpSettings, ...] = ()

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, providers: dict[str, ProviderThrottle]) -> dict[str, ProviderThrottle]:
        for name, provider in providers.items():
            if not _PROVIDER_NAME.match(name):
                raise ValueError(f"provider name {name!r}: lowercase letters, digits, - and _")
            if name == "other" and (provider.domains or provider.mx):
                raise ValueError("provider 'other' is everything unmatched: it takes no domains or mx")
            if name not in _BUILTIN_PROVIDERS and not (provider.domains or provider.mx):
                raise ValueError(f"provider {name!r} is not built in: give its domains or mx")
        return providers

    @field_validator("ips")
    @classmethod
    def _check_ips(cls, ips: tuple[SendingIpSettings, ...]) -> tuple[SendingIpSettings, ...]:
        addresses = [ip.address for ip in ips]
        if len(set(addresses)) != len(addresses):
            raise ValueError("each sending IP address may appear once")
        return ips


# CloudWatch's rules: namespaces of letters, digits and . - _ / # : (not AWS/...); regions like eu-west-1.
_CLOUDWATCH_NAMESPACE = re.compile(r"^[A-Za-z0-9.\-_/#:]{1,255}$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


class MetricsSettings(Section):
    """Delivery counters (``Sent``, ``Bounced``, ``Complained``) published to Amazon CloudWatch, where the
    fleet's bounce- and complaint-rate alarms read them (``mailstack.stats``, ``infra/monitoring.py``)."""

    enabled: bool = False
    namespace: str = "Mailstack"  # infra/common.py METRICS_NAMESPACE: the alarms and the IAM policy's scope
    stack: str = ""  # the value of the ``Stack`` dimension: the Pulumi stack name; required when enabled
    region: str = ""  # e.g. eu-west-1; required when enabled
    endpoint_url: str = ""  # another CloudWatch endpoint (moto in tests); empty = AWS's own
    interval_seconds: Annotated[float, Field(ge=1, le=3600)] = 60.0

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not _CLOUDWATCH_NAMESPACE.match(value) or value.startswith("AWS/"):
            raise ValueError("a CloudWatch namespace: letters, digits and . - _ / # :, not AWS/...")
        return value

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        if value and not _AWS_REGION.match(value):
            raise ValueError(f"an AWS region like eu-west-1, got {value!r}")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("an http(s) URL")
        return value

    @model_validator(mode="after")
    def _check_enabled(self) -> MetricsSettings:
        if self.enabled and not self.stack:
            raise ValueError("metrics.enabled needs metrics.stack (the Stack dimension the alarms select)")
        if self.enabled and not self.region:
            raise ValueError("metrics.enabled needs metrics.region")
        if len(self.stack) > 1024:
            raise ValueError("metrics.stack: a dimension value has at most 1024 characters")
        return self


class RetentionSettings(Section):
    """The retention purge (``mailstack.privacy``): enforces the retention policy on the database."""

    enabled: bool = True
    # How often `mailstack serve` purges; make compliance wants at most a tenth of the smallest max age.
    interval_seconds: Annotated[float, Field(ge=60, le=86_400)] = 3600.0
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 500  # rows per transaction
    # The policy file (relative to the data directory); empty = the policy shipped with mailstack, which is
    # the repository's policies/retention.yaml.
    policy_file: str = ""


class PrivacySettings(Section):
    """Encryption at rest: where the key-encryption keys come from (``mailstack.privacy.Vault``)."""

    # local: wrapped under the master secret (embedded default, owned servers); kms: AWS KMS.
    key_provider: Literal["local", "kms"] = "local"
    kms_key_id: str = ""  # key id, ARN or alias/...; required with key_provider = "kms"
    kms_region: str = ""
    kms_endpoint_url: str = ""  # another KMS endpoint (moto_server in tests); empty = AWS's own

    @model_validator(mode="after")
    def _check_kms(self) -> PrivacySettings:
        if self.key_provider == "kms" and not self.kms_key_id:
            raise ValueError("privacy.key_provider = 'kms' needs privacy.kms_key_id")
        return self


class Settings(Section):
    """Everything ``mailstack serve`` needs; paths are resolved against ``data_dir``."""

    data_dir: Path
    mail: MailSettings
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    delivery: DeliverySettings = DeliverySettings()
    queue: QueueSettings = QueueSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    throttle: ThrottleSettings = ThrottleSettings()
    smtp: SmtpSettings = SmtpSettings()
    tracking: TrackingSettings = TrackingSettings()
    stats: StatsSettings = StatsSettings()
    webhooks: WebhookSettings = WebhookSettings()
    automation: AutomationSettings = AutomationSettings()
    dashboard: DashboardSettings = DashboardSettings()
    privacy: PrivacySettings = PrivacySettings()
    metrics: MetricsSettings = MetricsSettings()
    retention: RetentionSettings = RetentionSettings()
    secret_key_file: str = "secret.key"  # noqa: S105 - a file name

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL; relative SQLite paths live in the data directory."""
        url = self.database.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return f"sqlite:///{self.data_dir / url.removeprefix('sqlite:///')}"
        return url

    @property
    def sent_is_delivery(self) -> bool:
        """Whether the relay's acceptance (the ``sent`` event) is the delivery Mailjet counts as "sent".

        Only Postfix's log ([feedback] postfix_log) tells what the destination did; without it nothing
        ever reports past the relay — the sandbox outbox, or ``--relay`` to any other MTA or smarthost —
        so the relay's 250 is the last status there will be, and counts as delivered.
        """
        return not self.delivery.relay or not self.feedback.postfix_log

    @property
    def hostname(self) -> str:
        return self.mail.hostname or f"mail.{self.mail.domain}"

    @property
    def bounce_domain(self) -> str:
        return self.mail.bounce_domain or f"bounces.{self.mail.domain}"

    @property
    def public_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        host, port = parse_hostport(self.server.http)
        return f"http://{host}:{port}"

    def secret_key(self) -> bytes:
        """The master secret (HMAC and key-encryption root): environment first, then the key file."""
        env = os.environ.get(SECRET_KEY_ENV)
        if env:
            return _decode_secret(env, SECRET_KEY_ENV)
        path = self.data_dir / self.secret_key_file
        try:
            return _decode_secret(path.read_text().strip(), str(path))
        except FileNotFoundError:
            raise ConfigError(f"secret key file {path} is missing (run `mailstack init`)") from None


def _decode_secret(text: str, source: str) -> bytes:
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{source}: the secret key must be hex") from None
    if len(secret) < 32:
        raise ConfigError(f"{source}: the secret key must be at least 32 bytes (64 hex digits)")
    return secret


def _format_validation_error(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


def load_settings(data_dir: Path, overrides: dict[str, Any] | None = None) -> Settings:
    """Read and validate ``DATA_DIR/mailstack.toml``; ``MAILSTACK_DATABASE_URL`` overrides the database.

    ``overrides`` maps section names to key/value dicts (command-line flags).
    """
    path = data_dir / CONFIG_FILE
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run `mailstack init --data-dir {data_dir}` first") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for section, values in (overrides or {}).items():
        merged = dict(raw.get(section, {}))
        merged.update(values)
        raw[section] = merged
    env_url = os.environ.get(DATABASE_URL_ENV)
    if env_url:
        raw.setdefault("database", {})
        raw["database"] = {**raw["database"], "url": env_url}
    raw["data_dir"] = data_dir
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc)) from None


def render_default_config(domain: str) -> str:
    """The commented ``mailstack.toml`` written by ``mailstack init``."""
    return f"""\
# mailstack configuration. Every key is optional unless marked required.

[mail]
domain = "{domain}"                  # required: the sending domain (DKIM d=)
# hostname = "mail.{domain}"         # Message-ID right-hand side, HELO name
# bounce_domain = "bounces.{domain}" # VERP return-path domain (MX must point at your bounce intake)
# max_recipients = 50                # To+Cc+Bcc per message (Mailjet's limit)

[server]
http = "127.0.0.1:8800"              # API listen address (HOST:PORT)
# public_url = "https://api.{domain}" # base of MessageHref and tracking links
# Load shedding (0 = off): API requests over a limit get 429 with Retry-After, before any work is done.
# max_requests_per_second = 0        # all API keys together, per serve process
# max_requests_per_second_per_key = 0 # each API key (its credentials)
# max_concurrent_requests = 0        # API requests being handled at once

[database]
url = "sqlite:///mailstack.db"       # relative to the data directory; MAILSTACK_DATABASE_URL overrides

[delivery]
relay = ""                           # HOST:PORT of Postfix; empty = keep mail in the sandbox outbox
workers = 4
# batch_size = 50
# max_attempts = 8                   # then the message is dead-lettered (failed)
# retry_base_seconds = 30            # exponential backoff base for temporary failures
# relay_starttls = false             # STARTTLS to the relay, certificate verified (a relay across a network)
# relay_ca_file = ""                 # CA bundle for that check (data-dir relative); empty = the system's

[queue]
# lease_seconds = 30                 # renewed while working; a dead node's jobs are taken over after this
# backend = "sql"                    # or "sqs" (AWS): Amazon SQS, jobs relayed from a database outbox
# sqs_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/mailstack-prod"

[feedback]
# postfix_log = "/var/log/postfix.log" # Postfix's maillog_file: per-recipient delivered/deferred/bounced
#                                    # (unset: the relay's 250 counts as delivered, nothing reports later)
# intake = "127.0.0.1:2526"          # SMTP listener for mail to the bounce domain (route it here in Postfix)
# intake_max_bytes = 10485760
# soft_bounce_limit = 3              # suppress after this many soft-bounced messages ...
# soft_bounce_days = 7               # ... within this many days ...
# soft_bounce_suppression_days = 30  # ... for this long (0 = until removed)

[smtp]
# listen = "127.0.0.1:2587"          # SMTP submission (STARTTLS, AUTH with API key:secret); off when unset
# tls_cert = "/etc/ssl/mail.pem"     # PEM certificate chain; unset = self-signed DATA_DIR/smtp-tls.pem
# tls_key = "/etc/ssl/mail.key"      # its private key (PEM)

[throttle]
# Nothing is limited unless configured. Rates are messages per second for the whole fleet; burst is how
# many may go at once (default: one second's worth). Postfix transports are rendered from these values.
# mx_lookup = false                  # also classify domains by MX (Google Workspace, Microsoft 365, Yahoo)
# api_key = {{ rate = 100, burst = 200 }}          # every API key
# api_keys."<public key>" = {{ rate = 10 }}        # one key's own limit instead
#
# [throttle.providers.google]        # gmail.com, googlemail.com; with mx_lookup also MX *.google.com
# rate = 50
# burst = 50
# concurrency = 20                   # Postfix destination concurrency for this transport (Ansible)
# domains = ["example-workspace.com"] # more domains of this provider
# [throttle.providers.microsoft]     # outlook.com, hotmail.*, live.*, msn.com; MX *.protection.outlook.com
# rate = 20
# [throttle.providers.yahoo]         # yahoo.*, ymail.com, aol.com; MX *.yahoodns.net
# rate = 10
# [throttle.providers.other]         # every other domain, each domain separately
# rate = 5
#
# [[throttle.ips]]                   # sending IPs; mail is spread over them
# address = "203.0.113.10"
# relay = "127.0.0.1:10026"          # the Postfix listener that sends from this IP (default: delivery.relay)
# rate = 20
# warmup_start = 2026-12-01          # day 1 of the warm-up (UTC); nothing is sent from the IP before
# warmup_first = 50                  # day 1's cap, times warmup_growth each day, up to warmup_ceiling,
# warmup_growth = 2.0                # which then stays the daily cap
# warmup_ceiling = 100000
# warmup_curve = [50, 100, 250, 500] # or explicit daily caps (the last one stays)

[retention]
# enabled = true                     # purge what policies/retention.yaml says is too old (docs/retention.md)
# interval_seconds = 3600            # how often serve purges (at most a tenth of the smallest max age)
# batch_size = 500                   # rows per transaction: sending never waits long
# policy_file = ""                   # empty = the policy shipped with mailstack; or a data-dir relative file

[privacy]
# key_provider = "local"             # who wraps the keys sealing personal data at rest: the master secret
#                                    # ("local"), or AWS KMS ("kms": then kms_key_id and kms_region)
# kms_key_id = "alias/mailstack"
# kms_region = "eu-west-1"

[metrics]
# enabled = false                    # publish Sent/Bounced/Complained counts to Amazon CloudWatch (AWS fleet)
# namespace = "Mailstack"            # what the fleet's alarms read and its IAM policy allows
# stack = "prod"                     # the Stack dimension: the Pulumi stack name (required when enabled)
# region = "eu-west-1"               # required when enabled
# interval_seconds = 60
"""
