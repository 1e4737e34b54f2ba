"""The track record's queries: per agent x service x action_type x environment over a window,
counts by status, `default` accountability, policy violations, the median time to an explicit
decision (exact: the middle row(s) of each group by a window function, the same SQL on both
databases) and the agents' results."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, select, text
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action, ActionResult, Agent, UTCDateTime

Key = tuple[int, str, str, str]  # agent id, service, action_type, environment


@dataclass
class Group:
    """The raw figures of one key (bot.policy.autonomy.Record names and derives them)."""

    by_status: dict[str, int] = field(default_factory=dict)
    defaults: int = 0
    violations: int = 0
    median_decision_seconds: float | None = None
    results: dict[str, int] = field(default_factory=dict)


_SECONDS = {
    "postgresql": "EXTRACT(EPOCH FROM decided_at - created_at)",
    "sqlite": "(julianday(decided_at) - julianday(created_at)) * 86400.0",
}

_MEDIAN = """
WITH d AS (
  SELECT agent_id, service, action_type, environment, {seconds} AS s,
         ROW_NUMBER() OVER (PARTITION BY agent_id, service, action_type, environment ORDER BY {seconds}) AS rn,
         COUNT(*) OVER (PARTITION BY agent_id, service, action_type, environment) AS n
  FROM actions
  WHERE created_at >= :since AND created_at <= :until AND accountability = 'explicit' {where}
)
SELECT agent_id, service, action_type, environment, AVG(s) FROM d
WHERE rn IN ((n + 1) / 2, (n + 2) / 2)
GROUP BY agent_id, service, action_type, environment
"""


def _filters(agent_id: int | None, service: str | None) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if agent_id is not None:
        clauses.append("AND agent_id = :agent_id")
        params["agent_id"] = agent_id
    if service is not None:
        clauses.append("AND service = :service")
        params["service"] = service
    return " ".join(clauses), params


async def track_record(session: AsyncSession, since: datetime, until: datetime, *,
                       agent_id: int | None = None, service: str | None = None,
                       median: bool = True) -> dict[Key, Group]:
    """Every key with actions submitted in [since, until]: three grouped statements (two without the
    median, which is the costly one: a sort per group)."""
    keys = [col(Action.agent_id), col(Action.service), col(Action.action_type), col(Action.environment)]
    window = [col(Action.created_at) >= since, col(Action.created_at) <= until]
    if agent_id is not None:
        window.append(col(Action.agent_id) == agent_id)
    if service is not None:
        window.append(col(Action.service) == service)
    groups: dict[Key, Group] = {}
    counts = select(*keys, col(Action.status), func.count(),
                    func.sum(case((col(Action.accountability) == "default", 1), else_=0)),
                    func.sum(case((col(Action.policy_violation).is_(True), 1), else_=0))
                    ).where(*window).group_by(*keys, col(Action.status))
    for a, s, t, e, status, n, defaults, violations in (await session.execute(counts)).all():
        g = groups.setdefault((a, s, t, e), Group())
        g.by_status[status] = int(n)
        g.defaults += int(defaults or 0)
        g.violations += int(violations or 0)
    if not groups:
        return groups
    results = (select(*keys, col(ActionResult.result), func.count()).select_from(ActionResult)
               .join(Action, col(Action.id) == col(ActionResult.action_id)).where(*window)
               .group_by(*keys, col(ActionResult.result)))
    for a, s, t, e, result, n in (await session.execute(results)).all():
        groups.setdefault((a, s, t, e), Group()).results[result] = int(n)
    if not median:
        return groups
    dialect = session.bind.dialect.name
    where, params = _filters(agent_id, service)
    stmt = text(_MEDIAN.format(seconds=_SECONDS[dialect], where=where)).bindparams(
        bindparam("since", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime()))
    for a, s, t, e, median in (await session.execute(stmt, {"since": since, "until": until, **params})).all():
        if (a, s, t, e) in groups and median is not None:
            groups[(a, s, t, e)].median_decision_seconds = float(median)
    return groups


async def agent_id_by_name(session: AsyncSession, name: str) -> int | None:
    return (await session.execute(select(col(Agent.id)).where(col(Agent.name) == name))).scalar_one_or_none()
