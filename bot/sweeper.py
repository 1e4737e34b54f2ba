"""The escalation sweeper: on every replica, claims the actions whose next step is due and fires it.

The database is the source of truth (each pending action carries `next_at`); the unique
(action, step) record makes a second firing impossible even if two replicas race.
"""

from __future__ import annotations

import logging

from bot.paging import advance
from bot.services import Services
from storage.sweep import claim_due_actions

log = logging.getLogger("countersign.sweeper")


class Sweeper:
    def __init__(self, svc: Services, *, batch: int = 200) -> None:
        self.svc, self.batch = svc, batch

    async def tick(self) -> int:
        """Fire every due step; returns how many actions were advanced."""
        now = self.svc.clock()
        metrics = self.svc.extras.get("metrics")
        async with self.svc.db.session() as session:
            actions = await claim_due_actions(session, now, limit=self.batch)
            fired_total = 0
            for action in actions:
                fired = await advance(session, action, now)
                fired_total += len(fired)
                for step in fired:
                    late = max(0.0, (now - step.at).total_seconds())
                    log.info("action %s: %s (%.3fs late)", action.id, step.key, late,
                             extra={"action_id": action.id})
                    if metrics:
                        metrics.steps_fired.labels(step.kind).inc()
                        metrics.step_lateness.observe(late)
            await session.commit()
        return len(actions)
