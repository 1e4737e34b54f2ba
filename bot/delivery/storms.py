"""Storms: past `storm_per_minute` actions a minute for a service, its channel cards are threaded
under one parent card with a running count (docs/architecture.md, "Storms"); how a deep queue is
packed: bot/delivery/packing.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.delivery.messages import STORM_PARENT, STORM_UPDATE, Kind
from storage.enqueue import by_dedupe_key, enqueue_once
from storage.models import Action, StormThread
from storage.queries import actions
from storage.queries import storms as queries

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
    action = await actions.get(session, action_id)
    if action is None:
        return Route()
    limit = int((action.frozen or {}).get("storm_per_minute") or DEFAULT_PER_MINUTE)
    recent = await queries.count_actions(session, action.service, action.created_at - WINDOW, action.created_at)
    if recent <= limit:
        return Route()
    storm = await _storm_for(session, action, channel)
    assert storm.id is not None
    if storm.ts:
        return Route(thread_ts=storm.ts, storm_id=storm.id)
    parent_key = f"storm:{storm.id}:parent"
    parent = await by_dedupe_key(session, parent_key)
    if parent is None:
        await enqueue_once(session, dedupe_key=parent_key, method="chat.postMessage",
                                  payload={"kind": Kind.STORM.value, "channel": channel, "storm_id": storm.id},
                                  purpose=STORM_PARENT, channel_key=channel)
    elif parent.status == "failed":
        return Route()  # the parent cannot be posted: post the card plainly rather than never
    return Route(wait=True, storm_id=storm.id)


async def in_storm(session: AsyncSession, action_id: int) -> bool:
    """Whether the action came in faster than its service's storm_per_minute allows."""
    action = await actions.get(session, action_id)
    if action is None:
        return False
    limit = int((action.frozen or {}).get("storm_per_minute") or DEFAULT_PER_MINUTE)
    return await queries.count_actions(session, action.service, action.created_at - WINDOW,
                                       action.created_at) > limit


async def in_thread(session: AsyncSession, storm_id: int, action_ids: list[int]) -> set[int]:
    """Which of `action_ids` belong to the storm's thread (its service, within its span): what lets
    a deep queue of FYIs fill a pack with one query rather than one `route` per row."""
    storm = await queries.get(session, storm_id)
    if storm is None:
        return set()
    return await queries.members(session, storm.service, storm.created_at - WINDOW,
                                 storm.created_at + THREAD_SPAN, action_ids)


async def child_posted(session: AsyncSession, storm_id: int, now: datetime, n: int = 1) -> None:
    """`n` more cards in the thread (one post): count them and schedule the parent's count update
    (coalesced)."""
    if not await queries.count_child(session, storm_id, n):
        return
    bucket = int(now.timestamp() // UPDATE_EVERY_SECONDS)
    due = datetime.fromtimestamp((bucket + 1) * UPDATE_EVERY_SECONDS, UTC)
    await enqueue_once(session, dedupe_key=f"storm:{storm_id}:update:{bucket}", method="chat.update",
                              payload={"kind": Kind.STORM.value, "channel": None, "storm_id": storm_id,
                                       "update": True},
                              purpose=STORM_UPDATE, not_before=due)


async def summary(session: AsyncSession, storm_id: int) -> dict[str, Any] | None:
    """What the parent card shows: the service, since when, how many actions, how many still pending."""
    storm = await queries.get(session, storm_id)
    if storm is None:
        return None
    since = storm.created_at - WINDOW
    until = storm.created_at + THREAD_SPAN
    total = await queries.count_actions(session, storm.service, since, until)
    pending = await queries.count_actions(session, storm.service, since, until, status="pending")
    return {"service": storm.service, "channel": storm.channel, "ts": storm.ts, "since": since,
            "total": total, "pending": pending, "threaded": storm.count}


async def _storm_for(session: AsyncSession, action: Action, channel: str) -> StormThread:
    """The service's current storm thread (started at most THREAD_SPAN before this action), or a new one."""
    storm = await queries.latest_since(session, action.service, action.created_at - THREAD_SPAN)
    if storm is not None:
        return storm
    window = action.created_at.astimezone(UTC).replace(second=0, microsecond=0).isoformat()
    return await queries.start(session, service=action.service, window=window, channel=channel,
                               created_at=action.created_at)
