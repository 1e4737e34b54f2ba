"""The queries behind the figures (bot.reports.stats: `/ai-actions stats`, the digest), each one
indexed statement next to the indexes it reads (storage.models.Action): a window is a single
grouped scan of the covering index `ix_actions_stats`; what was decided in a window reads
`ix_actions_decided_at`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, bindparam, func, select, text
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action, UTCDateTime


class GroupCount(NamedTuple):
    """How many actions of one agent and service were in one mode, status and accountability."""

    agent_id: int
    service: str
    mode: str
    status: str
    accountability: str | None
    actions: int  # how many


def _in_window(since: datetime, until: datetime) -> ColumnElement[bool]:
    return and_(col(Action.created_at) >= since, col(Action.created_at) < until)


async def window_counts(session: AsyncSession, since: datetime, until: datetime) -> list[GroupCount]:
    """Actions submitted in [since, until), counted by agent, service, mode, status, accountability."""
    keys = [col(Action.agent_id), col(Action.service), col(Action.mode), col(Action.status),
            col(Action.accountability)]
    grouped = select(*keys, func.count()).where(_in_window(since, until)).group_by(*keys)
    return [GroupCount(*row) for row in (await session.execute(grouped)).all()]


async def latest_defaults(session: AsyncSession, since: datetime, until: datetime, limit: int) -> list[Action]:
    """The newest actions submitted in the window whose accountability defaulted (nobody answered)."""
    return list((await session.execute(
        select(Action).where(_in_window(since, until), col(Action.accountability) == "default")
        .order_by(col(Action.id).desc()).limit(limit)
    )).scalars())


_MEDIAN_SQL = {
    "postgresql": """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM decided_at - created_at))
        FROM actions WHERE created_at >= :since AND created_at < :until AND accountability = 'explicit'""",
    # SQLite has no percentile: sort the durations and average the middle one or two (the count is
    # known from the grouped pass, so this is one scan of the covering index and one sort).
    "sqlite": """
        SELECT avg(s) FROM (SELECT (julianday(decided_at) - julianday(created_at)) * 86400.0 AS s
                            FROM actions WHERE created_at >= :since AND created_at < :until
                            AND accountability = 'explicit' ORDER BY s LIMIT :take OFFSET :skip)""",
}


async def median_response(session: AsyncSession, since: datetime, until: datetime,
                          responded: int) -> float | None:
    """Median seconds from submission to an explicit response, over `responded` such actions."""
    if not responded:
        return None
    dialect = session.bind.dialect.name
    # Typed binds: the window is compared the way UTCDateTime stores it (naive UTC text on SQLite).
    stmt = text(_MEDIAN_SQL[dialect]).bindparams(bindparam("since", type_=UTCDateTime()),
                                                 bindparam("until", type_=UTCDateTime()))
    params: dict[str, Any] = {"since": since, "until": until}
    if dialect == "sqlite":
        params.update(take=2 - responded % 2, skip=(responded - 1) // 2)
    median = (await session.execute(stmt, params)).scalar_one()
    return float(median) if median is not None else None


# --- what was decided during a window (the digest's lists) --------------------------------------------


def _decided_in(since: datetime, until: datetime) -> ColumnElement[bool]:
    return and_(col(Action.decided_at) >= since, col(Action.decided_at) < until)


async def decided_explicitly(session: AsyncSession, since: datetime, until: datetime,
                             statuses: Sequence[str]) -> list[Action]:
    """Explicit decisions made in the window that left the action in one of `statuses`, in order."""
    stmt = select(Action).where(_decided_in(since, until), col(Action.accountability) == "explicit",
                                col(Action.status).in_(statuses)).order_by(col(Action.decided_at))
    return list((await session.execute(stmt)).scalars())


async def decided_by_default(session: AsyncSession, since: datetime, until: datetime) -> list[Action]:
    """Actions whose accountability defaulted during the window, in order."""
    stmt = select(Action).where(_decided_in(since, until), col(Action.accountability) == "default").order_by(
        col(Action.decided_at))
    return list((await session.execute(stmt)).scalars())


async def responses_in(session: AsyncSession, since: datetime, until: datetime) -> list[Action]:
    """Every explicit decision made in the window (one day's: few enough to sort in Python)."""
    return list((await session.execute(
        select(Action).where(_decided_in(since, until), col(Action.accountability) == "explicit"))).scalars())
