"""The track record (storage.queries.trust) named per agent, and the suggestions it supports now."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.policy.autonomy import Record, Suggestion, demotion, promotion, suggestions
from bot.policy.rules import Autonomy
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
    """What the policy's `autonomy:` thresholds suggest now, less what a person's decision holds back
    (see `_held_back`)."""
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
    if not found:
        return []
    held = await _held_back(session, now, autonomy)
    out = []
    for s in found:
        key = (s.kind, *s.key())
        if key in held.dismissed or (*key, s.mode_suggested) in held.granted_moves:
            continue
        since = held.evidence_since.get(key)
        if since is not None and not await _supported_since(session, s, since, now, autonomy):
            continue
        out.append(s)
    return out


Decided = tuple[str, str, str, str, str]  # kind, agent, service, action_type, environment


@dataclass
class HeldBack:
    """What `_held_back` found: keys quiet outright, moves a grant gives now, and since when figures count."""

    dismissed: set[Decided] = field(default_factory=set)
    granted_moves: set[tuple[str, str, str, str, str, str]] = field(default_factory=set)  # Decided + mode
    evidence_since: dict[Decided, datetime] = field(default_factory=dict)


async def _held_back(session: AsyncSession, now: datetime, autonomy: Autonomy) -> HeldBack:
    """How people's decisions hold a suggestion (kind x agent x service x action_type x environment) back:
    - dismissed: quiet for `demote.window` after the dismissal, whatever the figures (a bounded "not now");
    - granted, in force: its own move is not suggested again (the grant gives it; a suggestion starts
      from the grant's mode, so this matters when a newer grant for the key shadows it), and a further
      move of the same kind needs figures gathered since the grant: the ones before it were spent on
      this step;
    - granted, then revoked by a person: only figures gathered since the revocation count. A leader
      just judged the figures before it insufficient; suggesting them again at once would only nag;
    - granted, then expired by itself: nothing. It ran its term without objection, so the record
      is judged afresh at once (it used to stay hidden for `demote.window`, longer than a short grant).
    A restriction to figures since a moment never reaches back beyond the window itself."""
    oldest = now - timedelta(seconds=max(autonomy.window, autonomy.demote.window))
    rows = await q.decided_since(session, dismissed_since=now - timedelta(seconds=autonomy.demote.window),
                                 granted_since=oldest)
    held = HeldBack()
    for g in rows:
        key = (g.kind, g.agent, g.service, g.action_type, g.environment)
        if g.decision == "dismissed":
            held.dismissed.add(key)
            continue
        if g.revoked_at is None and g.until > now:
            held.granted_moves.add((*key, g.mode))
            since = g.at
        elif g.revoked_at is not None and g.revoked_by != "expiry":
            since = g.revoked_at
        else:  # expired (recorded by the sweep or not yet)
            continue
        held.evidence_since[key] = max(since, held.evidence_since.get(key, since))
    return held


async def _supported_since(session: AsyncSession, s: Suggestion, since: datetime, now: datetime,
                           autonomy: Autonomy) -> bool:
    """Whether the figures since `since` alone (within the suggestion's window) make the same suggestion."""
    window = autonomy.window if s.kind == "promote" else autonomy.demote.window
    start = now - timedelta(seconds=window)
    if since <= start:  # the whole window is after it: `s` was read from exactly these figures
        return True
    # strictly after: what was submitted by that instant was in the figures the person judged
    found = await records(session, since + trust_q.TICK, now, service=s.service, median=False)
    record = next((r for r in found if r.key() == s.key()), None)
    if record is None:
        return False
    again = (promotion if s.kind == "promote" else demotion)(record, s.mode_now, autonomy)
    return again is not None and again.mode_suggested == s.mode_suggested
