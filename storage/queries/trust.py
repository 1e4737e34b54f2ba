"""The track record per agent x service x action_type x environment over a window: the whole days
the rollup holds (storage.queries.trust_rollup), plus the rest read live (trust_live.live): the
window's partial first and last days, days not rolled up yet, and days changed since.

The answer is the live query's (trust_live.track_record_live), exactly, except the median time to
decision of a group with rolled-up days: read from the merged histogram, within
trust_rollup.PRECISION (Group.median_approximate says so)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.queries import trust_rollup as rollup
from storage.queries.trust_live import Group, Key, Range, agent_id_by_name, exact_median, live, track_record_live

__all__ = ["Group", "Key", "agent_id_by_name", "track_record", "track_record_live"]

TICK = timedelta(microseconds=1)  # the stored precision: `<= until` is `< until + TICK`


def split(since: datetime, until: datetime, clean: list[datetime]) -> list[Range]:
    """[since, until] less the clean days: the ranges to read live."""
    out: list[Range] = []
    at = since
    for lo, hi in rollup.runs(clean):
        if lo > at:
            out.append((at, lo))
        at = hi
    end = until + TICK
    if end > at:
        out.append((at, end))
    return out


async def track_record(session: AsyncSession, since: datetime, until: datetime, *,
                       agent_id: int | None = None, service: str | None = None,
                       median: bool = True) -> dict[Key, Group]:
    """Every key with actions submitted in [since, until]."""
    first = rollup.day_of(since)
    if first < since:
        first += rollup.DAY
    covered, rolled = await rollup.read(session, first, rollup.day_of(until + TICK), agent_id=agent_id,
                                        service=service, median=median)  # whole days only
    groups = await live(session, split(since, until, covered), agent_id=agent_id, service=service, seconds=median)
    for key, r in rolled.items():
        g = groups.setdefault(key, Group())
        for status, n in r.by_status.items():
            g.by_status[status] = g.by_status.get(status, 0) + n
        for result, n in r.results.items():
            g.results[result] = g.results.get(result, 0) + n
        g.defaults += r.defaults
        g.violations += r.violations
        g.hist = r.hist
    if median:
        for g in groups.values():
            if g.hist:  # some decisions were rolled up: the merged histogram's median
                for x in g.seconds:
                    b = rollup.bucket(x)
                    g.hist[b] = g.hist.get(b, 0) + 1
                g.median_decision_seconds = rollup.median_from(g.hist)
                g.median_approximate = True
            else:
                g.median_decision_seconds = exact_median(g.seconds)
    return groups
