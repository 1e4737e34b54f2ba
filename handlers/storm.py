"""The storm parent card: one message in the service channel under which a burst is threaded."""

from __future__ import annotations

from typing import Any

from bot import storms
from bot.services import Services
from handlers.render import renders


@renders(storms.KIND)
async def storm_parent(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    async with svc.db.session() as session:
        info = await storms.summary(session, payload["storm_id"])
    if info is None:
        return None
    since = info["since"].strftime("%H:%M:%S UTC")
    text = (f":rotating_light: Storm on {info['service']}: {info['total']} actions since {since}, "
            f"{info['pending']} waiting for a decision.")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": (
            "Each action's own card is in this thread, and its owner is paged for every one. "
            "The count updates as cards arrive.")}]},
    ]
    args: dict[str, Any] = {"text": text, "blocks": blocks}
    if payload.get("update"):
        if not info["ts"]:
            return None  # the parent was never posted: nothing to update
        args.update(channel=info["channel"], ts=info["ts"])
    return args
