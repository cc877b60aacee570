"""Retention of personalised links' click counters, with a controlled clock, on SQLite and PostgreSQL: a
row naming a person (``link_counters.subject``) is folded into its position's "(personalised link)" row
once its last click is older than the ``events`` class allows; totals stay, the personal URL goes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, event, insert, select, text
from support import make_store, make_vault, stored_bytes

from mailstack.model import Address, MessageSpec
from mailstack.privacy import PurgeReport, RetentionPolicy, export_subject, list_audit, load_retention, purge
from mailstack.privacy._vacuum import vacuum
from mailstack.providers import ProviderClassifier
from mailstack.stats import Aggregator, link_clicks
from mailstack.storage import (
    PERSONALISED_LINK,
    create_api_key,
    create_storage_engine,
    insert_messages,
    link_key,
)
from mailstack.storage._migrate import alembic_config
from mailstack.storage.schema import link_counters
from mailstack.tracking import TrackedEvent, store_events

DAY = 86_400.0
NOW = 1_800_000_000.0  # the controlled clock: every purge below runs "now"
OLD = NOW - 400 * DAY  # past the 395 days of the events class
RECENT = NOW - 10 * DAY
ANA = "ana.foldprobe-1a7@gmail.com"
DAN = "dan.foldprobe-2b8@outlook.com"
CY = "cy.foldprobe-3c9@yahoo.com"


def personal(address: str) -> str:
    return f"https://shop.example/welcome?email={address.replace('@', '%40')}"


SHARED = "https://shop.example/sale"


@pytest.fixture(scope="module")
def policy() -> RetentionPolicy:
    return load_retention()


@pytest.fixture
def sent(engine: Engine) -> dict[str, int]:
    """One message each to Ana, Dan, Cy and Bo (campaign "spring"), sent long ago."""
    vault = make_vault(engine)
    people = [ANA, DAN, CY, "bo@example.org"]
    with engine.begin() as conn:
        create_api_key(conn)
        spec = MessageSpec(
            sender=Address("news@example.com"),
            to=tuple(Address(p) for p in people),
            text="x",
            campaign="spring",
        )
        (accepted,) = insert_messages(conn, 1, [spec], now=OLD - DAY, vault=vault)
    return dict(zip(people, (a.message_id for a in accepted), strict=True))


def click(engine: Engine, message_id: int, position: int, url: str, at: float) -> None:
    detail = {"url": url, "position": position, "ip": "198.51.100.7", "agent": "Firefox"}
    with engine.begin() as conn:
        store_events(
            conn, [TrackedEvent(uuid.uuid4().hex, message_id, "click", at, detail)], vault=make_vault(engine)
        )


def aggregate(engine: Engine) -> None:
    Aggregator(
        make_store(engine),
        batch_size=50,
        providers=ProviderClassifier().classify,
        gap_grace_seconds=0,
    ).catch_up()


def links(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return link_clicks(conn, 1, "spring", store=make_store(engine))


def rows(engine: Engine, campaign: str | None = "spring") -> list[Any]:
    """The link rows of the campaign (None: of every campaign, the API key's totals "" included)."""
    query = select(link_counters)
    if campaign is not None:
        query = query.where(link_counters.c.campaign == campaign)
    with engine.connect() as conn:
        return sorted(conn.execute(query).all(), key=repr)


def link_result(report: PurgeReport) -> Any:
    return next(t for c in report.classes for t in c.tables if t.table == "link_counters")


@pytest.fixture
def clicked(engine: Engine, sent: dict[str, int]) -> dict[str, int]:
    """Position 1: Ana's and Dan's personalised links clicked long ago, Cy's recently; position 2: a link
    naming nobody, clicked long ago."""
    click(engine, sent[ANA], 1, personal(ANA), OLD)
    click(engine, sent[ANA], 1, personal(ANA), OLD + 60)
    click(engine, sent[DAN], 1, personal(DAN), OLD)
    click(engine, sent[CY], 1, personal(CY), RECENT)
    click(engine, sent["bo@example.org"], 2, SHARED, OLD)
    aggregate(engine)
    return sent


def test_the_aggregator_keeps_the_latest_click_time(engine: Engine, sent: dict[str, int]) -> None:
    click(engine, sent[ANA], 1, personal(ANA), OLD + 100)
    aggregate(engine)
    click(engine, sent[ANA], 1, personal(ANA), OLD)  # counted later, happened earlier
    aggregate(engine)
    (row,) = rows(engine)
    assert (row.click_events, row.last_click_at) == (2, OLD + 100)
    click(engine, sent[ANA], 1, personal(ANA), OLD + 200)
    aggregate(engine)
    (row,) = rows(engine)
    assert (row.click_events, row.last_click_at) == (3, OLD + 200)


def test_old_personalised_links_are_folded_and_totals_kept(
    engine: Engine, clicked: dict[str, int], policy: RetentionPolicy
) -> None:
    before = {r.url_hash: r for r in rows(engine)}
    vault = make_vault(engine)
    folded = [before[link_key(vault.keyring, personal(a))] for a in (ANA, DAN)]
    shared_row = before[link_key(vault.keyring, SHARED)]

    report = purge(engine, policy, now=NOW, vault=vault)

    assert links(engine) == [
        {"URL": PERSONALISED_LINK, "PositionIndex": 1, "ClickedMessagesCount": 2, "ClickedEventsCount": 3},
        {"URL": personal(CY), "PositionIndex": 1, "ClickedMessagesCount": 1, "ClickedEventsCount": 1},
        {"URL": SHARED, "PositionIndex": 2, "ClickedMessagesCount": 1, "ClickedEventsCount": 1},
    ]
    after = {r.url_hash: r for r in rows(engine)}
    assert after[link_key(vault.keyring, SHARED)] == shared_row  # naming nobody: untouched
    label = after[link_key(vault.keyring, PERSONALISED_LINK)]
    assert label.subject is None and label.last_click_at == OLD + 60
    assert link_key(vault.keyring, personal(CY)) in after  # clicked recently: kept
    result = link_result(report)
    # Ana's and Dan's rows of the campaign and of the API key's totals (campaign "").
    assert (result.anonymised, result.deleted, result.held) == (4, 0, 0)
    # The personal rows are gone: not in the table, not in the export of the person, not on disk.
    with engine.begin() as conn:
        assert export_subject(conn, vault, vault.keyring, ANA)["links"] == []
        assert export_subject(conn, vault, vault.keyring, CY)["links"] != []
    if engine.dialect.name == "sqlite":
        # The purge leaves old row versions to page reuse, as on PostgreSQL (docs/retention.md); the dump
        # of PostgreSQL below reads live rows, so rebuild SQLite's file to compare the same thing.
        vacuum(engine, ["link_counters"])
    data = stored_bytes(engine)
    for row in folded:
        assert row.url not in data and row.url_hash.encode() not in data
    assert b"foldprobe" not in data.lower()


def test_a_second_run_changes_nothing(
    engine: Engine, clicked: dict[str, int], policy: RetentionPolicy
) -> None:
    vault = make_vault(engine)
    purge(engine, policy, now=NOW, vault=vault)
    first = rows(engine, None)
    again = purge(engine, policy, now=NOW, vault=vault)
    assert rows(engine, None) == first
    assert link_result(again).anonymised == 0


def test_the_audit_entry_has_the_counts(
    engine: Engine, clicked: dict[str, int], policy: RetentionPolicy
) -> None:
    purge(engine, policy, now=NOW, vault=make_vault(engine))
    with engine.connect() as conn:
        (entry,) = list_audit(conn, action="purge")
    counted = entry.detail["classes"]["events"]["tables"]["link_counters"]
    assert (counted["anonymised"], counted["deleted"], counted["held"]) == (4, 0, 0)  # 2 links x 2 campaigns
    assert "foldprobe" not in repr(entry.detail)


def test_without_a_vault_the_rows_are_reported_held(
    engine: Engine, clicked: dict[str, int], policy: RetentionPolicy
) -> None:
    before = rows(engine, None)
    dry = purge(engine, policy, now=NOW, vault=make_vault(engine), dry_run=True)
    assert link_result(dry).anonymised == 4  # 2 links, each in the campaign and the API key's totals
    report = purge(engine, policy, now=NOW)
    assert rows(engine, None) == before
    result = link_result(report)
    assert (result.anonymised, result.held) == (0, 4) and "vault" in result.note


def test_folding_runs_in_batches(engine: Engine, clicked: dict[str, int], policy: RetentionPolicy) -> None:
    batches: list[int] = []

    def on_batch(table: str, changed: int) -> None:
        if table == "link_counters":
            batches.append(changed)

    purge(engine, policy, now=NOW, vault=make_vault(engine), batch_size=1, on_batch=on_batch)
    assert batches == [1, 1, 1, 1]  # one row each (2 links x 2 campaigns); the fifth select finds none
    assert links(engine)[0]["ClickedEventsCount"] == 3


def test_a_click_counted_while_the_batch_is_folded_keeps_its_row(
    engine: Engine, clicked: dict[str, int], policy: RetentionPolicy
) -> None:
    vault = make_vault(engine)
    ana_key = link_key(vault.keyring, personal(ANA))

    def aggregator_meanwhile(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Between the purge's select and its delete, a new click of Ana's link is counted (committed).
        if statement.lstrip().upper().startswith("DELETE FROM LINK_COUNTERS"):
            cursor.execute(
                f"UPDATE link_counters SET click_events = click_events + 1, last_click_at = {NOW}"
                f" WHERE url_hash = '{ana_key}'"
            )

    event.listen(engine, "before_cursor_execute", aggregator_meanwhile)
    try:
        report = purge(engine, policy, now=NOW, vault=vault)
    finally:
        event.remove(engine, "before_cursor_execute", aggregator_meanwhile)
    assert link_result(report).anonymised == 2  # Dan's only (in the campaign and the API key's totals)
    by_url = {(e["URL"], e["PositionIndex"]): e["ClickedEventsCount"] for e in links(engine)}
    assert by_url[(personal(ANA), 1)] == 3 and by_url[(PERSONALISED_LINK, 1)] == 1


@pytest.fixture
def engine_at_0008(db_url: str) -> Iterator[Engine]:
    engine = create_storage_engine(db_url)
    config = alembic_config()
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0008_sealed_leftovers")
        conn.commit()
    try:
        yield engine
    finally:
        engine.dispose()


def test_the_migration_dates_existing_rows_now(engine_at_0008: Engine) -> None:
    engine = engine_at_0008
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO link_counters (api_key_id, campaign, position, url_hash, url, clicked_messages,"
                " click_events, subject) VALUES (1, 'spring', 1, 'h', :url, 1, 1, 's')"
            ),
            {"url": b"\x02sealed"},
        )
    started = time.time()
    config = alembic_config()
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0009_link_last_click")
        conn.commit()
    with engine.connect() as conn:
        (stamped,) = conn.execute(select(link_counters.c.last_click_at)).scalars().all()
    assert started - 1 <= stamped <= time.time() + 1
    with engine.begin() as conn:  # and new rows may still be written without it (older nodes)
        conn.execute(
            insert(link_counters).values(
                api_key_id=1,
                campaign="c",
                position=1,
                url_hash="h2",
                url=b"x",
                clicked_messages=1,
                click_events=1,
            )
        )


def test_the_command_passes_its_vault(tmp_path: Path) -> None:
    mailstack = str(Path(sys.executable).parent / "mailstack")
    data_dir = str(tmp_path / "data")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([mailstack, *args], capture_output=True, text=True, check=False, timeout=120)

    assert run("init", "--data-dir", data_dir, "--domain", "shop.example", "--json").returncode == 0
    result = run("privacy", "purge", "--data-dir", data_dir, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    counted = json.loads(result.stdout)["classes"]["events"]["tables"]["link_counters"]
    assert counted["held"] == 0 and "vault" not in counted["note"]
