"""The running application's shared parts, built once by the app factory and passed around.

Everything here is what any room of bot may use, so it names nothing of the rooms: the app's own
moving parts (relay, sweeper, long-poll waiters) live with the app factory (bot.app.Runtime).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.clock import Clock, system_clock
from bot.config import Settings
from bot.metrics import Metrics
from bot.policy.autonomy import InForce
from bot.policy.rules import Policy
from storage.db import Database


class DecisionListener(Protocol):
    """Told, after the commit, which actions were just decided (wakes the long polls)."""

    def __call__(self, *action_ids: int | None) -> None: ...


class AutonomySource(Protocol):
    """The grants and pauses in force now (bot.autonomy.state), cheap enough to ask on every ingest."""

    async def current(self, *, fresh: bool = False) -> InForce: ...


class _NoAutonomy:
    async def current(self, *, fresh: bool = False) -> InForce:
        return InForce()


# Told, after the commit, of an explicit decision on an action (the brake counts overrides).
DecidedHook = Callable[[int], Awaitable[None]]

# /healthz: "ok", or why this part is degraded.
HealthProbe = Callable[[], Awaitable[str]]
# /metrics: set the gauges that are read from the database when scraped.
MetricsRefresher = Callable[[], Awaitable[None]]


UNWIND_SECONDS = 10.0


class AwaitableJobs(AsyncIOExecutor):
    """APScheduler's asyncio executor, whose shutdown cancels the running jobs without waiting for
    them. A job cancelled mid-query on SQLite (the trust rollup, run at every start, in its BEGIN
    IMMEDIATE) left its connection to be terminated while the pool was disposed, and that never
    returned: CI teardowns hung for 120 s. So the app lets the running jobs finish first
    (`finished`, bounded), and only then shuts the scheduler down."""

    async def finished(self) -> None:
        """The jobs running now have ended (those still running after UNWIND_SECONDS are left to
        the shutdown's cancellation)."""
        running = [f for f in self._pending_futures if not f.done()]
        if running:
            await asyncio.wait(running, timeout=UNWIND_SECONDS)


@dataclass
class Services:
    settings: Settings
    db: Database
    policy: Policy
    clock: Clock = system_clock
    slack: Any = None  # slack_sdk AsyncWebClient (None in CLI contexts without Slack)
    metrics: Metrics = field(default_factory=Metrics)
    # The one scheduler of the process (the sweeper, the digest, the rollup, expiries) and the
    # executor its jobs run in, awaited at shutdown.
    jobs: AwaitableJobs = field(default_factory=AwaitableJobs)
    scheduler: AsyncIOScheduler = field(init=False)
    decision_listeners: list[DecisionListener] = field(default_factory=list)
    health_probes: dict[str, HealthProbe] = field(default_factory=dict)
    metrics_refreshers: list[MetricsRefresher] = field(default_factory=list)
    autonomy: AutonomySource = field(default_factory=_NoAutonomy)
    decided_hooks: list[DecidedHook] = field(default_factory=list)
    # Emails being looked up in Slack now (bot.delivery.directory): a burst of first pages for one
    # person asks Slack once and every caller awaits that answer.
    email_lookups: dict[str, asyncio.Future[str | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone="UTC", executors={"default": self.jobs})
