"""The outbox relay: claims due messages, plans each one (storm thread, pack, pace) and hands them,
different channels concurrently, to be sent to Slack or to agents' callback URLs and marked done,
retried or failed (bot/delivery/sending.py). Why at-least-once at one edge, and how 429s, 5xx and
permanent errors are handled: docs/architecture.md, "The outbox relay"."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from bot.delivery import storms
from bot.delivery.directory import cached_id, is_email
from bot.delivery.failures import CALL_TIMEOUT, NO_ANSWER
from bot.delivery.messages import THREADED_PURPOSES, Kind
from bot.delivery.pacing import (
    Breaker,
    Pacer,
    delivery_health,
    fresh_token_needed,
    refresh_backlog_metrics,
)
from bot.delivery.packing import Packer, needless, pack_kind
from bot.delivery.recorder import PageFailed
from bot.delivery.sending import Sender
from bot.delivery.shared_budget import SharedBreaker, SharedPacer
from bot.delivery.wire import Deferred, Renderer, Wire
from bot.services import Services
from storage import outbox
from storage.models import OutboxMessage

log = logging.getLogger("countersign.relay")

LEASE_MARGIN = 5.0
WAIT_FOR_PARENT = 2.0  # a storm's cards wait this long for its parent card to be posted


class Relay(Sender):
    def __init__(self, svc: Services, render: Renderer, on_page_failed: PageFailed, *, batch: int = 50,
                 pacer: Pacer | None = None, breaker: Breaker | None = None) -> None:
        self.svc, self.render, self.batch = svc, render, batch
        self.on_page_failed = on_page_failed
        # Pacing runs on the app's clock, so a test that moves a FakeClock moves the buckets too.
        self.pacer = SharedPacer(pacer or Pacer(clock=lambda: svc.clock().timestamp()))
        # The breaker's state is shared through the database, so it runs on wall time.
        self.shared_breaker = SharedBreaker(svc.db, breaker or Breaker(clock=time.time))
        self.breaker = self.shared_breaker.breaker
        self._routes: dict[int, storms.Route] = {}  # message id -> its storm thread, decided at claim
        self._in_flight: set[int] = set()
        self._resumed: dict[int, datetime] = {}  # row id -> when its lapsed lease began (it may be in Slack)
        self.wire = Wire(svc, render)
        self.wire.before_post = self._leaving
        self._granted: dict[int, tuple[str, float]] = {}  # row id -> (pacing key, when) of its token
        self._people: dict[str, str] = {}  # e-mail -> the user id its DMs are paced under
        self.packer = Packer(self.pacer, self._routes, self._granted, self._pace_key)
        self.mark_windows: deque[float] = deque(maxlen=10_000)
        self._ticks = 0

    async def health(self) -> str:
        return await delivery_health(self.svc, self.breaker)

    async def refresh_metrics(self) -> None:
        await refresh_backlog_metrics(self.svc)

    async def close(self) -> None:
        await self.wire.close()

    async def tick(self) -> int:
        """Send what is due, different channels concurrently; returns how many rows were handled."""
        if self._ticks == 0:  # open the done-mark's own connection now, not after the first send
            async with self.svc.db.urgent_session() as session:
                await session.connection()
        await self.shared_breaker.refresh()
        self.pacer.new_tick()
        if self.breaker.probe_due():
            await self._probe()
        now = self.svc.clock()
        target = None if self.breaker.allows_sending() else "callback"
        async with self.svc.db.session() as session:
            rows = await outbox.claim_due(session, now, limit=self.batch, target=target,
                                          lease_seconds=CALL_TIMEOUT + LEASE_MARGIN, resumed=self._resumed,
                                          unanswered=f"{NO_ANSWER}:")
            rows = outbox.coalesce(session, [r for r in rows if r.id not in self._in_flight])
            groups: dict[str, list[list[OutboxMessage]]] = {}  # channel -> what to send, in order
            packable: dict[tuple[str, str | None, Kind], list[OutboxMessage]] = {}
            depths: dict[str, int] = {}  # channel -> posts waiting for it, counted once a tick
            for row in rows:
                plan = await self._plan(session, row, now, depths)
                if plan == "send":  # an App Home is not a message in the DM: it does not wait for one
                    key = f"{row.method}:{row.channel_key}" if row.channel_key else f"row:{row.id}"
                    groups.setdefault(key, []).append([row])
                elif plan == "pack":
                    route = self._routes.get(row.id or 0)
                    thread = route.thread_ts if route is not None else None
                    kind = pack_kind(row)
                    assert kind is not None
                    packable.setdefault((row.channel_key or "-", thread, kind), []).append(row)
            for (key, thread, kind), members in packable.items():
                units = await self.packer.packs(session, key, thread, members, now, kind)
                groups.setdefault(f"chat.postMessage:{key}", []).extend(units)
            for group in groups.values():  # sent one after another: each needs its own time
                for position, unit in enumerate(group):
                    lease = timedelta(seconds=(position + 1) * CALL_TIMEOUT + LEASE_MARGIN)
                    for row in unit:
                        row.claimed_until = now + lease
                        session.add(row)
            await session.commit()
        # Until this commit the channels' row locks kept every other replica from being given a
        # token: a token's age, what makes a send late (Relay._leaving), counts from here.
        committed = self.pacer.pacer.clock()
        for unit in (u for group in groups.values() for u in group):
            granted = self._granted.get(unit[0].id or 0)
            if granted is not None:
                self._granted[unit[0].id or 0] = (granted[0], committed)
        await asyncio.gather(*(self._send_group(group) for group in groups.values()))
        self._ticks += 1
        if self._ticks % 1000 == 0:
            await self.pacer.prune(self.svc.db)
        return len(rows)

    async def _plan(self, session: Any, row: OutboxMessage, now: datetime, depths: dict[str, int]) -> str:
        """Storm threading, packing and pacing for one claimed row: "send" it now, "pack" it with
        others for the same channel, "wait" (deferred, which is not an attempt) or "skip" (needless)."""
        if row.target != "slack" or row.method != "chat.postMessage":
            return "send"
        assert row.id is not None
        reason = await needless(session, row)
        if reason is not None:  # before it takes a turn of the channel's budget
            self._resumed.pop(row.id, None)
            outbox.settle(session, row, {"skipped": reason})
            return "skip"
        channel = row.payload.get("channel")
        key = row.channel_key or channel or "-"
        route: storms.Route | None = None
        if row.purpose in THREADED_PURPOSES and row.action_id and channel:
            route = await storms.route(session, row.action_id, channel)
            if route.wait:
                outbox.defer(session, row, now + timedelta(seconds=WAIT_FOR_PARENT))
                return "wait"
            if route.thread_ts:
                self._routes[row.id] = route
        if row.id in self._resumed:
            # It may be in Slack already: it goes alone, now, to be looked for before anything else
            # (its turn of the budget is taken as it leaves, if it must be posted). Deferred or
            # packed, it would be 'pending' again, and whoever claimed it next would not know.
            return "send"
        if await self.packer.wanted(session, row, key, route, depths):
            return "pack"
        pace = await self._pace_key(session, key)
        granted = (pace, self.pacer.pacer.clock())
        delay = await self.pacer.acquire(session, pace, await self.packer.depth(session, key, depths))
        if delay > 0:
            self._routes.pop(row.id, None)
            outbox.defer(session, row, now + timedelta(seconds=delay))
            return "wait"
        self._granted[row.id] = granted
        return "send"

    async def _pace_key(self, session: Any, key: str) -> str:
        """One Slack conversation, one budget: a DM addressed by e-mail is paced under the user id
        Slack receives it for, once known (before that, it takes its token as it leaves)."""
        if not is_email(key):
            return key
        if key not in self._people:
            found = await cached_id(session, key, self.svc.clock())
            if found is None:
                return key
            self._people[key] = found
        return self._people[key]

    async def _leaving(self, channel: str, unit: list[OutboxMessage]) -> None:
        """The last check before a post goes (Wire.before_post): the token it was claimed with
        still holds, or it takes a fresh one now, or it waits for its turn (Deferred)."""
        granted = self._granted.pop(unit[0].id or 0, None)
        claimed = unit[0].channel_key
        if claimed and is_email(claimed) and channel:
            self._people[claimed] = channel  # later claims pace this person under the id
        key = channel or claimed or "-"
        if not fresh_token_needed(granted, key, self.pacer.pacer.clock()):
            return
        delay = await self.pacer.leave(self.svc.db, key)
        if delay > 0:
            raise Deferred(delay)


async def run_forever(tick: Callable[[], Awaitable[int]], interval: float, stop: asyncio.Event) -> None:
    """Call `tick` until `stop` is set; when it found work, go again at once."""
    while not stop.is_set():
        try:
            busy = await tick()
        except Exception:
            log.exception("background tick failed")
            busy = 0
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
