"""Personal-data marks: every column that looks personal says so either way, where it is defined, and each
personal mark carries its rules (how erasure and retention treat it, why it may be readable)."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, LargeBinary, MetaData, String, Table

import mailstack.storage as storage
from mailstack.privacy import _consent
from mailstack.storage import (
    Erasure,
    Form,
    Kind,
    Personal,
    Retention,
    looks_personal,
    mark_of,
    not_personal,
    personal,
    personal_columns,
    sealed_purpose,
)
from mailstack.storage.schema import metadata


def test_every_column_that_looks_personal_is_marked_personal_or_not() -> None:
    unmarked = [
        f"{table.name}.{column.name}"
        for table in metadata.sorted_tables
        for column in table.columns
        if looks_personal(column) and mark_of(column) is None
    ]
    assert unmarked == [], "mark these with personal(...) or not_personal(why)"


@pytest.mark.parametrize(
    "name", ["email", "recipient_phone", "client_ip", "display_name", "mail_from", "html_body", "user_agent"]
)
def test_a_new_column_named_like_personal_data_needs_a_mark(name: str) -> None:
    table = Table(
        "contacts", MetaData(), Column("id", String(10), primary_key=True), Column(name, String(50))
    )
    assert looks_personal(table.c[name]) and mark_of(table.c[name]) is None
    marked = Column(name, String(50), info=not_personal("a test"))
    assert mark_of(marked) is not None


def test_a_personal_mark_must_say_why_it_is_readable_or_kept() -> None:
    with pytest.raises(ValueError, match="say why"):
        personal(Kind.ADDRESS, Form.CLEAR, erasure=Erasure.DELETE)
    with pytest.raises(ValueError, match="say why"):
        personal(Kind.SUBJECT, Form.INDEX, erasure=Erasure.KEEP)
    with pytest.raises(ValueError, match="say why"):
        personal(Kind.SUBJECT, Form.INDEX, erasure=Erasure.DELETE, retention=Retention.KEEP)
    with pytest.raises(ValueError, match="say why"):
        not_personal(" ")
    # Sealed data needs no excuse.
    assert isinstance(personal(Kind.ADDRESS, Form.SEALED, erasure=Erasure.DELETE)["personal"], Personal)


def test_every_sealed_column_is_sealed_under_its_own_name() -> None:
    sealed = {
        sealed_purpose(column)
        for _table, column, mark in personal_columns(metadata)
        if mark.form in (Form.SEALED, Form.DETAIL)
    }
    # The purposes the repositories seal and open with (bound into every blob already written).
    used = {value for name, value in vars(storage).items() if name.startswith("PURPOSE_")}
    used |= {_consent._ADDRESS, _consent._REQUESTED_IP, _consent._CONFIRMED_IP}
    assert sealed == used


def test_addresses_of_recipients_are_never_stored_readable() -> None:
    readable = {
        f"{table.name}.{column.name}"
        for table, column, mark in personal_columns(metadata)
        if mark.kind in (Kind.ADDRESS, Kind.NAME, Kind.IP, Kind.CONTENT) and mark.form is Form.CLEAR
    }
    # The sender's own address, the VERP return path and operators' sign-in names: each says why.
    assert readable == {"messages.sender", "outbox.mail_from", "dashboard_users.username"}


def test_marks_survive_a_copy_of_the_schema() -> None:
    copy = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(copy)
    extra = Table(
        "contacts",
        copy,
        Column("id", String(10), primary_key=True),
        Column("email", LargeBinary, info=personal(Kind.ADDRESS, Form.SEALED, erasure=Erasure.DELETE)),
    )
    found = {(t.name, c.name) for t, c, _m in personal_columns(copy)}
    assert ("contacts", "email") in found and ("messages", "recipient") in found
    assert sealed_purpose(extra.c.email) == "contacts.email"
