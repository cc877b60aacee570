"""consent owner: consent records belong to the API key that requested them

Revision ID: 0011_consent_owner
Revises: 0010_login_attempts
Create Date: 2026-12-07 17:30:00

Before, one record per address and list was shared by every API key: key B read key A's records (IP
addresses included), withdrew them and used up the address's confirmation quota. Now a record is unique
per (API key, address, list), and ``api_key_id`` is required. Every record already names the key that
requested it; one without (none is expected) goes to the oldest key, the one ``mailstack init`` made.
Downgrading keeps the oldest record of each address and list.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_consent_owner"
down_revision = "0010_login_attempts"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.execute("UPDATE consents SET api_key_id = (SELECT MIN(id) FROM api_keys) WHERE api_key_id IS NULL")
    op.execute("DELETE FROM consents WHERE api_key_id IS NULL")  # only if no API key exists at all
    with op.batch_alter_table("consents") as batch:
        batch.drop_constraint("uq_consents_subject_list", type_="unique")
        batch.alter_column("api_key_id", existing_type=_Id, nullable=False)
        batch.create_unique_constraint("uq_consents_key_subject_list", ["api_key_id", "subject", "list_name"])
    op.create_index("ix_consents_subject", "consents", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_consents_subject", table_name="consents")
    op.execute(
        "DELETE FROM consents WHERE id NOT IN (SELECT MIN(id) FROM consents GROUP BY subject, list_name)"
    )
    with op.batch_alter_table("consents") as batch:
        batch.drop_constraint("uq_consents_key_subject_list", type_="unique")
        batch.alter_column("api_key_id", existing_type=_Id, nullable=True)
        batch.create_unique_constraint("uq_consents_subject_list", ["subject", "list_name"])
