"""`GET /v1/actions/{id}/decision?wait=N`: the long poll an agent blocks on until a human decides.

Answers at once if the action is decided (its `decision` is filled), else holds the request up to
`wait` seconds (at most 60) and answers the moment a decision lands. Two ways to learn of one:
- in this process, bot/actions/decisions.py and the sweeper call `svc.decision_listeners` after
  they commit, which sets the waiting requests' events (no polling at all);
- on another replica sharing the database, nobody tells us: one query per second for ALL the
  action ids waited on here (not one per request) catches it.
Either way the request re-reads the action from the database before answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlmodel import col

from bot.actions.serialize import action_json
from bot.contract.errors import ApiError
from bot.delivery.directory import name_deciders
from bot.services import Services
from storage.models import Action
from storage.queries import actions as repo

log = logging.getLogger("countersign.api.decision")
MAX_WAIT_SECONDS = 60.0
RECHECK_SECONDS = 1.0
RECHECK_CHUNK = 500  # ids per IN (...) query


class DecisionWaiters:
    """The requests waiting in this process, by action id, and the one-per-second database re-check."""

    def __init__(self, svc: Services, recheck: float = RECHECK_SECONDS) -> None:
        self.svc, self.recheck = svc, recheck
        self.closing = False
        self._events: dict[int, set[asyncio.Event]] = {}
        self._poller: asyncio.Task[None] | None = None

    def waiting(self) -> int:
        """How many requests are parked here now."""
        return sum(len(events) for events in self._events.values())

    def notify(self, *action_ids: int | None) -> None:
        """Actions were decided (and committed): wake whoever waits for them."""
        for action_id in action_ids:
            for event in self._events.get(action_id or 0, ()):
                event.set()

    @contextlib.contextmanager
    def watching(self, action_id: int) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._events.setdefault(action_id, set()).add(event)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._recheck_forever(), name="decision-recheck")
        try:
            yield event
        finally:
            waiting = self._events.get(action_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._events[action_id]

    async def close(self) -> None:
        """Shutting down: answer every waiting request now (with what the database says)."""
        self.closing = True
        for events in self._events.values():
            for event in events:
                event.set()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def _recheck_forever(self) -> None:
        while self._events and not self.closing:
            await asyncio.sleep(self.recheck)
            try:
                self.notify(*await self._decided(list(self._events)))
            except Exception:  # a database blip: the next round tries again
                log.warning("re-checking waited actions failed", exc_info=True)

    async def _decided(self, ids: list[int]) -> list[int]:
        found: list[int] = []
        async with self.svc.db.read_session() as session:
            for start in range(0, len(ids), RECHECK_CHUNK):
                chunk = ids[start:start + RECHECK_CHUNK]
                rows = await session.execute(select(col(Action.id)).where(
                    col(Action.id).in_(chunk), col(Action.accountability).is_not(None)))
                found.extend(row[0] for row in rows)
        return found


def _wait_seconds(request: web.Request) -> float:
    raw = request.query.get("wait", "0")
    try:
        wait = float(raw)
        if not wait >= 0:  # also rejects NaN
            raise ValueError
    except ValueError:
        raise ApiError(400, "invalid_request", f"wait: seconds to wait, from 0 to {MAX_WAIT_SECONDS:.0f}",
                       fields=[{"field": "wait", "message": "a number of seconds >= 0"}]) from None
    return min(wait, MAX_WAIT_SECONDS)


def register(app: web.Application, services_key: web.AppKey[Services], waiters: DecisionWaiters,
             agent_key: web.RequestKey[Any], action_id: Callable[[web.Request], int]) -> None:
    """Add the route; the app factory owns `waiters` (listens for decisions, closes them on shutdown).
    `action_id` reads the path's id as the other action routes do (bot.api.routes), so an id that is
    not a plain ASCII number ("²", "١") is a 404 here too, never a 500 or another action."""

    async def load(svc: Services, action_id: int, agent_id: int | None) -> tuple[Action, Any]:
        async with svc.db.read_session() as session:  # on SQLite: no writer lock, never queues
            found = await repo.get_with_agent(session, action_id)
        if found is None or found[0].agent_id != agent_id:  # another agent's: as if it did not exist
            raise ApiError(404, "not_found", f"there is no action {action_id}")
        return found

    async def get_decision(request: web.Request) -> web.Response:
        svc = request.app[services_key]
        ident, wait = action_id(request), _wait_seconds(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        # Watch BEFORE reading, so a decision committed between the read and the wait still wakes us.
        with waiters.watching(ident) if wait > 0 else contextlib.nullcontext(asyncio.Event()) as event:
            while True:
                event.clear()
                action, agent = await load(svc, ident, request[agent_key].id)
                remaining = deadline - loop.time()
                if action.accountability is not None or remaining <= 0 or waiters.closing:
                    body = action_json(action, agent.name, svc.settings.base_url)
                    await name_deciders(svc, [body])
                    return web.json_response(body)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await event.wait()

    app.router.add_get("/v1/actions/{id}/decision", get_decision)
