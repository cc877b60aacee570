"""Fixtures shared by the whole suite: real databases (SQLite files, PostgreSQL on 127.0.0.1:5432)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller
from serve_support import instance, mailstack_env
from sqlalchemy import Engine
from support import SmtpSink, free_port

from mailstack.storage import create_storage_engine, migrate

__all__ = ["instance", "mailstack_env"]  # fixtures of the tests that run mailstack as a subprocess

PG_ADMIN_URL = os.environ.get("MAILSTACK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required at {PG_ADMIN_URL} (trust auth) and is not reachable: {exc}. "
            "Start it: pg_ctlcluster --skip-systemctl-redirect 15 main start",
            pytrace=False,
        )


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"mailstack_test_{secrets.token_hex(6)}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mailstack.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mailstack.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on each backend."""
    engine = create_storage_engine(db_url)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    port = free_port()
    sink = SmtpSink("127.0.0.1", port)
    controller = Controller(sink, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
