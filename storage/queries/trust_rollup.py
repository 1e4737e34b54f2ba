"""The track record rolled up per UTC day (by the action's `created_at`), so that a 30-day window
reads about one row per agent x service x action_type x environment instead of every action.
(Building it: storage.queries.trust_rollup_build; reading it with the live edges: storage.queries.trust.)

Design, and why it is correct:
- `trust_rollup` holds, per day and key (`days` = 1), what storage.queries.trust_live.live counts
  for that day: counts per status, `default` accountability, violations and results. Counts add
  up, so rolled-up days plus the rest of the window read live give exactly the live answer.
- One-day rows alone were not enough: at 1,000,000 actions a key has ~3 actions a day, so a 30-day
  window still read ~24,000 rows (and a histogram row per decision): 2-3 s on SQLite. So the build
  also sums the spans of the usual windows (`days` = 29 and 6 whole days, and 28 and 5 for the hour
  after midnight) into rows of their own, ending with the last day rolled up. A span is used only
  while every one of its days is clean with the token it was summed from (`trust_rollup_spans`),
  so a change to any of its days makes the reader fall back to one-day rows and live reads.
- The median time to decision cannot be added up. Each row keeps a histogram of its explicit
  decisions' times (`decisions`, JSON [bucket, count, ...]) in fixed log-scale buckets, PER_OCTAVE
  to a doubling, each 2^(1/8) wide. The median is read from the merged histogram, interpolated
  inside its bucket: it lies in the same bucket as the exact median, so it is within 9 % of it
  (under 1 s below 1 s). Exact alternatives cost what the live query costs: every decision time
  of the window, sorted. A group with nothing rolled up keeps its exact median.
- An action changes after its day: a decision, an expiry, a result arrive later. Whoever writes
  such a change (storage.queries.actions.decide, bot.escalation.paging's timeout of an executed
  action, bot.autonomy.results) calls `mark` in the same transaction when the action was created
  on an earlier day: the day's row in `trust_rollup_days` becomes dirty and its token moves on. A
  dirty day is read live until the build recounts it. The recount clears the mark only if the
  token is still the one it read before recounting (the clearing UPDATE waits for the row lock of
  a change in flight, then re-checks), so a recount racing a change never hides it.
- A change on an action's own day marks nothing, so the build only rolls up days that ended more
  than MARGIN ago: a transaction that saw "today" would have to commit MARGIN later (or two
  replicas' clocks disagree by that much) to slip past it.
- New actions are created "now" (today is never rolled up). Whatever inserts actions into the past
  (the bench seeds) must run the build afterwards, or mark the days.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import TrustRollup, TrustRollupDay, TrustRollupSpan
from storage.queries.trust_live import Group, Key

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


def upsert(session: AsyncSession) -> Any:
    return sqlite_insert if session.bind.dialect.name == "sqlite" else pg_insert


async def mark(session: AsyncSession, created_at: datetime, now: datetime) -> None:
    """An action created at `created_at` changes at `now`: if that was an earlier day, its day is
    read live until refreshed. Call it in the change's transaction."""
    day = day_of(created_at)
    if day >= day_of(now):
        return
    stmt = upsert(session)(TrustRollupDay).values(day=day, dirty=True, token=1)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["day"], set_={"dirty": True, "token": col(TrustRollupDay.token) + 1}))


async def clean_days(session: AsyncSession, first: datetime, end: datetime) -> dict[datetime, int]:
    """The days in [first, end) the rollup holds, in order, with their tokens."""
    stmt = (select(col(TrustRollupDay.day), col(TrustRollupDay.token))
            .where(col(TrustRollupDay.day) >= first, col(TrustRollupDay.day) < end,
                   col(TrustRollupDay.dirty).is_(False))
            .order_by(col(TrustRollupDay.day)))
    return {day_of(d): t for d, t in (await (await session.connection()).execute(stmt)).all()}


def runs(days: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive days as [first, end) ranges."""
    out: list[tuple[datetime, datetime]] = []
    for d in sorted(days):
        if out and out[-1][1] == d:
            out[-1] = (out[-1][0], d + DAY)
        else:
            out.append((d, d + DAY))
    return out


def signature(tokens: dict[datetime, int], first: datetime, days: int) -> str | None:
    """The tokens of [first, first + days) if every one of those days is clean, else None."""
    try:
        return ",".join(str(tokens[first + i * DAY]) for i in range(days))
    except KeyError:
        return None


def parse(decisions: str, into: dict[int, int]) -> None:
    """Add a row's histogram (JSON [bucket, count, bucket, count, ...]: parsed in C) into `into`."""
    if decisions:
        flat = json.loads(decisions)
        pairs = iter(flat)
        for b, n in zip(pairs, pairs, strict=True):
            into[b] = into.get(b, 0) + n


def dump(hist: dict[int, int]) -> str:
    return json.dumps([x for b, n in sorted(hist.items()) if n for x in (b, n)], separators=(",", ":"))


T: Any = getattr(TrustRollup, "__table__")  # noqa: B009 (SQLModel declares it to no type checker)
KEYS = (T.c.agent_id, T.c.service, T.c.action_type, T.c.environment)
COUNTS = (*STATUSES, "defaults", "violations", *RESULTS)


def add_row(groups: dict[Key, Group], row: Any, median: bool) -> None:
    a, s, t, e, *figures = row
    g = groups.setdefault((a, s, t, e), Group())
    for name, n in zip(COUNTS, figures, strict=False):
        if not n:
            continue
        if name in STATUSES:
            g.by_status[name] = g.by_status.get(name, 0) + n
        elif name in RESULTS:
            g.results[name] = g.results.get(name, 0) + n
        elif name == "defaults":
            g.defaults += n
        else:
            g.violations += n
    if median:
        parse(figures[-1], g.hist)


async def read(session: AsyncSession, first: datetime, end: datetime, *, agent_id: int | None = None,
               service: str | None = None, median: bool = True) -> tuple[list[datetime], dict[Key, Group]]:
    """The clean days in [first, end) and their figures summed per key: the longest span summed
    ahead whose days are all still as it saw them, and one-day rows for the others."""
    tokens = await clean_days(session, first, end)
    if not tokens:
        return [], {}
    heads = await session.execute(select(TrustRollupSpan).where(col(TrustRollupSpan.first_day) >= first,
                                                                col(TrustRollupSpan.first_day) < end))
    best: tuple[int, datetime] | None = None
    for span in heads.scalars():
        at = day_of(span.first_day)
        if at + span.days * DAY <= end and signature(tokens, at, span.days) == span.tokens \
                and (best is None or span.days > best[0]):
            best = (span.days, at)
    singles = [d for d in tokens if best is None or not best[1] <= d < best[1] + best[0] * DAY]
    parts = [and_(T.c.days == 1, or_(*(and_(T.c.first_day >= lo, T.c.first_day < hi) for lo, hi in runs(singles))))]
    if best is not None:
        parts.append(and_(T.c.days == best[0], T.c.first_day == best[1]))
    where: list[ColumnElement[bool]] = [or_(*parts) if singles else parts[-1]]
    if agent_id is not None:
        where.append(T.c.agent_id == agent_id)
    if service is not None:
        where.append(T.c.service == service)
    columns = [*KEYS, *(T.c[c] for c in COUNTS), *([T.c.decisions] if median else [])]
    groups: dict[Key, Group] = {}
    conn = await session.connection()  # Core rows: the ORM's row loading cost more than the query
    for row in (await conn.execute(select(*columns).where(*where))).all():
        add_row(groups, row, median)
    return list(tokens), groups
