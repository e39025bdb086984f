"""Rows sent to PostgreSQL as one array per column and unnested in the statement (the worker's
flush of finishes, the gateway's group of first turns): one statement and one round trip for any
number of rows. The pieces of SQL both build their statements from.

Each array is a scalar subquery, `(SELECT $n::type[])`: PostgreSQL then estimates its rows alike
whether it plans for the values at hand or for any (a generic plan), so it settles on the generic
plan after five, as for any statement. Seen as values, a custom plan estimated the very number of
rows and always looked cheaper: the statement was planned at every flush (0.3-0.8 ms of
PostgreSQL's CPU, more than a lone finish's execution).
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import JSON, Table

from aitasks.store import driver

quote = driver.DIALECT.identifier_preparer.quote


def is_json(table: Table, column: str) -> bool:
    return isinstance(table.c[column].type, JSON)


def element_type(table: Table, column: str) -> str:
    """The type of `column`'s array elements: JSON as text (`value_of` casts it back), and a
    string's type without its length, so that a value too long is refused as by an INSERT of it,
    not cut short (an explicit cast to VARCHAR(n) truncates)."""
    if is_json(table, column):
        return "TEXT"
    return re.sub(r"\([0-9, ]*\)", "", table.c[column].type.compile(driver.DIALECT))


def array_of(parameter: str) -> str:
    """The array parameter `parameter` (`$n::type[]`) as the scalar subquery `unnest` reads."""
    return f"(SELECT {parameter})"


def value_of(table: Table, alias: str, column: str) -> str:
    """An unnested row's value of `column`, as the column's own type."""
    return f"{alias}.{quote(column)}" + ("::JSON" if is_json(table, column) else "")


def sent(table: Table, column: str, value: Any) -> Any:
    """`value` as its array carries it: JSON as its text (`None` is JSON `null`, as SQLAlchemy's
    JSON type sends it)."""
    return json.dumps(value) if is_json(table, column) else value
