"""The outbox: outbound Slack calls and agent callbacks, written in the transaction that causes them
(storage.enqueue). A relay (bot.delivery.relay) claims due rows here, sends them and marks them
done. Rows are never deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import DeliveryAttempt, OutboxMessage, utcnow


async def claim_due(
    session: AsyncSession,
    now: datetime,
    *,
    limit: int = 50,
    lease_seconds: float = 60.0,
    target: str | None = None,
    resumed: dict[int, datetime] | None = None,
    unanswered: str | None = None,
) -> list[OutboxMessage]:
    """Claim due rows for this relay; a lease lets another replica take over after a crash.

    The caller commits right after, so the claim is short: PostgreSQL skips rows another
    replica holds (FOR UPDATE SKIP LOCKED); SQLite's writer lock serializes claimers.
    While a row is claimed, `next_attempt_at` holds when its lease began. A row that may have
    reached Slack goes into `resumed` with the time from which to look for it: one still "sending"
    whose lease lapsed (from when that lease began), and one whose last attempt got no answer
    (`last_error` starting with `unanswered`; from when it was queued, as any replica may claim it).
    """
    stmt = (
        select(OutboxMessage)
        .where(
            col(OutboxMessage.status).in_(["pending", "sending"]),
            col(OutboxMessage.next_attempt_at) <= now,
            or_(col(OutboxMessage.claimed_until).is_(None), col(OutboxMessage.claimed_until) <= now),
        )
        .order_by(col(OutboxMessage.next_attempt_at), col(OutboxMessage.id))
        .limit(limit)
    )
    if target is not None:
        stmt = stmt.where(col(OutboxMessage.target) == target)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list((await session.execute(stmt)).scalars())
    until = now + timedelta(seconds=lease_seconds)
    for row in rows:
        if resumed is not None and row.id is not None:
            if row.status == "sending":
                resumed[row.id] = row.next_attempt_at
            elif unanswered and (row.last_error or "").startswith(unanswered):
                resumed.setdefault(row.id, row.created_at)
        row.status, row.claimed_until, row.next_attempt_at = "sending", until, now
        session.add(row)
    return rows


async def claim_waiting(session: AsyncSession, channel_key: str, now: datetime, *, exclude: set[int],
                        limit: int, lease_seconds: float = 15.0) -> list[OutboxMessage]:
    """Claim early the posts for one channel that only wait for their pacing turn (never attempted),
    to fill a pack that is going out now."""
    stmt = (select(OutboxMessage)
            .where(col(OutboxMessage.channel_key) == channel_key, col(OutboxMessage.status) == "pending",
                   col(OutboxMessage.method) == "chat.postMessage", col(OutboxMessage.attempts) == 0,
                   col(OutboxMessage.id).not_in(exclude or {0}))
            .order_by(col(OutboxMessage.id)).limit(limit))
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list((await session.execute(stmt)).scalars())
    for row in rows:
        row.status, row.claimed_until = "sending", now + timedelta(seconds=lease_seconds)
        session.add(row)
    return rows


def defer(session: AsyncSession, msg: OutboxMessage, until: datetime) -> None:
    """Put a claimed row back, due at `until`, without counting an attempt (pacing, storm parent)."""
    msg.status, msg.next_attempt_at, msg.claimed_until = "pending", until, None
    session.add(msg)


# Kinds rendered at send time from the current state, so one send per batch carries everything:
# kind -> the payload field that says what it is about (a person's App Home, an action's cards).
COALESCED = {"home": "channel", "update_cards": "action_id"}


def coalesce(session: AsyncSession, rows: list[OutboxMessage]) -> list[OutboxMessage]:
    """Of claimed rows that render the same thing at send time, keep the newest; the older ones are
    marked done, superseded by it (not attempts; nothing is lost: the newest shows it all)."""
    newest: dict[tuple[str, Any], OutboxMessage] = {}
    for row in rows:
        key = _coalesce_key(row)
        if key is not None and (key not in newest or (row.id or 0) > (newest[key].id or 0)):
            newest[key] = row
    kept = []
    for row in rows:
        key = _coalesce_key(row)
        if key is not None and newest[key] is not row:
            settle(session, row, {"superseded_by": newest[key].id})
        else:
            kept.append(row)
    return kept


def settle(session: AsyncSession, row: OutboxMessage, result: dict[str, Any]) -> None:
    """Mark a claimed row done without sending it (superseded, or no longer needed: `result` says
    which); not an attempt, and it takes no turn of its channel's budget."""
    row.status, row.claimed_until = "done", None
    row.result, row.sent_at = result, utcnow()
    session.add(row)


def _coalesce_key(row: OutboxMessage) -> tuple[str, Any] | None:
    kind = str(row.payload.get("kind"))
    return (kind, row.payload.get(COALESCED[kind])) if kind in COALESCED and row.target == "slack" else None


async def release(session: AsyncSession, msg_id: int, *, until: datetime | None = None) -> None:
    """Hand an unsent claimed row back, due at once (Slack went down before its turn) or at `until`
    (its channel's budget had no room as it left); not an attempt."""
    values: dict[str, Any] = {"status": "pending", "claimed_until": None}
    if until is not None:
        values["next_attempt_at"] = until
    await session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == msg_id, col(OutboxMessage.status) == "sending")
        .values(**values)
    )


async def wake(session: AsyncSession, now: datetime, *, target: str = "slack") -> int:
    """Slack is back: rows backing off after transient errors are due now (delivered on recovery)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.status) == "pending",
            col(OutboxMessage.target) == target,
            col(OutboxMessage.attempts) > 0,
            col(OutboxMessage.next_attempt_at) > now,
            ~col(OutboxMessage.last_error).startswith("ratelimited"),
        )
        .values(next_attempt_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


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
    at: datetime | None = None,
) -> None:
    """Store one delivery attempt (`at`: when its answer came) and move the row to done, back to
    pending, or failed."""
    msg = await session.get(OutboxMessage, msg_id)
    assert msg is not None
    msg.attempts += 1
    session.add(
        DeliveryAttempt(outbox_id=msg_id, attempt=msg.attempts, ok=ok, status_code=status_code, error=error,
                        at=at or utcnow())
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


async def mark_done(session: AsyncSession, rows: list[OutboxMessage], *, status_code: int | None,
                    result: dict[str, Any] | None, at: datetime) -> None:
    """Record one successful send carrying `rows` (one message, or a pack of cards): two statements
    whatever the pack's size, because every round trip here widens the window in which a crash
    re-sends what Slack already has."""
    ids = [row.id for row in rows if row.id is not None]
    if not ids:
        return
    await session.execute(
        update(OutboxMessage).where(col(OutboxMessage.id).in_(ids))
        .values(status="done", attempts=OutboxMessage.attempts + 1, claimed_until=None, sent_at=at,
                result=result, last_error=None))
    await session.execute(insert(DeliveryAttempt), [
        {"outbox_id": row.id, "attempt": row.attempts + 1, "ok": True, "status_code": status_code, "at": at}
        for row in rows if row.id is not None])


async def backlog(session: AsyncSession, *, target: str | None = None) -> tuple[int, datetime | None]:
    """How many messages wait to be sent, and since when the oldest waits."""
    stmt = select(func.count(), func.min(col(OutboxMessage.created_at))).where(
        col(OutboxMessage.status).in_(["pending", "sending"])
    )
    if target is not None:
        stmt = stmt.where(col(OutboxMessage.target) == target)
    row = (await session.execute(stmt)).one()
    return int(row[0]), row[1]


async def queue_depth(session: AsyncSession, channel_key: str) -> int:
    """How many Slack posts wait for one channel (pacing lets about one a second through)."""
    stmt = select(func.count()).select_from(OutboxMessage).where(
        col(OutboxMessage.channel_key) == channel_key, col(OutboxMessage.method) == "chat.postMessage",
        col(OutboxMessage.status).in_(["pending", "sending"]))
    return int((await session.execute(stmt)).scalar_one())


async def count_failed(session: AsyncSession) -> int:
    stmt = select(func.count()).select_from(OutboxMessage).where(col(OutboxMessage.status) == "failed")
    return int((await session.execute(stmt)).scalar_one())


async def listing(session: AsyncSession, *, status: str | None = None, limit: int = 50
                  ) -> list[OutboxMessage]:
    """Newest deliveries first, optionally only one status."""
    stmt = select(OutboxMessage).order_by(col(OutboxMessage.id).desc()).limit(limit)
    if status:
        stmt = stmt.where(col(OutboxMessage.status) == status)
    return list((await session.execute(stmt)).scalars())


async def attempts(session: AsyncSession, outbox_id: int) -> list[DeliveryAttempt]:
    stmt = (select(DeliveryAttempt).where(col(DeliveryAttempt.outbox_id) == outbox_id)
            .order_by(col(DeliveryAttempt.attempt)))
    return list((await session.execute(stmt)).scalars())


async def retry_failed(session: AsyncSession, *, target: str | None = None, ids: list[int] | None = None,
                       now: datetime | None = None) -> int:
    """Failed deliveries are due again now (e.g. after the Slack app was invited to the channel)."""
    stmt = update(OutboxMessage).where(col(OutboxMessage.status) == "failed")
    if target:
        stmt = stmt.where(col(OutboxMessage.target) == target)
    if ids:
        stmt = stmt.where(col(OutboxMessage.id).in_(ids))
    result = await session.execute(stmt.values(status="pending", claimed_until=None,
                                               next_attempt_at=now or utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
