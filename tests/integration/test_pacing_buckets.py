"""The shared pacing buckets (storage/queries/pacing.py) on PostgreSQL: a channel another replica is
pacing right now is skipped, never waited for. The bucket used to be INSERTed (ON CONFLICT DO
NOTHING) before it was locked, and PostgreSQL makes such an INSERT wait for the transaction that
has just updated the conflicting row: claims queued behind each other, and two claims taking two
channels in opposite orders deadlocked (10 times in a 2-minute soak)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from storage.db import Database
from storage.queries.pacing import lock_bucket


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's writer lock serializes every claimer: nothing to skip")
    database = Database(database_url)
    await database.migrate()
    yield database
    await database.dispose()


async def known(db: Database, *keys: str) -> None:
    """The channels' buckets exist (as after their first send). A bucket created by a transaction
    still open is waited for: only a channel's very first sends can meet that."""
    for key in keys:
        async with db.session() as session:
            assert await lock_bucket(session, key) is not None
            await session.commit()


async def test_a_bucket_being_paced_elsewhere_is_skipped_at_once(db: Database) -> None:
    await known(db, "C0BUSY", "C0FREE")
    async with db.session() as first:
        held = await lock_bucket(first, "C0BUSY")  # locked and moved on, as a claim does
        assert held is not None
        held.tat = 123.0
        first.add(held)
        await first.flush()
        async with db.session() as second:  # another replica's claim, meanwhile
            assert await asyncio.wait_for(lock_bucket(second, "C0BUSY"), timeout=2.0) is None
            other = await asyncio.wait_for(lock_bucket(second, "C0FREE"), timeout=2.0)
            assert other is not None and other.key == "C0FREE"
            await second.commit()
        await first.commit()
    async with db.session() as third:  # released with the transaction: anyone may take it now
        again = await lock_bucket(third, "C0BUSY")
        assert again is not None and again.tat == 123.0


async def test_two_claims_taking_channels_in_opposite_orders_do_not_deadlock(db: Database) -> None:
    await known(db, "C0A", "C0B")

    async def claim(order: tuple[str, str], ready: asyncio.Event, other_ready: asyncio.Event) -> list[bool]:
        async with db.session() as session:
            got = []
            first = await lock_bucket(session, order[0])
            assert first is not None
            first.tat += 1.0
            session.add(first)
            await session.flush()
            ready.set()
            await other_ready.wait()  # both now hold one and ask for the other
            got.append((await lock_bucket(session, order[1])) is not None)
            await session.commit()
            return got

    a_ready, b_ready = asyncio.Event(), asyncio.Event()
    results = await asyncio.wait_for(asyncio.gather(claim(("C0A", "C0B"), a_ready, b_ready),
                                                    claim(("C0B", "C0A"), b_ready, a_ready)), timeout=5.0)
    assert results == [[False], [False]]  # each skips the channel the other holds; nobody waits
