"""privacy: audit trail and consent records

Revision ID: 0005_privacy
Revises: 0004_throttle
Create Date: 2026-11-27 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_privacy"
down_revision = "0004_throttle"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", _Id, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_subject", "audit_log", ["subject"])
    op.create_table(
        "consents",
        sa.Column("id", _Id, nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("address", sa.LargeBinary(), nullable=False),
        sa.Column("list_name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("api_key_id", _Id, sa.ForeignKey("api_keys.id"), nullable=True),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("requested_ip", sa.LargeBinary(), nullable=True),
        sa.Column("confirmed_at", sa.Float(), nullable=True),
        sa.Column("confirmed_ip", sa.LargeBinary(), nullable=True),
        sa.Column("withdrawn_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subject", "list_name", name="uq_consents_subject_list"),
    )


def downgrade() -> None:
    op.drop_table("consents")
    op.drop_index("ix_audit_log_subject", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
