"""The grants and pauses in force, read from the database and kept for at most a second.

Ingest asks on every submission (`svc.autonomy.current()`); two small indexed reads a second at
most, whatever the rate. A change made in this process invalidates at once; one made on another
replica is seen within `ttl` (a pause's or grant's `until` is checked against `now` by every reader,
so expiry is exact everywhere).
"""

from __future__ import annotations

import asyncio
import time

from bot.policy.autonomy import GrantInForce, InForce, PauseInForce
from storage.db import Database
from storage.models import AutonomyGrant, Pause
from storage.queries import autonomy as q


def grant_in_force(g: AutonomyGrant) -> GrantInForce:
    assert g.id is not None
    return GrantInForce(g.id, g.agent, g.service, g.action_type, g.environment, g.kind, g.mode, g.by, g.until)


def pause_in_force(p: Pause) -> PauseInForce:
    assert p.id is not None
    return PauseInForce(p.id, p.target, p.service, p.agent, p.by, p.reason, p.until)


class AutonomyState:
    def __init__(self, db: Database, ttl: float = 1.0) -> None:
        self.db, self.ttl = db, ttl
        self._value: InForce | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._value = None

    async def current(self, *, fresh: bool = False) -> InForce:
        """What holds, read at most `ttl` ago; `fresh`: read now (a view rendered seldom that must
        show a change another process made a moment ago, e.g. App Home after `countersign pause`)."""
        value = self._value
        if not fresh and value is not None and time.monotonic() - self._read_at < self.ttl:
            return value
        async with self._lock:  # one read for every request that arrives meanwhile
            if not fresh and self._value is not None and time.monotonic() - self._read_at < self.ttl:
                return self._value
            async with self.db.read_session() as session:
                grants = await q.live_grants(session)
                pauses = await q.live_pauses(session)
            self._value = InForce(tuple(map(grant_in_force, grants)), tuple(map(pause_in_force, pauses)))
            self._read_at = time.monotonic()
            return self._value
