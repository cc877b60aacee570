"""``mailstack privacy``: data-subject rights (export, erase) and re-keying of the data at rest.

``export`` prints everything held about an address as JSON; ``erase`` deletes it, crypto-shreds what is
left (the subject's data key goes), takes it out of what others share, keeps a hashed suppression so the
address is never mailed again, then vacuums the tables it changed (old row versions left on disk);
``rotate-keys`` makes a new key-encryption key and re-wraps every data key under it, without downtime.
Each is recorded in the audit trail as ``cli:<os user>``.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated

import typer

from mailstack.cli._common import fail, open_storage
from mailstack.privacy import erase_subject, export_subject, record_audit, vacuum_erased
from mailstack.storage import valid_address

__all__ = ["privacy_app"]

privacy_app = typer.Typer(
    help="Data-subject rights (export, erase) and rotation of the encryption keys.", no_args_is_help=True
)
DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", envvar="MAILSTACK_DATA_DIR", help="Directory holding mailstack.toml and data."
    ),
]
Address = Annotated[str, typer.Argument(help="The data subject's email address.")]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli:unknown"


def _address(value: str) -> str:
    address = valid_address(value)
    if address is None:
        raise fail(f"{value!r} is not an email address")
    return address


@privacy_app.command("export")
def export_command(address: Address, data_dir: DataDir) -> None:
    """Print everything held about ADDRESS as JSON (messages with events, suppressions, consents...)."""
    email = _address(address)
    with open_storage(data_dir) as store, store.begin() as conn:
        data = export_subject(conn, store.vault, store.keyring, email, actor=_actor())
    print(json.dumps(data, indent=2, ensure_ascii=False))


@privacy_app.command("erase")
def erase_command(
    address: Address,
    data_dir: DataDir,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase ADDRESS for good; it stays suppressed (hashed) so it is never mailed again."""
    email = _address(address)
    if not yes and not typer.confirm(f"Erase everything about {email}? This cannot be undone"):
        raise fail("nothing erased", code=1)
    with open_storage(data_dir) as store:
        with store.begin() as conn:
            report = erase_subject(conn, store.vault, store.keyring, email, actor=_actor())
        # After the commit: the old row versions the database still holds on disk are reclaimed.
        vacuumed = vacuum_erased(store.engine)
    print(json.dumps({**report.as_dict(), "vacuumed": vacuumed}))


@privacy_app.command("rotate-keys")
def rotate_command(
    data_dir: DataDir,
    batch: Annotated[int, typer.Option(min=1, help="Data keys re-wrapped per transaction.")] = 500,
) -> None:
    """Make a new key-encryption key and re-wrap every data key under it (sending continues meanwhile)."""
    with open_storage(data_dir) as store, store.connect() as conn:
        report = store.vault.rotate(conn, batch=batch)
        record_audit(conn, actor=_actor(), action="rotate-keys", detail=report.as_dict())
        conn.commit()
    print(json.dumps(report.as_dict()))
