"""encryption: key versions and data keys; personal data columns become sealed blobs

Revision ID: 0006_encryption
Revises: 0005_privacy
Create Date: 2026-11-27 14:00:00

A migration cannot see the master secret, so it only reshapes: text columns become binary ones that still
hold the old plaintext (UTF-8), and suppressions and soft bounces move to holding tables. The conversion
that seals them (``mailstack.privacy.convert_plaintext``) runs right after, in ``mailstack migrate`` and at
``serve`` start; it finds unconverted rows by a NULL blind index or a value that is not a sealed blob.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_encryption"
down_revision = "0005_privacy"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _to_binary(table: str, column: str, *, nullable: bool, json: bool = False) -> None:
    # PostgreSQL needs the conversion spelt out; SQLite's batch copy casts the text to a BLOB.
    using = f"convert_to({column}{'::text' if json else ''}, 'UTF8')"
    with op.batch_alter_table(table) as batch:
        batch.alter_column(
            column,
            type_=sa.LargeBinary(),
            existing_nullable=not nullable,
            nullable=nullable,
            postgresql_using=using,
        )


def upgrade() -> None:
    op.create_table(
        "key_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("provider_key_id", sa.String(length=2048), nullable=False),
        sa.Column("wrapped_kek", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "data_keys",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.Column("scope", sa.String(length=32), nullable=True),
        sa.Column("key_version", sa.Integer(), sa.ForeignKey("key_versions.version"), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subject"),
    )
    op.create_index("ix_data_keys_scope", "data_keys", ["scope"])
    op.create_index("ix_data_keys_key_version", "data_keys", ["key_version"])

    op.drop_index("ix_messages_recipient", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("recipient_index", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("recipient_domain", sa.String(length=255), server_default="", nullable=False)
        )
    _to_binary("messages", "recipient", nullable=False)
    with op.batch_alter_table("messages") as batch:
        batch.alter_column("recipient_name", server_default=None, existing_type=sa.Text())
    _to_binary("messages", "recipient_name", nullable=True)
    _to_binary("messages", "last_reply", nullable=True)
    op.create_index("ix_messages_recipient_index", "messages", ["recipient_index"])
    _to_binary("contents", "spec", nullable=False, json=True)
    _to_binary("idempotency_keys", "response", nullable=False, json=True)
    _to_binary("outbox", "rcpt_to", nullable=False)
    _to_binary("webhook_deliveries", "payload", nullable=False, json=True)

    # Suppressions and soft bounces are keyed by the address: they move aside until converted.
    op.rename_table("suppressions", "suppressions_plain")
    op.rename_table("soft_bounces", "soft_bounces_plain")
    if op.get_bind().dialect.name == "postgresql":
        # Renaming a table keeps its index and sequence names, which the new tables need.
        op.execute("ALTER INDEX suppressions_pkey RENAME TO suppressions_plain_pkey")
        op.execute("ALTER SEQUENCE suppressions_id_seq RENAME TO suppressions_plain_id_seq")
        op.execute("ALTER INDEX soft_bounces_pkey RENAME TO soft_bounces_plain_pkey")
    op.create_table(
        "suppressions",
        sa.Column("id", _Id, nullable=False),
        sa.Column("address_index", sa.String(length=64), nullable=False),
        sa.Column("address", sa.LargeBinary(), nullable=True),
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("source", sa.String(length=24), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("address_index", "scope", name="uq_suppressions_address_index_scope"),
    )
    op.create_table(
        "soft_bounces",
        sa.Column("address_index", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("address_index", "message_id"),
    )
    bind = op.get_bind()
    for holding in ("suppressions_plain", "soft_bounces_plain"):
        if bind.execute(sa.text(f"SELECT count(*) FROM {holding}")).scalar_one() == 0:  # noqa: S608
            op.drop_table(holding)


def downgrade() -> None:
    raise NotImplementedError("sealed data cannot be turned back into plaintext by a migration")
