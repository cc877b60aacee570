"""Tables of the privacy layer: the audit trail and consent records.

Neither holds a plaintext address: subjects are named by their blind index (a keyed HMAC of the
normalised address, ``mailstack.privacy.address_index``) and anything else personal is encrypted.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, ForeignKey, Index, LargeBinary, String, Table, UniqueConstraint

from ._schema import Id, metadata

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True),
    Column("at", Float, nullable=False),
    # Who acted: "cli:<os user>", "api:<public key>", "dashboard:<user>", "system:<job>".
    Column("actor", String(200), nullable=False),
    # What was done: export, erase, purge, consent, rotate-keys, ...
    Column("action", String(32), nullable=False),
    # The data subject's blind index, when the action concerns one address.
    Column("subject", String(64)),
    # Counts and parameters; never plaintext personal data.
    Column("detail", JSON, nullable=False),
)
Index("ix_audit_log_at", audit_log.c.at)
Index("ix_audit_log_subject", audit_log.c.subject)

consents = Table(
    "consents",
    metadata,
    Column("id", Id, primary_key=True),
    Column("subject", String(64), nullable=False),  # blind index of the address
    Column("address", LargeBinary, nullable=False),  # encrypted
    Column("list_name", String(200), nullable=False),  # what was consented to, e.g. "newsletter"
    Column("status", String(16), nullable=False),  # pending | confirmed | withdrawn
    Column("api_key_id", ForeignKey("api_keys.id")),
    Column("requested_at", Float, nullable=False),
    Column("requested_ip", LargeBinary),  # encrypted
    Column("confirmed_at", Float),
    Column("confirmed_ip", LargeBinary),  # encrypted
    Column("withdrawn_at", Float),
    UniqueConstraint("subject", "list_name", name="uq_consents_subject_list"),
)
