"""How the AI is doing, and what waits on whom: the figures behind `/ai-actions`, App Home and the
digest. The queries are storage.queries.stats and storage.queries.people (one indexed statement
each); here they are folded into every figure, and the policy says who is paged for what.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.policy.rules import Policy
from bot.reports.figures import Rates, Stats
from storage.models import Action
from storage.queries import agents, people
from storage.queries import stats as queries

# Statuses a human said yes / no with; `default` accountability counts apart (nobody answered).
APPROVED = ("approved", "acknowledged")
OVERRIDDEN = ("denied", "overridden")


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


async def window_stats(session: AsyncSession, since: datetime, until: datetime, *,
                       defaults_limit: int = 10) -> Stats:
    """Actions submitted in [since, until): counts, rates, median time to an explicit response."""
    stats = Stats(since=since, until=until)
    names = await agents.names(session)
    for agent_id, service, mode, status, accountability, count in await queries.window_counts(
            session, since, until):
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
    stats.median_response_seconds = await queries.median_response(session, since, until, stats.responded)
    if stats.defaulted:
        stats.recent_defaults = await queries.latest_defaults(session, since, until, defaults_limit)
    return stats


# --- what was decided during a window (the digest's lists) --------------------------------------------


async def decided_overrides(session: AsyncSession, since: datetime, until: datetime) -> list[Action]:
    """Every explicit override (a proposal denied, an executed action overridden) of the window."""
    return await queries.decided_explicitly(session, since, until, OVERRIDDEN)


async def slowest_responses(session: AsyncSession, since: datetime, until: datetime,
                            limit: int = 5) -> list[Action]:
    rows = await queries.responses_in(session, since, until)
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
    return Person(user_id, frozenset({user_id, *await people.resolved_keys(session, user_id)}))


async def waiting_on(session: AsyncSession, policy: Policy, who: Person, limit: int = 20) -> list[Action]:
    """Pending and paged to this person: owner now, secondary once escalated, leadership users at the
    top; admins may answer everything."""
    return await people.waiting_for(
        session,
        specs=who.specs,
        secondary_of=[name for name, s in policy.services.items() if s.secondary in who.specs],
        leadership=policy.leadership is not None and bool(who.specs & set(policy.leadership.users)),
        everything=bool(who.specs & set(policy.admins)),
        limit=limit,
    )


def services_of(policy: Policy, who: Person) -> dict[str, str]:
    """The services this person is named on: name -> role (owner | secondary)."""
    roles: dict[str, str] = {}
    for name, svc in policy.services.items():
        if svc.owner in who.specs:
            roles[name] = "owner"
        elif svc.secondary in who.specs:
            roles[name] = "secondary"
    return roles
