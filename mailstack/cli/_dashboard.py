"""``mailstack dashboard user-add|passwd``: the people who may sign in to the dashboard."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mailstack.cli._common import fail
from mailstack.config import ConfigError, load_settings
from mailstack.storage import create_storage_engine, migrate

__all__ = ["dashboard_app"]

dashboard_app = typer.Typer(help="Dashboard users (sign-in at /dashboard).", no_args_is_help=True)
DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", envvar="MAILSTACK_DATA_DIR", help="Directory holding mailstack.toml and data."
    ),
]
Username = Annotated[str, typer.Option("--username", help="The name to sign in with.")]
FromStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin (scripts).")
]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@dashboard_app.command("user-add")
def user_add(data_dir: DataDir, username: Username, password_stdin: FromStdin = False) -> None:
    """Add a dashboard user (the password is stored as an argon2id hash)."""
    from mailstack.dashboard import create_user

    try:
        settings = load_settings(data_dir)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    password = _password(password_stdin)
    engine = create_storage_engine(settings.database_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            user = create_user(conn, username, password)
    except ValueError as exc:
        raise fail(str(exc)) from None
    finally:
        engine.dispose()
    print(f"Added dashboard user {user.username}")


@dashboard_app.command("passwd")
def passwd(data_dir: DataDir, username: Username, password_stdin: FromStdin = False) -> None:
    """Change a dashboard user's password (their open sessions end)."""
    from mailstack.dashboard import set_password

    try:
        settings = load_settings(data_dir)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    password = _password(password_stdin)
    engine = create_storage_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            changed = set_password(conn, username, password)
    except ValueError as exc:
        raise fail(str(exc)) from None
    finally:
        engine.dispose()
    if not changed:
        raise fail(f"no dashboard user {username!r}")
    print(f"Password of {username} changed")
