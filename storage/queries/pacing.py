"""The shared Slack send budget and breaker (bot/delivery/pacing.py decides; these hold the rows):
one row per channel, locked while a replica decides. PostgreSQL: FOR UPDATE SKIP LOCKED (a channel
another replica is pacing right now is skipped, never waited for, so two replicas cannot deadlock);
SQLite: the writer lock already serializes every claimer."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import BreakerState, PacingBucket


def _postgres(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


async def lock_bucket(session: AsyncSession, key: str, *, wait: bool = False) -> PacingBucket | None:
    """The channel's bucket, locked until the transaction ends (created if new); None when another
    replica holds it (unless `wait`).

    The INSERT runs only for a channel with no bucket yet: on PostgreSQL an INSERT ... ON CONFLICT
    waits for any transaction that has just updated the conflicting row (its new version's inserter
    is still in progress), so inserting first made every claim wait for the replica pacing that
    channel, and two claims taking channels in different orders deadlocked (10 in a 2-minute soak)."""
    stmt = select(PacingBucket).where(col(PacingBucket.key) == key).execution_options(populate_existing=True)
    if not _postgres(session):
        found = (await session.execute(stmt)).scalar_one_or_none()
        if found is None:
            await session.execute(sqlite_insert(PacingBucket).values(key=key, tat=0.0, queue_tail=0.0)
                                  .on_conflict_do_nothing(index_elements=["key"]))
            found = (await session.execute(stmt)).scalar_one_or_none()
        return found
    locking = stmt.with_for_update(skip_locked=not wait)
    found = (await session.execute(locking)).scalar_one_or_none()
    if found is not None:
        return found
    exists = select(col(PacingBucket.key)).where(col(PacingBucket.key) == key)
    if (await session.execute(exists)).first() is not None:
        return None  # another replica holds it (a plain read does not wait for its lock)
    await session.execute(pg_insert(PacingBucket).values(key=key, tat=0.0, queue_tail=0.0)
                          .on_conflict_do_nothing(index_elements=["key"]))
    return (await session.execute(locking)).scalar_one_or_none()


async def prune_buckets(session: AsyncSession, idle_before: float) -> None:
    """Forget channels idle since `idle_before` (epoch seconds): bounded over months of channels."""
    await session.execute(delete(PacingBucket).where(col(PacingBucket.tat) < idle_before,
                                                     col(PacingBucket.queue_tail) < idle_before))


async def read_breaker(session: AsyncSession, name: str) -> BreakerState | None:
    stmt = select(BreakerState).where(col(BreakerState.name) == name).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def lock_breaker(session: AsyncSession, name: str) -> BreakerState:
    """The breaker's row, locked until the transaction ends (created closed if new)."""
    insert = pg_insert if _postgres(session) else sqlite_insert
    await session.execute(insert(BreakerState).values(name=name, failures=0, open_until=0.0, last_error="")
                          .on_conflict_do_nothing(index_elements=["name"]))
    stmt = select(BreakerState).where(col(BreakerState.name) == name).execution_options(populate_existing=True)
    if _postgres(session):
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one()
