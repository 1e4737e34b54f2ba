"""The running application's shared parts, built once by the app factory and passed around.

Everything here is what any room of bot may use, so it names nothing of the rooms: the app's own
moving parts (relay, sweeper, long-poll waiters) live with the app factory (bot.app.Runtime).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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

    async def current(self) -> InForce: ...


class _NoAutonomy:
    async def current(self) -> InForce:
        return InForce()


# Told, after the commit, of an explicit decision on an action (the brake counts overrides).
DecidedHook = Callable[[int], Awaitable[None]]

# /healthz: "ok", or why this part is degraded.
HealthProbe = Callable[[], Awaitable[str]]
# /metrics: set the gauges that are read from the database when scraped.
MetricsRefresher = Callable[[], Awaitable[None]]


def _scheduler() -> AsyncIOScheduler:
    return AsyncIOScheduler(timezone="UTC")


@dataclass
class Services:
    settings: Settings
    db: Database
    policy: Policy
    clock: Clock = system_clock
    slack: Any = None  # slack_sdk AsyncWebClient (None in CLI contexts without Slack)
    metrics: Metrics = field(default_factory=Metrics)
    # The one scheduler of the process: the sweeper's interval job and the digest's cron job.
    scheduler: AsyncIOScheduler = field(default_factory=_scheduler)
    decision_listeners: list[DecisionListener] = field(default_factory=list)
    health_probes: dict[str, HealthProbe] = field(default_factory=dict)
    metrics_refreshers: list[MetricsRefresher] = field(default_factory=list)
    autonomy: AutonomySource = field(default_factory=_NoAutonomy)
    decided_hooks: list[DecidedHook] = field(default_factory=list)
