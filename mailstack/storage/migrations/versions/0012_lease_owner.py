"""lease owner: queue leases carry the node and incarnation that hold them

Revision ID: 0012_lease_owner
Revises: 0011_consent_owner
Create Date: 2026-12-10 10:00:00

A restarted node takes back the leases of its previous incarnation at start instead of waiting for them
to expire, and renews its current leases while it works (so that they can be short). Existing leases
have no owner: they expire as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_lease_owner"
down_revision = "0011_consent_owner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queue_jobs") as batch:
        batch.add_column(sa.Column("lease_node", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_incarnation", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_queue_jobs_lease_node",
        "queue_jobs",
        ["lease_node"],
        postgresql_where=sa.text("state = 'leased'"),
        sqlite_where=sa.text("state = 'leased'"),
    )


def downgrade() -> None:
    op.drop_index("ix_queue_jobs_lease_node", table_name="queue_jobs")
    with op.batch_alter_table("queue_jobs") as batch:
        batch.drop_column("lease_incarnation")
        batch.drop_column("lease_node")
