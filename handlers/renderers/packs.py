"""A deep queue's reminders and notes at send time, a line each in one message (bot/delivery/packing.py
decides what is packed; handlers/blocks/packs.py draws it)."""

from __future__ import annotations

from typing import Any

from bot.delivery.messages import Kind
from bot.services import Services
from handlers.blocks import packs as blocks
from handlers.renderers.cards import people_of
from handlers.renderers.registry import renders
from storage.queries import actions as repo


@renders(Kind.REMINDER_PACK)
async def reminder_pack(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The actions of `action_ids` still pending (decided ones need no nudge), or None if none is."""
    async with svc.db.session() as session:
        waiting = [a for a in [await repo.get(session, int(i)) for i in payload["action_ids"]]
                   if a is not None and a.status == "pending"]
    if not waiting:
        return None
    return blocks.reminder_pack(waiting, level=payload.get("level"), people=await people_of(svc, waiting[0]))


@renders(Kind.NOTICE_PACK)
async def notice_pack(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    texts = [t for t in payload.get("texts") or [] if t]
    return blocks.notice_pack(texts) if texts else None
