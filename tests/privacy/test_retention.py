"""The retention purge with a controlled clock, on SQLite and PostgreSQL: old delivered data goes, mail
not yet delivered stays, work is done in short batches, and every run is audited."""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, event, insert, select

from mailstack.keyring import Keyring
from mailstack.model import Address, EventType, MessageSpec, MessageStatus
from mailstack.privacy import (
    ERASED,
    POLICY_FILE,
    TABLE_RULES,
    LocalKeyProvider,
    RetentionError,
    RetentionPolicy,
    Vault,
    check_policy_tables,
    list_audit,
    load_retention,
    parse_retention,
    purge,
    record_audit,
)
from mailstack.queue import Queue, queue_for
from mailstack.storage import (
    SentRecord,
    active_suppressions,
    create_api_key,
    get_message,
    insert_messages,
    record_event,
    record_sent,
    save_idempotent_response,
    store_outbox,
    suppress,
    update_message_status,
    urgent_writes,
)
from mailstack.storage.schema import (
    consents,
    contents,
    events,
    idempotency_keys,
    messages,
    metadata,
    outbox,
    queue_jobs,
    suppressions,
    webhook_deliveries,
    webhook_endpoints,
)

DAY = 86_400.0
NOW = 1_800_000_000.0  # the controlled clock: every purge below runs "now"
SENDER = Address("news@shop.test", "Shop")


@dataclass
class World:
    engine: Engine
    vault: Vault
    queue: Queue
    api_key_id: int

    def accept(self, *recipients: str, at: float) -> list[int]:
        """One message to ``recipients`` (one content shared by all), queued at ``at``."""
        spec = MessageSpec(
            sender=SENDER,
            to=tuple(Address(r, "Ana Example") for r in recipients),
            subject="Your order",
            text="Hello Ana, your parcel is on its way.",
            custom_id="order-4711",
        )
        with self.engine.begin() as conn:
            accepted = insert_messages(conn, self.api_key_id, [spec], now=at, vault=self.vault)
            ids = [r.message_id for group in accepted for r in group]
            self.queue.enqueue(conn, ids, available_at=at)
        return ids

    def deliver(self, message_ids: list[int], *, at: float) -> None:
        """What a worker does: take the jobs, record the relay's acceptance, keep the sandbox copy."""
        leases = [lease for lease in self.queue.lease(100, 300, now=at) if lease.message_id in message_ids]
        assert {lease.message_id for lease in leases} == set(message_ids)
        with self.engine.begin() as conn:
            record_sent(
                conn,
                [
                    SentRecord(m, 1, f"250 2.0.0 Ok: queued for <{m}@example.net>", f"<{m}@mail.shop.test>")
                    for m in message_ids
                ],
                now=at,
                vault=self.vault,
            )
            for m in message_ids:
                store_outbox(
                    conn,
                    m,
                    "bounce@shop.test",
                    "ana@example.net",
                    b"Subject: hi\r\n\r\nbody",
                    now=at,
                    vault=self.vault,
                )
                record_event(
                    conn,
                    m,
                    EventType.OPEN,
                    {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0", "url": "https://shop.test/?t=tok"},
                    now=at + 60,
                    vault=self.vault,
                )
            self.queue.complete_many(conn, leases)

    def send(self, recipient: str, *, at: float) -> int:
        (message_id,) = self.accept(recipient, at=at)
        self.deliver([message_id], at=at)
        return message_id

    def message(self, message_id: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(messages).where(messages.c.id == message_id)).one()

    def content(self, message_id: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                select(contents)
                .join(messages, messages.c.content_id == contents.c.id)
                .where(messages.c.id == message_id)
            ).one()

    def rows(self, table: Any, message_id: int) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(table).where(table.c.message_id == message_id)))


@pytest.fixture
def world(engine: Engine) -> Iterator[World]:
    keyring = Keyring(secrets.token_bytes(32))
    vault = Vault(engine, keyring, LocalKeyProvider(keyring))
    with engine.begin() as conn:
        public_key, _ = create_api_key(conn)
        api_key_id = conn.execute(select(metadata.tables["api_keys"].c.id)).scalar_one()
    assert public_key
    yield World(engine, vault, queue_for(engine), api_key_id)


@pytest.fixture(scope="module")
def policy() -> RetentionPolicy:
    return load_retention()


def _variant(edit: Any) -> RetentionPolicy:
    document = yaml.safe_load(POLICY_FILE.read_text())
    document = copy.deepcopy(document)
    edit(document)
    return parse_retention(document, POLICY_FILE)


def _blank(value: Any) -> bool:
    return value in (None, ERASED, "", {})


def test_old_delivered_mail_is_anonymised_and_its_body_deleted(world: World, policy: RetentionPolicy) -> None:
    # Past the limits of delivery_logs (90 days) and message_bodies (30), not of events (395).
    old = world.send("ana@example.net", at=NOW - 100 * DAY)
    recent = world.send("bob@example.org", at=NOW - 10 * DAY)
    # A message that ran out of retries: its dead-lettered job quotes the relay's reply.
    (dead,) = world.accept("cy@example.com", at=NOW - 100 * DAY)
    (lease,) = world.queue.lease(10, 300, now=NOW - 100 * DAY)
    with world.engine.begin() as conn:
        world.queue.dead(conn, lease, error="550 5.1.1 <cy@example.com>: user unknown")
        update_message_status(conn, dead, MessageStatus.FAILED, now=NOW - 100 * DAY, vault=world.vault)
    before = world.message(old)
    old_events = world.rows(events, old)

    report = purge(world.engine, policy, now=NOW)

    row = world.message(old)
    for column in TABLE_RULES["messages"].personal:
        assert _blank(getattr(row, column)), column
    assert (row.status, row.uuid, row.recipient_domain, row.created_at) == (
        before.status,
        before.uuid,
        "example.net",
        before.created_at,
    )
    assert _blank(world.content(old).spec)  # the body is gone; the empty row keeps the record's link
    assert world.rows(outbox, old) == []
    assert world.rows(events, old) == old_events
    # Nothing recent is touched.
    assert not _blank(world.message(recent).recipient) and not _blank(world.content(recent).spec)
    assert len(world.rows(outbox, recent)) == 1
    assert _blank(world.message(dead).recipient) and world.rows(queue_jobs, dead) == []
    # The message API still answers, with the personal parts shown as erased.
    with world.engine.connect() as conn:
        shown = get_message(conn, old, world.api_key_id, vault=world.vault)
    assert shown is not None and shown.status == "sent" and "ana" not in repr(shown)
    tables = {t.table: t for c in report.classes for t in c.tables}
    assert tables["messages"].anonymised == 2 and tables["outbox"].deleted == 1
    assert tables["contents"].anonymised == 2 and tables["contents"].deleted == 0


def test_events_past_their_limit_lose_their_details(world: World, policy: RetentionPolicy) -> None:
    old = world.send("ana@example.net", at=NOW - 400 * DAY)
    purge(world.engine, policy, now=NOW)
    rows = world.rows(events, old)
    assert {row.type for row in rows} >= {"queued", "sent", "open"}  # still counted in statistics
    assert all(_blank(row.detail) for row in rows)


def test_mail_not_yet_delivered_is_never_touched(world: World, policy: RetentionPolicy) -> None:
    delivered = world.send("bob@example.org", at=NOW - 400 * DAY)
    queued = world.accept("ana@example.net", at=NOW - 400 * DAY)[0]  # still in the queue after 400 days
    deferred = world.accept("cy@example.com", at=NOW - 400 * DAY)[0]
    with world.engine.begin() as conn:
        update_message_status(conn, deferred, MessageStatus.DEFERRED, now=NOW - 399 * DAY, vault=world.vault)
    # A content shared by a delivered and a queued recipient stays for both.
    shared_done, shared_waiting = world.accept("dan@example.net", "eve@example.net", at=NOW - 400 * DAY)
    world.deliver([shared_done], at=NOW - 400 * DAY)
    kept = {m: (world.message(m), world.content(m), world.rows(events, m)) for m in (queued, deferred)}

    report = purge(world.engine, policy, now=NOW, batch_size=2)

    for message_id, (row, content, event_rows) in kept.items():
        assert world.message(message_id) == row
        assert world.content(message_id) == content
        assert world.rows(events, message_id) == event_rows
        assert len(world.rows(queue_jobs, message_id)) == 1
    assert not _blank(world.content(shared_waiting).spec)
    assert _blank(world.message(shared_done).recipient)  # its own record is anonymised
    assert not _blank(world.message(shared_waiting).recipient)
    assert _blank(world.message(delivered).recipient) and _blank(world.content(delivered).spec)
    held = {t.table: t.held for c in report.classes for t in c.tables}
    assert held["messages"] == 3 and held["contents"] == 3 and held["events"] >= 3


def test_a_large_purge_runs_in_short_batches_while_sending_goes_on(
    world: World, policy: RetentionPolicy
) -> None:
    batch = 4
    with world.engine.begin() as conn:
        for n in range(3 * batch):
            save_idempotent_response(
                conn,
                world.api_key_id,
                f"key-{n}",
                "0" * 64,
                200,
                {"Messages": [{"To": [{"Email": "a@b.test"}]}]},
                now=NOW - 3 * DAY,
                vault=world.vault,
            )
    commits: list[float] = []
    event.listen(world.engine, "commit", lambda conn: commits.append(time.monotonic()))
    sent_meanwhile: list[float] = []

    def between_batches(table: str, changed: int) -> None:
        if table != "idempotency_keys":
            return
        # Another writer (the API accepting mail) gets through at once: no transaction is held open.
        started = time.monotonic()
        world.accept("new@example.net", at=NOW)
        sent_meanwhile.append(time.monotonic() - started)

    report = purge(world.engine, policy, now=NOW, batch_size=batch, on_batch=between_batches)

    with world.engine.connect() as conn:
        assert conn.execute(select(idempotency_keys)).all() == []
    result = next(t for c in report.classes for t in c.tables if t.table == "idempotency_keys")
    assert result.deleted == 3 * batch
    assert len(sent_meanwhile) >= 3 and max(sent_meanwhile) < 5
    assert len(commits) >= 3 + len(sent_meanwhile)
    with world.engine.connect() as conn:
        fresh = conn.execute(select(messages).where(messages.c.created_at == NOW)).all()
    assert len(fresh) == len(sent_meanwhile)  # mail accepted during the purge is all there, untouched


def test_mail_is_accepted_while_a_purge_runs_in_another_thread(world: World, policy: RetentionPolicy) -> None:
    for n in range(8):
        world.send(f"r{n}@example.net", at=NOW - 100 * DAY)
    done = threading.Event()
    latencies: list[float] = []

    def keep_sending() -> None:
        # Back to back, as the API under load: accepting goes before background writers on SQLite, and
        # the purge must still get its turns (a background writer that has waited half a second is next).
        with urgent_writes():
            while not done.is_set():
                started = time.monotonic()
                world.accept("live@example.net", at=NOW)
                latencies.append(time.monotonic() - started)

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        time.sleep(0.05)
        before = len(latencies)
        report = purge(world.engine, policy, now=NOW, batch_size=4, pause_seconds=0.01)
        during = len(latencies) - before
    finally:
        done.set()
        sender.join(30)
    assert report.batches >= 6 and report.anonymised >= 16  # 8 messages and their contents, 4 at a time
    assert during >= report.batches // 2  # sending went on between the batches
    assert max(latencies) < 5
    with world.engine.connect() as conn:
        live = conn.execute(select(messages.c.status).where(messages.c.created_at == NOW)).scalars().all()
    assert len(live) == len(latencies) and set(live) == {"queued"}  # none of it touched


def test_every_run_is_audited_with_counts_and_cutoffs(world: World, policy: RetentionPolicy) -> None:
    world.send("ana@example.net", at=NOW - 100 * DAY)
    purge(world.engine, policy, now=NOW)
    with world.engine.connect() as conn:
        (entry,) = list_audit(conn, action="purge")
    assert entry.actor == "system:retention" and entry.at == NOW and entry.subject is None
    classes = entry.detail["classes"]
    assert classes["delivery_logs"]["tables"]["messages"]["anonymised"] == 1
    assert classes["delivery_logs"]["cutoff"] == NOW - 90 * DAY
    assert classes["backups"]["enforced_by"] == "infrastructure"
    assert entry.detail["policy_sha256"] == policy.digest
    assert "ana@example.net" not in repr(entry.detail)


def test_a_dry_run_counts_and_changes_nothing(world: World, policy: RetentionPolicy) -> None:
    world.send("ana@example.net", at=NOW - 400 * DAY)
    world.send("bob@example.org", at=NOW - 100 * DAY)

    def snapshot() -> dict[str, list[Any]]:
        with world.engine.connect() as conn:
            return {name: sorted(map(repr, conn.execute(select(t)))) for name, t in metadata.tables.items()}

    before = snapshot()
    dry = purge(world.engine, policy, now=NOW, dry_run=True)
    assert snapshot() == before
    real = purge(world.engine, policy, now=NOW)
    assert (dry.deleted, dry.anonymised) == (real.deleted, real.anonymised) and real.deleted > 0
    with world.engine.connect() as conn:
        assert len(list_audit(conn, action="purge")) == 1  # the real run only


def test_suppressions_keep_blocking_after_anonymisation(world: World, policy: RetentionPolicy) -> None:
    with world.engine.begin() as conn:
        suppress(
            conn,
            "ana@example.net",
            scope="global",
            reason="550 5.1.1 <ana@example.net>: user unknown",
            source="hard_bounce",
            now=NOW - 1200 * DAY,
            vault=world.vault,
        )
    purge(world.engine, policy, now=NOW)
    with world.engine.connect() as conn:
        (row,) = conn.execute(select(suppressions)).all()
        assert row.address is None and row.reason == "" and row.address_index
        blocked = active_suppressions(conn, [("ana@example.net", "shop.test")], now=NOW, vault=world.vault)
    assert blocked  # the blind index still keeps the address from being mailed again


def test_pending_webhook_deliveries_wait(world: World, policy: RetentionPolicy) -> None:
    with world.engine.begin() as conn:
        endpoint = conn.execute(
            insert(webhook_endpoints)
            .values(
                api_key_id=world.api_key_id,
                event_type="open",
                url="https://hooks.test/",
                secret=b"s",
                created_at=0,
            )
            .returning(webhook_endpoints.c.id)
        ).scalar_one()
        for state in ("delivered", "failed", "pending"):
            conn.execute(
                insert(webhook_deliveries).values(
                    endpoint_id=endpoint,
                    payload=b"sealed event for ana",
                    event_count=1,
                    state=state,
                    created_at=NOW - 40 * DAY,
                    next_attempt_at=NOW,
                )
            )
    purge(world.engine, policy, now=NOW)
    with world.engine.connect() as conn:
        assert [r.state for r in conn.execute(select(webhook_deliveries))] == ["pending"]


def test_a_policy_that_deletes_delivery_logs_deletes_the_whole_message(world: World) -> None:
    deleting = _variant(lambda d: d["classes"]["delivery_logs"].update(action="delete"))
    old = world.send("ana@example.net", at=NOW - 100 * DAY)
    waiting = world.accept("bob@example.org", at=NOW - 100 * DAY)[0]
    purge(world.engine, deleting, now=NOW)
    with world.engine.connect() as conn:
        assert conn.execute(select(messages.c.id).where(messages.c.id == old)).all() == []
    assert world.rows(events, old) == [] and world.rows(outbox, old) == []
    assert world.message(waiting).status == "queued" and world.rows(events, waiting)


def test_stopping_between_batches_leaves_the_rest_for_the_next_run(
    world: World, policy: RetentionPolicy
) -> None:
    for n in range(6):
        world.send(f"r{n}@example.net", at=NOW - 100 * DAY)
    stop = threading.Event()
    first = purge(
        world.engine, policy, now=NOW, batch_size=2, should_stop=stop.is_set, on_batch=lambda t, n: stop.set()
    )
    assert first.stopped and first.batches == 1
    second = purge(world.engine, policy, now=NOW, batch_size=2)
    assert (
        first.deleted + first.anonymised + second.deleted + second.anonymised == 6 * 3
    )  # content, message, outbox


# --- the policy and the table of personal columns ---------------------------------------------------


def test_every_column_of_a_purged_table_is_declared_personal_or_not() -> None:
    for name, rule in TABLE_RULES.items():
        columns = set(metadata.tables[name].c.keys())
        assert not set(rule.personal) & set(rule.kept), name
        assert set(rule.personal) | set(rule.kept) == columns, (
            f"{name}: classify {columns ^ (set(rule.personal) | set(rule.kept))}"
        )


def test_the_shipped_policy_is_the_repository_file_and_every_table_is_purgeable() -> None:
    policy = load_retention()
    assert (
        POLICY_FILE.resolve().read_bytes()
        == (POLICY_FILE.parents[2] / "policies" / "retention.yaml").read_bytes()
    )
    check_policy_tables(policy)
    purged = {t for c in policy.classes.values() for t in c.tables}
    assert purged == set(TABLE_RULES)
    assert purged | set(policy.exempt) >= set(metadata.tables)


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d["classes"]["events"].update(max_age_days=0), "classes.events.max_age_days"),
        (lambda d: d["classes"]["events"].update(action="shred"), "classes.events.action"),
        (lambda d: d["classes"]["events"]["tables"].append("evnets"), "classes.events.tables"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_key(world: World, edit: Any, key: str) -> None:
    with pytest.raises(RetentionError, match=key.replace(".", r"\.")):
        purge(world.engine, _variant(edit), now=NOW)
    with world.engine.connect() as conn:
        assert list_audit(conn, action="purge") == []  # refused before anything was done


def test_consent_proof_is_kept_while_relied_upon_and_the_audit_trail_for_five_years(
    world: World, policy: RetentionPolicy
) -> None:
    long_ago = NOW - 1200 * DAY

    def consent(subject: str, status: str, *, withdrawn_at: float | None = None) -> None:
        with world.engine.begin() as conn:
            conn.execute(
                insert(consents).values(
                    subject=subject,
                    api_key_id=world.api_key_id,
                    address=b"sealed",
                    list_name="news",
                    status=status,
                    requested_at=long_ago,
                    requested_ip=b"sealed",
                    withdrawn_at=withdrawn_at,
                )
            )

    consent("a" * 64, "confirmed")  # relied upon: kept however old
    consent("b" * 64, "pending")  # a double opt-in never confirmed
    consent("c" * 64, "withdrawn", withdrawn_at=long_ago)
    consent("d" * 64, "withdrawn", withdrawn_at=NOW - 10 * DAY)  # proof of the recent withdrawal stays
    with world.engine.begin() as conn:
        record_audit(
            conn, actor="cli:root", action="erase", subject="e" * 64, detail={}, now=NOW - 2000 * DAY
        )
        record_audit(conn, actor="cli:root", action="erase", subject="f" * 64, detail={}, now=NOW - 100 * DAY)

    purge(world.engine, policy, now=NOW)

    with world.engine.connect() as conn:
        assert sorted(r.subject[0] for r in conn.execute(select(consents))) == ["a", "d"]
        audited = [e.subject for e in list_audit(conn, action="erase")]
    assert audited == ["f" * 64]
