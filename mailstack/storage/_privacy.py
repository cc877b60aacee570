"""Tables of the privacy layer: the audit trail and consent records.

Neither holds a plaintext address: subjects are named by their blind index (a keyed HMAC of the
normalised address, ``mailstack.storage.address_index``) and anything else personal is encrypted.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
)

from ._personal import Erasure, Form, Kind, Retention, not_personal, personal
from ._schema import Id, metadata

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True),
    Column("at", Float, nullable=False),
    # Who acted: "cli:<os user>", "api:<public key>", "dashboard:<user>", "system:<job>".
    Column(
        "actor",
        String(200),
        nullable=False,
        info=not_personal("an operator, an API key or a job: who acted, never a data subject"),
    ),
    # What was done: export, erase, purge, consent, rotate-keys, ...
    Column("action", String(32), nullable=False),
    # The data subject's blind index, when the action concerns one address.
    Column(
        "subject",
        String(64),
        info=personal(
            Kind.SUBJECT,
            Form.INDEX,
            erasure=Erasure.KEEP,
            why="proof that the export or erasure itself happened; a keyed hash, never the address",
        ),
    ),
    # Counts and parameters; never plaintext personal data.
    Column("detail", JSON, nullable=False, info=not_personal("counts and parameters (record_audit)")),
)
Index("ix_audit_log_at", audit_log.c.at)
Index("ix_audit_log_subject", audit_log.c.subject)

consents = Table(
    "consents",
    metadata,
    Column("id", Id, primary_key=True),
    # Blind index of the address.
    Column(
        "subject", String(64), nullable=False, info=personal(Kind.SUBJECT, Form.INDEX, erasure=Erasure.DELETE)
    ),
    Column(
        "address",
        LargeBinary,
        nullable=False,
        info=personal(Kind.ADDRESS, Form.SEALED, erasure=Erasure.DELETE),
    ),
    # What was consented to, e.g. "newsletter".
    Column(
        "list_name", String(200), nullable=False, info=not_personal("the list's name, chosen by the sender")
    ),
    Column("status", String(16), nullable=False),  # pending | confirmed | withdrawn
    # The API key whose list it is: each key reads, withdraws and is rate-limited on its own records.
    Column("api_key_id", ForeignKey("api_keys.id"), nullable=False),
    Column("requested_at", Float, nullable=False),
    Column("requested_ip", LargeBinary, info=personal(Kind.IP, Form.SEALED, erasure=Erasure.DELETE)),
    Column("confirmed_at", Float),
    Column("confirmed_ip", LargeBinary, info=personal(Kind.IP, Form.SEALED, erasure=Erasure.DELETE)),
    Column("withdrawn_at", Float),
    UniqueConstraint("api_key_id", "subject", "list_name", name="uq_consents_key_subject_list"),
)
Index("ix_consents_subject", consents.c.subject)  # a data subject's records, every key's (export, erasure)

# --- envelope encryption (mailstack.storage.Vault) ------------------------------------------------------

# Key-encryption keys: each version's KEK is stored only wrapped by the key provider (the local keyring
# or a cloud KMS); rotation adds a version, re-wraps every data key under it, then drops the old one.
key_versions = Table(
    "key_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("provider", String(16), nullable=False),  # local | kms
    Column("provider_key_id", String(2048), nullable=False),  # which provider key wrapped it (KMS ARN)
    Column("wrapped_kek", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("active", Boolean, nullable=False),
)

# Data keys, wrapped by a KEK version. One per data subject (``subject`` = the address's blind index):
# deleting it crypto-shreds every copy of that subject's data, backups included. Shared keys (subject
# NULL) seal data that mixes several people. Ids are random, never reused, so a cached key is never stale.
data_keys = Table(
    "data_keys",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column(
        "subject",
        String(64),
        unique=True,
        info=personal(
            Kind.SUBJECT,
            Form.INDEX,
            erasure=Erasure.DELETE,
            retention=Retention.KEEP,
            why="a data key lives as long as what it seals; erasure deletes it (crypto-shredding)",
        ),
    ),
    Column("scope", String(32)),  # shared keys only: what they seal and when, e.g. "contents.spec:20418"
    Column("key_version", ForeignKey("key_versions.version"), nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_data_keys_scope", data_keys.c.scope)
Index("ix_data_keys_key_version", data_keys.c.key_version)
