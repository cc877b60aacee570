"""sealed leftovers: clicked-link URLs and automation errors become sealed blobs

Revision ID: 0008_sealed_leftovers
Revises: 0007_hardening
Create Date: 2026-12-02 10:00:00

As in 0006, a migration cannot see the master secret, so it only reshapes: ``link_counters.url`` and
``automation_runs.error`` become binary columns still holding the old plaintext (UTF-8), and link counters
get ``subject`` (the blind index of the address a URL quotes). ``mailstack migrate`` and ``serve`` start
then run ``mailstack.privacy.convert_plaintext``, which seals them, re-keys link counters by a keyed HMAC,
moves clicked URLs out of the clear part of event details, and redacts addresses left in queue jobs' last
errors and suppression reasons written by older versions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_sealed_leftovers"
down_revision = "0007_hardening"
branch_labels = None
depends_on = None


def _to_binary(table: str, column: str, *, nullable: bool) -> None:
    # PostgreSQL needs the conversion spelt out; SQLite's batch copy casts the text to a BLOB.
    with op.batch_alter_table(table) as batch:
        batch.alter_column(
            column,
            type_=sa.LargeBinary(),
            existing_type=sa.Text(),
            existing_nullable=nullable,
            nullable=nullable,
            postgresql_using=f"convert_to({column}, 'UTF8')",
        )


def upgrade() -> None:
    _to_binary("link_counters", "url", nullable=False)
    with op.batch_alter_table("link_counters") as batch:
        batch.add_column(sa.Column("subject", sa.String(length=64), nullable=True))
    op.create_index("ix_link_counters_subject", "link_counters", ["subject"])
    _to_binary("automation_runs", "error", nullable=True)


def downgrade() -> None:
    raise NotImplementedError("sealed data cannot be turned back into plaintext by a migration")
