"""The automatic brake: after an override or a failed result, count the agent's for that service
within the policy's `brake.window`; at the limit, pause the agent for the service (by `countersign`).

Exactly once across replicas and concurrent overrides: the pause carries a dedupe key unique per
(agent, service, how many brake pauses it had before), so two checks that both see the limit
reached try to insert the same key and one of them wins.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.autonomy import pauses
from bot.policy.autonomy import brake_trips
from bot.services import Services
from storage.models import Pause
from storage.queries import actions as repo
from storage.queries import autonomy as q

log = logging.getLogger("countersign.brake")


async def check(svc: Services, agent_id: int, agent_name: str, service: str) -> Pause | None:
    brake = svc.policy.brake_for(service)
    if brake is None:
        return None
    now = svc.clock()
    prefix = f"brake:{agent_name}:{service}:"
    async with svc.db.read_session() as session:
        if any(p.dedupe_key and p.dedupe_key.startswith(prefix) for p in await q.holding_pauses(session, now)):
            return None  # already braked, still holding
        trips, last = await q.brake_history(session, prefix)
        since = now - timedelta(seconds=brake.window)
        if last is not None and last > since:
            since = last  # what tripped the previous brake does not trip it again
        overrides = await q.overrides_since(session, agent_id, service, since)
        failed = await q.bad_results_since(session, agent_id, service, since)
    trip = brake_trips(brake, overrides, failed)
    if trip is None:
        return None
    target = pauses.Target(f"agent:{agent_name}@{service}", service, agent_name)
    pause = await pauses.start(svc, "countersign", pauses.PauseRequest(target, None, trip.reason),
                               dedupe_key=f"{prefix}{trips}")
    if pause is not None:
        log.warning("brake tripped for %s on %s: %s", agent_name, service, trip.reason)
    return pause


async def after_decision(svc: Services, action_id: int) -> None:
    """A decided hook (bot.services.DecidedHook): an override may trip the brake."""
    try:
        async with svc.db.read_session() as session:
            found = await repo.get_with_agent(session, action_id)
        if found is None or found[0].status not in q.OVERRIDDEN:
            return
        action, agent = found
        await check(svc, action.agent_id, agent.name, action.service)
    except Exception:  # the decision stands whatever happens here; the next override checks again
        log.exception("brake check after action %s failed", action_id)
