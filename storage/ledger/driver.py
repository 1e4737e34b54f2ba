"""The ledger's commit-time writes: the head is locked from the first of these statements to the
commit, so they are as few round trips as can be. PostgreSQL: one statement that chains the
batch in the database; SQLite: three calls on the driver (aiosqlite) under the writer lock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from storage.ledger.canonical import GENESIS

COLUMNS = "seq, at, event, action_id, actor, data, prev_hash, hash"
SEED = "INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, ?) ON CONFLICT DO NOTHING"
Chain = Callable[[int, str], Sequence[tuple[Any, ...]]]  # (head seq, head hash) -> rows to insert
# PostgreSQL: (content prefix, at, event, action_id, actor, data text) of each entry, in order.
Prefixed = tuple[bytes, Any, str, int | None, str | None, str]

# One round trip: lock and read the head, chain the entries onto it, insert them, move the head.
# Each hash is sha256(prev hash || content), the content being the entry's RFC 8785 text up to its
# seq (computed here by storage.ledger.canonical.content_prefix), the seq, and "}": the bytes
# `assemble` builds, which verification recomputes in Python. Hashing in the database spares a
# round trip under the lock (the head read) and the client's hashing while the lock is held.
PG_CHAIN = f"""
WITH RECURSIVE head AS (SELECT seq::bigint AS seq, hash::text AS hash FROM ledger_head WHERE id = 1 FOR UPDATE),
chain (ord, seq, prev_hash, hash) AS (
    SELECT 0, seq, ''::text, hash FROM head
  UNION ALL
    SELECT ord + 1, seq + 1, hash,
           encode(sha256(convert_to(hash, 'UTF8') || ($1::bytea[])[ord + 1]
                         || convert_to((seq + 1)::text || '}}', 'UTF8')), 'hex')
    FROM chain WHERE ord < cardinality($1::bytea[])),
added AS (INSERT INTO ledger ({COLUMNS})
          SELECT c.seq, e.at, e.event, e.action_id, e.actor, e.data::json, c.prev_hash, c.hash
          FROM unnest($2::timestamptz[], $3::text[], $4::integer[], $5::text[], $6::text[])
               WITH ORDINALITY AS e(at, event, action_id, actor, data, ord)
          JOIN chain AS c ON c.ord = e.ord),
moved AS (UPDATE ledger_head SET seq = last.seq, hash = last.hash
          FROM (SELECT seq, hash FROM chain WHERE ord > 0 ORDER BY ord DESC LIMIT 1) AS last
          WHERE ledger_head.id = 1)
SELECT seq, prev_hash, hash FROM chain WHERE ord > 0 ORDER BY ord
"""
PG_SEED = "INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, $1) ON CONFLICT DO NOTHING"


def write_postgresql(connection: Connection, entries: Sequence[Prefixed]) -> list[tuple[int, str, str]]:
    """Chain and store `entries` in the connection's transaction; (seq, prev_hash, hash) of each.
    Through SQLAlchemy's driver-level path: its transaction (asyncpg's adapter begins it lazily)
    and its error translation (a lock timeout on the head is a 503, not a 500). data goes in as
    text and is cast: the json type keeps the RFC 8785 text verbatim."""
    columns = tuple(list(column) for column in zip(*entries, strict=True))
    chained = connection.exec_driver_sql(PG_CHAIN, columns).all()
    if not chained:
        # No head: the migration seeds it; this covers a database where it was removed (nothing
        # was written). Two first appenders racing here must not fail: insert-if-absent, again.
        connection.exec_driver_sql(PG_SEED, (GENESIS,))
        chained = connection.exec_driver_sql(PG_CHAIN, columns).all()
    assert len(chained) == len(entries), "every entry is chained"
    return [(int(seq), prev, digest) for seq, prev, digest in chained]


async def write_sqlite(driver: Any, chain: Chain) -> None:
    """The writer lock is held since BEGIN IMMEDIATE: read the head on the driver too (one hop)."""
    head = "SELECT seq, hash FROM ledger_head WHERE id = 1"
    found = await driver.execute_fetchall(head)
    if not found:
        await driver.execute(SEED, (GENESIS,))
        found = await driver.execute_fetchall(head)
    rows = chain(found[0][0], found[0][1])
    await driver.executemany(f"INSERT INTO ledger ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    await driver.execute("UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", (rows[-1][0], rows[-1][7]))
