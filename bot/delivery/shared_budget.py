"""The pacer's buckets and the breaker's state kept in the database, so replicas share Slack's
per-channel budget and see one outage together (the math stays in pacing.py, pure)."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.delivery.pacing import Breaker, Pacer
from storage.db import Database
from storage.models import BreakerState, PacingBucket
from storage.queries import pacing as rows

IDLE_SECONDS = 600.0  # a channel's bucket is forgotten after this long without a send


class SharedPacer:
    """Pacer calls made under the channel's row lock, inside the relay's claim transaction. A
    channel another replica is pacing at this instant is not waited for: its rows come back after
    one interval."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self._held: dict[str, PacingBucket | None] = {}  # this tick's locked buckets (None: busy elsewhere)

    @property
    def interval(self) -> float:
        return self.pacer.interval

    def new_tick(self) -> None:
        """The previous claim transaction ended, and its locks with it."""
        self._held.clear()

    async def _hold(self, session: AsyncSession, key: str) -> PacingBucket | None:
        if key not in self._held:
            row = await rows.lock_bucket(session, key)
            if row is not None:
                self.pacer.restore(key, row.tat, row.queue_tail)
            self._held[key] = row
        return self._held[key]

    def _store(self, session: AsyncSession, row: PacingBucket) -> None:
        row.tat, row.queue_tail = self.pacer.state(row.key)
        session.add(row)

    async def acquire(self, session: AsyncSession, key: str, waiting: int | None = None) -> float:
        """Pacer.acquire on the shared bucket: 0.0 send now (counted), else seconds to wait."""
        row = await self._hold(session, key)
        if row is None:
            return self.interval
        delay = self.pacer.acquire(key, waiting)
        self._store(session, row)
        return delay

    async def wait(self, session: AsyncSession, key: str) -> float:
        row = await self._hold(session, key)
        return self.interval if row is None else self.pacer.wait(key)

    async def take(self, session: AsyncSession, key: str) -> None:
        row = await self._hold(session, key)
        if row is not None:
            self.pacer.take(key)
            self._store(session, row)

    async def leave(self, db: Database, key: str) -> float:
        """A fresh token for a post leaving now (its claim-time one is stale or was counted under
        another key): 0.0 go, else seconds until its turn. Waits for the bucket's lock: a claim
        holding it ends within a tick."""
        async with db.session() as session:
            row = await rows.lock_bucket(session, key, wait=True)
            assert row is not None
            self.pacer.restore(key, row.tat, row.queue_tail)
            delay = self.pacer.acquire(key)
            self._store(session, row)
            await session.commit()
        return delay

    async def block(self, db: Database, key: str, seconds: float) -> None:
        """A 429 with Retry-After: nobody, on any replica, sends on `key` before it has passed."""
        async with db.session() as session:
            row = await rows.lock_bucket(session, key, wait=True)
            assert row is not None
            self.pacer.restore(key, row.tat, row.queue_tail)
            self.pacer.block(key, seconds)
            self._store(session, row)
            await session.commit()

    async def prune(self, db: Database) -> None:
        async with db.session() as session:
            await rows.prune_buckets(session, self.pacer.clock() - IDLE_SECONDS)
            await session.commit()
        self.pacer.prune(IDLE_SECONDS)


class SharedBreaker:
    """The breaker as every replica sees it: read at each tick, changed under its row lock. Its
    clock must be wall time (epoch seconds), the same on every replica."""

    def __init__(self, db: Database, breaker: Breaker, name: str = "slack") -> None:
        self.db, self.breaker, self.name = db, breaker, name

    def _load(self, row: BreakerState | None) -> None:
        if row is None:
            self.breaker.restore(0, 0.0, None, "")
        else:
            self.breaker.restore(row.failures, row.open_until, row.opened_at, row.last_error)

    async def refresh(self) -> None:
        async with self.db.read_session() as session:
            self._load(await rows.read_breaker(session, self.name))

    async def failure(self, error: str) -> None:
        async with self.db.session() as session:
            row = await rows.lock_breaker(session, self.name)
            self._load(row)
            self.breaker.failure(error)
            row.failures, row.open_until, row.opened_at = (self.breaker.failures, self.breaker.open_until,
                                                           self.breaker.opened_at)
            row.last_error = error[:500]
            session.add(row)
            await session.commit()

    async def success(self) -> bool:
        """Slack answered. True if this closed an open breaker (time to wake the backlog); no
        database write when it was closed already."""
        if not self.breaker.failures and not self.breaker.is_open:
            return False
        async with self.db.session() as session:
            row = await rows.lock_breaker(session, self.name)
            self._load(row)
            closed = self.breaker.success()
            row.failures, row.open_until, row.opened_at, row.last_error = 0, 0.0, None, ""
            session.add(row)
            await session.commit()
        return closed
