"""Grants: a leadership user or an admin grants (or dismisses) a suggested promotion or demotion
(SPEC: suggestions with Grant / Dismiss; what stops an agent at once, with nobody asked, is the brake).
Each is a row with who, when, until and the figures, and a ledger entry; it expires by itself
(bot.autonomy.pauses.sweep records that) or is revoked.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from bot.autonomy.pauses import announce, invalidate_cache
from bot.autonomy.trust import current_suggestions
from bot.delivery.directory import resolve_all
from bot.policy.autonomy import Suggestion
from bot.services import Services
from storage.ledger import chain as ledger
from storage.models import AutonomyGrant
from storage.queries import autonomy as q

log = logging.getLogger("countersign.grants")


class GrantRefused(Exception):
    """Why a grant, a dismissal or a revocation was refused (nothing changed)."""


async def may_grant(svc: Services, user_id: str) -> bool:
    """Leadership users and admins."""
    policy = svc.policy
    people = list(policy.admins) + (list(policy.leadership.users) if policy.leadership else [])
    return user_id in people or user_id in await resolve_all(svc, [p for p in people if "@" in p])


def grant_json(g: AutonomyGrant) -> dict[str, Any]:
    return {"grant": g.id, "kind": g.kind, "decision": g.decision, "agent": g.agent, "service": g.service,
            "action_type": g.action_type, "environment": g.environment, "mode": g.mode,
            "previous_mode": g.previous_mode, "by": g.by, "until": g.until.isoformat(), "figures": g.figures}


async def decide(svc: Services, user_id: str, token: str, decision: str) -> AutonomyGrant:
    """Grant or dismiss the suggestion a button carried, if it still stands. Raises GrantRefused."""
    if not await may_grant(svc, user_id):
        async with svc.db.session() as session:
            await ledger.append(session, "grant.refused", {"by": user_id, "suggestion": token, "decision": decision},
                                actor=user_id, at=svc.clock())
            await session.commit()
        raise GrantRefused("Only leadership users and admins may grant or dismiss a suggestion. "
                           "Your attempt was recorded.")
    now = svc.clock()
    async with svc.db.read_session() as session:
        found = {s.token(): s for s in await current_suggestions(svc, session, now)}
    suggestion = found.get(token)
    if suggestion is None:
        raise GrantRefused("That suggestion no longer stands (already decided, or the figures changed).")
    return await _store(svc, suggestion, user_id, decision)


async def _store(svc: Services, s: Suggestion, by: str, decision: str) -> AutonomyGrant:
    now = svc.clock()
    autonomy = svc.policy.autonomy
    grant_for = autonomy.grant_for if autonomy else 30 * 86400.0
    row = AutonomyGrant(agent=s.agent, service=s.service, action_type=s.action_type, environment=s.environment,
                        kind=s.kind, decision=decision, mode=s.mode_suggested, previous_mode=s.mode_now, by=by,
                        at=now, until=now + timedelta(seconds=grant_for), figures={**s.figures, "why": s.why},
                        dedupe_key=f"{s.kind}:{s.token()}:{now.isoformat()}" if decision == "granted" else None)
    async with svc.db.session() as session:
        session.add(row)
        await session.flush()
        event = "grant.granted" if decision == "granted" else "grant.dismissed"
        data = grant_json(row)
        await ledger.append(session, event, data, actor=by, at=now)
        if decision == "granted":
            announce(session, svc, s.service, leadership=True, notice={"event": event, **data})
        await session.commit()
    invalidate_cache(svc)
    return row


def _why_not(grant_id: int, row: AutonomyGrant | None) -> str:
    """Why there is nothing to revoke: revoking twice said only "No grant 1 is in force"."""
    if row is None or row.decision != "granted":
        return f"No grant {grant_id}: `countersign policy grants list --all` lists every grant."
    if row.revoked_by == "expiry":
        return f"Grant {grant_id} already expired at {row.until.isoformat()}."
    ended = row.revoked_at.isoformat() if row.revoked_at else "?"
    return f"Grant {grant_id} was already revoked at {ended} by {row.revoked_by}."


async def revoke(svc: Services, grant_id: int, by: str) -> AutonomyGrant:
    now = svc.clock()
    async with svc.db.session() as session:
        found = await session.get(AutonomyGrant, grant_id)
        if found is not None and found.decision == "granted" and found.revoked_at is None and found.until <= now:
            # not yet swept, but ingest has not applied it since `until`: revoking it would announce a change
            raise GrantRefused(f"Grant {grant_id} already expired at {found.until.isoformat()}.")
        row = await q.end_grant(session, grant_id, now, by)
        if row is None:
            raise GrantRefused(_why_not(grant_id, found))
        data = grant_json(row)
        await ledger.append(session, "grant.revoked", data, actor=by, at=now)
        # the notice names who revoked it (data's `by` is who granted it)
        announce(session, svc, row.service, leadership=True,
                 notice={"event": "grant.revoked", **data, "by": by, "granted_by": row.by})
        await session.commit()
    invalidate_cache(svc)
    return row
