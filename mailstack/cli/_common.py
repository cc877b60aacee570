"""What the CLI's command groups share: the error line and exit, and opening a data directory's storage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine

from mailstack.config import ConfigError, load_settings
from mailstack.keyring import Keyring
from mailstack.privacy import Vault
from mailstack.storage import create_storage_engine

__all__ = ["fail", "open_storage"]

_err = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; raise the returned exit (status ``code``)."""
    _err.print(f"[red]error:[/red] {escape(message)}", highlight=False)  # user text is never markup
    return typer.Exit(code)


@contextmanager
def open_storage(data_dir: Path) -> Iterator[tuple[Engine, Keyring, Vault]]:
    """The database of ``data_dir`` with its keyring and vault (addresses are sealed and looked up by
    blind index: both need them); a configuration error exits with its message."""
    try:
        settings = load_settings(data_dir)
        keyring = Keyring(settings.secret_key())
    except ConfigError as exc:
        raise fail(str(exc)) from None
    engine = create_storage_engine(settings.database_url)
    try:
        yield engine, keyring, Vault.from_settings(engine, keyring, settings.privacy)
    finally:
        engine.dispose()
