"""The audit anchor message: the ledger's head (HASH@SEQ), posted to the leadership channel.

Once it is in Slack, it is outside the database: `countersign audit verify --against HASH@SEQ`
then catches even a rewrite of the whole ledger table (handlers.blocks.notices.anchor_message).
"""

from __future__ import annotations

from typing import Any

from bot.delivery.messages import Kind
from bot.services import Services
from handlers.blocks.notices import anchor_message
from handlers.renderers.registry import renders


@renders(Kind.ANCHOR)
async def render_anchor(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    return anchor_message(payload)
