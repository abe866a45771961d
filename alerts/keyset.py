"""Keyset pagination for the queue: an opaque cursor naming the last row shown.

The next page is "rows after this one in the sort order", answered by an index seek,
so page 1,000 costs what page 1 costs (OFFSET would read every row before it).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from django.db.models import BooleanField, Func, Value

# sort name -> the row's sort key fields, besides the id tiebreaker
SORT_KEYS = {
    "-updated": ("updated_at_source",),
    "updated": ("updated_at_source",),
    "severity": ("severity_rank", "updated_at_source"),
}


def encode(sort: str, row) -> str:
    values = [_dump(getattr(row, name)) for name in SORT_KEYS[sort]]
    raw = json.dumps([sort, *values, row.pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, sort: str) -> tuple:
    """The key values in `cursor`; ValueError if it is malformed or for another sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("malformed cursor") from None
    names = SORT_KEYS[sort]
    if (
        not isinstance(data, list)
        or len(data) != len(names) + 2
        or data[0] != sort
        or not isinstance(data[-1], int)
        or isinstance(data[-1], bool)
    ):
        raise ValueError("cursor does not fit this sort")
    values = [_load(name, value) for name, value in zip(names, data[1:-1], strict=True)]
    return (*values, data[-1])


def _dump(value):
    return value.isoformat() if isinstance(value, datetime) else value


def _load(name: str, value):
    if name == "severity_rank":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 9:
            raise ValueError("bad rank")
        return value
    if not isinstance(value, str):
        raise ValueError("bad time")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("naive time")
    return parsed


class RowCompare(Func):
    """`(a, b, id) < (x, y, z)`: a row comparison Postgres answers with one index seek
    (an OR of per-column conditions would scan)."""

    output_field = BooleanField()

    def __init__(self, columns: list, op: str, values: tuple) -> None:
        if op not in ("<", ">"):
            raise ValueError(op)
        self.op = op
        self.width = len(columns)
        super().__init__(*columns, *(Value(v) for v in values))

    def as_sql(self, compiler, connection, **extra_context):
        parts, params = [], []
        for expression in self.get_source_expressions():
            sql, part_params = compiler.compile(expression)
            parts.append(sql)
            params.extend(part_params)
        left = ", ".join(parts[: self.width])
        right = ", ".join(parts[self.width :])
        return f"({left}) {self.op} ({right})", params
