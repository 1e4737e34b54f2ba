"""Reading the audit ledger back: one consistent read-only snapshot, streamed in batches, that
never blocks writers. Verification (storage.ledger_verify) and export (bot.audit) use it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Text, cast, event, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from storage.ledger.chain import COLUMNS, LEDGER
from storage.models import Action, LedgerEntry, LedgerHead


def _sqlite_reader(url: str) -> AsyncEngine:
    """SQLite readers get their own engine: storage.db begins every transaction IMMEDIATE (the
    writer lock), which a minute-long verification must not hold. A deferred BEGIN reads one WAL
    snapshot while writers carry on."""
    engine = create_async_engine(url, poolclass=NullPool)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


@asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only connection on which the head and every entry are seen as of one instant."""
    if engine.dialect.name == "sqlite":
        reader = _sqlite_reader(engine.url.render_as_string(hide_password=False))
        try:
            async with reader.connect() as conn, conn.begin():
                yield conn
        finally:
            await reader.dispose()
        return
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        async with conn.begin():
            yield conn


async def read_head(conn: AsyncConnection) -> tuple[int, str] | None:
    row = (await conn.execute(select(LedgerHead.seq, LedgerHead.hash).where(LedgerHead.id == 1))).first()  # type: ignore[call-overload,arg-type]
    return (row[0], row[1]) if row else None


async def stream_rows(
    conn: AsyncConnection,
    *,
    since: datetime | None = None,
    service: str | None = None,
    after_seq: int = 0,
    batch: int = 5000,
) -> AsyncIterator[Sequence[Any]]:
    """Batches of ledger rows in seq order (COLUMNS, plus the action's service), streamed with a
    server-side cursor so a million entries never sit in memory."""
    stmt = (
        select(*COLUMNS, Action.service)  # type: ignore[call-overload]
        .outerjoin(Action, Action.id == LedgerEntry.action_id)  # type: ignore[arg-type]
        .where(LedgerEntry.seq > after_seq)  # type: ignore[arg-type]
        .order_by(LedgerEntry.seq)  # type: ignore[arg-type]
    )
    if since is not None:
        stmt = stmt.where(LedgerEntry.at >= since)  # type: ignore[arg-type,operator]
    if service is not None:
        # Refused (forbidden) submissions have no action row: their service is in the entry's data.
        stmt = stmt.where((Action.service == service) | LedgerEntry.action_id.is_(None))  # type: ignore[union-attr]
    result = await conn.stream(stmt.execution_options(yield_per=batch))
    async for part in result.partitions(batch):
        if service is not None:
            part = [r for r in part if r[8] == service
                    or (r[3] is None and isinstance(r[5], dict) and r[5].get("service") == service)]
        yield part


def raw_columns(dialect: str) -> tuple[Any, ...]:
    """The chain as text, exactly as hashed: `at` as UTC ISO with microseconds (PostgreSQL formats
    it; SQLite stores SQLAlchemy's "YYYY-MM-DD HH:MM:SS.ffffff", converted by the reader) and data
    as its stored JSON text. No per-row type processing: what makes verification fast."""
    at: Any
    if dialect == "postgresql":
        at = func.to_char(func.timezone("UTC", LEDGER.c.at), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    else:
        at = cast(LEDGER.c.at, Text)
    return (LEDGER.c.seq, at, LEDGER.c.event, LEDGER.c.action_id, LEDGER.c.actor, cast(LEDGER.c.data, Text),
            LEDGER.c.prev_hash, LEDGER.c.hash)


CHAIN_SQL = {
    # `at` formatted by the server exactly as hashed; data as its stored text (json keeps it verbatim).
    "postgresql": "SELECT seq, to_char(timezone('UTC', at), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), "
                  "event, action_id, actor, data::text, prev_hash, hash FROM ledger ORDER BY seq",
    "sqlite": "SELECT seq, CAST(at AS TEXT), event, action_id, actor, CAST(data AS TEXT), prev_hash, hash "
              "FROM ledger ORDER BY seq",
}


async def stream_chain(conn: AsyncConnection, *, batch: int = 5000) -> AsyncGenerator[Sequence[Any], None]:
    """Batches of the bare chain (raw_columns' shape) in seq order: what verification reads.

    Straight from the driver's cursor inside the snapshot's transaction (asyncpg: a server-side
    cursor; SQLite: fetchmany), because building a SQLAlchemy Row per entry costs as much as
    hashing it and verification should run at 100,000+ entries/s.
    """
    await conn.execute(select(1))  # the snapshot's transaction is open on the server from here
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    sql = CHAIN_SQL[conn.dialect.name]
    if conn.dialect.name == "postgresql":
        cursor = await driver.cursor(sql)
        while part := await cursor.fetch(batch):
            yield part
        return
    cursor = await driver.execute(sql)
    try:
        while part := await cursor.fetchmany(batch):
            yield part
    finally:
        await cursor.close()
