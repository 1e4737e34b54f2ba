"""The append-only, hash-chained audit ledger: `append` in the caller's transaction, chained at
commit under the head lock (docs/architecture.md, "The ledger"). Reading: storage.ledger.read;
verification: storage.ledger.verify."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.ledger import driver as ledger_driver
from storage.ledger.canonical import GENESIS, assemble, content_prefix, ledger_form, utc_iso
from storage.models import LedgerEntry, LedgerHead, utcnow

# The columns a reader streams, in this order (Core rows: no ORM objects on the fast path).
LEDGER: Any = LedgerEntry.__table__  # type: ignore[attr-defined]
COLUMNS: tuple[Any, ...] = (LedgerEntry.seq, LedgerEntry.at, LedgerEntry.event, LedgerEntry.action_id,
                            LedgerEntry.actor, LedgerEntry.data, LedgerEntry.prev_hash, LedgerEntry.hash)


@dataclass(slots=True)
class Entry:
    """An entry appended in this transaction: chained (seq, prev_hash, hash) when it commits. A
    plain object, not a LedgerEntry row: building an ORM row per entry was a sixth of the ledger's
    cost at ingest, and the rows are written by one statement anyway (storage.ledger.driver)."""

    at: datetime
    event: str
    action_id: int | None
    actor: str | None
    data: Any
    text: str  # data's RFC 8785 text: stored as it is, and hashed
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""


HEAD_TABLE: Any = LedgerHead.__table__  # type: ignore[attr-defined]
_PENDING = "countersign.ledger_pending"  # session.info key: entries this transaction will append


# The head read and locked for `locked_head` (the anchor publisher: bot.reports.audit); built once.
# Appending does not read it here: the commit-time writes do (storage.ledger.driver).
_HEAD = select(HEAD_TABLE.c.seq, HEAD_TABLE.c.hash).where(HEAD_TABLE.c.id == 1)
_HEAD_LOCKED = _HEAD.with_for_update()


def _head_for_update(session: Session) -> tuple[int, str]:
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    stmt = _HEAD_LOCKED if postgres else _HEAD
    row = connection.execute(stmt).first()
    if row is None:
        # The migration seeds the head; this covers a database where it was removed. Two first
        # appenders racing here must not fail: insert-if-absent, then lock what is there.
        insert_head = pg_insert if postgres else sqlite_insert
        connection.execute(insert_head(HEAD_TABLE).values(id=1, seq=0, hash=GENESIS).on_conflict_do_nothing())
        row = connection.execute(stmt).one()
    return row[0], row[1]


async def locked_head(session: AsyncSession) -> tuple[int, str]:
    """(seq, hash) of the head, locked (PostgreSQL: FOR UPDATE) until the transaction ends."""
    return await session.run_sync(_head_for_update)


def _write(session: Session, pending: list[Entry]) -> None:
    """Chain `pending` onto the head and store it: PostgreSQL one statement, SQLite three driver
    calls, whatever the number of entries (storage.ledger.driver)."""
    connection = session.connection()
    dialect = connection.dialect
    store_at = LEDGER.c.at.type.dialect_impl(dialect).bind_processor(dialect)  # the column type's own
    times: dict[datetime, tuple[str, Any]] = {}  # a submission's entries share their `at`
    for entry in pending:
        if entry.at not in times:
            times[entry.at] = (utc_iso(entry.at), store_at(entry.at))
    # Data is stored as its RFC 8785 text, so verification hashes what it reads without parsing it.
    if dialect.name == "postgresql":
        prefixed = [(content_prefix(times[e.at][0], e.event, e.action_id, e.actor, e.text), times[e.at][1],
                     e.event, e.action_id, e.actor, e.text) for e in pending]
        for entry, (seq, prev, digest) in zip(pending, ledger_driver.write_postgresql(connection, prefixed),
                                              strict=True):
            entry.seq, entry.prev_hash, entry.hash = seq, prev, digest
        return

    def chain(seq: int, prev: str) -> list[tuple[Any, ...]]:
        rows = []
        for entry in pending:
            seq += 1
            at_iso, stored_at = times[entry.at]
            content = assemble(seq, at_iso, entry.event, entry.action_id, entry.actor, entry.text)
            digest = hashlib.sha256(prev.encode() + content).hexdigest()
            entry.seq, entry.prev_hash, entry.hash = seq, prev, digest
            rows.append((seq, stored_at, entry.event, entry.action_id, entry.actor, entry.text, prev, digest))
            prev = digest
        return rows

    adapted: Any = connection.connection.dbapi_connection
    adapted.run_async(lambda driver: ledger_driver.write_sqlite(driver, chain))


@sa_event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    """Entries are chained at commit: the head is locked for those few statements and the commit,
    not for the rest of the caller's transaction (PostgreSQL ingest would serialize on it)."""
    pending = session.info.pop(_PENDING, None)
    if pending:
        _write(session, pending)


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # committed (already written) or rolled back (never happened)
        session.info.pop(_PENDING, None)


async def append(
    session: AsyncSession,
    event: str,
    data: dict[str, Any] | None = None,
    *,
    action_id: int | None = None,
    actor: str | None = None,
    at: datetime | None = None,
) -> Entry:
    """Record `event` in the caller's transaction: it is chained and written when that transaction
    commits (and vanishes with it on rollback). The returned entry gets its seq and hashes then.
    Inside a savepoint it is written at once, so a rolled-back savepoint takes it along."""
    when = at or utcnow()
    if when.tzinfo is not UTC:  # stored and hashed as UTC: a naive or zoned `at` reads back as this instant
        when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    clean, text = ledger_form(data or {})
    entry = Entry(when, event, action_id, actor, clean, text)
    if session.sync_session.in_nested_transaction():
        await session.run_sync(_write, [entry])
    else:
        if not session.in_transaction():
            await session.connection()  # begin now, so the entry belongs to this transaction
        session.info.setdefault(_PENDING, []).append(entry)
    return entry
