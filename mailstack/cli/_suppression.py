"""``mailstack suppression list|add|remove``: the suppression list from the command line."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mailstack.cli._common import fail, open_storage
from mailstack.storage import (
    Suppression,
    parse_scope,
    valid_address,
    valid_expiry,
)

__all__ = ["suppression_app"]

suppression_app = typer.Typer(
    help="The suppression list: addresses mail is never sent to (bounced, complained, unsubscribed).",
    no_args_is_help=True,
)
DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", envvar="MAILSTACK_DATA_DIR", help="Directory holding mailstack.toml and data."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (one object per line) instead of a table.")]
Scope = Annotated[str | None, typer.Option(help="'global' or a sender domain.")]


def _iso(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _json(entry: Suppression) -> str:
    return json.dumps(
        {
            "email": entry.address,
            "scope": entry.scope,
            "reason": entry.reason,
            "source": entry.source,
            "message_id": entry.message_id,
            "created_at": entry.created_at,
            "expires_at": entry.expires_at,
        }
    )


def _scope(value: str | None, default: str | None) -> str | None:
    if value is None:
        return default
    scope = parse_scope(value)
    if scope is None:
        raise fail(f"--scope must be 'global' or a domain, not {value!r}")
    return scope


@suppression_app.command("list")
def list_command(
    data_dir: DataDir,
    email: Annotated[str | None, typer.Option(help="Only this address.")] = None,
    scope: Scope = None,
    include_expired: Annotated[bool, typer.Option("--all", help="Include expired entries.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 100,
    as_json: AsJson = False,
) -> None:
    """Suppressed addresses, newest first."""
    with open_storage(data_dir) as store, store.connect() as conn:
        entries = store.suppressions.list(
            conn, address=email, scope=_scope(scope, None), include_expired=include_expired, limit=limit
        )
    if as_json:
        for entry in entries:
            print(_json(entry))
        return
    rows = [
        (
            entry.address,
            entry.scope,
            entry.source,
            entry.reason,
            _iso(entry.created_at),
            _iso(entry.expires_at) or "until removed",
        )
        for entry in entries
    ]
    if not sys.stdout.isatty():
        # Piped: whole lines (a table would be cut to 80 columns), tab-separated for cut and awk.
        for row in rows:
            print("\t".join(row))
        return
    table = Table("email", "scope", "source", "reason", "since", "until")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@suppression_app.command("add")
def add_command(
    data_dir: DataDir,
    email: Annotated[str, typer.Argument(help="The address to suppress.")],
    scope: Scope = None,
    reason: Annotated[str, typer.Option(help="Why (kept with the entry).")] = "added by hand",
    expires_in_days: Annotated[
        float | None, typer.Option(min=0, help="Lift the suppression after this many days.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Suppress an address everywhere (default) or for one sender domain."""
    address = valid_address(email)
    if address is None:
        raise fail(f"{email!r} is not an email address")
    chosen = _scope(scope, "global")
    assert chosen is not None
    now = time.time()
    expires_at = now + expires_in_days * 86400 if expires_in_days is not None else None
    try:
        valid_expiry(expires_at)
    except ValueError as exc:
        raise fail(f"--expires-in-days: {exc}") from None
    with open_storage(data_dir) as store, store.begin() as conn:
        store.suppressions.suppress(
            conn,
            address,
            scope=chosen,
            reason=reason,
            source="manual",
            now=now,
            expires_at=expires_at,
            replace=True,
        )
        (entry,) = store.suppressions.list(conn, address=address, scope=chosen, include_expired=True, limit=1)
    print(_json(entry) if as_json else f"suppressed {entry.address} ({entry.scope})")


@suppression_app.command("remove")
def remove_command(
    data_dir: DataDir,
    email: Annotated[str, typer.Argument(help="The address to mail again.")],
    scope: Scope = None,
) -> None:
    """Remove an address from the list (every scope unless --scope); exits 1 if it was not there."""
    address = valid_address(email)
    if address is None:
        raise fail(f"{email!r} is not an email address")
    with open_storage(data_dir) as store, store.begin() as conn:
        removed = store.suppressions.unsuppress(conn, address, scope=_scope(scope, None))
    if not removed:
        raise fail(f"{address} is not suppressed", code=1)
    print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} for {address}")
