"""login attempts: the dashboard's sign-in throttle takes each attempt atomically before the password check

Revision ID: 0010_login_attempts
Revises: 0009_link_last_click
Create Date: 2026-12-07 16:30:00

``login_failures`` (one row per failure, counted before the check and written after it) let concurrent
guesses all pass the same count. ``login_attempts`` holds one counter per client address and per user
name, taken by a single conditional upsert. Its contents are short-lived: the old failures are dropped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_login_attempts"
down_revision = "0009_link_last_click"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client"),
    )
    op.create_index("ix_login_attempts_window_start", "login_attempts", ["window_start"])
    op.drop_index("ix_login_failures_client_at", table_name="login_failures")
    op.drop_table("login_failures")


def downgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", _Id, nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_failures_client_at", "login_failures", ["client", "at"])
    op.drop_index("ix_login_attempts_window_start", table_name="login_attempts")
    op.drop_table("login_attempts")
