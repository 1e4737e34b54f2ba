"""Writing to the outbox: rows queued in the caller's transaction, inserted all at once.

`enqueue` keeps plain values in the session and the Session events below write them with one
executemany before the transaction's next statement, flush or commit. Reading, claiming and marking
rows is storage.outbox; the relay (bot.delivery.relay) sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.column_arrays import ColumnArrays
from storage.models import OutboxMessage, utcnow

OUTBOX: Any = OutboxMessage.__table__  # type: ignore[attr-defined]
_QUEUED = "countersign.outbox_queued"  # session.info key: rows enqueue() will insert


@dataclass(slots=True)
class Queued:
    """A row `enqueue` will insert with the transaction's next statement, flush or commit (one
    executemany for all of them); `id` is set only by `write_queued` (few callers need it)."""

    values: dict[str, Any]
    id: int | None = None


def enqueue(
    session: AsyncSession,
    *,
    method: str,
    payload: dict[str, Any],
    target: str = "slack",
    action_id: int | None = None,
    purpose: str | None = None,
    channel_key: str | None = None,
    dedupe_key: str | None = None,
    not_before: datetime | None = None,
) -> Queued:
    """Queue a row in the caller's transaction. Plain values, not an ORM object: building and
    flushing one OutboxMessage per message was a fifth of the ingest writer's CPU. Queued inside a
    savepoint, a row is still written with the outer transaction (enqueue_once writes at once)."""
    now = utcnow()
    row = Queued({"target": target, "method": method, "payload": payload, "action_id": action_id,
                  "purpose": purpose, "dedupe_key": dedupe_key, "channel_key": channel_key or payload.get("channel"),
                  "status": "pending", "attempts": 0, "next_attempt_at": not_before or now, "created_at": now})
    session.sync_session.info.setdefault(_QUEUED, []).append(row)
    return row


# Built once: its cache key is memoized (a statement built per call computes its key every time).
_INSERT_IDS = insert(OUTBOX).returning(OUTBOX.c.id, sort_by_parameter_order=True)
# The fields `enqueue` fills, in its order.
_COLUMNS = ["target", "method", "payload", "action_id", "purpose", "dedupe_key", "channel_key", "status", "attempts",
            "next_attempt_at", "created_at"]
_ARRAYS = ColumnArrays(OUTBOX, _COLUMNS)


def _insert(session: Session, queued: list[Queued], *, ids: bool = False) -> None:
    """Insert rows now, in order; with `ids`, give each its id. Without, one statement (with
    RETURNING in parameter order, SQLAlchemy sends SQLite one INSERT per row)."""
    values = [q.values for q in queued]
    if not ids:
        # One INSERT of column arrays (PostgreSQL) or one plain executemany (SQLite): storage.column_arrays
        _ARRAYS.insert(session.connection(), [tuple(v[c] for c in _COLUMNS) for v in values])
        return
    for row, new_id in zip(queued, session.connection().execute(_INSERT_IDS, values).scalars().all(), strict=True):
        row.id = int(new_id)


def _insert_queued(session: Session) -> None:
    # Not inside a savepoint: rows queued by the outer transaction must not vanish with one.
    if session.info.get(_QUEUED) and not session.in_nested_transaction():
        _insert(session, session.info.pop(_QUEUED))


# Queued rows are written before anything else the transaction runs (so its own queries see them,
# as they would an ORM object's), before a flush and at commit; a rollback forgets them.
@sa_event.listens_for(Session, "do_orm_execute")
def _before_statement(state: ORMExecuteState) -> None:
    _insert_queued(state.session)


@sa_event.listens_for(Session, "before_flush")
def _before_flush(session: Session, *_: Any) -> None:
    _insert_queued(session)


@sa_event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    _insert_queued(session)


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_queued(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_QUEUED, None)


async def write_queued(session: AsyncSession) -> None:
    """Insert what this transaction queued now, and give each row its id (`Queued.id`)."""
    queued = session.sync_session.info.pop(_QUEUED, None)
    if queued:
        await session.run_sync(_insert, queued, ids=True)


async def enqueue_once(session: AsyncSession, *, dedupe_key: str, **fields: Any) -> bool:
    """Queue a message unless one with this dedupe_key exists already (any replica, any time)."""
    if await by_dedupe_key(session, dedupe_key) is not None:
        return False
    try:
        async with session.begin_nested():
            queued = enqueue(session, dedupe_key=dedupe_key, **fields)
            session.sync_session.info[_QUEUED].remove(queued)
            await session.run_sync(_insert, [queued], ids=True)  # at once, inside the savepoint
        return True
    except IntegrityError:
        return False


async def by_dedupe_key(session: AsyncSession, dedupe_key: str) -> OutboxMessage | None:
    stmt = select(OutboxMessage).where(col(OutboxMessage.dedupe_key) == dedupe_key)
    return (await session.execute(stmt)).scalar_one_or_none()
