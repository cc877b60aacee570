"""Personal-data marks: each column says, where it is defined, whether it holds personal data and how.

A column holding personal data carries ``info=personal(kind, form, erasure=..., retention=...)``; a column
whose name looks personal but is not (an operator's label, one of mailstack's own IPs) carries
``info=not_personal(why)``. Retention (which columns anonymising blanks), erasure and export (which
tables they must reach), the vault purposes and the no-plaintext check read these marks instead of
lists written elsewhere, so a new column with an address in it is either marked, and then handled, or
fails a test (``tests/storage/test_personal.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, MetaData, Table

__all__ = [
    "Erasure",
    "Form",
    "Kind",
    "NotPersonal",
    "Personal",
    "Retention",
    "looks_personal",
    "mark_of",
    "not_personal",
    "personal",
    "personal_columns",
    "sealed_purpose",
]

_KEY = "personal"


class Kind(StrEnum):
    """What the column says about a person."""

    ADDRESS = "address"  # an email address
    NAME = "name"  # a display name or user name
    IP = "ip"  # an IP address (or a keyed hash of one)
    CONTENT = "content"  # what was written to a person: subject, body, variables, attachments
    REPLY = "reply"  # a server's or receiver's reply or an error: they quote addresses
    URL = "url"  # a clicked link: personalised ones quote addresses and tokens
    EVENT = "event"  # what happened to a message: IPs, user agents, links, replies, addresses
    IDENTIFIER = "identifier"  # a client's own reference, which may embed an address (CustomID)
    SUBJECT = "subject"  # the blind index naming a data subject (keyed HMAC of the address)


class Form(StrEnum):
    """How it is stored."""

    SEALED = "sealed"  # a vault blob, its purpose (``table.column``) bound in
    DETAIL = "detail"  # JSON whose personal part is sealed under "sealed" (mailstack.storage._details)
    INDEX = "index"  # a keyed HMAC in hex: finds the person, unreadable without the master secret
    REDACTED = "redacted"  # readable text with the addresses taken out when written
    CLEAR = "clear"  # readable as given: only with a reason (what needs it readable)


class Erasure(StrEnum):
    """What erasing a data subject does to it (mailstack.privacy.erase_subject)."""

    DELETE = "delete"  # the subject's rows are deleted (found by blind index or through their messages)
    REDACT = "redact"  # also in other people's rows, which may quote the subject: the address goes
    KEEP = "keep"  # kept on purpose, with the reason (e.g. the hashed entry that stops further mail)


class Retention(StrEnum):
    """What anonymising an old row does to it (mailstack.privacy.purge)."""

    BLANK = "blank"  # set to NULL, empty, or the erased blob
    KEEP = "keep"  # kept, with the reason (e.g. the suppression's blind index)


@dataclass(frozen=True, slots=True)
class Personal:
    """The mark of a personal-data column."""

    kind: Kind
    form: Form
    erasure: Erasure
    retention: Retention = Retention.BLANK
    why: str = ""  # why it is readable (CLEAR) or kept (KEEP)

    def __post_init__(self) -> None:
        needs_reason = (
            self.form is Form.CLEAR or self.erasure is Erasure.KEEP or self.retention is Retention.KEEP
        )
        if needs_reason and not self.why.strip():
            raise ValueError(f"a {self.form} column kept from erasure or retention must say why")


@dataclass(frozen=True, slots=True)
class NotPersonal:
    """The mark of a column whose name looks personal but which holds nothing about a person."""

    why: str

    def __post_init__(self) -> None:
        if not self.why.strip():
            raise ValueError("say why the column holds nothing personal")


def personal(
    kind: Kind, form: Form, *, erasure: Erasure, retention: Retention = Retention.BLANK, why: str = ""
) -> dict[str, Any]:
    """The ``info`` of a personal-data column (see the module docstring)."""
    return {_KEY: Personal(kind, form, erasure, retention, why)}


def not_personal(why: str) -> dict[str, Any]:
    """The ``info`` of a column that looks personal by its name but is not."""
    return {_KEY: NotPersonal(why)}


def mark_of(column: Column[Any]) -> Personal | NotPersonal | None:
    """A column's mark; None when it has none (and then holds nothing personal)."""
    mark = column.info.get(_KEY)
    return mark if isinstance(mark, Personal | NotPersonal) else None


def personal_columns(metadata: MetaData) -> Iterator[tuple[Table, Column[Any], Personal]]:
    """Every column marked personal, table by table in dependency order, in column order."""
    for table in metadata.sorted_tables:
        for column in table.columns:
            mark = mark_of(column)
            if isinstance(mark, Personal):
                yield table, column, mark


def sealed_purpose(column: Column[Any]) -> str:
    """What the vault binds into a sealed column's blobs: ``table.column`` (never change it: every blob
    already written is bound to it)."""
    return f"{column.table.name}.{column.name}"


# Words of a column name that suggest personal data: such a column must carry a mark either way.
_PERSONAL_WORDS = frozenset(
    {"actor", "addr", "address", "agent", "body", "client", "content", "custom", "data", "detail",
     "email", "error", "from", "header", "ip", "name", "payload", "phone", "rcpt", "reason", "recipient",
     "reply", "response", "sender", "spec", "subject", "template", "text", "to", "url", "user",
     "username"}
)  # fmt: skip
_WORD = re.compile(r"[a-z]+")


def looks_personal(column: Column[Any]) -> bool:
    """Whether a column's name suggests personal data (``recipient_name``, ``requested_ip``, ``mail_from``);
    a foreign key (``content_id``) only points at a row, whose own columns are marked."""
    if column.foreign_keys:
        return False
    return any(word in _PERSONAL_WORDS for word in _WORD.findall(column.name.lower()))
