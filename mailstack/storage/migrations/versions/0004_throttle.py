"""throttle: token buckets with waitlists, per-IP daily counters (warm-up)

Revision ID: 0004_throttle
Revises: 0003_feedback
Create Date: 2026-11-28 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_throttle"
down_revision = "0003_feedback"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "throttle_buckets",
        sa.Column("key", sa.String(length=320), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("waitlist_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "throttle_daily",
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("ip", "day"),
    )


def downgrade() -> None:
    op.drop_table("throttle_daily")
    op.drop_table("throttle_buckets")
