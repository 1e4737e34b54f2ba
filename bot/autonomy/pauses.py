"""The kill switch: `pause TARGET [DURATION] REASON`, `resume TARGET`, what holds now, the expiry of
pauses and grants (a deadline in the database, recorded by whichever process runs next), and who
may do it (SPEC: a service's owner and secondary for their services; leadership users and admins
for anything).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.contract.serialize import iso
from bot.delivery.directory import resolve_all
from bot.delivery.messages import Kind, send
from bot.policy.durations import parse_duration
from bot.services import Services
from storage.ledger import chain as ledger
from storage.models import Pause
from storage.queries import autonomy as q
from storage.queries import trust as trust_q

log = logging.getLogger("countersign.autonomy")
MAX_PAUSE = timedelta(days=30)
_LOOKS_LIKE_DURATION = re.compile(r"^[-+]?\d")  # `-5m` is a bad duration, not the reason's first word


class Refused(Exception):
    """Bad input or not allowed: the message says why; nothing changed."""


@dataclass(frozen=True)
class Target:
    text: str  # as typed back to people: a service, agent:NAME, agent:NAME@service, all
    service: str | None
    agent: str | None


@dataclass(frozen=True)
class PauseRequest:
    target: Target
    until: datetime | None
    reason: str


async def parse_target(svc: Services, word: str) -> Target:
    if word.lower() == "all":
        return Target("all", None, None)
    if word.startswith("agent:"):
        name, _, service = word[len("agent:"):].partition("@")
        async with svc.db.read_session() as session:
            known = name and await trust_q.agent_id_by_name(session, name) is not None
        if not known:
            raise Refused(f"Unknown agent `{name}`: see `countersign agents list`.")
        if service and service not in svc.policy.services:
            raise Refused(f"Unknown service `{service}`.")
        return Target(word, service or None, name)
    if word not in svc.policy.services:
        known_services = ", ".join(sorted(svc.policy.services)[:20])
        raise Refused(f"Unknown target `{word}`: use a service ({known_services}), `agent:NAME` or `all`.")
    return Target(word, word, None)


async def parse_pause(svc: Services, args: list[str], now: datetime, *, command: str = "/ai-actions") -> PauseRequest:
    """`TARGET [DURATION] REASON`; a second word starting with a digit is the duration. `command`: how
    the usage in a refusal is spelled (`/ai-actions` in Slack, `countersign` in a terminal)."""
    if not args:
        raise Refused(f"Usage: `{command} pause TARGET [DURATION] REASON` (TARGET: a service, `agent:NAME` or "
                      "`all`; DURATION like `30m`, `2h`, `3d`, at most 30 days).")
    target = await parse_target(svc, args[0])
    rest = args[1:]
    until = None
    if rest and _LOOKS_LIKE_DURATION.match(rest[0]):
        try:
            seconds = parse_duration(rest[0])
        except ValueError:
            raise Refused(f"Cannot read the duration `{rest[0]}`: use e.g. `30m`, `2h`, `3d`.") from None
        if seconds <= 0 or seconds > MAX_PAUSE.total_seconds():  # before timedelta: `99999999999d` overflows it
            raise Refused(f"The duration `{rest[0]}` must be more than 0 and at most 30 days.")
        until, rest = now + timedelta(seconds=seconds), rest[1:]
    reason = " ".join(rest).strip()
    if not reason:
        raise Refused(f"A pause needs a reason: `{command} pause TARGET [DURATION] REASON`.")
    return PauseRequest(target, until, reason[:2000])


async def may_pause(svc: Services, user_id: str, service: str | None) -> bool:
    """Leadership users and admins: anything. A service's owner and secondary: that service only."""
    policy = svc.policy
    top = list(policy.admins) + (list(policy.leadership.users) if policy.leadership else [])
    if service is not None and service in policy.services:
        s = policy.services[service]
        top += [s.owner] + ([s.secondary] if s.secondary else [])
    return user_id in top or user_id in await resolve_all(svc, [p for p in top if "@" in p])


def announce(session: AsyncSession, svc: Services, service: str | None, *, leadership: bool,
              notice: dict[str, Any], everywhere: bool = False) -> None:
    """In the service's channel (every service's channel when `everywhere`: a pause of `all` stops
    each team's agents, so each team hears it where it works), and the leadership channel; and the
    Home of the people who own what it holds for is published again."""
    names = list(svc.policy.services) if everywhere else [service] if service is not None else []
    channels = [s.channel for name in names if (s := svc.policy.services.get(name)) is not None and s.channel]
    if (leadership or service is None) and svc.policy.leadership:
        channels.append(svc.policy.leadership.channel)
    for channel in dict.fromkeys(channels):
        send(session, Kind.AUTONOMY, channel=channel, purpose="autonomy", notice=notice)
    # The owners' and secondaries' Home shows what holds for their services (handlers.listeners.home):
    # an agent's pause everywhere (no service) and `all` hold for every service.
    affected = [service] if service is not None else list(svc.policy.services)
    homes = [p for name in affected if (s := svc.policy.services.get(name)) is not None
             for p in (s.owner, s.secondary)]
    for person in dict.fromkeys(p for p in homes if p):
        send(session, Kind.HOME, channel=person, purpose="home")


async def refuse(svc: Services, user_id: str, what: str, text: str, why: str) -> None:
    """Record a refused pause or resume in the ledger (the caller answers ephemerally)."""
    async with svc.db.session() as session:
        await ledger.append(session, f"{what}.refused", {"by": user_id, "text": text, "why": why},
                            actor=user_id, at=svc.clock())
        await session.commit()


async def start(svc: Services, user_id: str, req: PauseRequest, *, dedupe_key: str | None = None) -> Pause | None:
    """Start a pause; None if `dedupe_key` says it already started (the brake, on another replica)."""
    now = svc.clock()
    t = req.target
    pause = Pause(target=t.text, service=t.service, agent=t.agent, by=user_id, reason=req.reason, started_at=now,
                  until=req.until, dedupe_key=dedupe_key)
    async with svc.db.session() as session:
        if not await q.add_once(session, pause):
            await session.rollback()
            return None
        data = {"pause": pause.id, "target": t.text, "service": t.service, "agent": t.agent, "by": user_id,
                "reason": req.reason, "until": req.until.isoformat() if req.until else None}
        await ledger.append(session, "pause.started", data, actor=user_id, at=now)
        announce(session, svc, t.service, leadership=t.service is None or user_id == "countersign",
                 notice={"event": "pause.started", **data}, everywhere=t.text == "all")
        if user_id == "countersign" and t.service in svc.policy.services:  # the brake: tell the owner too
            send(session, Kind.AUTONOMY, channel=svc.policy.services[t.service].owner, purpose="autonomy",
                 notice={"event": "pause.started", **data})
        await session.commit()
    invalidate_cache(svc)
    return pause


async def resume(svc: Services, user_id: str, target: Target, *, command: str = "/ai-actions",
                 operator: bool = False) -> list[Pause]:
    """End every pause holding for `target` that `user_id` may end; raises Refused if there is none.
    `operator`: the command line, where whoever holds the database may (as `policy grants revoke`)."""
    now = svc.clock()
    async with svc.db.read_session() as session:
        holding = await q.holding_pauses(session, now)
    mine = [p for p in holding if _covers(target, p)]
    if not mine:
        raise Refused(f"No pause holds for `{target.text}`: see `{command} pauses`.")
    allowed = [p for p in mine if operator or await may_pause(svc, user_id, p.service)]
    if not allowed:
        raise PermissionError(f"Only the service's owner or secondary, leadership and admins may resume "
                              f"`{target.text}`.")
    ended = []
    async with svc.db.session() as session:
        for p in allowed:
            assert p.id is not None
            if await q.end_pause(session, p.id, now, user_id):
                await _record_end(session, svc, p, user_id, now)
                ended.append(p)
        await session.commit()
    invalidate_cache(svc)
    return ended


def _covers(target: Target, p: Pause) -> bool:
    if target.text == "all":
        return p.target == "all"
    if target.agent is not None:
        return p.agent == target.agent and (target.service is None or p.service == target.service)
    return p.service == target.service


async def _record_end(session: AsyncSession, svc: Services, p: Pause, by: str, at: datetime) -> None:
    data = {"pause": p.id, "target": p.target, "service": p.service, "agent": p.agent, "by": by,
            "started_by": p.by, "reason": p.reason}
    await ledger.append(session, "pause.ended", data, actor=by, at=at)
    announce(session, svc, p.service, leadership=p.service is None or p.by == "countersign",
             notice={"event": "pause.ended", **data}, everywhere=p.target == "all")


def pause_json(p: Pause) -> dict[str, Any]:
    """A pause as `GET /v1/pauses` and `countersign pauses --json` give it."""
    return {"id": p.id, "target": p.target, "service": p.service, "agent": p.agent, "by": p.by,
            "reason": p.reason, "since": iso(p.started_at), "until": iso(p.until)}


async def holding(svc: Services) -> list[Pause]:
    async with svc.db.read_session() as session:
        return await q.holding_pauses(session, svc.clock())


async def sweep(svc: Services) -> int:
    """Record the end of pauses (and grants) whose deadline passed, whoever was up at that moment.
    The conditional update lets one replica record each end once."""
    now = svc.clock()
    done = 0
    async with svc.db.session() as session:
        for p in await q.expired_pauses(session, now):
            assert p.id is not None and p.until is not None
            if await q.end_pause(session, p.id, p.until, "expiry"):
                await _record_end(session, svc, p, "expiry", now)
                done += 1
        for g in await q.expired_grants(session, now):
            assert g.id is not None
            if await q.end_grant(session, g.id, g.until, "expiry") is not None:
                data = {"grant": g.id, "kind": g.kind, "agent": g.agent, "service": g.service,
                        "action_type": g.action_type, "environment": g.environment, "mode": g.mode,
                        "previous_mode": g.previous_mode, "until": g.until.isoformat()}
                await ledger.append(session, "grant.expired", data, actor="countersign", at=now)
                # told where the grant was announced: the team's next actions change mode again
                announce(session, svc, g.service, leadership=True, notice={"event": "grant.expired", **data})
                done += 1
        await session.commit()
    if done:
        invalidate_cache(svc)
    return done


def invalidate_cache(svc: Services) -> None:
    invalidate = getattr(svc.autonomy, "invalidate", None)
    if invalidate is not None:
        invalidate()


def schedule(svc: Services, every: float) -> None:
    """Record expired pauses and grants on every replica (each end is recorded once)."""
    svc.scheduler.add_job(sweep, "interval", seconds=max(every, 1.0), args=[svc], id="autonomy-expiry",
                          replace_existing=True, coalesce=True, max_instances=1, next_run_time=datetime.now(UTC))
