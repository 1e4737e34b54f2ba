"""How the AI is doing, and what waits on whom: the queries behind `/ai-actions`, App Home and the digest.

Every query is one indexed statement (see storage.models.Action's indexes): the stats window is a
single grouped scan of the covering index `ix_actions_stats`, folded into every figure in Python.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, false, func, or_, select, text
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.policy.rules import Policy
from storage.models import Action, Agent, SlackUser, UTCDateTime

# Statuses a human said yes / no with; `default` accountability counts apart (nobody answered).
APPROVED = ("approved", "acknowledged")
OVERRIDDEN = ("denied", "overridden")


@dataclass
class Rates:
    """One agent's or service's decisions: how often a human approved, overrode, or never answered."""

    total: int = 0
    approved: int = 0
    overridden: int = 0
    defaulted: int = 0
    pending: int = 0
    recorded: int = 0

    @property
    def decided(self) -> int:
        return self.approved + self.overridden + self.defaulted

    def rate(self, count: int) -> float | None:
        return count / self.decided if self.decided else None


@dataclass
class Stats:
    since: datetime
    until: datetime
    total: int = 0
    by_mode: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_mode_outcome: Counter[tuple[str, str]] = field(default_factory=Counter)
    per_agent: dict[str, Rates] = field(default_factory=dict)
    per_service: dict[str, Rates] = field(default_factory=dict)
    responded: int = 0  # explicit responses (the median's population)
    median_response_seconds: float | None = None
    defaulted: int = 0
    recent_defaults: list[Action] = field(default_factory=list)


def _outcome(status: str, accountability: str | None) -> str:
    if accountability == "default":
        return "defaulted"
    if status in APPROVED:
        return "approved"
    if status in OVERRIDDEN:
        return "overridden"
    return status  # pending | recorded | expired


def _add(rates: Rates, outcome: str, count: int) -> None:
    rates.total += count
    if outcome in ("approved", "overridden", "defaulted", "pending", "recorded"):
        setattr(rates, outcome, getattr(rates, outcome) + count)


async def agent_names(session: AsyncSession) -> dict[int, str]:
    return {i: n for i, n in (await session.execute(select(col(Agent.id), col(Agent.name)))).all()}


def _in_window(since: datetime, until: datetime) -> ColumnElement[bool]:
    return and_(col(Action.created_at) >= since, col(Action.created_at) < until)


async def window_stats(session: AsyncSession, since: datetime, until: datetime, *,
                       defaults_limit: int = 10) -> Stats:
    """Actions submitted in [since, until): counts, rates, median time to an explicit response."""
    stats = Stats(since=since, until=until)
    names = await agent_names(session)
    keys = [col(Action.agent_id), col(Action.service), col(Action.mode), col(Action.status),
            col(Action.accountability)]
    grouped = select(*keys, func.count()).where(_in_window(since, until)).group_by(*keys)
    for agent_id, service, mode, status, accountability, count in (await session.execute(grouped)).all():
        outcome = _outcome(status, accountability)
        stats.total += count
        stats.by_mode[mode] += count
        stats.by_outcome[status] += count
        stats.by_mode_outcome[(mode, status)] += count
        if accountability == "default":
            stats.defaulted += count
        elif accountability == "explicit":
            stats.responded += count
        _add(stats.per_agent.setdefault(names.get(agent_id, f"agent {agent_id}"), Rates()), outcome, count)
        _add(stats.per_service.setdefault(service, Rates()), outcome, count)
    stats.median_response_seconds = await median_response(session, since, until, stats.responded)
    if stats.defaulted:
        stats.recent_defaults = list((await session.execute(
            select(Action).where(_in_window(since, until), col(Action.accountability) == "default")
            .order_by(col(Action.id).desc()).limit(defaults_limit)
        )).scalars())
    return stats


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


async def decided_overrides(session: AsyncSession, since: datetime, until: datetime) -> list[Action]:
    stmt = select(Action).where(_decided_in(since, until), col(Action.accountability) == "explicit",
                                col(Action.status).in_(OVERRIDDEN)).order_by(col(Action.decided_at))
    return list((await session.execute(stmt)).scalars())


async def decided_defaults(session: AsyncSession, since: datetime, until: datetime) -> list[Action]:
    stmt = select(Action).where(_decided_in(since, until), col(Action.accountability) == "default").order_by(
        col(Action.decided_at))
    return list((await session.execute(stmt)).scalars())


async def slowest_responses(session: AsyncSession, since: datetime, until: datetime,
                            limit: int = 5) -> list[Action]:
    rows = list((await session.execute(
        select(Action).where(_decided_in(since, until), col(Action.accountability) == "explicit"))).scalars())
    rows.sort(key=response_seconds, reverse=True)  # one day's decisions: sorting here is cheap
    return rows[:limit]


def response_seconds(action: Action) -> float:
    if action.decided_at is None:
        return 0.0
    return (action.decided_at - action.created_at).total_seconds()


# --- who: what waits on a person, what they decided ------------------------------------------------


@dataclass(frozen=True)
class Person:
    """A Slack user and every spec the policy may name them by (their id and any resolved emails)."""

    user_id: str
    specs: frozenset[str]


async def person(session: AsyncSession, user_id: str) -> Person:
    stmt = select(col(SlackUser.key)).where(col(SlackUser.slack_user_id) == user_id)
    emails = (await session.execute(stmt)).scalars()
    return Person(user_id, frozenset({user_id, *emails}))


def waiting_filter(policy: Policy, who: Person) -> ColumnElement[bool]:
    """SQL for 'pending and paged to this person': owner now, secondary once escalated, leadership
    users at the top; admins may answer everything."""
    if who.specs & set(policy.admins):
        return col(Action.status) == "pending"
    secondary_of = [name for name, s in policy.services.items() if s.secondary in who.specs]
    lead = policy.leadership is not None and bool(who.specs & set(policy.leadership.users))
    return and_(col(Action.status) == "pending", or_(
        col(Action.owner).in_(sorted(who.specs)),
        and_(col(Action.service).in_(secondary_of), col(Action.level).in_(("secondary", "leadership")))
        if secondary_of else false(),
        col(Action.level) == "leadership" if lead else false(),
    ))


async def waiting_on(session: AsyncSession, policy: Policy, who: Person, limit: int = 20) -> list[Action]:
    stmt = select(Action).where(waiting_filter(policy, who)).order_by(
        col(Action.id).desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def decided_by(session: AsyncSession, user_id: str, limit: int = 10) -> list[Action]:
    stmt = (select(Action).where(col(Action.decided_by) == user_id, col(Action.accountability) == "explicit")
            .order_by(col(Action.decided_at).desc()).limit(limit))
    return list((await session.execute(stmt)).scalars())


def services_of(policy: Policy, who: Person) -> dict[str, str]:
    """The services this person is named on: name -> role (owner | secondary)."""
    roles: dict[str, str] = {}
    for name, svc in policy.services.items():
        if svc.owner in who.specs:
            roles[name] = "owner"
        elif svc.secondary in who.specs:
            roles[name] = "secondary"
    return roles
