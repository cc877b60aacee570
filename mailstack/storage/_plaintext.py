"""The no-plaintext check, read off the personal-data marks: every value stored in a personal column is
in the form its mark promises (a vault blob, a sealed event detail, a keyed hash, text without
addresses). Run on a real database after real traffic (``tests/privacy/test_no_plaintext.py``), it
proves the marks are kept, column by column, without knowing what the traffic was.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Connection, MetaData, select

from mailstack.addresses import contains_address

from ._details import is_sealed_detail
from ._personal import Form, personal_columns
from ._schema import metadata as schema_metadata
from ._vault import is_sealed

__all__ = ["plaintext_values"]

_HEX = re.compile(r"[0-9a-f]{32,128}")
_BATCH = 1000


def _index(value: Any) -> bool:
    return isinstance(value, str) and _HEX.fullmatch(value) is not None


def _redacted(value: Any) -> bool:
    return isinstance(value, str) and not contains_address(value)


# What a stored value of each form must look like; CLEAR columns are readable by design (their mark
# says why), so there is nothing to check.
_KEEPS_ITS_FORM: dict[Form, Callable[[Any], bool]] = {
    Form.SEALED: is_sealed,
    Form.DETAIL: is_sealed_detail,
    Form.INDEX: _index,
    Form.REDACTED: _redacted,
}


def plaintext_values(conn: Connection, metadata: MetaData | None = None) -> dict[str, int]:
    """How many stored values of each personal column (``"table.column"``) are not in the form their
    mark promises; empty when every one is. NULLs are fine (nothing stored). Reads every row of those
    columns, in batches: a check for tests and audits, not for a request path."""
    found: dict[str, int] = {}
    existing = set(conn.dialect.get_table_names(conn))
    for table, column, mark in personal_columns(schema_metadata if metadata is None else metadata):
        keeps_form = _KEEPS_ITS_FORM.get(mark.form)
        if keeps_form is None or table.name not in existing:
            continue
        bad = _count_bad(conn, column, keeps_form)
        if bad:
            found[f"{table.name}.{column.name}"] = bad
    return found


def _count_bad(conn: Connection, column: Column[Any], keeps_form: Callable[[Any], bool]) -> int:
    query = select(column).where(column.is_not(None)).execution_options(yield_per=_BATCH)
    return sum(1 for value in conn.execute(query).scalars() if not keeps_form(value))
