"""Storm bookkeeping queries (bot.delivery.storms decides what a storm is): counting a service's
actions in a window (`ix_actions_service_id` / `ix_actions_created_at`), the storm threads (unique
on service and minute, so two relays start one storm), and which cards share a packed message."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action, Agent, SlackMessage, StormThread


async def count_actions(session: AsyncSession, service: str, since: datetime, until: datetime,
                        status: str | None = None) -> int:
    """A service's actions created in (since, until], optionally only those in `status`."""
    stmt = select(func.count()).select_from(Action).where(
        col(Action.service) == service, col(Action.created_at) > since, col(Action.created_at) <= until)
    if status:
        stmt = stmt.where(col(Action.status) == status)
    return int((await session.execute(stmt)).scalar_one())


async def pack_members(session: AsyncSession, channel: str, ts: str) -> list[int]:
    """The actions whose cards share one Slack message (a pack), in their order."""
    stmt = (select(col(SlackMessage.action_id))
            .where(col(SlackMessage.channel) == channel, col(SlackMessage.ts) == ts)
            .order_by(col(SlackMessage.action_id)))
    return [int(a) for a in (await session.execute(stmt)).scalars()]


async def get(session: AsyncSession, storm_id: int) -> StormThread | None:
    return await session.get(StormThread, storm_id)


async def latest_since(session: AsyncSession, service: str, since: datetime) -> StormThread | None:
    """The service's newest storm thread started at or after `since`."""
    stmt = (select(StormThread)
            .where(col(StormThread.service) == service, col(StormThread.created_at) >= since)
            .order_by(col(StormThread.created_at).desc()).limit(1))
    return (await session.execute(stmt)).scalar_one_or_none()


async def start(session: AsyncSession, *, service: str, window: str, channel: str,
                created_at: datetime) -> StormThread:
    """A new storm thread for (service, window), or the one another relay started a moment ago."""
    try:
        async with session.begin_nested():
            storm = StormThread(service=service, window=window, channel=channel, created_at=created_at)
            session.add(storm)
            await session.flush()
        return storm
    except IntegrityError:
        stmt = select(StormThread).where(col(StormThread.service) == service,
                                         col(StormThread.window) == window)
        return (await session.execute(stmt)).scalar_one()


async def parent_posted(session: AsyncSession, storm_id: int, channel: str | None, ts: str | None) -> None:
    """Where the storm's parent card now lives in Slack."""
    storm = await session.get(StormThread, storm_id)
    if storm is not None and ts:
        storm.ts, storm.channel = ts, channel or storm.channel
        session.add(storm)


async def count_child(session: AsyncSession, storm_id: int, n: int = 1) -> bool:
    """`n` more cards in the storm's thread; False if the storm is gone."""
    storm = await session.get(StormThread, storm_id)
    if storm is None:
        return False
    storm.count += n
    session.add(storm)
    return True


async def with_agents(session: AsyncSession, action_ids: list[int]) -> list[tuple[Action, str]]:
    """The actions of a pack with their agents' names, in one query, in the order given."""
    if not action_ids:
        return []
    stmt = (select(Action, col(Agent.name)).join(Agent, col(Agent.id) == col(Action.agent_id))
            .where(col(Action.id).in_(action_ids)))
    found = {action.id: (action, str(name)) for action, name in (await session.execute(stmt)).all()}
    return [found[i] for i in action_ids if i in found]


async def members(session: AsyncSession, service: str, since: datetime, until: datetime,
                  action_ids: list[int]) -> set[int]:
    """Which of `action_ids` are the service's actions created in (since, until]: one query."""
    if not action_ids:
        return set()
    stmt = select(col(Action.id)).where(col(Action.id).in_(action_ids), col(Action.service) == service,
                                        col(Action.created_at) > since, col(Action.created_at) <= until)
    return {int(i) for i in (await session.execute(stmt)).scalars()}
