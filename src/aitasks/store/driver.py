"""Statements sent to asyncpg itself, under SQLAlchemy's connection, on the hot paths.

SQLAlchemy's work per statement (the compiled cache's lookup, binding, the result's rows) cost
several times the driver's on PostgreSQL (issue 20: a claim 0.9 ms against 0.1, a finish 1.5 ms
against 0.3). So a hot statement is compiled once, from the same Core statement the SQLAlchemy
path runs, into the driver's SQL and the order of its parameters, and run on the asyncpg
connection under the pooled one. SQLite has no such driver: there, and after any error of the
driver's, the caller runs the statement through SQLAlchemy again, which tells an outage from
the rest (`database.database_boundary`) and invalidates a broken connection.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import JSON, bindparam
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

# Only for compiling: the SQL and types are those SQLAlchemy itself sends to asyncpg.
DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]
# An `asyncpg.Connection` (asyncpg has no type hints).
Driver = Any


async def driver_of(connection: AsyncConnection) -> Driver | None:
    """The asyncpg connection under `connection`, or None on SQLite. Its JSON codecs are those
    SQLAlchemy set when it opened the connection: text in (`DriverStatement` encodes), values
    out."""
    if connection.dialect.name != "postgresql":
        return None
    return (await connection.get_raw_connection()).driver_connection


class DriverStatement:
    """A Core statement compiled once for asyncpg: `sql`, and `args` to turn named values into
    its positional parameters. Its constants (statuses in a WHERE) are its own; a JSON value is
    encoded as SQLAlchemy's JSON type does (`None` is JSON `null`, not SQL NULL)."""

    def __init__(self, statement: ClauseElement) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=DIALECT))
        unset = {bind.key: None for bind in compiled.binds.values() if bind.required}
        # Expanded: a constant list (`status IN (...)`) becomes one parameter per value.
        expanded = compiled.construct_expanded_state(compiled.construct_params(unset))
        self.sql: str = expanded.statement
        self.names: tuple[str, ...] = tuple(expanded.positiontup or ())
        self._constants = {
            name: value for name, value in expanded.parameters.items() if name not in unset
        }
        self._json = frozenset(
            name
            for name in self.names
            if name in compiled.binds and isinstance(compiled.binds[name].type, JSON)
        )

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional parameters for `values` (every parameter the statement left unset)."""
        return [
            json.dumps(values[name])
            if name in self._json
            else values[name]
            if name in values
            else self._constants[name]
            for name in self.names
        ]

    def many(self, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        return [self.args(row) for row in rows]


@functools.cache
def setting(statement: Any, columns: tuple[str, ...]) -> DriverStatement:
    """An INSERT or UPDATE setting these columns from parameters of their names, for the
    driver; compiled at its first use, since which columns a statement sets can vary (a
    success sets others than a failure)."""
    return DriverStatement(statement.values({column: bindparam(column) for column in columns}))
