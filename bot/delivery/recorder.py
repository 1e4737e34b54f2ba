"""How what came back from a delivery is recorded (`Recorder`): every attempt recorded, the row
moved to done, retried (backoff) or failed, and a page that failed for good handed to escalation
(`PageFailed`). Apart from the wire, which only sends, and the relay, which decides when."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.delivery import callbacks, storms
from bot.delivery.messages import Kind
from bot.delivery.pacing import backoff
from bot.services import Services
from storage import outbox
from storage.ledger import chain as ledger
from storage.models import Action, OutboxMessage
from storage.queries import actions as repo
from storage.queries import storms as storm_rows

log = logging.getLogger("countersign.relay")

# A page that failed for good, handed back to escalation (bot.escalation.paging.fail_level): the
# app factory passes it in, so delivery never imports the escalation room above it.
PageFailed = Callable[[AsyncSession, Action, str, str, datetime], Awaitable[None]]


def _updatable(row: OutboxMessage, unit_size: int) -> bool:
    """A message later redrawn in place (its copy remembered): a card (alone or in a pack), or an
    FYI sent alone (an FYI pack is a line per action, and is left as posted)."""
    kind = row.payload.get("kind")
    return kind == Kind.CARD or (kind == Kind.FYI and row.purpose == Kind.FYI.value and unit_size == 1)


class Recorder:
    """What came back: every attempt recorded, the row moved to done, retried (backoff) or failed
    (and a failed page handed to escalation). Mixed into the relay, which owns `svc`."""

    svc: Services
    on_page_failed: PageFailed
    mark_windows: deque[float]  # the latest done-mark windows (seconds), for the benchmark

    @staticmethod
    async def _each(unit: list[OutboxMessage], record: Callable[..., Awaitable[None]], *args: Any,
                    **kwargs: Any) -> None:
        for row in unit:
            await record(row, *args, **kwargs)

    async def _done(self, unit: list[OutboxMessage], result: dict[str, Any], code: int,
                    routes: list[storms.Route | None]) -> None:
        """Mark the rows done right after the send (one short transaction: the shorter this gap,
        the rarer a duplicate), remembering where each card now lives."""
        now = self.svc.clock()
        answered = time.monotonic()
        async with self.svc.db.urgent_session() as session:
            await outbox.mark_done(session, unit, status_code=code, result=result, at=now)
            if result.get("ts"):
                await repo.remember_messages(session, [(m.action_id or 0, m.purpose or "card") for m in unit
                                                       if m.target == "slack" and _updatable(m, len(unit))],
                                             result["channel"], result["ts"])
            threaded = Counter(r.storm_id for r in routes if r is not None and r.storm_id is not None)
            for storm_id, n in threaded.items() if result.get("ts") else ():
                await storms.child_posted(session, storm_id, now, n)
            for msg in unit:
                if msg.payload.get("kind") == Kind.STORM and msg.method == "chat.postMessage":
                    await storm_rows.parent_posted(session, msg.payload["storm_id"], result.get("channel"),
                                                   result.get("ts"))
                if msg.target == "callback":
                    await ledger.append(session, "callback.delivered",
                                        {"url": msg.payload["url"], "status": code}, action_id=msg.action_id)
            await session.commit()
        window = time.monotonic() - answered
        self.svc.metrics.outbox_mark_window.observe(window)
        self.mark_windows.append(window)

    async def _retry(self, msg: OutboxMessage, error: str, *, delay: float | None = None,
                     status_code: int | None = None) -> None:
        assert msg.id is not None
        now = self.svc.clock()
        give_up = msg.target == "callback" and now - msg.created_at > timedelta(
            seconds=callbacks.GIVE_UP_AFTER_SECONDS)
        cap = 3600 if msg.target == "callback" else 60
        wait = delay if delay is not None else backoff(msg.attempts + 1, cap=cap)
        log.warning("delivery %s (%s) failed, retry in %.1fs: %s", msg.id, msg.method, wait, error,
                    extra={"action_id": msg.action_id})
        self.svc.metrics.outbox_errors.labels(msg.target, error.split(":")[0][:40], "false").inc()
        async with self.svc.db.session() as session:
            await outbox.record_attempt(session, msg.id, ok=False, status_code=status_code, error=error,
                                        retry_at=now + timedelta(seconds=wait), give_up=give_up, at=now)
            if give_up:
                await _callback_given_up(session, msg, error, now)
            await session.commit()

    async def _failed(self, msg: OutboxMessage, error: str, *, status_code: int | None = None) -> None:
        assert msg.id is not None
        log.error("delivery %s (%s to %s) failed for good: %s", msg.id, msg.method, msg.channel_key, error,
                  extra={"action_id": msg.action_id})
        self.svc.metrics.outbox_errors.labels(msg.target, error[:40], "true").inc()
        now = self.svc.clock()
        async with self.svc.db.session() as session:
            await outbox.record_attempt(session, msg.id, ok=False, status_code=status_code, error=error,
                                        give_up=True, at=now)
            if msg.target == "callback":
                await _callback_given_up(session, msg, error, now)
            level = msg.payload.get("level")
            if msg.payload.get("kind") == Kind.CARD and level and msg.action_id:
                action = await repo.get(session, msg.action_id)
                if action is not None and action.status == "pending":
                    await self.on_page_failed(session, action, level, error, now)
            await session.commit()


async def _callback_given_up(session: AsyncSession, msg: OutboxMessage, error: str, now: datetime) -> None:
    """The agent never learned the decision through its callback: that belongs in the audit trail."""
    await ledger.append(session, "callback.failed",
                        {"url": msg.payload["url"], "error": error, "attempts": msg.attempts + 1},
                        action_id=msg.action_id, at=now)
