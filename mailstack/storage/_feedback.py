"""Tables of the feedback loop: the suppression list, soft-bounce history, and the read position of
Postfix's log with the queue ids it has seen (repositories: ``_suppressions``, ``_relay_log``).

The Alembic revision ``feedback`` creates them. None of them has a foreign key to ``messages``: a
suppression must outlive the erasure of the message that caused it (otherwise deleting old mail would
start mailing dead addresses again).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ._personal import Erasure, Form, Kind, Retention, not_personal, personal
from ._schema import Id, metadata

__all__ = ["log_cursors", "relay_queue_ids", "soft_bounces", "suppressions"]

suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Id, primary_key=True),
    # The blind index of the normalised address (mailstack.storage.address_index): lookups go by it.
    Column(
        "address_index",
        String(64),
        nullable=False,
        info=personal(
            Kind.SUBJECT,
            Form.INDEX,
            erasure=Erasure.KEEP,
            retention=Retention.KEEP,
            why="the hashed entry is what keeps the address from being mailed again",
        ),
    ),
    # The address itself, sealed under its subject's key; NULL once erased (the hashed entry remains).
    Column("address", LargeBinary, info=personal(Kind.ADDRESS, Form.SEALED, erasure=Erasure.DELETE)),
    Column("scope", String(255), nullable=False),  # "global" or a sender (From) domain
    # Readable for operators, without the addresses it quoted.
    Column(
        "reason",
        Text,
        nullable=False,
        server_default="",
        info=personal(Kind.REPLY, Form.REDACTED, erasure=Erasure.DELETE),
    ),
    Column("source", String(24), nullable=False),
    Column("message_id", BigInteger),  # the message whose feedback caused it, when there is one
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),  # NULL: until removed
    UniqueConstraint("address_index", "scope", name="uq_suppressions_address_index_scope"),
)

# One row per message that soft-bounced, so "N soft bounces in M days" counts messages, not retries.
soft_bounces = Table(
    "soft_bounces",
    metadata,
    # Blind index: counting needs no address.
    Column(
        "address_index",
        String(64),
        primary_key=True,
        info=personal(Kind.SUBJECT, Form.INDEX, erasure=Erasure.DELETE),
    ),
    Column("message_id", BigInteger, primary_key=True),
    Column("created_at", Float, nullable=False),
)

# How far each node's Postfix log has been read: committed with the events those lines produced.
log_cursors = Table(
    "log_cursors",
    metadata,
    Column("name", String(255), primary_key=True, info=not_personal('"<host name>:<path>" of the log read')),
    Column("file_id", String(64), nullable=False),  # "<st_dev>:<st_ino>" of the file being read
    Column("position", BigInteger, nullable=False),  # byte offset of the first unread line
    Column("updated_at", Float, nullable=False),
)

# Postfix queue id -> mailstack message, learnt from qmgr's "from=<VERP>" line and kept until Postfix
# logs "removed", so a delivery line read after a restart still finds its message.
relay_queue_ids = Table(
    "relay_queue_ids",
    metadata,
    Column("source", String(255), primary_key=True),  # the log cursor's name: queue ids are per Postfix
    Column("queue_id", String(32), primary_key=True),
    Column("message_id", BigInteger, nullable=False),
    Column("seen_at", Float, nullable=False),
)
Index("ix_relay_queue_ids_seen_at", relay_queue_ids.c.seen_at)
