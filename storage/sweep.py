"""Claiming pending actions whose next escalation step is due."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action


async def claim_due_actions(session: AsyncSession, now: datetime, *, limit: int = 200) -> list[Action]:
    """Due actions, by the indexed deadline (never a scan). PostgreSQL: rows another replica holds
    are skipped (FOR UPDATE SKIP LOCKED); SQLite: the transaction already holds the writer lock."""
    stmt = (
        select(Action)
        .where(Action.next_at.is_not(None), Action.next_at <= now)  # type: ignore[union-attr,operator]
        .order_by(Action.next_at)  # type: ignore[arg-type]
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list((await session.execute(stmt)).scalars())
