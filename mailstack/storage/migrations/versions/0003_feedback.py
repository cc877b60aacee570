"""feedback: suppression list, soft-bounce history, Postfix log cursor and queue ids

Revision ID: 0003_feedback
Revises: 0002_engagement
Create Date: 2026-11-28 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_feedback"
down_revision = "0002_engagement"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("source", sa.String(length=24), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("address", "scope", name="uq_suppressions_address_scope"),
    )
    op.create_table(
        "soft_bounces",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("address", "message_id"),
    )
    op.create_table(
        "log_cursors",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("file_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "relay_queue_ids",
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("source", "queue_id"),
    )
    with op.batch_alter_table("relay_queue_ids", schema=None) as batch_op:
        batch_op.create_index("ix_relay_queue_ids_seen_at", ["seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("relay_queue_ids", schema=None) as batch_op:
        batch_op.drop_index("ix_relay_queue_ids_seen_at")
    op.drop_table("relay_queue_ids")
    op.drop_table("log_cursors")
    op.drop_table("soft_bounces")
    op.drop_table("suppressions")
