"""``mailstack privacy purge``: run the retention purge once, or show what it would do (``--dry-run``).

``mailstack serve`` runs the same purge every ``[retention] interval_seconds``; this command is for an
operator (or cron on a node that does not serve) and for ``make compliance``, which reads its ``--json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mailstack.cli._common import fail
from mailstack.config import ConfigError, Settings, load_settings
from mailstack.keyring import Keyring
from mailstack.privacy import PurgeReport, RetentionError, Vault, load_retention, policy_path, purge
from mailstack.storage import create_storage_engine

__all__ = ["purge_command"]

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", envvar="MAILSTACK_DATA_DIR", help="Directory holding mailstack.toml and data."
    ),
]


def settings_json(settings: Settings, report: PurgeReport) -> dict[str, Any]:
    """The deployment's retention settings next to the report (``make compliance`` checks both)."""
    retention = settings.retention
    return {
        "enabled": retention.enabled,
        "interval_seconds": retention.interval_seconds,
        "batch_size": retention.batch_size,
        "policy_file": report.policy_file,
        "policy_sha256": report.policy_digest,
    }


DryRun = Annotated[bool, typer.Option("--dry-run", help="Count what would change; change nothing.")]
BatchSize = Annotated[
    int | None, typer.Option(min=1, help="Rows per transaction (default: [retention] batch_size).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


def purge_command(
    data_dir: DataDir, dry_run: DryRun = False, batch_size: BatchSize = None, as_json: AsJson = False
) -> None:
    """Retention purge: delete or anonymise rows older than policies/retention.yaml allows (mail not yet
    delivered is never touched); --dry-run only counts."""
    try:
        settings = load_settings(data_dir)
        policy = load_retention(policy_path(settings.data_dir, settings.retention.policy_file))
        keyring = Keyring(settings.secret_key())
    except (ConfigError, RetentionError) as exc:
        raise fail(str(exc)) from None
    engine = create_storage_engine(settings.database_url)
    try:
        report = purge(
            engine,
            policy,
            batch_size=batch_size or settings.retention.batch_size,
            dry_run=dry_run,
            trigger="cli",
            # Personalised links' click counters are folded into a row keyed and sealed by the vault.
            vault=Vault.from_settings(engine, keyring, settings.privacy),
        )
    except RetentionError as exc:
        raise fail(str(exc)) from None
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps({**report.to_json(), "settings": settings_json(settings, report)}))
        return
    _print(report, enabled=settings.retention.enabled)


def _print(report: PurgeReport, *, enabled: bool) -> None:
    # Plain lines, not a table: names stay whole on any terminal width and in logs.
    console = Console(highlight=False, soft_wrap=True)
    title = "Retention purge (dry run: nothing changed)" if report.dry_run else "Retention purge"
    console.print(f"{title}: policy {report.policy_file} (sha256 {report.policy_digest[:12]})")
    for data_class in report.classes:
        cutoff = data_class.to_json()["cutoff_utc"]
        limit = f"{data_class.action} after {data_class.max_age_days} days"
        if not data_class.tables:
            console.print(f"{data_class.name}: {limit}, enforced by the infrastructure")
            continue
        console.print(f"{data_class.name}: {limit} (cutoff {cutoff})")
        for result in data_class.tables:
            note = f" ({result.note})" if result.note else ""
            console.print(
                f"  {result.table:<20} deleted {result.deleted:>8}  anonymised {result.anonymised:>8}  "
                f"held {result.held:>6}{note}"
            )
    console.print(
        f"{report.deleted} deleted, {report.anonymised} anonymised in {report.batches} batches; held = older "
        "than the limit but kept (mail not yet delivered, or relied upon)."
    )
    if not enabled:
        console.print("note: [retention] enabled = false: `mailstack serve` does not purge by itself.")
