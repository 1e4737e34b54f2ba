"""The queries behind "what waits on me" and "what did I decide" (`/ai-actions mine`, App Home):
one indexed statement each (`ix_actions_owner_status`, `ix_actions_status_id`,
`ix_actions_decided_by_at`). Who is paged for what is the policy's business (bot.reports.stats),
handed in as plain values."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action, SlackUser


async def resolved_keys(session: AsyncSession, user_id: str) -> list[str]:
    """The emails (directory cache keys) that resolved to this Slack user."""
    stmt = select(col(SlackUser.key)).where(col(SlackUser.slack_user_id) == user_id)
    return list((await session.execute(stmt)).scalars())


def _waiting(specs: Collection[str], secondary_of: Collection[str], leadership: bool,
             everything: bool) -> ColumnElement[bool]:
    if everything:
        return col(Action.status) == "pending"
    return and_(col(Action.status) == "pending", or_(
        col(Action.owner).in_(sorted(specs)),
        and_(col(Action.service).in_(secondary_of), col(Action.level).in_(("secondary", "leadership")))
        if secondary_of else false(),
        col(Action.level) == "leadership" if leadership else false(),
    ))


async def waiting_for(session: AsyncSession, *, specs: Collection[str], secondary_of: Collection[str],
                      leadership: bool, everything: bool, limit: int) -> list[Action]:
    """Pending actions, newest first, that are paged to someone named by `specs`: as owner; as the
    secondary of a service in `secondary_of` once escalated; any at the top if `leadership`; all of
    them if `everything` (an admin)."""
    stmt = select(Action).where(_waiting(specs, secondary_of, leadership, everything)).order_by(
        col(Action.id).desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def decided_by(session: AsyncSession, user_id: str, limit: int = 10) -> list[Action]:
    """What this person decided explicitly, newest first."""
    stmt = (select(Action).where(col(Action.decided_by) == user_id, col(Action.accountability) == "explicit")
            .order_by(col(Action.decided_at).desc()).limit(limit))
    return list((await session.execute(stmt)).scalars())
