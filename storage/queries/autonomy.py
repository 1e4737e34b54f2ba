"""Queries over what moves autonomy: agents' results, grants and pauses, and the brake's counts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action, ActionResult, AutonomyGrant, Pause

OVERRIDDEN = ("denied", "overridden")
BAD_RESULTS = ("failed", "rolled_back")


async def result_for(session: AsyncSession, action_id: int) -> ActionResult | None:
    return (await session.execute(
        select(ActionResult).where(col(ActionResult.action_id) == action_id))).scalars().first()


async def add_once(session: AsyncSession, row: ActionResult | Pause | AutonomyGrant) -> bool:
    """Insert in a savepoint; False if a unique key says it is already there (another replica)."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        return False
    return True


async def live_grants(session: AsyncSession) -> list[AutonomyGrant]:
    return list((await session.execute(
        select(AutonomyGrant).where(col(AutonomyGrant.revoked_at).is_(None),
                                    col(AutonomyGrant.decision) == "granted")
        .order_by(col(AutonomyGrant.id)))).scalars())


async def grants(session: AsyncSession, *, include_ended: bool = False, now: datetime | None = None,
                 limit: int = 200) -> list[AutonomyGrant]:
    """Granted rows, newest first; without `include_ended` those in force (at `now`: a grant past its
    `until` no longer applies even before the expiry sweep records its end)."""
    stmt = select(AutonomyGrant).where(col(AutonomyGrant.decision) == "granted")
    if not include_ended:
        stmt = stmt.where(col(AutonomyGrant.revoked_at).is_(None))
        if now is not None:
            stmt = stmt.where(col(AutonomyGrant.until) > now)
    return list((await session.execute(stmt.order_by(col(AutonomyGrant.id).desc()).limit(limit))).scalars())


async def decided_since(session: AsyncSession, *, dismissed_since: datetime,
                        granted_since: datetime) -> list[AutonomyGrant]:
    """What may hold a suggestion back (bot.autonomy.trust): dismissals made since `dismissed_since`,
    and grants not ended before `granted_since` (in force, or revoked or expired since)."""
    return list((await session.execute(select(AutonomyGrant).where(or_(
        and_(col(AutonomyGrant.decision) == "dismissed", col(AutonomyGrant.at) >= dismissed_since),
        and_(col(AutonomyGrant.decision) == "granted",
             or_(col(AutonomyGrant.revoked_at).is_(None), col(AutonomyGrant.revoked_at) >= granted_since))))
        .order_by(col(AutonomyGrant.id)))).scalars())


async def end_grant(session: AsyncSession, grant_id: int, at: datetime, by: str) -> AutonomyGrant | None:
    """Revoke a grant still in force (a conditional update: one revoker wins)."""
    done = await session.execute(update(AutonomyGrant).where(
        col(AutonomyGrant.id) == grant_id, col(AutonomyGrant.revoked_at).is_(None),
        col(AutonomyGrant.decision) == "granted").values(revoked_at=at, revoked_by=by))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return await session.get(AutonomyGrant, grant_id, populate_existing=True)


async def expired_grants(session: AsyncSession, now: datetime, limit: int = 100) -> list[AutonomyGrant]:
    return list((await session.execute(select(AutonomyGrant).where(
        col(AutonomyGrant.revoked_at).is_(None), col(AutonomyGrant.until) <= now,
        col(AutonomyGrant.decision) == "granted").limit(limit))).scalars())


async def live_pauses(session: AsyncSession) -> list[Pause]:
    return list((await session.execute(
        select(Pause).where(col(Pause.ended_at).is_(None)).order_by(col(Pause.id)))).scalars())


async def holding_pauses(session: AsyncSession, now: datetime) -> list[Pause]:
    return list((await session.execute(select(Pause).where(
        col(Pause.ended_at).is_(None), or_(col(Pause.until).is_(None), col(Pause.until) > now))
        .order_by(col(Pause.id)))).scalars())


async def end_pause(session: AsyncSession, pause_id: int, at: datetime, by: str) -> bool:
    """End a pause (resume, or its deadline passed): a conditional update, so one ender wins."""
    done = await session.execute(update(Pause).where(col(Pause.id) == pause_id, col(Pause.end_recorded).is_(False))
                                 .values(ended_at=at, ended_by=by, end_recorded=True))
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


async def expired_pauses(session: AsyncSession, now: datetime, limit: int = 100) -> list[Pause]:
    """Pauses whose deadline passed but whose end is not yet recorded (whoever runs next records it)."""
    return list((await session.execute(select(Pause).where(
        col(Pause.end_recorded).is_(False), col(Pause.until) <= now).limit(limit))).scalars())


async def overrides_since(session: AsyncSession, agent_id: int, service: str, since: datetime) -> int:
    """Proposals denied with Override and executed actions overridden, decided since `since`."""
    return int((await session.execute(select(func.count()).where(
        col(Action.agent_id) == agent_id, col(Action.service) == service,
        col(Action.status).in_(OVERRIDDEN), col(Action.accountability) == "explicit",
        col(Action.decided_at) >= since))).scalar_one())


async def bad_results_since(session: AsyncSession, agent_id: int, service: str, since: datetime) -> int:
    return int((await session.execute(select(func.count()).select_from(ActionResult).join(
        Action, col(Action.id) == col(ActionResult.action_id)).where(
        col(ActionResult.agent_id) == agent_id, col(Action.service) == service,
        col(ActionResult.result).in_(BAD_RESULTS), col(ActionResult.created_at) >= since))).scalar_one())


async def brake_history(session: AsyncSession, prefix: str) -> tuple[int, datetime | None]:
    """How many brake pauses this agent x service had, and when the last one ended (or started)."""
    row = (await session.execute(select(func.count(), func.max(func.coalesce(Pause.ended_at, Pause.started_at)))
                                 .where(col(Pause.dedupe_key).like(prefix + "%")))).one()
    return int(row[0]), row[1]
