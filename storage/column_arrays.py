"""Many rows in ONE PostgreSQL INSERT of column arrays (`unnest`), a fixed statement.

The hot multi-row INSERTs (a batch's actions, their first steps, the outbox) went through
SQLAlchemy's insertmanyvalues: per row and column it built the parameter dict, rendered a
statement with rows x columns placeholders (another one, and another asyncpg prepare, for every
batch size) and bound each value: a third of the ingest writer's instructions. Here each column
travels as one array parameter of one fixed statement, and each value is converted by the column
type's own bind processor (the same one SQLAlchemy applies: UTC datetimes, JSON text with None as
JSON null), so the stored rows are the same (tests/integration/test_group_commit_equivalence.py
compares them, as text, with the ORM's).

Ids come back in parameter order the way SQLAlchemy gets them on PostgreSQL (its
`ANY_AUTOINCREMENT` sentinel): the rows are inserted ORDER BY their ordinal, so the sequence hands
out ascending ids in that order, and the returned ids are sorted.

On SQLite (no arrays) the same rows go as one executemany of a fixed INSERT, the values converted
the same way; statements that return rows stay with SQLAlchemy there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import JSON, Connection, Table


class ColumnArrays:
    """`INSERT INTO table (columns) SELECT ... FROM unnest(arrays) ... [ON CONFLICT (..) DO NOTHING]
    [RETURNING ...]`."""

    def __init__(self, table: Table, columns: Sequence[str], *, returning: Sequence[str] = (),
                 on_conflict: Sequence[str] = ()) -> None:
        self.table, self.columns = table, list(columns)
        self.returning, self.on_conflict = list(returning), list(on_conflict)
        self._built: tuple[str, list[Callable[[Any], Any] | None]] | None = None
        self._sqlite: tuple[str, list[Callable[[Any], Any] | None]] | None = None

    def _build(self, connection: Connection) -> tuple[str, list[Callable[[Any], Any] | None]]:
        if self._built is None:
            dialect = connection.dialect
            quote = dialect.identifier_preparer.quote
            cols = [self.table.c[name] for name in self.columns]
            processors: list[Callable[[Any], Any] | None] = [
                c.type.dialect_impl(dialect).bind_processor(dialect) for c in cols]
            # JSON goes in as its text and is cast per row (an array of json would need its own codec).
            is_json = [isinstance(c.type, JSON) for c in cols]
            arrays = ", ".join(f"${i + 1}::{'TEXT' if j else c.type.compile(dialect=dialect)}[]"
                               for i, (c, j) in enumerate(zip(cols, is_json, strict=True)))
            names = ", ".join(f"c{i}" for i in range(len(cols)))
            picked = ", ".join(f"c{i}::json" if j else f"c{i}" for i, j in enumerate(is_json))
            sql = (f"INSERT INTO {quote(self.table.name)} ({', '.join(quote(c.name) for c in cols)}) "
                   f"SELECT {picked} FROM unnest({arrays}) WITH ORDINALITY AS t({names}, ord) ORDER BY ord")
            if self.on_conflict:
                sql += f" ON CONFLICT ({', '.join(map(quote, self.on_conflict))}) DO NOTHING"
            if self.returning:
                sql += f" RETURNING {', '.join(map(quote, self.returning))}"
            self._built = sql, processors
        return self._built

    def insert(self, connection: Connection, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """Insert `rows` (values in `columns` order) in the connection's transaction (sync side: call
        through `run_sync`); the returned records, if the statement returns any."""
        if not rows:
            return []
        if connection.dialect.name == "sqlite":
            return self._executemany(connection, rows)
        sql, processors = self._build(connection)
        arrays = [list(column) if process is None else [process(v) for v in column]
                  for process, column in zip(processors, zip(*rows, strict=True), strict=True)]
        # Through SQLAlchemy's driver-level path (no compiling): its transaction, its error translation
        # (IntegrityError, a lock or statement timeout, a dropped connection) as for any statement.
        result = connection.exec_driver_sql(sql, tuple(arrays))
        return list(result.all()) if self.returning else []

    def _executemany(self, connection: Connection, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """SQLite: the same rows as one executemany of a fixed statement (sqlite3 loops in C), each
        value through its column's bind processor, without SQLAlchemy's per-row parameter dicts."""
        assert not self.returning and not self.on_conflict, "SQLite: plain inserts only"
        if self._sqlite is None:
            dialect = connection.dialect
            quote = dialect.identifier_preparer.quote
            cols = [self.table.c[name] for name in self.columns]
            self._sqlite = (f"INSERT INTO {quote(self.table.name)} ({', '.join(quote(c.name) for c in cols)}) "
                            f"VALUES ({', '.join('?' * len(cols))})",
                            [c.type.dialect_impl(dialect).bind_processor(dialect) for c in cols])
        sql, processors = self._sqlite
        converting = [(i, p) for i, p in enumerate(processors) if p is not None]
        prepared = []
        for row in rows:
            values = list(row)
            for i, process in converting:
                values[i] = process(values[i])
            prepared.append(tuple(values))
        connection.exec_driver_sql(sql, prepared)
        return []

    def ids(self, connection: Connection, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Insert `rows` and return their ids (the first returned column), in the rows' order."""
        return sorted(int(r[0]) for r in self.insert(connection, rows))
