"""Escalation bookkeeping queries: claiming due actions by the indexed deadline, the steps they
already fired, and what is pending (for the metrics)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action, EscalationStep

STEPS: Table = EscalationStep.__table__  # type: ignore[attr-defined]


def _is_postgres(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


async def claim_due_actions(session: AsyncSession, now: datetime, *, limit: int = 100) -> list[Action]:
    """Due actions, oldest deadline first, read through ix_actions_next_at (a range scan bounded by
    `limit`, never a table scan, so the cost does not grow with the number of pending actions).

    PostgreSQL: the rows are locked for this transaction and rows another replica holds are
    skipped (FOR UPDATE SKIP LOCKED), so replicas share the work and never fire the same action
    at once; a response waits on the same row lock. SQLite: the transaction already holds the
    database's writer lock (BEGIN IMMEDIATE, see storage.db), which serializes claimers.
    """
    stmt = (
        select(Action)
        .where(col(Action.next_at).is_not(None), col(Action.next_at) <= now)
        .order_by(col(Action.next_at))
        .limit(limit)
    )
    if _is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return list((await session.execute(stmt.execution_options(populate_existing=True))).scalars())


async def lock_action(session: AsyncSession, action_id: int) -> Action | None:
    """The action, re-read and (on PostgreSQL) locked for this transaction: waits for a sweeper
    or a response holding it, then sees what they committed."""
    stmt = select(Action).where(col(Action.id) == action_id)
    if _is_postgres(session):
        stmt = stmt.with_for_update()
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()


async def record_step(
    session: AsyncSession,
    action_id: int,
    step: str,
    *,
    level: str | None,
    due_at: datetime,
    now: datetime,
    note: str | None = None,
) -> bool:
    """Record that a step fired; False if it had already fired (the unique (action, step) key).

    One INSERT .. ON CONFLICT DO NOTHING: no savepoint and flush, three round trips fewer for
    every step a sweep fires.
    """
    insert = pg_insert if _is_postgres(session) else sqlite_insert
    stmt = (
        insert(STEPS)
        .values(action_id=action_id, step=step, level=level, due_at=due_at, fired_at=now,
                late_seconds=max(0.0, (now - due_at).total_seconds()), note=note)
        .on_conflict_do_nothing(index_elements=["action_id", "step"])
        .returning(STEPS.c.id)
    )
    return (await session.execute(stmt)).first() is not None


async def record_steps(
    session: AsyncSession, steps: list[tuple[int, str, str | None, datetime]], now: datetime,
    notes: dict[tuple[int, str], str] | None = None,
) -> set[tuple[int, str]]:
    """Record many fired steps, (action id, step, level, due at), in one multi-row INSERT .. ON
    CONFLICT DO NOTHING (`notes`: why, by (action id, step)); returns the (action id, step) pairs
    recorded now (not fired before)."""
    if not steps:
        return set()
    insert = pg_insert if _is_postgres(session) else sqlite_insert
    values = [{"action_id": action_id, "step": step, "level": level, "due_at": due_at, "fired_at": now,
               "late_seconds": max(0.0, (now - due_at).total_seconds()),
               "note": (notes or {}).get((action_id, step))}
              for action_id, step, level, due_at in steps]
    stmt = (
        insert(STEPS)
        .values(values)
        .on_conflict_do_nothing(index_elements=["action_id", "step"])
        .returning(STEPS.c.action_id, STEPS.c.step)
    )
    return {(int(action_id), str(step)) for action_id, step in (await session.execute(stmt)).all()}


async def fired_steps_for(session: AsyncSession, action_ids: list[int]) -> dict[int, dict[str, datetime]]:
    """Steps already fired, for a whole claimed batch in one query: action id -> step -> fired_at."""
    fired: dict[int, dict[str, datetime]] = defaultdict(dict)
    if not action_ids:
        return fired
    rows = await session.execute(
        select(col(EscalationStep.action_id), col(EscalationStep.step), col(EscalationStep.fired_at)).where(
            col(EscalationStep.action_id).in_(action_ids)
        )
    )
    for action_id, step, fired_at in rows.all():
        fired[action_id][step] = fired_at
    return fired


async def pending_by_level(session: AsyncSession) -> dict[str | None, int]:
    """How many actions are pending at each escalation level (None: not paged yet)."""
    rows = await session.execute(
        select(col(Action.level), func.count())
        .where(col(Action.status) == "pending")
        .group_by(col(Action.level))
    )
    return {level: int(count) for level, count in rows.all()}


async def next_due_at(session: AsyncSession) -> datetime | None:
    """The earliest deadline of any action (the first entry of ix_actions_next_at)."""
    return (await session.execute(select(func.min(col(Action.next_at))))).scalar_one_or_none()
