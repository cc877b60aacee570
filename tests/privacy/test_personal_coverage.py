"""Retention, erasure and export follow the personal-data marks of the schema: a new table (or column)
holding an address, without a rule for how long it is kept and how a data subject is erased and exported
from it, fails these checks instead of being silently missed."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import BigInteger, Column, Engine, LargeBinary, MetaData, String, Table
from support import make_vault

from mailstack.keyring import Keyring
from mailstack.model import Address, MessageSpec, MessageStatus
from mailstack.privacy import (
    ERASURE_STEPS,
    EXPORT_SECTIONS,
    TABLE_RULES,
    RetentionError,
    check_policy_tables,
    check_subject_coverage,
    export_subject,
    load_retention,
)
from mailstack.storage import (
    Erasure,
    Form,
    Kind,
    Retention,
    create_api_key,
    find_api_key,
    insert_messages,
    personal,
    personal_columns,
    store_outbox,
    update_message_status,
)
from mailstack.storage.schema import messages, metadata, outbox

SECRET = b"k" * 32


def _schema_with(*columns: Column[object], table: str = "contacts") -> MetaData:
    copy = MetaData()
    for existing in metadata.sorted_tables:
        existing.to_metadata(copy)
    if table in copy.tables:
        target = copy.tables[table]
        for column in columns:
            target.append_column(column)
    else:
        Table(table, copy, Column("id", BigInteger, primary_key=True), *columns)
    return copy


def test_the_shipped_schema_and_policy_leave_no_personal_table_without_rules() -> None:
    check_policy_tables(load_retention())
    assert check_subject_coverage() == []


def test_a_new_table_with_a_personal_column_and_no_rule_fails() -> None:
    email = Column("email", LargeBinary, info=personal(Kind.ADDRESS, Form.SEALED, erasure=Erasure.DELETE))
    schema = _schema_with(email)
    with pytest.raises(RetentionError, match=r"table 'contacts' holds personal data \(email\)"):
        check_policy_tables(load_retention(), schema)
    assert check_subject_coverage(schema) == [
        "contacts (email): personal, but erasure does not reach it (ERASURE_STEPS)",
        "contacts (email): personal, but the export does not list it (EXPORT_SECTIONS)",
    ]


def test_a_new_personal_column_in_an_exempt_table_fails_retention() -> None:
    # api_keys is exempt from retention ("kept while the key exists"); an address there would not be.
    owner = Column(
        "owner_email", LargeBinary, info=personal(Kind.ADDRESS, Form.SEALED, erasure=Erasure.DELETE)
    )
    schema = _schema_with(owner, table="api_keys")
    with pytest.raises(RetentionError, match=r"'api_keys' holds personal data \(owner_email\)"):
        check_policy_tables(load_retention(), schema)
    assert any(line.startswith("api_keys (owner_email)") for line in check_subject_coverage(schema))


def test_personal_data_kept_on_purpose_needs_no_class_nor_erasure_step() -> None:
    note = Column(
        "operator_note",
        String(100),
        info=personal(
            Kind.NAME,
            Form.CLEAR,
            erasure=Erasure.KEEP,
            retention=Retention.KEEP,
            why="an operator's own note, removed with the key",
        ),
    )
    schema = _schema_with(note, table="api_keys")
    check_policy_tables(load_retention(), schema)
    assert check_subject_coverage(schema) == []


def test_what_retention_blanks_is_what_the_marks_say() -> None:
    assert TABLE_RULES["messages"].personal == (
        "recipient",
        "recipient_index",
        "recipient_name",
        "sender",
        "custom_id",
        "message_id_header",
        "last_reply",
    )
    # The suppression's blind index is personal but kept: it is what stops further mail.
    assert TABLE_RULES["suppressions"].personal == ("address", "reason")
    assert "address_index" in TABLE_RULES["suppressions"].kept


def test_every_export_section_is_in_the_export(engine: Engine) -> None:
    assert set(ERASURE_STEPS) <= set(metadata.tables)
    vault = make_vault(engine, SECRET)
    with engine.begin() as conn:
        exported = export_subject(conn, vault, Keyring(SECRET), "ana@example.net")
    sections = {section for section in EXPORT_SECTIONS.values() if section is not None}
    assert sections <= set(exported)


def test_every_personal_column_of_a_message_and_its_sandbox_copy_is_exported_opened(engine: Engine) -> None:
    vault = make_vault(engine, SECRET)
    address = "ana.export-probe@example.net"
    spec = MessageSpec(
        sender=Address("news@example.com"), to=(Address(address, "Ana"),), subject="Hi", text="b"
    )
    with engine.begin() as conn:
        record = find_api_key(conn, create_api_key(conn, "test")[0])
        assert record is not None
        ((accepted,),) = insert_messages(conn, record.id, [spec], now=time.time(), vault=vault)
        update_message_status(
            conn, accepted.message_id, MessageStatus.FAILED, now=time.time(), last_reply="550 no", vault=vault
        )
        store_outbox(
            conn, accepted.message_id, "b-1@bounces.example.com", address, b"Hi", now=1.0, vault=vault
        )
        exported = export_subject(conn, vault, Keyring(SECRET), address)
    (message,) = exported["messages"]
    (copy,) = message["outbox"]
    for table, entry in ((messages, message), (outbox, copy)):
        wanted = {
            column.name
            for t, column, mark in personal_columns(metadata)
            if t is table and mark.form is not Form.INDEX
        }
        assert wanted <= set(entry), f"{table.name}: {wanted - set(entry)} not exported"
    assert (message["recipient"], message["recipient_name"], message["last_reply"]) == (
        address,
        "Ana",
        "550 no",
    )
    assert (copy["rcpt_to"], copy["data"], copy["mail_from"]) == (address, "Hi", "b-1@bounces.example.com")
