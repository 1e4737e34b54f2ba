"""The escalation sweeper: on every replica, claims the actions whose next step is due and fires it.

The database is the source of truth (each pending action carries its `level` and `next_at`); the
unique (action, step) record makes a second firing impossible even if two replicas race. It runs
as an APScheduler interval job on the application's event loop (see `schedule`); its first run is
at start, so steps that came due while no process was running fire at once, and the lateness is
recorded with each step (escalation_steps.late_seconds, the ledger, the lateness histogram).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.escalation.paging import Effects, advance
from bot.escalation.plan import DueStep, plan
from bot.escalation.snapshot import snapshot_of
from bot.policy.rules import LEVELS
from bot.services import Services
from storage.models import Action
from storage.queries.sweep import claim_due_actions, fired_steps_for, next_due_at, pending_by_level, record_steps

log = logging.getLogger("countersign.sweeper")
JOB_ID = "escalation-sweeper"


class Sweeper:
    def __init__(self, svc: Services, *, batch: int = 100) -> None:
        # A batch is one transaction: on PostgreSQL it holds its rows (and the ledger head) until it
        # commits, so it stays small enough not to delay responses and submissions noticeably.
        self.svc, self.batch = svc, batch
        self._busy = asyncio.Lock()
        self._stopped = False

    async def tick(self) -> int:
        """Claim one batch of due actions and fire their due steps in one transaction; returns how
        many actions were claimed.

        The batch's due steps are recorded by one multi-row insert (the unique (action, step) key
        refuses any that fired before), then each action's ledger entries are appended, then
        every outbox message and state change is written in one flush at commit.
        """
        metrics = self.svc.metrics
        fired: list[tuple[Action, DueStep, float]] = []
        async with self.svc.db.session() as session:
            actions = await claim_due_actions(session, self.svc.clock(), limit=self.batch)
            pending = [a for a in actions if a.id is not None and a.status == "pending"]
            history = await fired_steps_for(session, [a.id for a in pending if a.id is not None])
            now = self.svc.clock()  # after the claim: the instant the steps are recorded as fired
            due = {a.id: plan(snapshot_of(a).chain, a.created_at, history[a.id or 0], now).due
                   for a in pending}
            recorded = await record_steps(
                session, [(action_id, s.key, s.level, s.at) for action_id, steps in due.items()
                          for s in steps if action_id is not None], now,
                notes={(action_id, s.key): s.note for action_id, steps in due.items()
                       for s in steps if action_id is not None and s.note})
            effects: Effects = []
            for action in actions:
                mine = {key for action_id, key in recorded if action_id == action.id}
                for step in await advance(session, action, now, fired=history.get(action.id or 0, {}),
                                          recorded=mine, effects=effects):
                    fired.append((action, step, max(0.0, (now - step.at).total_seconds())))
            for effect in effects:
                effect()
            await session.commit()
        for listener in self.svc.decision_listeners:
            listener(*[a.id for a in actions if a.accountability])  # a timeout decided them: wake waiters
        for action, step, late in fired:
            log.info("action %s: %s (%.3fs late)", action.id, step.key, late, extra={"action_id": action.id})
            metrics.steps_fired.labels(step.kind).inc()
            metrics.step_lateness.observe(late)
            if step.kind == "timeout" and action.decision_via == "timeout":  # not when a response won
                metrics.decided(outcome=action.outcome, accountability=action.accountability, via="timeout")
        return len(actions)

    async def run(self) -> int:
        """One scheduled run: claim batches until no due action is left. A run still going when
        the next is due makes that one return at once (never two sweeps in one process)."""
        if self._busy.locked() or self._stopped:
            return 0
        total = 0
        async with self._busy:
            while not self._stopped:
                claimed = await self.tick()
                total += claimed
                if claimed < self.batch:
                    break
        return total

    def schedule(self, scheduler: AsyncIOScheduler, interval: float) -> None:
        """An interval job on the scheduler's event loop, first run now. max_instances=2 with the
        lock in `run` lets an overlapping run skip quietly instead of logging a warning each time."""
        scheduler.add_job(self.run, "interval", seconds=interval, id=JOB_ID, replace_existing=True,
                          next_run_time=datetime.now(UTC), max_instances=2, coalesce=True,
                          misfire_grace_time=None)

    async def stop(self) -> None:
        """No new runs; wait for the current one to commit (nothing is left half-written)."""
        self._stopped = True
        async with self._busy:
            pass


async def refresh_metrics(svc: Services) -> None:
    """Pending actions by level and the earliest deadline, read when /metrics is scraped."""
    metrics = svc.metrics
    async with svc.db.session() as session:
        counts = await pending_by_level(session)
        earliest = await next_due_at(session)
        await session.commit()
    for level in (*LEVELS, None):
        metrics.pending.labels(level or "none").set(counts.get(level, 0))
    metrics.next_step_at.set(earliest.timestamp() if earliest else 0)
