"""The daily digest to the leadership channel: the day's stats, the slowest responses, every
override, every `default` accountability, and the audit chain's head.

An APScheduler cron job fires at COUNTERSIGN_DIGEST_TIME (in COUNTERSIGN_DIGEST_TIMEZONE) on every
replica; the `job_runs` row unique on (job, period) lets exactly one of them send it. The claim, the
snapshot and the outbox message commit together, so a crash never leaves a claimed day unsent.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.contract.serialize import iso
from bot.delivery.messages import Kind, send
from bot.reports import stats
from bot.services import Services
from storage.models import Action, JobRun, LedgerHead
from storage.queries import agents
from storage.queries import stats as queries

log = logging.getLogger("countersign.digest")
JOB = "digest"


def report_day(now: datetime, tz: str) -> date:
    """The digest sent on a day reports the day before, in the digest's time zone."""
    return now.astimezone(ZoneInfo(tz)).date() - timedelta(days=1)


def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _item(action: Action, names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": action.id, "service": action.service, "action_type": action.action_type,
        "summary": action.summary, "agent": names.get(action.agent_id), "kind": action.kind,
        "status": action.status, "outcome": action.outcome, "decided_by": action.decided_by,
        "decided_by_name": action.decided_by_name, "level": action.decision_level,
        "via": action.decision_via, "reason": action.decision_reason, "created_at": iso(action.created_at),
        "decided_at": iso(action.decided_at), "response_seconds": round(stats.response_seconds(action), 3),
    }


async def snapshot(session: AsyncSession, day: date, tz: str) -> dict[str, Any]:
    """Every figure of one day's digest, as JSON (kept in the outbox payload and in job_runs)."""
    since, until = day_bounds(day, tz)
    figures = await stats.window_stats(session, since, until, defaults_limit=0)
    names = await agents.names(session)
    head = await session.get(LedgerHead, 1)
    return {
        "day": day.isoformat(), "timezone": tz, "since": iso(since), "until": iso(until),
        "total": figures.total, "by_mode": dict(figures.by_mode), "by_outcome": dict(figures.by_outcome),
        "per_agent": {k: vars(v) for k, v in figures.per_agent.items()},
        "per_service": {k: vars(v) for k, v in figures.per_service.items()},
        "responded": figures.responded, "median_response_seconds": figures.median_response_seconds,
        "defaulted_submitted": figures.defaulted,
        "slowest": [_item(a, names) for a in await stats.slowest_responses(session, since, until)],
        "overrides": [_item(a, names) for a in await stats.decided_overrides(session, since, until)],
        "defaults": [_item(a, names) for a in await queries.decided_by_default(session, since, until)],
        "head": {"seq": head.seq, "hash": head.hash} if head else {"seq": 0, "hash": None},
    }


async def run_digest(svc: Services, day: date | None = None) -> dict[str, Any] | None:
    """Send the digest for `day` (default: yesterday) once; None if another run (replica) sent it."""
    tz = svc.settings.digest_timezone
    day = day or report_day(svc.clock(), tz)
    channel = svc.policy.leadership.channel if svc.policy.leadership else None
    if not channel:
        log.warning("no leadership channel in the policy: no digest for %s", day)
        return None
    async with svc.db.session() as session:
        claim = JobRun(job=JOB, period=day.isoformat(), started_at=svc.clock())
        session.add(claim)
        try:
            await session.flush()  # blocks on a replica's uncommitted claim, then fails: one sender
        except IntegrityError:
            await session.rollback()
            log.info("digest for %s already sent by another run", day)
            return None
        digest = await snapshot(session, day, tz)
        send(session, Kind.DIGEST, channel=channel, purpose="digest", digest=digest)
        claim.result = {k: digest[k] for k in ("total", "responded", "median_response_seconds", "head")}
        session.add(claim)
        await session.commit()
    log.info("digest for %s queued to %s: %d actions", day, channel, digest["total"])
    return digest


def schedule(svc: Services) -> None:
    """The daily cron job, on the app's one scheduler (started and stopped with the app)."""
    hour, minute = (int(x) for x in svc.settings.digest_time.split(":"))
    # coalesce + misfire grace: a replica that was briefly down still sends today's digest.
    trigger = CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(svc.settings.digest_timezone))
    svc.scheduler.add_job(run_digest, trigger, args=[svc], id=JOB, replace_existing=True,
                          coalesce=True, misfire_grace_time=3600, max_instances=1)
