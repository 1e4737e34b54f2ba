"""Packing a deep queue: when more than PACK_WHEN_DEEPER posts wait for one conversation (that many
seconds at Slack's pace of one post a second), what can travel together leaves together, as many
messages as the conversation's budget allows now. Cards (each keeping its own buttons) and FYIs are
packed in a storm; reminders and notes (a line each) whenever their queue is deep, whatever the
service, because a person who is paged for many actions at once is reminded of many at once.
Before a post takes a turn of the budget it is checked for being needless (`needless`): a reminder
about an action decided while it waited is recorded as skipped, not paced behind the pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.delivery import storms
from bot.delivery.messages import PACKABLE_PURPOSES, THREADED_PURPOSES, Kind
from bot.delivery.shared_budget import SharedPacer
from storage import outbox
from storage.models import OutboxMessage
from storage.queries import actions

PACK_WHEN_DEEPER = 20
# How many go in one message: cards keep their own buttons (20); FYIs, reminders and notes take a
# line each (handlers/blocks/storm.py and handlers/blocks/packs.py keep these within Slack's 50 blocks).
PACK_SIZES: dict[Kind, int] = {Kind.CARD: 20, Kind.FYI: 80, Kind.REMINDER: 40, Kind.NOTICE: 40}
PACK_KINDS: dict[Kind, Kind] = {Kind.CARD: Kind.CARD_PACK, Kind.FYI: Kind.FYI_PACK,
                                Kind.REMINDER: Kind.REMINDER_PACK, Kind.NOTICE: Kind.NOTICE_PACK}
STORM_ONLY = frozenset({Kind.CARD, Kind.FYI})  # packed only in a storm; the others whenever deep


def pack_kind(row: OutboxMessage) -> Kind | None:
    """What a queued post may be packed with (cards with cards, FYIs with FYIs...), or None."""
    kind, purpose = row.payload.get("kind"), row.purpose
    if not row.action_id or row.method != "chat.postMessage":
        return None
    if kind == Kind.CARD and purpose in PACKABLE_PURPOSES:
        return Kind.CARD
    if kind == Kind.FYI and purpose == Kind.FYI.value:
        return Kind.FYI
    if kind == Kind.REMINDER:
        return Kind.REMINDER
    if kind == Kind.NOTICE and row.payload.get("text"):
        return Kind.NOTICE
    return None


async def needless(session: AsyncSession, row: OutboxMessage) -> str | None:
    """Why a queued post need not be sent any more (None: send it): what its renderer would skip at
    send time anyway, found before it is given a turn of its channel's budget."""
    if row.payload.get("kind") != Kind.REMINDER or not row.action_id:
        return None
    action = await actions.get(session, row.action_id)
    if action is None:
        return "the action no longer exists"
    if action.status != "pending":
        return f"action {action.id} was {action.status} before the reminder's turn came"
    return None


PaceKey = Callable[[AsyncSession, str], Awaitable[str]]


class Packer:
    """Fills packs for the relay: shares its storm routes, the tokens it granted and its pacer."""

    def __init__(self, pacer: SharedPacer, routes: dict[int, storms.Route],
                 granted: dict[int, tuple[str, float]], pace_key: PaceKey) -> None:
        self.pacer, self.routes, self.granted, self.pace_key = pacer, routes, granted, pace_key
        self.when_deeper = PACK_WHEN_DEEPER

    @staticmethod
    async def depth(session: AsyncSession, key: str, depths: dict[str, int]) -> int:
        """How many posts wait for the channel `key` (counted once a tick: `depths`)."""
        if key not in depths:
            depths[key] = await outbox.queue_depth(session, key)
        return depths[key]

    async def wanted(self, session: AsyncSession, row: OutboxMessage, key: str,
                     route: storms.Route | None, depths: dict[str, int]) -> bool:
        """Whether a claimed row leaves in a pack: its queue is deep and (cards, FYIs) in a storm."""
        kind = pack_kind(row)
        if kind is None:
            return False
        if await self.depth(session, key, depths) <= self.when_deeper:
            return False
        if kind not in STORM_ONLY:
            return True
        return route is not None or await storms.in_storm(session, row.action_id or 0)

    async def packs(self, session: AsyncSession, key: str, thread: str | None, members: list[OutboxMessage],
                    now: datetime, kind: Kind) -> list[list[OutboxMessage]]:
        """As many packs as pacing allows now (filled up with the channel's waiting posts of the same
        kind); the rest gather at the channel's next free send, to leave as the next pack."""
        units: list[list[OutboxMessage]] = []
        size = PACK_SIZES[kind]
        pace = await self.pace_key(session, key)
        if await self.pacer.wait(session, pace) <= 0.0 and len(members) < size:
            members += await self._fill(session, key, thread, members, now, kind, size)
        while members and await self.pacer.wait(session, pace) <= 0.0:
            await self.pacer.take(session, pace)
            self.granted[members[0].id or 0] = (pace, self.pacer.pacer.clock())
            units.append(members[:size])
            members = members[size:]
        if members:
            until = now + timedelta(seconds=max(await self.pacer.wait(session, pace), 0.05))
            for row in members:
                self.routes.pop(row.id or 0, None)
                outbox.defer(session, row, until)
        return units

    async def _fill(self, session: AsyncSession, key: str, thread: str | None, members: list[OutboxMessage],
                    now: datetime, kind: Kind, size: int) -> list[OutboxMessage]:
        """The channel's posts that only wait for their turn and may join this pack."""
        extra = await outbox.claim_waiting(session, key, now, exclude={m.id or 0 for m in members},
                                           limit=size - len(members))
        joined: list[OutboxMessage] = []
        route = self.routes.get(members[0].id or 0)
        if kind == Kind.FYI and route is not None and route.storm_id is not None:  # one query for all
            inside = await storms.in_thread(session, route.storm_id, [r.action_id or 0 for r in extra])
            for row in extra:
                if row.action_id in inside and row.payload.get("kind") == Kind.FYI:
                    self.routes[row.id or 0] = route
                    joined.append(row)
                else:
                    outbox.defer(session, row, row.next_attempt_at)
            return joined
        for row in extra:
            reason = await needless(session, row)
            if reason is not None:
                outbox.settle(session, row, {"skipped": reason})
            elif await self._fits(session, row, thread, kind):
                row.next_attempt_at = now  # its lease begins (what a resend after a crash searches from)
                joined.append(row)
            else:
                outbox.defer(session, row, row.next_attempt_at)  # back as it was
        return joined

    async def _fits(self, session: AsyncSession, row: OutboxMessage, thread: str | None, kind: Kind) -> bool:
        """Whether a waiting post may join a pack of `kind` going to `thread` (None: not threaded)."""
        if pack_kind(row) != kind:
            return False
        if row.purpose in THREADED_PURPOSES:
            route = await storms.route(session, row.action_id or 0, row.payload.get("channel") or "")
            if route.wait or route.thread_ts is None or route.thread_ts != thread:
                return False  # not in the storm's thread (or not in a storm at all)
            self.routes[row.id or 0] = route
            return True
        if kind not in STORM_ONLY:
            return thread is None
        return thread is None and await storms.in_storm(session, row.action_id or 0)
