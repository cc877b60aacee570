"""Tables of the engagement features: statistics rollups, webhooks, automation rules, dashboard users.

They hang off the same :data:`metadata` as the core tables; the Alembic revision ``engagement`` creates
them. Rollup tables are the reason statistics stay fast: a query reads at most one row per hour (or day),
provider and source, however many events were folded into them.
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
    Text,
    text,
)

from ._personal import Erasure, Form, Kind, Retention, not_personal, personal
from ._schema import Id, messages, metadata

__all__ = [
    "COUNTER_COLUMNS",
    "PURPOSE_AUTOMATION_ERROR",
    "PURPOSE_WEBHOOK_PAYLOAD",
    "automation_rules",
    "automation_runs",
    "dashboard_users",
    "event_cursors",
    "link_counters",
    "message_flags",
    "message_links",
    "stat_counters",
    "webhook_deliveries",
    "webhook_endpoints",
]

Counter = BigInteger().with_variant(Integer(), "sqlite")

# The vault purpose of automation_runs.error (mailstack.storage.Vault binds it into each blob).
PURPOSE_AUTOMATION_ERROR = "automation_runs.error"
# ... and of webhook_deliveries.payload (the Event API payload queued or logged).
PURPOSE_WEBHOOK_PAYLOAD = "webhook_deliveries.payload"

# The dashboard finds messages by recipient (blind index, see _schema) or Message-ID header.
Index("ix_messages_message_id_header", messages.c.message_id_header)

# Where each consumer of the events table (stats, webhooks, automation) has read up to.
event_cursors = Table(
    "event_cursors",
    metadata,
    Column(
        "name", String(32), primary_key=True, info=not_personal("the consumer: stats, webhooks, automation")
    ),
    Column("last_event_id", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", Float, nullable=False, server_default=text("0")),
)

# The counters of one rollup row; their names follow what they count (see mailstack.stats).
COUNTER_COLUMNS: tuple[str, ...] = (
    "processed",  # messages accepted (Mailjet's Total / AttemptedMessagesCount)
    "sent",  # messages the relay accepted
    "delivered",  # messages the destination accepted (Postfix status), when the deployment reports it
    "deferred",
    "failed",  # messages the relay refused for good or that ran out of retries
    "hard_bounced",
    "soft_bounced",
    "blocked",
    "spam",
    "unsubscribed",
    "opened",  # messages opened by a person at least once
    "clicked",  # messages with at least one human click
    "converted",
    "machine_opened",  # messages a privacy proxy fetched the pixel of (Apple MPP): not human opens
    "open_events",
    "click_events",
    "spam_events",
    "unsub_events",
    "conversion_events",
    "machine_open_events",
    "bot_click_events",
    "open_delay_sum",  # seconds from send to first human open, summed (for the average)
    "click_delay_sum",
)

stat_counters = Table(
    "stat_counters",
    metadata,
    Column("api_key_id", Id, primary_key=True),
    # "" for the API key's own totals (every campaign), else the CustomCampaign.
    Column("campaign", String(255), primary_key=True),
    Column("provider", String(16), primary_key=True),  # google | microsoft | yahoo | other
    Column("timing", String(8), primary_key=True),  # message | event (Mailjet's CounterTiming)
    Column("resolution", String(8), primary_key=True),  # hour | day
    Column("slot", BigInteger, primary_key=True),  # start of the hour or day, Unix seconds (UTC)
    *(Column(name, Counter, nullable=False, server_default=text("0")) for name in COUNTER_COLUMNS),
)

# One bit per first-time occurrence (opened, clicked, bounced...): unique counts stay unique.
message_flags = Table(
    "message_flags",
    metadata,
    Column("message_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    Column("flags", Integer, nullable=False, server_default=text("0")),
)

# Links a message's recipient clicked, so that clicks per link count each message once.
message_links = Table(
    "message_links",
    metadata,
    Column("message_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
)

# Personalised links can quote the recipient's address or a token naming them: the URL is sealed
# (mailstack.storage.seal_link_url) and found by a keyed HMAC of it, so a dump can neither read a URL nor
# test a guessed one. A URL quoting an address is sealed under that person's key and names them by blind
# index in ``subject``, so erasing them deletes the row (and shreds any copy).
link_counters = Table(
    "link_counters",
    metadata,
    Column("api_key_id", Id, primary_key=True),
    Column("campaign", String(255), primary_key=True),
    Column("position", Integer, primary_key=True),
    # Keyed HMAC of the URL (mailstack.storage.link_key).
    Column(
        "url_hash", String(32), primary_key=True, info=personal(Kind.URL, Form.INDEX, erasure=Erasure.DELETE)
    ),
    Column("url", LargeBinary, nullable=False, info=personal(Kind.URL, Form.SEALED, erasure=Erasure.DELETE)),
    Column("clicked_messages", Counter, nullable=False, server_default=text("0")),
    Column("click_events", Counter, nullable=False, server_default=text("0")),
    # Blind index of the address the URL quotes; NULL when it quotes none.
    Column("subject", String(64), info=personal(Kind.SUBJECT, Form.INDEX, erasure=Erasure.DELETE)),
    # When the link was last clicked (the latest event counted): the retention purge folds a personalised
    # row (with a subject) into its position's "(personalised link)" row once this is past the limit.
    Column("last_click_at", Float),
)
Index("ix_link_counters_subject", link_counters.c.subject)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Id, primary_key=True),
    Column("api_key_id", ForeignKey("api_keys.id"), nullable=False),
    Column("event_type", String(16), nullable=False),  # sent, open, click, bounce, blocked, spam, unsub
    Column("url", Text, nullable=False, info=not_personal("the operator's receiving endpoint")),
    Column("version", Integer, nullable=False, server_default=text("1")),  # 2 = grouped, as Mailjet
    Column("status", String(8), nullable=False, server_default="alive"),  # alive | dead
    Column("is_backup", Boolean, nullable=False, server_default=text("false")),
    Column("secret", LargeBinary, nullable=False),  # HMAC signing secret, encrypted with the keyring
    Column("created_at", Float, nullable=False),
)
Index("ix_webhook_endpoints_api_key", webhook_endpoints.c.api_key_id)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True),
    Column("endpoint_id", ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    # One event object, or a list of them when grouped; sealed JSON (it names the recipients).
    Column(
        "payload", LargeBinary, nullable=False, info=personal(Kind.EVENT, Form.SEALED, erasure=Erasure.REDACT)
    ),
    Column("event_count", Integer, nullable=False),
    Column("state", String(10), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("created_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_attempt_at", Float),
    Column("last_status", Integer),
    Column(
        "last_error",
        Text,
        info=personal(
            Kind.REPLY,
            Form.CLEAR,
            erasure=Erasure.DELETE,
            why="the receiver's answer, for the operator to see why a delivery failed",
        ),
    ),
)
Index("ix_webhook_deliveries_due", webhook_deliveries.c.state, webhook_deliveries.c.next_attempt_at)
Index("ix_webhook_deliveries_endpoint", webhook_deliveries.c.endpoint_id, webhook_deliveries.c.id)

automation_rules = Table(
    "automation_rules",
    metadata,
    Column("id", Id, primary_key=True),
    Column("api_key_id", ForeignKey("api_keys.id"), nullable=False),
    Column(
        "name",
        String(200),
        nullable=False,
        server_default="",
        info=not_personal("the operator's name for the rule"),
    ),
    Column("event_type", String(16), nullable=False),
    Column("campaign", String(255), nullable=False),
    # A Send API v3.1 message without recipients.
    Column(
        "template", JSON, nullable=False, info=not_personal("the operator's follow-up, without recipients")
    ),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", Float, nullable=False),
)
Index("ix_automation_rules_trigger", automation_rules.c.event_type, automation_rules.c.campaign)

# One run per rule and triggering message: a second open never sends the follow-up twice.
automation_runs = Table(
    "automation_runs",
    metadata,
    Column("rule_id", ForeignKey("automation_rules.id", ondelete="CASCADE"), primary_key=True),
    Column("trigger_message_id", Id, primary_key=True),
    Column("event_id", BigInteger, nullable=False),
    Column("sent_message_id", BigInteger),
    Column("created_at", Float, nullable=False),
    # Why the follow-up was refused, sealed under the trigger's recipient (errors quote addresses).
    Column("error", LargeBinary, info=personal(Kind.REPLY, Form.SEALED, erasure=Erasure.DELETE)),
)
Index("ix_automation_runs_sent", automation_runs.c.sent_message_id)

dashboard_users = Table(
    "dashboard_users",
    metadata,
    Column("id", Id, primary_key=True),
    Column(
        "username",
        String(100),
        nullable=False,
        unique=True,
        info=personal(
            Kind.NAME,
            Form.CLEAR,
            erasure=Erasure.KEEP,
            retention=Retention.KEEP,
            why="an operator's sign-in name, not a mail recipient's: kept while the account exists",
        ),
    ),
    Column("password_hash", String(255), nullable=False),  # argon2id
    Column("created_at", Float, nullable=False),
)

# Dashboard sign-in attempts per client address and per user name, one row each, shared by every process
# of the fleet (mailstack.dashboard.LoginThrottle): taken by one conditional upsert before the password is
# checked, so concurrent guesses cannot all pass a count read before any of them was recorded.
login_attempts = Table(
    "login_attempts",
    metadata,
    Column(
        "client",
        String(64),
        primary_key=True,
        info=personal(
            Kind.IP,
            Form.INDEX,
            erasure=Erasure.KEEP,
            retention=Retention.KEEP,
            why="an operator's sign-in attempts: the login throttle resets them after its window",
        ),
    ),  # keyed HMAC of "ip:<address>" or "user:<name>"
    Column("window_start", Float, nullable=False),
    Column("attempts", Integer, nullable=False),
)
Index("ix_login_attempts_window_start", login_attempts.c.window_start)
