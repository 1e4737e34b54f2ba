"""Renderer for Kind.AUTONOMY: the notice bot.autonomy queued (a pause, the brake, a grant, a result)."""

from __future__ import annotations

from typing import Any

from bot.delivery.messages import Kind
from bot.services import Services
from handlers.blocks.autonomy import notice
from handlers.renderers.registry import renders


@renders(Kind.AUTONOMY)
async def render_autonomy(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    return notice(payload.get("notice") or {})
