"""Typed, validated configuration read from ``DIR/mailstack.toml`` and the environment."""

from ._settings import (
    CONFIG_FILE,
    ConfigError,
    DatabaseSettings,
    DeliverySettings,
    MailSettings,
    QueueSettings,
    ServerSettings,
    Settings,
    load_settings,
    parse_hostport,
    render_default_config,
)

__all__ = [
    "CONFIG_FILE",
    "ConfigError",
    "DatabaseSettings",
    "DeliverySettings",
    "MailSettings",
    "QueueSettings",
    "ServerSettings",
    "Settings",
    "load_settings",
    "parse_hostport",
    "render_default_config",
]
