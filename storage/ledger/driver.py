"""The ledger's commit-time writes, straight on the driver (asyncpg / aiosqlite): they run under
the head or writer lock, where every round trip delays every other writer, and SQLAlchemy's
session doubled the ledger's share of ingest time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

GENESIS = "0" * 64
COLUMNS = "seq, at, event, action_id, actor, data, prev_hash, hash"
SEED = "INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, ?) ON CONFLICT DO NOTHING"
Chain = Callable[[int, str], Sequence[tuple[Any, ...]]]  # (head seq, head hash) -> rows to insert


# One statement, one round trip under the head's lock: the entries (as arrays) and the head's move.
PG_APPEND = (
    f"WITH added AS (INSERT INTO ledger ({COLUMNS}) "
    "SELECT s, a, e, i, r, d::json, p, h FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], "
    "$4::integer[], $5::text[], $6::text[], $7::text[], $8::text[]) AS t(s, a, e, i, r, d, p, h)) "
    "UPDATE ledger_head SET seq = $9, hash = $10 WHERE id = 1"
)


async def write_postgresql(driver: Any, chain: Chain, head: tuple[int, str]) -> None:
    """`head` was read (FOR UPDATE) through SQLAlchemy: that also opened the driver's transaction,
    which asyncpg's adapter begins lazily, at its first statement. data goes in as text and is
    cast: the json type keeps the RFC 8785 text verbatim."""
    rows = chain(*head)
    columns = [list(column) for column in zip(*rows, strict=True)]
    await driver.execute(PG_APPEND, *columns, rows[-1][0], rows[-1][7])


async def write_sqlite(driver: Any, chain: Chain, head_: None = None) -> None:
    """The writer lock is held since BEGIN IMMEDIATE: read the head on the driver too (one hop)."""
    head = "SELECT seq, hash FROM ledger_head WHERE id = 1"
    found = await driver.execute_fetchall(head)
    if not found:
        await driver.execute(SEED, (GENESIS,))
        found = await driver.execute_fetchall(head)
    rows = chain(found[0][0], found[0][1])
    await driver.executemany(f"INSERT INTO ledger ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    await driver.execute("UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", (rows[-1][0], rows[-1][7]))


WRITERS = {"postgresql": write_postgresql, "sqlite": write_sqlite}
