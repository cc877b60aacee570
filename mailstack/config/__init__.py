"""Typed, validated configuration read from ``DIR/mailstack.toml`` and the environment."""

from ._engagement import (
    AutomationSettings,
    DashboardSettings,
    StatsSettings,
    TrackingSettings,
    WebhookSettings,
)
from ._settings import (
    CONFIG_FILE,
    ConfigError,
    DatabaseSettings,
    DeliverySettings,
    FeedbackSettings,
    MailSettings,
    QueueSettings,
    ServerSettings,
    Settings,
    SmtpSettings,
    ThrottleSettings,
    load_settings,
    parse_hostport,
    render_default_config,
)

__all__ = [
    "CONFIG_FILE",
    "AutomationSettings",
    "ConfigError",
    "DashboardSettings",
    "DatabaseSettings",
    "DeliverySettings",
    "FeedbackSettings",
    "MailSettings",
    "QueueSettings",
    "ServerSettings",
    "Settings",
    "SmtpSettings",
    "StatsSettings",
    "ThrottleSettings",
    "TrackingSettings",
    "WebhookSettings",
    "load_settings",
    "parse_hostport",
    "render_default_config",
]
