"""Storm messages at send time: the parent card under which a burst is threaded in the service
channel, and the packs a too-deep queue is sent as: several cards in one message, or many FYIs a
line each (handlers.blocks.storm draws them)."""

from __future__ import annotations

from typing import Any

from bot.delivery import storms
from bot.delivery.directory import mention_ids
from bot.delivery.messages import Kind
from bot.escalation.snapshot import snapshot_of
from bot.services import Services
from handlers.blocks import storm as blocks
from handlers.blocks.kit import mention
from handlers.renderers.cards import people_of
from handlers.renderers.registry import renders
from storage.models import Action
from storage.queries import actions as repo
from storage.queries import storms as storm_rows


@renders(Kind.STORM)
async def storm_parent(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    async with svc.db.session() as session:
        info = await storms.summary(session, payload["storm_id"])
    if info is None:
        return None
    args = blocks.storm_parent(info["service"], info["total"], info["pending"], info["since"])
    if payload.get("update"):
        if not info["ts"]:
            return None  # the parent was never posted: nothing to update
        args.update(channel=info["channel"], ts=info["ts"])
    return args


@renders(Kind.CARD_PACK)
async def card_pack(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The cards of `action_ids` still in the database, packed in one message (a leadership pack
    calls the leadership users once)."""
    cards: list[tuple[Action, str]] = []
    async with svc.db.session() as session:
        for action_id in payload["action_ids"]:
            found = await repo.get_with_agent(session, action_id)
            if found is not None:
                cards.append((found[0], found[1].name))
    if not cards:
        return None
    people = {**await mention_ids(svc, [a.decided_by for a, _ in cards]), **await people_of(svc, cards[0][0])}
    mentions: list[str] = []
    if payload.get("level") == "leadership":
        mentions = [mention(u, people) for u in snapshot_of(cards[0][0]).leadership_users]
    return blocks.card_pack(cards, mentions=mentions, people=people)


@renders(Kind.FYI_PACK)
async def fyi_pack(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The FYIs of `action_ids` still in the database, a line each in one message."""
    async with svc.db.session() as session:
        fyis = await storm_rows.with_agents(session, [int(i) for i in payload["action_ids"]])
    return blocks.fyi_pack(fyis) if fyis else None
