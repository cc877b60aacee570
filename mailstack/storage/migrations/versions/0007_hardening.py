"""hardening: API key scopes, the fleet-wide login throttle

Revision ID: 0007_hardening
Revises: 0006_encryption
Create Date: 2026-11-27 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_hardening"
down_revision = "0006_encryption"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Existing keys keep what they could do before scopes existed; the admin "privacy" scope is granted
    # only explicitly (mailstack apikey scopes KEY --scope privacy).
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column(
                "scopes",
                sa.String(length=200),
                nullable=False,
                server_default="send,read,webhooks,suppressions,consents",
            )
        )
    op.create_table(
        "login_failures",
        sa.Column("id", _Id, nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_failures_client_at", "login_failures", ["client", "at"])


def downgrade() -> None:
    op.drop_index("ix_login_failures_client_at", table_name="login_failures")
    op.drop_table("login_failures")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scopes")
