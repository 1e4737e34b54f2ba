"""The track record read live from `actions`: per agent x service x action_type x environment over
created_at ranges, counts by status, `default` accountability, policy violations, the times to an
explicit decision and the agents' results.

`live` is what storage.queries.trust reads for the parts of a window the rollup does not hold, and
what storage.queries.trust_rollup rolls a day up from. `track_record_live` is the original query
(exact median by a window function, one scan of the whole window): the reference the rollup-backed
answer is tested against, and `countersign trust --live`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, case, func, literal_column, or_, select, text
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action, ActionResult, Agent, UTCDateTime

Key = tuple[int, str, str, str]  # agent id, service, action_type, environment
Range = tuple[datetime, datetime]  # lo <= created_at < hi


@dataclass
class Group:
    """The raw figures of one key (bot.policy.autonomy.Record names and derives them)."""

    by_status: dict[str, int] = field(default_factory=dict)
    defaults: int = 0
    violations: int = 0
    median_decision_seconds: float | None = None
    results: dict[str, int] = field(default_factory=dict)
    median_approximate: bool = False  # read from the rollup's histogram (storage.queries.trust_rollup)
    seconds: list[float] = field(default_factory=list)  # live: each explicit decision's time
    hist: dict[int, int] = field(default_factory=dict)  # rolled up: decisions per time bucket


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


async def track_record_live(session: AsyncSession, since: datetime, until: datetime, *,
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


def _in(ranges: list[Range]) -> ColumnElement[bool]:
    created = col(Action.created_at)
    return or_(*(and_(created >= lo, created < hi) for lo, hi in ranges))


async def live(session: AsyncSession, ranges: list[Range], *, agent_id: int | None = None,
               service: str | None = None, seconds: bool = True) -> dict[Key, Group]:
    """Every key with actions created in one of `ranges`; with `seconds`, each explicit decision's
    time in Group.seconds (the caller works out the median: exact alone, or merged with the rollup)."""
    if not ranges:
        return {}
    keys = [col(Action.agent_id), col(Action.service), col(Action.action_type), col(Action.environment)]
    window = [_in(ranges)]
    if agent_id is not None:
        window.append(col(Action.agent_id) == agent_id)
    if service is not None:
        window.append(col(Action.service) == service)
    groups: dict[Key, Group] = {}
    # One row per action, summed here: the edges of a window hold a day or two of actions, and one
    # scan of them beats a grouped count and a second scan for the decision times (SQLite: 3x).
    explicit = col(Action.accountability) == "explicit"
    took: ColumnElement[float | None] = case((explicit, literal_column(_SECONDS[session.bind.dialect.name])),
                                             else_=None)
    rows = select(*keys, col(Action.status), col(Action.accountability), col(Action.policy_violation), took
                  ).where(*window)
    conn = await session.connection()  # Core rows: the ORM's row loading cost more than the query here
    for a, s, t, e, status, accountability, violation, x in (await conn.execute(rows)).all():
        g = groups.get((a, s, t, e))
        if g is None:
            g = groups[(a, s, t, e)] = Group()
        g.by_status[status] = g.by_status.get(status, 0) + 1
        if accountability == "default":
            g.defaults += 1
        if violation:
            g.violations += 1
        if seconds and x is not None:
            g.seconds.append(float(x))
    if not groups:
        return groups
    # Filtered by the window alone: with `service = ?` too, SQLite joined from that service's whole
    # history (75 ms at 1,000,000 actions); the other keys' few result counts are dropped here.
    results = (select(*keys, col(ActionResult.result), func.count()).select_from(ActionResult)
               .join(Action, col(Action.id) == col(ActionResult.action_id)).where(window[0])
               .group_by(*keys, col(ActionResult.result)))
    for a, s, t, e, result, n in (await conn.execute(results)).all():
        if (a, s, t, e) in groups:
            groups[(a, s, t, e)].results[result] = int(n)
    return groups


def exact_median(values: list[float]) -> float | None:
    """The middle value, or the mean of the middle two: what _MEDIAN works out in SQL."""
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)
    return (ordered[(n + 1) // 2 - 1] + ordered[(n + 2) // 2 - 1]) / 2


async def agent_id_by_name(session: AsyncSession, name: str) -> int | None:
    return (await session.execute(select(col(Agent.id)).where(col(Agent.name) == name))).scalar_one_or_none()
