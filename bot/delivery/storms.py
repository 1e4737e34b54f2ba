"""Storms: when one service gets more than `storm_per_minute` actions a minute (policy, default 10),
its channel cards are threaded under ONE parent card that keeps a running count.

A runaway agent then cannot flood the team channel: the channel shows one storm card and the
thread holds each action's own card (with its buttons). Owners are still paged for every action
(their DM cards are not threaded), and every action still gets its own decision.

The decision is made by the relay when a channel card is about to be sent, from the actions'
`created_at` (not the send time), so a burst queued during an outage is still seen as a storm.
The parent is an outbox row with a dedupe key, so each storm has exactly one parent even with
several relays; the running count is a `chat.update` of the parent, at most one every few seconds.

When a storm makes one channel's queue deep (the owner's DM, or the thread), the relay packs the
storm's cards several to a message, each card with its own buttons (handlers/renderers/storm.py
`card_pack`); `pack_members` finds a packed message's cards so a decision redraws them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.delivery.messages import STORM_PARENT, STORM_UPDATE, Kind
from storage import outbox
from storage.models import Action, SlackMessage, StormThread

DEFAULT_PER_MINUTE = 10
WINDOW = timedelta(minutes=1)
THREAD_SPAN = timedelta(minutes=10)  # a long storm starts a fresh parent every ten minutes
UPDATE_EVERY_SECONDS = 5


@dataclass(frozen=True)
class Route:
    """Where a channel card goes: the channel itself, a storm thread, or later (parent not posted yet)."""

    thread_ts: str | None = None
    storm_id: int | None = None
    wait: bool = False


async def route(session: AsyncSession, action_id: int, channel: str) -> Route:
    """Decide whether an action's channel card belongs to a storm thread (creating the storm if needed)."""
    action = await session.get(Action, action_id)
    if action is None:
        return Route()
    limit = int((action.frozen or {}).get("storm_per_minute") or DEFAULT_PER_MINUTE)
    recent = await _count(session, action.service, action.created_at - WINDOW, action.created_at)
    if recent <= limit:
        return Route()
    storm = await _storm_for(session, action, channel)
    assert storm.id is not None
    if storm.ts:
        return Route(thread_ts=storm.ts, storm_id=storm.id)
    parent_key = f"storm:{storm.id}:parent"
    parent = await outbox.by_dedupe_key(session, parent_key)
    if parent is None:
        await outbox.enqueue_once(session, dedupe_key=parent_key, method="chat.postMessage",
                                  payload={"kind": Kind.STORM.value, "channel": channel, "storm_id": storm.id},
                                  purpose=STORM_PARENT, channel_key=channel)
    elif parent.status == "failed":
        return Route()  # the parent cannot be posted: post the card plainly rather than never
    return Route(wait=True, storm_id=storm.id)


async def in_storm(session: AsyncSession, action_id: int) -> bool:
    """Whether the action came in faster than its service's storm_per_minute allows."""
    action = await session.get(Action, action_id)
    if action is None:
        return False
    limit = int((action.frozen or {}).get("storm_per_minute") or DEFAULT_PER_MINUTE)
    return await _count(session, action.service, action.created_at - WINDOW, action.created_at) > limit


async def pack_members(session: AsyncSession, channel: str, ts: str) -> list[int]:
    """The actions whose cards share one Slack message (a pack), in their order."""
    stmt = (select(col(SlackMessage.action_id))
            .where(col(SlackMessage.channel) == channel, col(SlackMessage.ts) == ts)
            .order_by(col(SlackMessage.action_id)))
    return [int(a) for a in (await session.execute(stmt)).scalars()]


async def parent_posted(session: AsyncSession, storm_id: int, channel: str | None, ts: str | None) -> None:
    storm = await session.get(StormThread, storm_id)
    if storm is not None and ts:
        storm.ts, storm.channel = ts, channel or storm.channel
        session.add(storm)


async def child_posted(session: AsyncSession, storm_id: int, now: datetime) -> None:
    """One more card in the thread: count it and schedule the parent's count update (coalesced)."""
    storm = await session.get(StormThread, storm_id)
    if storm is None:
        return
    storm.count += 1
    session.add(storm)
    bucket = int(now.timestamp() // UPDATE_EVERY_SECONDS)
    due = datetime.fromtimestamp((bucket + 1) * UPDATE_EVERY_SECONDS, UTC)
    await outbox.enqueue_once(session, dedupe_key=f"storm:{storm_id}:update:{bucket}", method="chat.update",
                              payload={"kind": Kind.STORM.value, "channel": None, "storm_id": storm_id,
                                       "update": True},
                              purpose=STORM_UPDATE, not_before=due)


async def summary(session: AsyncSession, storm_id: int) -> dict[str, Any] | None:
    """What the parent card shows: the service, since when, how many actions, how many still pending."""
    storm = await session.get(StormThread, storm_id)
    if storm is None:
        return None
    since = storm.created_at - WINDOW
    until = storm.created_at + THREAD_SPAN
    total = await _count(session, storm.service, since, until)
    pending = await _count(session, storm.service, since, until, status="pending")
    return {"service": storm.service, "channel": storm.channel, "ts": storm.ts, "since": since,
            "total": total, "pending": pending, "threaded": storm.count}


async def _count(session: AsyncSession, service: str, since: datetime, until: datetime,
                 status: str | None = None) -> int:
    stmt = select(func.count()).select_from(Action).where(
        col(Action.service) == service, col(Action.created_at) > since, col(Action.created_at) <= until)
    if status:
        stmt = stmt.where(col(Action.status) == status)
    return int((await session.execute(stmt)).scalar_one())


async def _storm_for(session: AsyncSession, action: Action, channel: str) -> StormThread:
    """The service's current storm thread (started at most THREAD_SPAN before this action), or a new one."""
    stmt = (select(StormThread)
            .where(col(StormThread.service) == action.service,
                   col(StormThread.created_at) >= action.created_at - THREAD_SPAN)
            .order_by(col(StormThread.created_at).desc()).limit(1))
    storm = (await session.execute(stmt)).scalar_one_or_none()
    if storm is not None:
        return storm
    window = action.created_at.astimezone(UTC).replace(second=0, microsecond=0).isoformat()
    try:
        async with session.begin_nested():
            storm = StormThread(service=action.service, window=window, channel=channel,
                                created_at=action.created_at)
            session.add(storm)
            await session.flush()
        return storm
    except IntegrityError:  # another relay started the same storm a moment ago
        stmt = select(StormThread).where(col(StormThread.service) == action.service,
                                         col(StormThread.window) == window)
        return (await session.execute(stmt)).scalar_one()
