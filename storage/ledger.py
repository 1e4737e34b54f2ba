"""The append-only, hash-chained audit ledger.

Each entry's hash is sha256(prev_hash || RFC 8785 canonical JSON of the entry's content).
`append` runs inside the caller's transaction, so an entry commits with the change it records.
Appends are serialized: on PostgreSQL by locking the one-row head, on SQLite by the writer
lock every transaction takes (BEGIN IMMEDIATE, see storage.db).

Reading it back (verification, export) goes through `snapshot`: one consistent read-only view,
streamed in batches, that never blocks writers. Verification lives in storage.ledger_verify.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import rfc8785
from sqlalchemy import JSON, Connection, Text, cast, event, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action, LedgerEntry, LedgerHead, utcnow

GENESIS = "0" * 64
_jstr = json.encoder.encode_basestring  # type: ignore[attr-defined]  # C-accelerated, no ASCII escaping
MAX_SAFE_INT = 2**53 - 1  # RFC 8785 numbers are IEEE doubles: larger integers are kept as strings

# The columns a reader streams, in this order (Core rows: no ORM objects on the fast path).
LEDGER: Any = LedgerEntry.__table__  # type: ignore[attr-defined]
COLUMNS: tuple[Any, ...] = (LedgerEntry.seq, LedgerEntry.at, LedgerEntry.event, LedgerEntry.action_id,
                            LedgerEntry.actor, LedgerEntry.data, LedgerEntry.prev_hash, LedgerEntry.hash)


def utc_iso(at: datetime) -> str:
    """The one text form of `at` that is hashed: UTC, microseconds, "+00:00" (both databases keep µs)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def content_of(seq: int, at: datetime | str, event: str, action_id: int | None, actor: str | None,
               data: Any) -> dict[str, Any]:
    """What is hashed: everything but the hashes themselves."""
    return {
        "seq": seq,
        "at": at if isinstance(at, str) else utc_iso(at),
        "event": event,
        "action_id": action_id,
        "actor": actor,
        "data": data,
    }


def entry_content(entry: LedgerEntry) -> dict[str, Any]:
    return content_of(entry.seq, entry.at, entry.event, entry.action_id, entry.actor, entry.data)


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + rfc8785.dumps(content)).hexdigest()


def assemble(seq: int, at_iso: str, event: str, action_id: int | None, actor: str | None,
             data_json: str) -> bytes:
    """RFC 8785 bytes of an entry's content, given its data already in RFC 8785 form (as stored).

    The content's keys sorted (action_id, actor, at, data, event, seq) and strings escaped as
    RFC 8785 escapes them (the stdlib's encode_basestring does the same: quote, backslash, and
    control characters, \\u00xx lowercase); a test checks this equals rfc8785.dumps(content).
    """
    return (f'{{"action_id":{"null" if action_id is None else int(action_id)},'
            f'"actor":{"null" if actor is None else _jstr(actor)},"at":{_jstr(at_iso)},"data":{data_json},'
            f'"event":{_jstr(event)},"seq":{int(seq)}}}').encode()


def _dumps_fast(content: Any) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hash_matches(prev_hash: str, content: dict[str, Any], expected: str) -> bool:
    """Does `content` chained onto `prev_hash` hash to `expected`?

    Fast path: the stdlib's sorted compact JSON equals RFC 8785 for strings, integers, booleans
    and null with BMP keys, i.e. nearly every entry. When it does not (some floats), the digest
    simply differs and the real canonical form decides, so the fast path can never accept a
    changed entry: equal digests mean equal bytes, and those bytes parse to this content.
    """
    prefix = prev_hash.encode()
    try:
        if hashlib.sha256(prefix + _dumps_fast(content)).hexdigest() == expected:
            return True
    except (UnicodeEncodeError, ValueError):
        pass
    try:
        return hashlib.sha256(prefix + rfc8785.dumps(content)).hexdigest() == expected
    except (rfc8785.CanonicalizationError, UnicodeEncodeError, ValueError):
        return False


def jsonable(value: Any) -> Any:
    """Ledger data must hash the same before and after a database round trip (SQLite and
    PostgreSQL): datetimes become UTC ISO strings, non-finite floats and integers beyond JSON's
    safe range become strings, tuples become lists, keys become strings."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value) if isinstance(value, Enum) else value  # a StrEnum hashes as its value
    if isinstance(value, int):
        return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return utc_iso(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


_HEAD = "countersign.ledger_head"  # session.info key: the head as of this transaction's last append
HEAD_TABLE: Any = LedgerHead.__table__  # type: ignore[attr-defined]


def _innermost(session: AsyncSession) -> Any:
    sync = session.sync_session
    return sync.get_nested_transaction() or sync.get_transaction()


async def locked_head(session: AsyncSession) -> tuple[int, str]:
    """(seq, hash) of the head, locked until the caller's transaction ends.

    The second append of a transaction (a submission and its first page) reuses what the first
    saw: the lock is still held, so nobody else moved it. The cache is keyed by the innermost
    transaction object, so a rolled-back savepoint or a new transaction reads the table again.
    """
    cached = session.info.get(_HEAD)
    if cached is not None and cached[0] is _innermost(session):
        return cached[1], cached[2]
    postgres = session.bind is not None and session.bind.dialect.name == "postgresql"
    stmt = select(HEAD_TABLE.c.seq, HEAD_TABLE.c.hash).where(HEAD_TABLE.c.id == 1)
    if postgres:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).first()
    if row is None:
        # The migration seeds the head; this covers a database where it was removed. Two first
        # appenders racing here must not fail: insert-if-absent, then lock what is there.
        insert_head = pg_insert if postgres else sqlite_insert
        seed = insert_head(HEAD_TABLE).values(id=1, seq=0, hash=GENESIS).on_conflict_do_nothing()
        await session.execute(seed)
        row = (await session.execute(stmt)).one()
    return row[0], row[1]


async def append(
    session: AsyncSession,
    event: str,
    data: dict[str, Any] | None = None,
    *,
    action_id: int | None = None,
    actor: str | None = None,
    at: datetime | None = None,
) -> LedgerEntry:
    head_seq, head_hash = await locked_head(session)
    when = at or utcnow()
    # Stored and hashed as UTC: a naive or zoned `at` must read back as the same instant and text.
    when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    clean = jsonable(data or {})
    # Data is stored as its RFC 8785 text (PostgreSQL's json type keeps text verbatim), so
    # verification can hash what it reads without parsing it: see storage.ledger_verify.
    data_json = rfc8785.dumps(clean).decode()
    seq = head_seq + 1
    digest = hashlib.sha256(head_hash.encode() + assemble(seq, utc_iso(when), event, action_id, actor,
                                                           data_json)).hexdigest()
    postgres = session.bind is not None and session.bind.dialect.name == "postgresql"
    values = {"seq": seq, "at": when, "event": event, "action_id": action_id, "actor": actor,
              "data": cast(literal(data_json, Text), JSON) if postgres else literal(data_json, Text),
              "prev_hash": head_hash, "hash": digest}
    move_head = update(HEAD_TABLE).where(HEAD_TABLE.c.id == 1)
    if postgres:  # one round trip: the entry and the head's move in one statement
        added = insert(LEDGER).values(**values).returning(LEDGER.c.seq, LEDGER.c.hash).cte("added")
        await session.execute(move_head.values(seq=added.c.seq, hash=added.c.hash)
                              .where(HEAD_TABLE.c.seq == added.c.seq - 1))
    else:
        await session.execute(insert(LEDGER).values(**values))
        await session.execute(move_head.values(seq=seq, hash=digest))
    session.info[_HEAD] = (_innermost(session), seq, digest)
    return LedgerEntry(seq=seq, at=when, event=event, action_id=action_id, actor=actor, data=clean,
                       prev_hash=head_hash, hash=digest)


# --- reading: one consistent snapshot, streamed ----------------------------------------------


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


async def stream_chain(conn: AsyncConnection, *, batch: int = 5000) -> AsyncIterator[Sequence[Any]]:
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
