"""The outbox: outbound Slack calls and agent callbacks, written in the transaction that causes them.

A relay (bot.relay) claims due rows, sends them and marks them done. Rows are never deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import DeliveryAttempt, OutboxMessage, utcnow


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
) -> OutboxMessage:
    msg = OutboxMessage(
        target=target,
        method=method,
        payload=payload,
        action_id=action_id,
        purpose=purpose,
        channel_key=channel_key or payload.get("channel"),
        dedupe_key=dedupe_key,
        next_attempt_at=not_before or utcnow(),
    )
    session.add(msg)
    return msg


async def claim_due(
    session: AsyncSession, now: datetime, *, limit: int = 50, lease_seconds: float = 60.0
) -> list[OutboxMessage]:
    """Claim due rows for this relay; a lease lets another replica take over after a crash.

    The caller commits right after, so the claim is short: PostgreSQL skips rows another
    replica holds (FOR UPDATE SKIP LOCKED); SQLite's writer lock serializes claimers.
    """
    stmt = (
        select(OutboxMessage)
        .where(
            OutboxMessage.status.in_(["pending", "sending"]),  # type: ignore[attr-defined]
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until <= now),  # type: ignore[union-attr]
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list((await session.execute(stmt)).scalars())
    until = now + timedelta(seconds=lease_seconds)
    for row in rows:
        row.status = "sending"
        row.claimed_until = until
        session.add(row)
    return rows


async def record_attempt(
    session: AsyncSession,
    msg_id: int,
    *,
    ok: bool,
    status_code: int | None = None,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    retry_at: datetime | None = None,
    give_up: bool = False,
) -> None:
    """Store one delivery attempt and move the row to done, back to pending, or failed."""
    msg = await session.get(OutboxMessage, msg_id)
    assert msg is not None
    msg.attempts += 1
    session.add(
        DeliveryAttempt(outbox_id=msg_id, attempt=msg.attempts, ok=ok, status_code=status_code, error=error)
    )
    msg.claimed_until = None
    if ok:
        msg.status, msg.sent_at, msg.result, msg.last_error = "done", utcnow(), result, None
    elif give_up:
        msg.status, msg.last_error = "failed", error
    else:
        msg.status, msg.last_error = "pending", error
        msg.next_attempt_at = retry_at or utcnow()
    session.add(msg)


async def backlog(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many messages wait to be sent, and since when the oldest waits."""
    from sqlalchemy import func

    row = (
        await session.execute(
            select(func.count(), func.min(OutboxMessage.created_at)).where(
                OutboxMessage.status.in_(["pending", "sending"])  # type: ignore[attr-defined]
            )
        )
    ).one()
    return int(row[0]), row[1]


async def retry_failed(session: AsyncSession, *, target: str | None = None, ids: list[int] | None = None) -> int:
    stmt = update(OutboxMessage).where(OutboxMessage.status == "failed")
    if target:
        stmt = stmt.where(OutboxMessage.target == target)
    if ids:
        stmt = stmt.where(OutboxMessage.id.in_(ids))  # type: ignore[union-attr]
    result = await session.execute(stmt.values(status="pending", next_attempt_at=utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
