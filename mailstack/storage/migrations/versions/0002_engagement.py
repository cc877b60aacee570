"""engagement: event idempotency keys, statistics rollups, webhooks, automation, dashboard users

Revision ID: 0002_engagement
Revises: 0001
Create Date: 2026-11-28 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_engagement"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_COUNTER = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_COUNTERS = (
    "processed",
    "sent",
    "delivered",
    "deferred",
    "failed",
    "hard_bounced",
    "soft_bounced",
    "blocked",
    "spam",
    "unsubscribed",
    "opened",
    "clicked",
    "converted",
    "machine_opened",
    "open_events",
    "click_events",
    "spam_events",
    "unsub_events",
    "conversion_events",
    "machine_open_events",
    "bot_click_events",
    "open_delay_sum",
    "click_delay_sum",
)


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uid", sa.String(length=64), nullable=True))
        batch_op.create_index("ux_events_uid", ["uid"], unique=True)
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_recipient", ["recipient"], unique=False)
        batch_op.create_index("ix_messages_message_id_header", ["message_id_header"], unique=False)

    op.create_table(
        "event_cursors",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.Float(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "stat_counters",
        sa.Column("api_key_id", _ID, nullable=False),
        sa.Column("campaign", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("timing", sa.String(length=8), nullable=False),
        sa.Column("resolution", sa.String(length=8), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        *(sa.Column(name, _COUNTER, server_default=sa.text("0"), nullable=False) for name in _COUNTERS),
        sa.PrimaryKeyConstraint("api_key_id", "campaign", "provider", "timing", "resolution", "slot"),
    )
    op.create_table(
        "message_flags",
        sa.Column("message_id", _ID, nullable=False),
        sa.Column("flags", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_table(
        "message_links",
        sa.Column("message_id", _ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_id", "position"),
    )
    op.create_table(
        "link_counters",
        sa.Column("api_key_id", _ID, nullable=False),
        sa.Column("campaign", sa.String(length=255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url_hash", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("clicked_messages", _COUNTER, server_default=sa.text("0"), nullable=False),
        sa.Column("click_events", _COUNTER, server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("api_key_id", "campaign", "position", "url_hash"),
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", _ID, nullable=False),
        sa.Column("api_key_id", _ID, nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("status", sa.String(length=8), server_default="alive", nullable=False),
        sa.Column("is_backup", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_endpoints_api_key", ["api_key_id"], unique=False)
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _ID, nullable=False),
        sa.Column("endpoint_id", _ID, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_attempt_at", sa.Float(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_deliveries_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_webhook_deliveries_endpoint", ["endpoint_id", "id"], unique=False)
    op.create_table(
        "automation_rules",
        sa.Column("id", _ID, nullable=False),
        sa.Column("api_key_id", _ID, nullable=False),
        sa.Column("name", sa.String(length=200), server_default="", nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("campaign", sa.String(length=255), nullable=False),
        sa.Column("template", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("automation_rules", schema=None) as batch_op:
        batch_op.create_index("ix_automation_rules_trigger", ["event_type", "campaign"], unique=False)
    op.create_table(
        "automation_runs",
        sa.Column("rule_id", _ID, nullable=False),
        sa.Column("trigger_message_id", _ID, nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("sent_message_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["rule_id"], ["automation_rules.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rule_id", "trigger_message_id"),
    )
    with op.batch_alter_table("automation_runs", schema=None) as batch_op:
        batch_op.create_index("ix_automation_runs_sent", ["sent_message_id"], unique=False)
    op.create_table(
        "dashboard_users",
        sa.Column("id", _ID, nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )


def downgrade() -> None:
    for table in (
        "dashboard_users",
        "automation_runs",
        "automation_rules",
        "webhook_deliveries",
        "webhook_endpoints",
        "link_counters",
        "message_links",
        "message_flags",
        "stat_counters",
        "event_cursors",
    ):
        op.drop_table(table)
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_message_id_header")
        batch_op.drop_index("ix_messages_recipient")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ux_events_uid")
        batch_op.drop_column("uid")
