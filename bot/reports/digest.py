"""The daily digest to the leadership channel: the day's stats, the slowest responses, every
override, every `default` accountability, and the audit chain's head.

An APScheduler cron job fires at COUNTERSIGN_DIGEST_TIME (in COUNTERSIGN_DIGEST_TIMEZONE) on every
replica; the `job_runs` row unique on (job, period) lets exactly one of them send it. The claim, the
snapshot and the outbox message commit together, so a crash never leaves a claimed day unsent.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.autonomy import trust
from bot.contract.serialize import iso
from bot.delivery.messages import Kind, send
from bot.reports import stats
from bot.services import Services
from storage.models import Action, JobRun, LedgerHead
from storage.queries import agents
from storage.queries import jobs as job_queries
from storage.queries import stats as queries

log = logging.getLogger("countersign.digest")
JOB = "digest"
TRUST_ROWS = 10


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
    """Every figure of one calendar day's digest, as JSON (kept in the outbox payload and in job_runs)."""
    since, until = day_bounds(day, tz)
    return await window_snapshot(session, since, until, day.isoformat(), tz)


async def window_snapshot(session: AsyncSession, since: datetime, until: datetime, label: str,
                          tz: str) -> dict[str, Any]:
    """Every figure of the digest over [since, until)."""
    figures = await stats.window_stats(session, since, until, defaults_limit=0)
    names = await agents.names(session)
    head = await session.get(LedgerHead, 1)
    return {
        "day": label, "timezone": tz, "since": iso(since), "until": iso(until),
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


async def covered(svc: Services, session: AsyncSession, now: datetime) -> tuple[datetime, datetime]:
    """What the digest sent now covers: the time since the previous scheduled digest (24 hours;
    longer if one was missed, up to a week), so the night's actions are in the morning's digest."""
    previous = await job_queries.last_result(session, JOB)
    since = now - timedelta(hours=24)
    until_text = (previous or {}).get("until")
    if until_text:
        last = datetime.fromisoformat(until_text.replace("Z", "+00:00"))
        if now - timedelta(days=7) <= last < now:
            since = last
    return since, now


async def run_digest(svc: Services, day: date | None = None, *, post: bool = True) -> dict[str, Any] | None:
    """Send the digest once; None if another run (replica) sent it. With `day`: that calendar day
    (a backfill); without: the time since the previous digest, claimed for this send time.
    `post=False` only computes it (`countersign digest`)."""
    tz = svc.settings.digest_timezone
    now = svc.clock()
    channel = svc.policy.leadership.channel if svc.policy.leadership else None
    if not channel:
        log.warning("no leadership channel in the policy: no digest for %s", day)
        return None
    async with svc.db.session() as session:
        if day is not None:
            since, until = day_bounds(day, tz)
            label = period = day.isoformat()
        else:
            since, until = await covered(svc, session, now)
            local = now.astimezone(ZoneInfo(tz))
            label, period = local.strftime("%Y-%m-%d %H:%M"), f"at:{local.date().isoformat()}"
        if not post:
            return await _full(svc, session, since, until, label, tz, now)
        claim = JobRun(job=JOB, period=period, started_at=now)
        session.add(claim)
        try:
            await session.flush()  # blocks on a replica's uncommitted claim, then fails: one sender
        except IntegrityError:
            await session.rollback()
            log.info("digest %s already sent by another run", period)
            return None
        digest = await _full(svc, session, since, until, label, tz, now)
        send(session, Kind.DIGEST, channel=channel, purpose="digest", digest=digest)
        claim.result = {k: digest[k] for k in ("total", "responded", "median_response_seconds", "head", "since",
                                               "until")}
        session.add(claim)
        await session.commit()
    log.info("digest %s queued to %s: %d actions", label, channel, digest["total"])
    return digest


async def _full(svc: Services, session: AsyncSession, since: datetime, until: datetime, label: str, tz: str,
                now: datetime) -> dict[str, Any]:
    """The figures, plus the track record's busiest rows and the suggestions standing now."""
    digest = await window_snapshot(session, since, until, label, tz)
    records = await trust.records(session, now - trust.DEFAULT_WINDOW, now)
    digest["trust"] = [{**asdict(r), "approval_rate": r.approval_rate, "override_rate": r.override_rate}
                       for r in records[:TRUST_ROWS]]
    digest["trust_rows"] = len(records)
    digest["suggestions"] = [asdict(s) | {"token": s.token()}
                             for s in await trust.current_suggestions(svc, session, now)]
    return digest


async def post_now(svc: Services) -> dict[str, Any] | None:
    """`countersign digest --post`: the digest since the previous one, queued now (it does not count as
    the previous digest: the scheduled one still covers its whole period)."""
    channel = svc.policy.leadership.channel if svc.policy.leadership else None
    if not channel:
        return None
    now, tz = svc.clock(), svc.settings.digest_timezone
    async with svc.db.session() as session:
        since, until = await covered(svc, session, now)
        digest = await _full(svc, session, since, until,
                             now.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") + " (on demand)", tz, now)
        session.add(JobRun(job=f"{JOB}.manual", period=now.isoformat(), started_at=now))
        send(session, Kind.DIGEST, channel=channel, purpose="digest", digest=digest)
        await session.commit()
    return digest


async def catch_up(svc: Services) -> dict[str, Any] | None:
    """At start: today's digest (and the chain head it publishes), when its time passed while no
    replica was up to send it. Only on a deployment that has sent a scheduled digest before (a new
    one waits for its first send time); the claim on today's period keeps it once."""
    hour, minute = svc.settings.digest_clock
    local = svc.clock().astimezone(ZoneInfo(svc.settings.digest_timezone))
    if local.time() < time(hour, minute):
        return None
    async with svc.db.session() as session:
        if not await job_queries.missed(session, JOB, f"at:{local.date().isoformat()}", prefix="at:"):
            return None
    log.info("today's digest was not sent at %02d:%02d (no replica was up): sending it now", hour, minute)
    return await run_digest(svc)


def schedule(svc: Services) -> None:
    """The daily cron job, on the app's one scheduler (started and stopped with the app), and a
    catch-up once at start (the cron job does not fire for a time that passed while it was down)."""
    svc.scheduler.add_job(catch_up, args=[svc], id=f"{JOB}.catch_up", replace_existing=True)
    hour, minute = svc.settings.digest_clock
    # coalesce + misfire grace: a run held up (a busy loop, a slow database) still sends today's digest.
    trigger = CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(svc.settings.digest_timezone))
    svc.scheduler.add_job(run_digest, trigger, args=[svc], id=JOB, replace_existing=True,
                          coalesce=True, misfire_grace_time=3600, max_instances=1)
