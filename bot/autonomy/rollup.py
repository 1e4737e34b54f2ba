"""Keeping the track record's daily rollup (storage.queries.trust_rollup) up to date: every replica
rolls up the days that ended and the days changed since (marked dirty in the changes' transactions).
A day not rolled up yet is read live, so a late or missed run costs time, never correctness."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from bot.services import Services
from storage.queries import trust_rollup_build

log = logging.getLogger(__name__)
EVERY = 600.0  # seconds: a dirty day is read live for at most about this long


async def refresh(svc: Services) -> int:
    """Roll up every day due; the number of days recounted."""
    async with svc.db.session() as session:
        done = await trust_rollup_build.refresh(session, svc.clock())
    if done:
        log.info("trust rollup: %d day(s) recounted", done)
    return done


def schedule(svc: Services, every: float = EVERY) -> None:
    svc.scheduler.add_job(refresh, "interval", seconds=every, args=[svc], id="trust-rollup", replace_existing=True,
                          coalesce=True, max_instances=1, next_run_time=datetime.now(UTC))
