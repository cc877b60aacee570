"""Typed, validated configuration read from ``DIR/mailstack.toml`` and the environment."""

from ._automation import AutomationSettings
from ._dashboard import DashboardSettings
from ._settings import (
    CONFIG_FILE,
    ConfigError,
    DatabaseSettings,
    DeliverySettings,
    FeedbackSettings,
    MailSettings,
    MetricsSettings,
    PrivacySettings,
    QueueSettings,
    RetentionSettings,
    ServerSettings,
    Settings,
    SmtpSettings,
    ThrottleSettings,
    load_settings,
    parse_hostport,
    render_default_config,
)
from ._stats import StatsSettings
from ._tracking import TrackingSettings
from ._webhooks import WebhookSettings

__all__ = [
    "CONFIG_FILE",
    "AutomationSettings",
    "ConfigError",
    "DashboardSettings",
    "DatabaseSettings",
    "DeliverySettings",
    "FeedbackSettings",
    "MailSettings",
    "MetricsSettings",
    "PrivacySettings",
    "QueueSettings",
    "RetentionSettings",
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
