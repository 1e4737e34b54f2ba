"""Building the track record's rollup (storage.queries.trust_rollup explains the design): recount
the days due from `actions`, then sum the spans of the usual windows from the one-day rows."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action, TrustRollup, TrustRollupDay, TrustRollupSpan
from storage.queries.trust_live import Group, Key, live
from storage.queries.trust_rollup import (
    COUNTS,
    DAY,
    KEYS,
    MARGIN,
    RESULTS,
    STATUSES,
    T,
    add_row,
    bucket,
    clean_days,
    day_of,
    dump,
    signature,
    upsert,
)

# Whole days in the usual windows: `since 30d` and the policy's `demote.window` of 7d cover 29 and 6
# whole days (and one fewer in the hour after midnight, before yesterday is rolled up).
SPANS = (29, 28, 6, 5)


def _row(first: datetime, days: int, key: Key, g: Group, hist: dict[int, int]) -> dict[str, Any]:
    unknown = set(g.by_status) - set(STATUSES) or set(g.results) - set(RESULTS)
    if unknown:
        raise ValueError(f"the trust rollup has no column for {sorted(unknown)}")
    a, s, t, e = key
    return {"days": days, "first_day": first, "agent_id": a, "service": s, "action_type": t, "environment": e,
            **{k: g.by_status.get(k, 0) for k in STATUSES}, "defaults": g.defaults, "violations": g.violations,
            **{k: g.results.get(k, 0) for k in RESULTS}, "decisions": dump(hist)}


async def _commit(session: AsyncSession) -> bool:
    try:
        await session.commit()
    except IntegrityError:  # another replica wrote the same rows at the same time: theirs stand
        await session.rollback()
        return False
    return True


async def refresh_day(session: AsyncSession, day: datetime) -> bool:
    """Recount one day from `actions` and commit."""
    # A write first: on SQLite the writer lock from here on, so nothing changes under the recount.
    await session.execute(delete(TrustRollup).where(col(TrustRollup.days) == 1, col(TrustRollup.first_day) == day))
    token = (await session.execute(select(col(TrustRollupDay.token)).where(col(TrustRollupDay.day) == day))
             ).scalar_one_or_none()
    groups = await live(session, [(day, day + DAY)])
    rows = [_row(day, 1, key, g, dict(Counter(bucket(x) for x in g.seconds))) for key, g in groups.items()]
    try:
        if rows:
            await session.execute(insert(TrustRollup), rows)
        if token is None:
            await session.execute(upsert(session)(TrustRollupDay).values(day=day, dirty=False, token=0)
                                  .on_conflict_do_nothing(index_elements=["day"]))
        else:  # a change since the token was read leaves the day dirty (the UPDATE waits for its lock)
            await session.execute(update(TrustRollupDay).where(col(TrustRollupDay.day) == day,
                                                               col(TrustRollupDay.token) == token).values(dirty=False))
    except IntegrityError:
        await session.rollback()
        return False
    return await _commit(session)


async def build_span(session: AsyncSession, first: datetime, days: int) -> bool:
    """Sum [first, first + days) from its one-day rows, if all are clean; the tokens seen go with it."""
    await session.execute(delete(TrustRollupSpan).where(col(TrustRollupSpan.days) == days,
                                                        col(TrustRollupSpan.first_day) == first))
    await session.execute(delete(TrustRollup).where(col(TrustRollup.days) == days,
                                                    col(TrustRollup.first_day) == first))
    tokens = signature(await clean_days(session, first, first + days * DAY), first, days)
    if tokens is None:
        await session.rollback()
        return False
    groups: dict[Key, Group] = {}
    stmt = select(*KEYS, *(T.c[c] for c in COUNTS), T.c.decisions).where(
        T.c.days == 1, and_(T.c.first_day >= first, T.c.first_day < first + days * DAY))
    for row in (await session.execute(stmt)).all():
        add_row(groups, row, True)
    rows = [_row(first, days, key, g, g.hist) for key, g in groups.items()]
    try:
        if rows:
            await session.execute(insert(TrustRollup), rows)
        session.add(TrustRollupSpan(days=days, first_day=first, tokens=tokens))
        await session.flush()
    except IntegrityError:
        await session.rollback()
        return False
    return await _commit(session)


async def due(session: AsyncSession, now: datetime) -> list[datetime]:
    """Days to recount: from the first action's day to the last one that ended MARGIN ago, less the
    clean ones."""
    first = (await session.execute(select(func.min(col(Action.created_at))))).scalar_one_or_none()
    if first is None:
        return []
    if isinstance(first, str):  # SQLite may hand back the text
        first = datetime.fromisoformat(first)
    start, end = day_of(first if first.tzinfo else first.replace(tzinfo=UTC)), day_of(now - MARGIN)
    clean = await clean_days(session, start, end)
    out, d = [], start
    while d < end:
        if d not in clean:
            out.append(d)
        d += DAY
    return out


async def refresh(session: AsyncSession, now: datetime, spans: tuple[int, ...] = SPANS) -> int:
    """Recount every day due (a transaction each: readers and writers wait on one day at most),
    then the spans that end with the last day rolled up; the number of days recounted."""
    days = await due(session, now)
    await session.commit()
    done = 0
    for day in days:
        done += await refresh_day(session, day)
    end = day_of(now - MARGIN)
    wanted = {(n, end - n * DAY) for n in spans}
    heads = (await session.execute(select(TrustRollupSpan))).scalars()
    existing = {(s.days, day_of(s.first_day)): s.tokens for s in heads}
    for n, first in sorted(wanted):
        current = signature(await clean_days(session, first, end), first, n)
        await session.commit()
        if current is not None and existing.get((n, first)) != current:
            await build_span(session, first, n)
    for n, first in set(existing) - wanted:  # the spans of earlier days: no window ends there any more
        await session.execute(delete(TrustRollupSpan).where(col(TrustRollupSpan.days) == n,
                                                            col(TrustRollupSpan.first_day) == first))
        await session.execute(delete(TrustRollup).where(col(TrustRollup.days) == n,
                                                        col(TrustRollup.first_day) == first))
        await _commit(session)
    return done
