from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    http: str = "127.0.0.1:8800"
    # Base URL printed in MessageHref and used for tracking/unsubscribe links.
    public_url: str = ""
    max_body_bytes: Annotated[int, Field(gt=0)] = 30 * 1024 * 1024

    @field_validator("http")
    @classmethod
    def _check_http(cls, value: str) -> str:
        parse_hostport(value, what="server.http")
        return value


class DatabaseSettings(_Section):
    url: str = "sqlite:///mailstack.db"


class MailSettings(_Section):
    domain: str
    hostname: str = ""
    bounce_domain: str = ""
    max_recipients: Annotated[int, Field(gt=0, le=50)] = 50
    max_message_bytes: Annotated[int, Field(gt=0)] = 15 * 1024 * 1024


class DeliverySettings(_Section):
    relay: str = ""  # HOST:PORT of the SMTP relay (Postfix); empty keeps mail in the sandbox outbox
    workers: Annotated[int, Field(ge=1, le=64)] = 4
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 50
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    retry_base_seconds: Annotated[float, Field(gt=0)] = 30.0
    retry_max_seconds: Annotated[float, Field(gt=0)] = 3600.0
    smtp_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    poll_seconds: Annotated[float, Field(gt=0)] = 0.5

    @field_validator("relay")
    @classmethod
    def _check_relay(cls, value: str) -> str:
        if value:
            parse_hostport(value, what="delivery.relay")
        return value


class QueueSettings(_Section):
    lease_seconds: Annotated[float, Field(gt=0)] = 300.0


class Settings(_Section):
    """Everything ``mailstack serve`` needs; paths are resolved against ``data_dir``."""

    data_dir: Path
    mail: MailSettings
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    delivery: DeliverySettings = DeliverySettings()
    queue: QueueSettings = QueueSettings()
    secret_key_file: str = "secret.key"  # noqa: S105 - a file name

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL; relative SQLite paths live in the data directory."""
        url = self.database.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return f"sqlite:///{self.data_dir / url.removeprefix('sqlite:///')}"
        return url

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

[database]
url = "sqlite:///mailstack.db"       # relative to the data directory; MAILSTACK_DATABASE_URL overrides

[delivery]
relay = ""                           # HOST:PORT of Postfix; empty = keep mail in the sandbox outbox
workers = 4
# batch_size = 50
# max_attempts = 8                   # then the message is dead-lettered (failed)
# retry_base_seconds = 30            # exponential backoff base for temporary failures

[queue]
# lease_seconds = 300                # a crashed worker's messages are retried after this
"""
