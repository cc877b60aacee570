"""Table definitions (SQLAlchemy Core). Alembic migrations create them; keep both in step."""

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
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from ._personal import Erasure, Form, Kind, Retention, not_personal, personal

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True),
    Column("public_key", String(64), nullable=False, unique=True),
    Column("secret_hash", String(128), nullable=False),
    Column(
        "name",
        String(200),
        nullable=False,
        server_default="",
        info=not_personal("the operator's label for the key"),
    ),
    Column("created_at", Float, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
    # Comma-separated API scopes (mailstack.storage.API_SCOPES); keys made before scopes existed get the
    # default set, which is everything they could do then (the admin-only "privacy" scope is not in it).
    Column("scopes", String(200), nullable=False, server_default="send,read,webhooks,suppressions,consents"),
)

dkim_keys = Table(
    "dkim_keys",
    metadata,
    Column("id", Id, primary_key=True),
    Column("domain", String(255), nullable=False),
    Column("selector", String(63), nullable=False),
    Column("algorithm", String(32), nullable=False),
    Column("private_key", LargeBinary, nullable=False),  # PKCS#8, encrypted with the master secret
    Column("created_at", Float, nullable=False),
    # Rotation: a new key signs only from this time on, after its DNS record has had time to spread.
    Column("activates_at", Float, nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    UniqueConstraint("domain", "selector", name="uq_dkim_keys_domain_selector"),
)

contents = Table(
    "contents",
    metadata,
    Column("id", Id, primary_key=True),
    # The MessageSpec as JSON, sealed (mailstack.storage.Vault): under its recipient's key, or the day's
    # shared key when several share it (erasure then takes the address out of it).
    Column(
        "spec", LargeBinary, nullable=False, info=personal(Kind.CONTENT, Form.SEALED, erasure=Erasure.REDACT)
    ),
    Column("created_at", Float, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("api_key_id", ForeignKey("api_keys.id"), nullable=False),
    Column("content_id", ForeignKey("contents.id"), nullable=False),
    # The recipient is personal data: sealed under its data subject's key, found by its blind index;
    # only the domain (not personal) stays readable, for statistics, pacing and provider grouping.
    Column(
        "recipient",
        LargeBinary,
        nullable=False,
        info=personal(Kind.ADDRESS, Form.SEALED, erasure=Erasure.DELETE),
    ),
    # NULL only until `mailstack migrate` converts old rows
    Column("recipient_index", String(64), info=personal(Kind.SUBJECT, Form.INDEX, erasure=Erasure.DELETE)),
    Column(
        "recipient_domain",
        String(255),
        nullable=False,
        server_default="",
        info=not_personal("a domain names no one: statistics, pacing and provider grouping read it"),
    ),
    # NULL when there is no name
    Column("recipient_name", LargeBinary, info=personal(Kind.NAME, Form.SEALED, erasure=Erasure.DELETE)),
    Column("kind", String(8), nullable=False),
    Column(
        "sender",
        String(320),
        nullable=False,
        info=personal(
            Kind.ADDRESS,
            Form.CLEAR,
            erasure=Erasure.DELETE,
            why="the sender's own From address (never a recipient's): signing, pacing and the API read it",
        ),
    ),
    Column(
        "custom_id",
        Text,
        nullable=False,
        server_default="",
        info=personal(
            Kind.IDENTIFIER,
            Form.CLEAR,
            erasure=Erasure.REDACT,
            why="the client's own reference, answered as given; erasure takes the address out of it",
        ),
    ),
    Column("campaign", Text, nullable=False, server_default=""),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column(
        "message_id_header",
        Text,
        info=personal(
            Kind.IDENTIFIER,
            Form.CLEAR,
            erasure=Erasure.DELETE,
            why="matched against replies and feedback, and searched by the dashboard",
        ),
    ),
    # Replies quote addresses.
    Column("last_reply", LargeBinary, info=personal(Kind.REPLY, Form.SEALED, erasure=Erasure.DELETE)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
Index("ix_messages_created_at", messages.c.created_at)
Index("ix_messages_recipient_index", messages.c.recipient_index)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("message_id", ForeignKey("messages.id"), nullable=False),
    Column("type", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    # Facts in clear, the rest (IPs, user agents, clicked URLs, replies) sealed: mailstack.storage._details.
    Column("detail", JSON, nullable=False, info=personal(Kind.EVENT, Form.DETAIL, erasure=Erasure.DELETE)),
    # Idempotency key of an event that may arrive twice (tracking hits, feedback); NULL when it cannot.
    Column("uid", String(64)),
)
Index("ix_events_message_id", events.c.message_id)
Index("ux_events_uid", events.c.uid, unique=True)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("api_key_id", ForeignKey("api_keys.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    # Sealed JSON: it lists the recipients (erasure takes the subject's entries out).
    Column(
        "response",
        LargeBinary,
        nullable=False,
        info=personal(Kind.ADDRESS, Form.SEALED, erasure=Erasure.REDACT),
    ),
    Column("created_at", Float, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True),
    Column("message_id", ForeignKey("messages.id"), nullable=False),
    Column(
        "mail_from",
        String(512),
        nullable=False,
        info=personal(
            Kind.ADDRESS,
            Form.CLEAR,
            erasure=Erasure.DELETE,
            why="the VERP return path: the bounce domain and the MessageID, not the recipient's address",
        ),
    ),
    Column(
        "rcpt_to",
        LargeBinary,
        nullable=False,
        info=personal(Kind.ADDRESS, Form.SEALED, erasure=Erasure.DELETE),
    ),
    # The message as it left (To and Cc included): other recipients' copies are redacted by erasure.
    Column(
        "data", LargeBinary, nullable=False, info=personal(Kind.CONTENT, Form.SEALED, erasure=Erasure.REDACT)
    ),
    Column("created_at", Float, nullable=False),
)

queue_jobs = Table(
    "queue_jobs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("message_id", ForeignKey("messages.id"), nullable=False),
    # ready → leased → (deleted when done) | ready (retry) | dead
    Column("state", String(8), nullable=False),
    # When the job is next due: available_at for ready jobs, lease expiry for leased ones.
    Column("due_at", Float, nullable=False),
    Column("lease_token", String(32)),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column(
        "last_error",
        Text,
        info=personal(
            Kind.REPLY,
            Form.REDACTED,
            erasure=Erasure.DELETE,
            retention=Retention.KEEP,
            why="the job goes when it finishes; a dead letter's goes when its message is anonymised",
        ),
    ),
    # Who holds a leased job: the node (its data directory's identity) and that node's incarnation (one
    # per start). A restarted node takes back its previous incarnations' leases at once; it renews its own
    # while it works, so the leases of a node that died expire within one lease time.
    Column("lease_node", String(64)),
    Column("lease_incarnation", BigInteger),
)
Index(
    "ix_queue_jobs_lease_node",
    queue_jobs.c.lease_node,
    postgresql_where=queue_jobs.c.state == "leased",
    sqlite_where=queue_jobs.c.state == "leased",
)
Index(
    "ix_queue_jobs_due",
    queue_jobs.c.due_at,
    postgresql_where=queue_jobs.c.state != "dead",
    sqlite_where=queue_jobs.c.state != "dead",
)

# --- throttle (mailstack.throttle): shared by every worker of a fleet, updated under row locks ---------

throttle_buckets = Table(
    "throttle_buckets",
    metadata,
    # "api:<api key id>", "provider:<name>", "provider:other:<domain>", "ip:<address>"
    Column("key", String(320), primary_key=True),
    Column("tokens", Float, nullable=False),  # refilled by elapsed time at each update
    Column("updated_at", Float, nullable=False),
    # The last retry time handed to a message that found the bucket empty; the next one gets 1/rate later.
    Column("waitlist_until", Float, nullable=False),
)

throttle_daily = Table(
    "throttle_daily",
    metadata,
    Column("ip", String(64), primary_key=True, info=not_personal("one of mailstack's own sending IPs")),
    Column("day", Integer, primary_key=True),  # UTC days since 1970-01-01
    Column("sent", Integer, nullable=False),
)
