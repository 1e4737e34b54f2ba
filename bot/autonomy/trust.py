"""The track record (storage.queries.trust) named per agent, and the suggestions it supports now."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.policy.autonomy import Record, Suggestion, suggestions
from bot.services import Services
from storage.queries import agents
from storage.queries import autonomy as q
from storage.queries import trust as trust_q

DEFAULT_WINDOW = timedelta(days=30)


class UnknownSubject(LookupError):
    """Neither an agent nor a service of that name."""


async def records(session: AsyncSession, since: datetime, until: datetime, *, agent_id: int | None = None,
                  service: str | None = None, median: bool = True) -> list[Record]:
    groups = await trust_q.track_record(session, since, until, agent_id=agent_id, service=service, median=median)
    names = await agents.names(session) if groups else {}
    out = []
    for (a, s, t, e), g in groups.items():
        st = g.by_status
        out.append(Record(
            agent=names.get(a, f"#{a}"), service=s, action_type=t, environment=e, actions=sum(st.values()),
            approved=st.get("approved", 0), denied=st.get("denied", 0), overridden=st.get("overridden", 0),
            acknowledged=st.get("acknowledged", 0), expired=st.get("expired", 0), recorded=st.get("recorded", 0),
            pending=st.get("pending", 0), defaults=g.defaults, violations=g.violations,
            median_decision_seconds=g.median_decision_seconds,
            median_approximate=g.median_approximate, succeeded=g.results.get("succeeded", 0),
            failed=g.results.get("failed", 0), rolled_back=g.results.get("rolled_back", 0)))
    out.sort(key=lambda r: (-r.actions, r.key()))
    return out


async def subject(svc: Services, session: AsyncSession, word: str | None) -> tuple[int | None, str | None]:
    """`trust [AGENT|SERVICE]`: (agent id, service) to filter by; a service name wins over an agent's."""
    if not word:
        return None, None
    if word in svc.policy.services:
        return None, word
    agent_id = await trust_q.agent_id_by_name(session, word.removeprefix("agent:"))
    if agent_id is None:
        raise UnknownSubject(word)
    return agent_id, None


async def current_suggestions(svc: Services, session: AsyncSession, now: datetime, *, agent_id: int | None = None,
                              service: str | None = None, long: list[Record] | None = None) -> list[Suggestion]:
    """What the policy's `autonomy:` thresholds suggest now, less what was granted or dismissed since
    the window began (a dismissed suggestion comes back once a new window's figures support it)."""
    autonomy = svc.policy.autonomy
    if autonomy is None:
        return []
    if long is None:  # the caller may have read this window already (`trust` over 30 days)
        long = await records(session, now - timedelta(seconds=autonomy.window), now, agent_id=agent_id,
                             service=service)
    short = await records(session, now - timedelta(seconds=autonomy.demote.window), now, agent_id=agent_id,
                          service=service, median=False)  # suggestions need no median
    in_force = await svc.autonomy.current()
    found = suggestions(svc.policy, in_force, long, short, now)
    decided = await q.dismissed_keys(session, now - timedelta(seconds=autonomy.demote.window))
    return [s for s in found if (s.kind, *s.key()) not in decided]
