"""The track record rolled up per UTC day (by the action's `created_at`), so a 30-day window reads
about 30 rows per agent x service x action_type x environment instead of every action.

Design, and why it is correct:
- `trust_rollup` holds, per day and key, what storage.queries.trust_live.live counts for that day:
  counts per status, `default` accountability, violations and results. Counts add up across days,
  so the rolled-up days plus the rest of the window read live give exactly the live answer.
- The median time to decision cannot be added up across days. `trust_rollup_decisions` keeps a
  histogram of decision times per day and key in fixed log-scale buckets, PER_OCTAVE to a doubling
  (each bucket 2^(1/8) wide: 9 % of its value). The median is read from the merged histogram,
  interpolated inside its bucket: it lies in the same bucket as the exact median, so it is within
  9 % of it (under 1 s of it below 1 s). Exact alternatives were slower or unbounded: keeping every
  decision time is O(actions) again; a second pass for the median's bucket is one query per group.
  A group with no rolled-up day keeps its exact median (storage.queries.trust).
- An action changes after its day: a decision, an expiry, a result arrive later. Whoever writes such
  a change to an action created on an earlier day than the change (storage.queries.actions.decide,
  bot.autonomy.results) calls `mark` in the same transaction: the day's row in `trust_rollup_days`
  becomes dirty and its token moves on. A dirty day is read live until `refresh` rolls it up again.
  `refresh` clears the mark only if the token is still the one it read before recounting (with the
  row locked by the clearing UPDATE, a change that committed after its recount leaves the day
  dirty), so a refresh racing a change never hides it.
- A change made on an action's own day marks nothing, so `refresh` only rolls up days that ended
  more than MARGIN ago: a transaction that saw "today" would have to commit MARGIN later (or the
  clocks of two replicas disagree by that much) to slip past it.
- Inserts: new actions are created "now" (today: not rolled up). Anything that inserts actions into
  the past (bench seeds, imports) must call `refresh(..., days=...)` or mark the days.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action, TrustRollup, TrustRollupDay, TrustRollupDecision
from storage.queries.trust_live import Group, Key, live

DAY = timedelta(days=1)
MARGIN = timedelta(hours=1)
PER_OCTAVE = 8
TOP = 20 * PER_OCTAVE + 1  # the last bucket: 2^20 s (12 days) and more
PRECISION = "within 9 %"  # the median read from the histogram (said in the CLI, Slack and README)
STATUSES = ("pending", "approved", "denied", "acknowledged", "overridden", "expired", "recorded")
RESULTS = ("succeeded", "failed", "rolled_back")


def day_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def bucket(seconds: float) -> int:
    """0: under a second; b in 1..TOP-1: [2^((b-1)/8), 2^(b/8)) seconds; TOP: 2^20 s or more."""
    if seconds < 1:
        return 0
    return min(TOP, 1 + math.floor(math.log2(seconds) * PER_OCTAVE))


def _at_rank(ordered: list[tuple[int, int]], rank: int) -> float:
    before = 0
    for b, n in ordered:
        if before + n >= rank:
            frac = (rank - before - 0.5) / n  # the rank's place inside its bucket
            if b == 0:
                return frac
            if b == TOP:
                return float(2 ** ((TOP - 1) / PER_OCTAVE))
            lo, hi = 2 ** ((b - 1) / PER_OCTAVE), 2 ** (b / PER_OCTAVE)
            return float(lo * (hi / lo) ** frac)
        before += n
    raise ValueError("rank beyond the histogram")


def median_from(hist: dict[int, int]) -> float | None:
    """The median read from a histogram, as trust_live.exact_median would from the values."""
    n = sum(hist.values())
    if n == 0:
        return None
    ordered = sorted((b, c) for b, c in hist.items() if c)
    return (_at_rank(ordered, (n + 1) // 2) + _at_rank(ordered, (n + 2) // 2)) / 2


def _upsert(session: AsyncSession) -> Any:
    return sqlite_insert if session.bind.dialect.name == "sqlite" else pg_insert


async def mark(session: AsyncSession, created_at: datetime, now: datetime) -> None:
    """An action created at `created_at` changes at `now`: if that was an earlier day, its day is
    read live until refreshed. Call it in the change's transaction."""
    day = day_of(created_at)
    if day >= day_of(now):
        return
    stmt = _upsert(session)(TrustRollupDay).values(day=day, dirty=True, token=1)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["day"], set_={"dirty": True, "token": col(TrustRollupDay.token) + 1}))


async def clean_days(session: AsyncSession, first: datetime, end: datetime) -> list[datetime]:
    """The days in [first, end) the rollup holds, in order."""
    stmt = (select(col(TrustRollupDay.day)).where(col(TrustRollupDay.day) >= first, col(TrustRollupDay.day) < end,
                                                  col(TrustRollupDay.dirty).is_(False))
            .order_by(col(TrustRollupDay.day)))
    return [day_of(d) for d in (await session.execute(stmt)).scalars()]


def runs(days: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive days as [first, end) ranges."""
    out: list[tuple[datetime, datetime]] = []
    for d in days:
        if out and out[-1][1] == d:
            out[-1] = (out[-1][0], d + DAY)
        else:
            out.append((d, d + DAY))
    return out


def _days_in(table: Any, ranges: list[tuple[datetime, datetime]]) -> ColumnElement[bool]:
    return or_(*(and_(table.day >= lo, table.day < hi) for lo, hi in ranges))


async def read(session: AsyncSession, days: list[datetime], *, agent_id: int | None = None,
               service: str | None = None, median: bool = True) -> dict[Key, Group]:
    """The rolled-up `days`, summed per key: two grouped statements over ~one row per day and key."""
    if not days:
        return {}
    ranges = runs(days)
    groups: dict[Key, Group] = {}
    for table, extra in ((TrustRollup, None), (TrustRollupDecision, "bucket")):
        if extra and not median:
            break
        t: Any = getattr(table, "__table__")  # noqa: B009 (SQLModel declares it to no type checker)
        keys = [t.c.agent_id, t.c.service, t.c.action_type, t.c.environment]
        where = [_days_in(t.c, ranges)]
        if agent_id is not None:
            where.append(t.c.agent_id == agent_id)
        if service is not None:
            where.append(t.c.service == service)
        if extra is None:
            names = (*STATUSES, "defaults", "violations", *RESULTS)
            stmt = select(*keys, *(func.sum(t.c[c]) for c in names)).where(*where).group_by(*keys)
            for a, s, ty, e, *sums in (await session.execute(stmt)).all():
                g = groups.setdefault((a, s, ty, e), Group())
                figures = dict(zip(names, (int(x or 0) for x in sums), strict=True))
                g.by_status = {k: figures[k] for k in STATUSES if figures[k]}
                g.defaults, g.violations = figures["defaults"], figures["violations"]
                g.results = {k: figures[k] for k in RESULTS if figures[k]}
        else:
            stmt = select(*keys, t.c.bucket, func.sum(t.c.n)).where(*where).group_by(*keys, t.c.bucket)
            for a, s, ty, e, b, n in (await session.execute(stmt)).all():
                if (a, s, ty, e) in groups:
                    groups[(a, s, ty, e)].hist[int(b)] = int(n)
    return groups


async def refresh_day(session: AsyncSession, day: datetime) -> bool:
    """Recount one day from `actions` and commit; False if another replica refreshed it at the same
    time (its rows stand)."""
    for table in (TrustRollup, TrustRollupDecision):  # a write first: SQLite's write lock from here on
        await session.execute(delete(table).where(table.day == day))  # type: ignore[arg-type]
    token = (await session.execute(select(col(TrustRollupDay.token)).where(col(TrustRollupDay.day) == day))
             ).scalar_one_or_none()
    groups = await live(session, [(day, day + DAY)])
    rows, hist = [], []
    for (a, s, t, e), g in groups.items():
        unknown = set(g.by_status) - set(STATUSES) or set(g.results) - set(RESULTS)
        if unknown:
            raise ValueError(f"the trust rollup has no column for {sorted(unknown)}")
        rows.append({"day": day, "agent_id": a, "service": s, "action_type": t, "environment": e,
                     **{k: g.by_status.get(k, 0) for k in STATUSES}, "defaults": g.defaults,
                     "violations": g.violations, **{k: g.results.get(k, 0) for k in RESULTS}})
        hist += [{"day": day, "agent_id": a, "service": s, "action_type": t, "environment": e, "bucket": b, "n": n}
                 for b, n in Counter(bucket(x) for x in g.seconds).items()]
    try:
        if rows:
            await session.execute(insert(TrustRollup), rows)
        if hist:
            await session.execute(insert(TrustRollupDecision), hist)
        if token is None:
            await session.execute(_upsert(session)(TrustRollupDay).values(day=day, dirty=False, token=0)
                                  .on_conflict_do_nothing(index_elements=["day"]))
        else:  # a change since we read the token leaves it dirty
            await session.execute(update(TrustRollupDay).where(col(TrustRollupDay.day) == day,
                                                               col(TrustRollupDay.token) == token)
                                  .values(dirty=False))
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return False
    return True


async def due(session: AsyncSession, now: datetime) -> list[datetime]:
    """Days to roll up: from the first action's day to the last day that ended MARGIN ago, less
    the clean ones."""
    first = (await session.execute(select(func.min(col(Action.created_at))))).scalar_one_or_none()
    if first is None:
        return []
    if isinstance(first, str):  # SQLite: func.min loses the column's type
        first = datetime.fromisoformat(first)
    start, end = day_of(first if first.tzinfo else first.replace(tzinfo=UTC)), day_of(now - MARGIN)
    clean = set(await clean_days(session, start, end))
    out, d = [], start
    while d < end:
        if d not in clean:
            out.append(d)
        d += DAY
    return out


async def refresh(session: AsyncSession, now: datetime) -> int:
    """Roll up every day due (one transaction each, so readers and writers wait on one day at
    most); the number of days recounted."""
    days = await due(session, now)
    await session.commit()
    done = 0
    for day in days:
        done += await refresh_day(session, day)
    return done
