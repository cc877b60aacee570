"""link last click: link counters learn when their link was last clicked

Revision ID: 0009_link_last_click
Revises: 0008_sealed_leftovers
Create Date: 2026-12-03 10:00:00

``link_counters.last_click_at`` (Unix seconds) lets the retention purge fold the counters of personalised
links (rows with a ``subject``) into their position's "(personalised link)" row once their clicks are
older than the ``events`` class allows. The time of the clicks already counted is unknown: existing rows
get the time of the migration, so they age out one full period from now, never earlier.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0009_link_last_click"
down_revision = "0008_sealed_leftovers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("link_counters") as batch:
        batch.add_column(sa.Column("last_click_at", sa.Float(), nullable=True))
    op.execute(
        sa.text("UPDATE link_counters SET last_click_at = :now WHERE last_click_at IS NULL").bindparams(
            now=time.time()
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("link_counters") as batch:
        batch.drop_column("last_click_at")
