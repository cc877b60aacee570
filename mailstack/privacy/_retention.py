"""The retention purge: mailstack enforces ``policies/retention.yaml`` on its own database.

For every data class of the policy and each of its tables, rows older than the class's ``max_age_days``
are deleted or anonymised, in batches of at most ``batch_size`` rows, each batch its own short
transaction, so the delivery workers and the API never wait long for a lock.

Mail not yet delivered is never touched (Postal's retention deletes queued mail; this one must not): a
message counts as delivered only when its status is terminal and no queue job of it is still pending, and
rows that belong to such a message — its content (shared by every recipient of a send), sandbox copy,
events, queue-id mappings — wait for it. Webhook deliveries still pending and confirmed consents (proof
relied upon) are kept the same way.

"anonymise" keeps the row, for statistics, and blanks every personal column (NULL; else empty, or
:data:`ERASED` for a sealed column, which readers show as erased data); which columns are personal is
written down once, where each column is defined (its personal-data mark, mailstack/storage), and a table
holding one must be named by a class. A row whose identity is personal (a personal
column in its primary key or a unique constraint) cannot be anonymised and is deleted instead, which the
policy always allows ("deleting earlier is always allowed"). "delete" removes the row; a row other kept
rows still point at (the content of a message whose record is only anonymised) is emptied instead.

Click counters of personalised links (``link_counters`` rows with a ``subject``) are folded, not blanked:
once their last click is past the cutoff, a batch of them is deleted (``DELETE … RETURNING`` their counts,
so a click the aggregator adds meanwhile is either in what is returned or in a new row) and the counts are
added to their position's "(personalised link)" row, sealed under the shared key and naming nobody. The
statistics keep their totals; the URL that named the person is gone. That needs the vault (to key and seal
the row): a purge without one reports these rows as held.

Classes without tables (archives, backups, exports, contacts) are enforced by the infrastructure (S3
lifecycle rules, log retention, RDS backup retention), which ``make compliance`` checks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Connection,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    cast,
    delete,
    exists,
    false,
    func,
    not_,
    null,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from mailstack.model import FINAL_STATUSES
from mailstack.observability import get_logger
from mailstack.storage import (
    ERASED,
    PERSONALISED_LINK,
    PURPOSE_LINK_URL,
    Personal,
    Retention,
    Vault,
    later_click,
    link_key,
    mark_of,
    reading,
    schema,
)

from ._audit import record_audit
from ._policy import POLICY_FILE, DataClass, RetentionError, RetentionPolicy

__all__ = [
    "AUDIT_ACTOR",
    "DELIVERED_STATUSES",
    "ERASED",
    "TABLE_RULES",
    "ClassResult",
    "PurgeReport",
    "RetentionJob",
    "TableResult",
    "TableRule",
    "check_policy_tables",
    "policy_path",
    "purge",
]

log = get_logger("mailstack.retention")

AUDIT_ACTOR = "system:retention"
DAY = 86_400.0
# Statuses after which mailstack will not try to deliver the message again (the model's precedence).
DELIVERED_STATUSES = tuple(sorted(str(status) for status in FINAL_STATUSES))
# Between two batches of the background job: lets writers waiting for SQLite's single write lock in.
BATCH_PAUSE_SECONDS = 0.02

_Predicate = Callable[[Table], ColumnElement[bool]]
_Age = Callable[[Table, float], ColumnElement[bool]]
# A table purged its own way: (the run, the table's name, its class, the cutoff) -> what was done.
_Step = Callable[["_Run", str, DataClass, float], "TableResult"]


# --- what counts as delivered ------------------------------------------------------------------------


def _delivered(message: Any) -> ColumnElement[bool]:
    """The message (a ``messages`` table or alias) is final: terminal status, no job still pending."""
    jobs = schema.queue_jobs
    pending_job = exists().where(jobs.c.message_id == message.c.id, jobs.c.state != "dead")
    return and_(message.c.status.in_(DELIVERED_STATUSES), not_(pending_job))


def _message_delivered(table: Table) -> ColumnElement[bool]:
    """No undelivered message stands behind the row's ``message_id`` (rows of deleted messages qualify)."""
    message = schema.messages.alias("m")
    return not_(exists().where(message.c.id == table.c.message_id, not_(_delivered(message))))


def _own_delivery(table: Table) -> ColumnElement[bool]:
    return _delivered(table)


def _content_delivered(table: Table) -> ColumnElement[bool]:
    """Every message sharing the content is delivered: one queued recipient keeps it for all of them."""
    message = schema.messages.alias("m")
    return not_(exists().where(message.c.content_id == table.c.id, not_(_delivered(message))))


def _webhook_done(table: Table) -> ColumnElement[bool]:
    return table.c.state != "pending"


def _consent_not_relied_upon(table: Table) -> ColumnElement[bool]:
    return table.c.status != "confirmed"


def _column_age(name: str) -> _Age:
    def older(table: Table, cutoff: float) -> ColumnElement[bool]:
        return table.c[name] < cutoff

    return older


def _message_age(table: Table, cutoff: float) -> ColumnElement[bool]:
    """For rows without a time of their own: the age of their message."""
    message = schema.messages.alias("ma")
    return exists().where(message.c.id == table.c.message_id, message.c.created_at < cutoff)


def _consent_age(table: Table, cutoff: float) -> ColumnElement[bool]:
    # Counted from the withdrawal, or from the request when it was never confirmed.
    return func.coalesce(table.c.withdrawn_at, table.c.requested_at) < cutoff


@dataclass(frozen=True, slots=True)
class TableRule:
    """How the purge treats one table.

    Which columns anonymisation blanks is not written here: the table's personal-data marks say it
    (:attr:`personal`, the columns marked personal with ``Retention.BLANK``; :attr:`kept`, the others).
    ``older`` selects the rows past the cutoff; ``guard`` the rows that may be touched at all now.
    ``cascade`` are tables whose rows point at a deleted row and go with it; ``referenced_by`` are
    (table, column) pairs whose rows, when present, keep a row from being deleted (it is emptied instead).
    """

    table: str
    older: _Age = field(default=_column_age("created_at"))
    guard: _Predicate | None = None
    cascade: tuple[str, ...] = ()
    referenced_by: tuple[tuple[str, str], ...] = ()
    # Dead-lettered queue jobs of an anonymised message go: their last error quotes the relay's reply.
    drops_dead_jobs: bool = False
    # Replaces the generic delete/anonymise (personalised link counters are folded, see the docstring).
    step: _Step | None = None

    @property
    def personal(self) -> tuple[str, ...]:
        """The columns anonymisation blanks, from the table's marks."""
        return blanked_columns(schema.metadata.tables[self.table])

    @property
    def kept(self) -> tuple[str, ...]:
        """The columns anonymisation keeps."""
        personal = set(self.personal)
        return tuple(c.name for c in schema.metadata.tables[self.table].columns if c.name not in personal)


def blanked_columns(table: Table) -> tuple[str, ...]:
    """The columns of ``table`` marked personal whose value anonymising blanks."""
    return tuple(
        column.name
        for column in table.columns
        if isinstance(mark := mark_of(column), Personal) and mark.retention is Retention.BLANK
    )


# --- personalised links ------------------------------------------------------------------------------


def _fold_personal_links(run: _Run, name: str, data_class: DataClass, cutoff: float) -> TableResult:
    """Fold the counters of personalised links last clicked before ``cutoff`` into their position's
    "(personalised link)" row (see the module docstring); counted as anonymised (deleted if the class
    deletes)."""
    table = schema.metadata.tables[name]
    action: Outcome = data_class.action
    result = TableResult(name, action, note='personalised links folded into "(personalised link)"')
    personal = table.c.subject.is_not(None)
    due = and_(personal, TABLE_RULES[name].older(table, cutoff))
    if run.vault is None:
        with reading(run.engine) as conn:
            result.held = _count(conn, table, due)
        result.note = "no vault given: personalised links past the limit are not folded"
        return result
    if run.dry_run:
        with reading(run.engine) as conn:
            _add_folded(result, _count(conn, table, due))
        return result
    # Rows counted by a version before 0009 while the migration ran have no time: they age from now.
    with run.engine.begin() as conn:
        conn.execute(
            update(table)
            .where(personal, table.c.last_click_at.is_(None))
            .values(last_click_at=run.report.now)
        )
    keys = list(table.primary_key.columns)
    label = link_key(run.vault.keyring, PERSONALISED_LINK)
    while not run.stopping():
        with run.engine.begin() as conn:
            batch = conn.execute(select(*keys).where(due).order_by(*keys).limit(run.batch_size)).all()
            if not batch:
                break
            # The condition again in the same statement: a row clicked since the select stays.
            gone = conn.execute(
                delete(table)
                .where(_keys_in(keys, batch), due)
                .returning(
                    table.c.api_key_id,
                    table.c.campaign,
                    table.c.position,
                    table.c.clicked_messages,
                    table.c.click_events,
                    table.c.last_click_at,
                )
            ).all()
            if gone:
                _add_to_label_rows(conn, run.vault, table, label, gone)
        _add_folded(result, len(gone))
        run.report.batches += 1
        if run.on_batch is not None:
            run.on_batch(name, len(gone))
        if len(batch) < run.batch_size or not gone:
            break
        if run.pause_seconds:
            time.sleep(run.pause_seconds)
    return result


def _add_folded(result: TableResult, rows: int) -> None:
    if result.action == "delete":
        result.deleted += rows
    else:
        result.anonymised += rows


def _add_to_label_rows(conn: Connection, vault: Vault, table: Table, label: str, gone: Sequence[Any]) -> None:
    """Add the counts of folded rows to the "(personalised link)" row of their (key, campaign, position)."""
    sums: dict[tuple[int, str, int], list[Any]] = {}
    for api_key_id, campaign, position, clicked, clicks, last in gone:
        entry = sums.setdefault((api_key_id, campaign, position), [0, 0, last])
        entry[0] += int(clicked)
        entry[1] += int(clicks)
        if last is not None and (entry[2] is None or last > entry[2]):
            entry[2] = last
    url = vault.seal(conn, PERSONALISED_LINK.encode("utf-8"), purpose=PURPOSE_LINK_URL, subject=None)
    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[c.name for c in table.primary_key.columns],
            set_={
                "clicked_messages": table.c.clicked_messages + statement.excluded.clicked_messages,
                "click_events": table.c.click_events + statement.excluded.click_events,
                "last_click_at": later_click(table.c.last_click_at, statement.excluded.last_click_at),
            },
        ),
        [
            {
                "api_key_id": api_key_id,
                "campaign": campaign,
                "position": position,
                "url_hash": label,
                "url": url,
                "subject": None,
                "clicked_messages": clicked,
                "click_events": clicks,
                "last_click_at": last,
            }
            for (api_key_id, campaign, position), (clicked, clicks, last) in sorted(sums.items())
        ],
    )


# How the purge treats each table a class may name; which of its columns are personal, the table's own
# marks say (mailstack/storage).
_RULES: tuple[TableRule, ...] = (
    TableRule(
        "messages",
        guard=_own_delivery,
        cascade=("events", "outbox", "message_flags", "message_links", "queue_jobs"),
        drops_dead_jobs=True,
    ),
    TableRule("contents", guard=_content_delivered, referenced_by=(("messages", "content_id"),)),
    TableRule("outbox", guard=_message_delivered),
    TableRule("events", guard=_message_delivered),
    TableRule("automation_runs"),
    TableRule("message_flags", older=_message_age, guard=_message_delivered),
    TableRule("message_links", older=_message_age, guard=_message_delivered),
    TableRule("relay_queue_ids", older=_column_age("seen_at"), guard=_message_delivered),
    TableRule("suppressions"),
    TableRule("soft_bounces"),
    TableRule("webhook_deliveries", guard=_webhook_done),
    TableRule("idempotency_keys"),
    TableRule("consents", older=_consent_age, guard=_consent_not_relied_upon),
    TableRule("audit_log", older=_column_age("at")),
    TableRule("link_counters", older=_column_age("last_click_at"), step=_fold_personal_links),
)
TABLE_RULES: Mapping[str, TableRule] = {rule.table: rule for rule in _RULES}


# --- blanking personal columns -----------------------------------------------------------------------


def _blank(column: Column[Any]) -> Any:
    """The value a personal column gets: NULL where allowed, else the empty value of its type."""
    if column.nullable:
        return null()
    if isinstance(column.type, JSON):
        return {}
    if isinstance(column.type, LargeBinary):
        return ERASED
    if isinstance(column.type, String):
        return ""
    raise RetentionError(f"cannot anonymise {column.table.name}.{column.name}: no empty {column.type}")


def _is_blank(column: Column[Any]) -> ColumnElement[bool]:
    if column.nullable:
        return column.is_(None)
    if isinstance(column.type, JSON):
        # JSON has no equality operator in PostgreSQL; its text does.
        return cast(column, Text) == "{}"
    blank: ColumnElement[bool] = column == _blank(column)
    return blank


def _identity_is_personal(table: Table, personal: Iterable[str]) -> bool:
    names = set(personal)
    if any(column.name in names for column in table.primary_key.columns):
        return True
    return any(
        isinstance(constraint, UniqueConstraint) and any(c.name in names for c in constraint.columns)
        for constraint in table.constraints
    )


# --- results -----------------------------------------------------------------------------------------

Outcome = Literal["delete", "anonymise", "none"]


@dataclass(slots=True)
class TableResult:
    """What the purge did to one table: rows deleted, anonymised (or emptied), and held back."""

    table: str
    action: Outcome
    deleted: int = 0
    anonymised: int = 0
    # Rows past the limit kept because their mail is not delivered yet (or they are otherwise relied on).
    held: int = 0
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "action": self.action,
            "deleted": self.deleted,
            "anonymised": self.anonymised,
            "held": self.held,
        }
        if self.note:
            data["note"] = self.note
        return data


@dataclass(slots=True)
class ClassResult:
    """One data class: its limit, the cutoff time it was enforced with, and its tables."""

    name: str
    action: str
    max_age_days: int
    cutoff: float
    tables: list[TableResult] = field(default_factory=list)

    @property
    def enforced_by(self) -> str:
        return "mailstack" if self.tables else "infrastructure"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "action": self.action,
            "max_age_days": self.max_age_days,
            "cutoff": self.cutoff,
            "cutoff_utc": _iso(self.cutoff),
            "enforced_by": self.enforced_by,
        }
        if self.tables:
            data["tables"] = {t.table: t.to_json() for t in self.tables}
        else:
            data["note"] = "no mailstack table: enforced by the infrastructure (S3 lifecycle, log retention)"
        return data


@dataclass(slots=True)
class PurgeReport:
    """The outcome of one run; ``to_json`` is what the audit trail records."""

    now: float
    dry_run: bool
    policy_file: str
    policy_digest: str
    batch_size: int
    classes: list[ClassResult] = field(default_factory=list)
    batches: int = 0
    stopped: bool = False
    error: str | None = None

    @property
    def deleted(self) -> int:
        return sum(t.deleted for c in self.classes for t in c.tables)

    @property
    def anonymised(self) -> int:
        return sum(t.anonymised for c in self.classes for t in c.tables)

    @property
    def held(self) -> int:
        return sum(t.held for c in self.classes for t in c.tables)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "now": self.now,
            "now_utc": _iso(self.now),
            "dry_run": self.dry_run,
            "policy_file": self.policy_file,
            "policy_sha256": self.policy_digest,
            "batch_size": self.batch_size,
            "batches": self.batches,
            "deleted": self.deleted,
            "anonymised": self.anonymised,
            "held": self.held,
            "classes": {c.name: c.to_json() for c in self.classes},
        }
        if self.stopped:
            data["stopped"] = True
        if self.error:
            data["error"] = self.error
        return data


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the purge ---------------------------------------------------------------------------------------


def check_policy_tables(policy: RetentionPolicy, metadata: MetaData | None = None) -> None:
    """Every table the policy names exists and has a :data:`TABLE_RULES` entry, and every table with a
    column marked personal that anonymising blanks is named by a class (so a new table holding an
    address cannot be missed: only tables whose personal columns are all kept on purpose may be exempt).

    ``metadata`` is the schema's (the tests pass a copy with a table added)."""
    tables = schema.metadata.tables if metadata is None else metadata.tables
    named: set[str] = set()
    for data_class in policy.classes.values():
        for name in data_class.tables:
            key = f"{policy.source}: classes.{data_class.name}.tables"
            if tables.get(name) is None:
                raise RetentionError(f"{key}: mailstack has no table {name!r}")
            if TABLE_RULES.get(name) is None:
                raise RetentionError(f"{key}: mailstack does not know how to purge table {name!r}")
            named.add(name)
    for name, table in sorted(tables.items()):
        personal = blanked_columns(table)
        if personal and name not in named:
            raise RetentionError(
                f"{policy.source}: table {name!r} holds personal data ({', '.join(personal)}) "
                "but no class names it: add it to the class that says how long it is kept"
            )


@dataclass
class _Run:
    engine: Engine
    batch_size: int
    dry_run: bool
    pause_seconds: float
    should_stop: Callable[[], bool]
    on_batch: Callable[[str, int], None] | None
    report: PurgeReport
    vault: Vault | None = None

    def stopping(self) -> bool:
        if self.should_stop():
            self.report.stopped = True
        return self.report.stopped


def purge(
    engine: Engine,
    policy: RetentionPolicy,
    *,
    now: float | None = None,
    batch_size: int = 500,
    dry_run: bool = False,
    pause_seconds: float = 0.0,
    should_stop: Callable[[], bool] | None = None,
    on_batch: Callable[[str, int], None] | None = None,
    trigger: str = "schedule",
    vault: Vault | None = None,
) -> PurgeReport:
    """Enforce ``policy`` on the database as of ``now`` (default: the current time).

    Each batch touches at most ``batch_size`` rows of one table in its own transaction; ``on_batch``
    is called after each commit with the table and the rows changed. A dry run only counts. Unless it
    is a dry run, one audit entry (actor ``system:retention``, action ``purge``) records the counts per
    class and the cutoff times, also when the run fails or is stopped half-way. ``vault`` folds the click
    counters of personalised links; without it they are reported as held.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    check_policy_tables(policy)
    now = time.time() if now is None else now
    report = PurgeReport(now, dry_run, str(policy.source), policy.digest, batch_size)
    run = _Run(
        engine, batch_size, dry_run, pause_seconds, should_stop or (lambda: False), on_batch, report, vault
    )
    try:
        for data_class in policy.classes.values():
            result = ClassResult(
                data_class.name,
                data_class.action,
                data_class.max_age_days,
                now - data_class.max_age_days * DAY,
            )
            report.classes.append(result)
            for name in data_class.tables:
                if run.stopping():
                    break
                result.tables.append(_purge_table(run, name, data_class, result.cutoff))
    except Exception as exc:
        # The type only: database errors can quote row values.
        report.error = type(exc).__name__
        raise
    finally:
        if not dry_run:
            detail = {"trigger": trigger, **report.to_json()}
            with engine.begin() as conn:
                record_audit(conn, actor=AUDIT_ACTOR, action="purge", detail=detail, now=now)
    return report


def _purge_table(run: _Run, name: str, data_class: DataClass, cutoff: float) -> TableResult:
    table = schema.metadata.tables[name]
    rule = TABLE_RULES[name]
    if rule.step is not None:
        return rule.step(run, name, data_class, cutoff)
    action: Outcome = data_class.action
    note = ""
    if action == "anonymise" and not rule.personal:
        action, note = "none", "no personal columns"
    elif action == "anonymise" and _identity_is_personal(table, rule.personal):
        action, note = "delete", "the row's key is personal: deleted instead of anonymised"
    result = TableResult(name, action, note=note)
    if action == "none":
        return result
    older = rule.older(table, cutoff)
    guard = rule.guard(table) if rule.guard is not None else true()
    personal = [table.c[c] for c in rule.personal]
    not_blank = or_(*(not_(_is_blank(c)) for c in personal)) if personal else false()
    referenced = _referenced(rule, table)
    with reading(run.engine) as conn:
        result.held = _count(conn, table, and_(older, not_(guard)))
    if action == "anonymise":
        # Rows already anonymised are not selected again.
        candidates = and_(older, guard, not_blank)
    elif referenced is not None:
        candidates = and_(older, guard, or_(not_(referenced), not_blank))
    else:
        candidates = and_(older, guard)
    if run.dry_run:
        with reading(run.engine) as conn:
            if action == "anonymise":
                result.anonymised = _count(conn, table, candidates)
            elif referenced is not None:
                result.deleted = _count(conn, table, and_(candidates, not_(referenced)))
                result.anonymised = _count(conn, table, and_(candidates, referenced))
            else:
                result.deleted = _count(conn, table, candidates)
        return result
    keys = list(table.primary_key.columns)
    # Keyset pagination where the key is a single column: each batch starts after the last one.
    after: Any = None
    while not run.stopping():
        where = candidates if after is None or len(keys) != 1 else and_(candidates, keys[0] > after)
        with run.engine.begin() as conn:
            batch = conn.execute(select(*keys).where(where).order_by(*keys).limit(run.batch_size)).all()
            if not batch:
                break
            chosen = _keys_in(keys, batch)
            # The candidate condition is checked again in the same statement: a message requeued since
            # the select is not touched.
            if action == "anonymise":
                if rule.drops_dead_jobs:
                    _drop_dead_jobs(conn, [row[0] for row in batch])
                changed = _anonymise(conn, table, personal, and_(chosen, candidates))
                result.anonymised += changed
            else:
                deleted, emptied = _delete(conn, table, rule, personal, and_(chosen, candidates), referenced)
                result.deleted += deleted
                result.anonymised += emptied
                changed = deleted + emptied
        run.report.batches += 1
        after = batch[-1][0]
        if run.on_batch is not None:
            run.on_batch(name, changed)
        if len(batch) < run.batch_size or (changed == 0 and len(keys) != 1):
            break
        if run.pause_seconds:
            time.sleep(run.pause_seconds)
    return result


def _referenced(rule: TableRule, table: Table) -> ColumnElement[bool] | None:
    if not rule.referenced_by:
        return None
    conditions = []
    for other_name, column in rule.referenced_by:
        other = schema.metadata.tables[other_name].alias(f"ref_{other_name}")
        (target,) = table.primary_key.columns
        conditions.append(exists().where(other.c[column] == target))
    return or_(*conditions)


def _keys_in(keys: list[Column[Any]], rows: Sequence[Any]) -> ColumnElement[bool]:
    if len(keys) == 1:
        return keys[0].in_([row[0] for row in rows])
    return tuple_(*keys).in_([tuple(row) for row in rows])


def _drop_dead_jobs(conn: Connection, message_ids: list[Any]) -> None:
    jobs = schema.queue_jobs
    conn.execute(delete(jobs).where(jobs.c.message_id.in_(message_ids), jobs.c.state == "dead"))


def _count(conn: Connection, table: Table, where: ColumnElement[bool]) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(where)).scalar_one())


def _anonymise(
    conn: Connection, table: Table, personal: list[Column[Any]], where: ColumnElement[bool]
) -> int:
    values = {column.name: _blank(column) for column in personal}
    return int(conn.execute(update(table).where(where).values(**values)).rowcount)


def _delete(
    conn: Connection,
    table: Table,
    rule: TableRule,
    personal: list[Column[Any]],
    where: ColumnElement[bool],
    referenced: ColumnElement[bool] | None,
) -> tuple[int, int]:
    emptied = 0
    if referenced is not None:
        if personal:
            emptied = _anonymise(conn, table, personal, and_(where, referenced))
        where = and_(where, not_(referenced))
    if rule.cascade:
        (key,) = table.primary_key.columns
        doomed = [row[0] for row in conn.execute(select(key).where(where))]
        if not doomed:
            return 0, emptied
        for name in rule.cascade:
            dependent = schema.metadata.tables[name]
            conn.execute(delete(dependent).where(dependent.c.message_id.in_(doomed)))
        where = key.in_(doomed)
    return int(conn.execute(delete(table).where(where)).rowcount), emptied


# --- running it --------------------------------------------------------------------------------------


def policy_path(data_dir: Path, policy_file: str) -> Path:
    """The policy file a deployment enforces: ``[retention] policy_file`` (relative to the data
    directory), else the policy shipped with mailstack (the repository's ``policies/retention.yaml``)."""
    if not policy_file:
        return POLICY_FILE
    path = Path(policy_file).expanduser()
    return path if path.is_absolute() else data_dir / path


class RetentionJob:
    """The purge every ``interval_seconds`` in a background thread of ``mailstack serve``."""

    def __init__(
        self,
        engine: Engine,
        policy: RetentionPolicy,
        *,
        interval_seconds: float,
        batch_size: int,
        vault: Vault | None = None,
    ) -> None:
        check_policy_tables(policy)
        self._engine = engine
        self._vault = vault
        self._policy = policy
        self._interval = interval_seconds
        self._batch_size = batch_size

    def run_once(self, stop: threading.Event | None = None) -> PurgeReport:
        """One purge now; stops between batches when ``stop`` is set."""
        report = purge(
            self._engine,
            self._policy,
            batch_size=self._batch_size,
            pause_seconds=BATCH_PAUSE_SECONDS,
            should_stop=stop.is_set if stop is not None else None,
            vault=self._vault,
        )
        log.info(
            "retention purge",
            deleted=report.deleted,
            anonymised=report.anonymised,
            held=report.held,
            batches=report.batches,
            stopped=report.stopped,
        )
        return report

    def run(self, stop: threading.Event) -> None:
        """Purge, then wait ``interval_seconds``, until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.run_once(stop)
            except Exception as exc:  # keep the schedule; the next run catches up
                log.error("retention purge failed", error=type(exc).__name__)
            stop.wait(self._interval)
