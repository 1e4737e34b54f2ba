"""Render queued messages (bot.messages.Kind) into Slack Web API arguments at send time."""

from __future__ import annotations

from typing import Any

from bot.services import Services
from storage import actions as repo


async def render(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    kind = payload["kind"]
    if kind == "forbidden":
        r = payload["refused"]
        return {"text": f"Refused by policy: {r['agent']} tried {r['action_type']} on {r['service']}"}
    async with svc.db.session() as session:
        found = await repo.get_with_agent(session, payload["action_id"])
    if found is None:
        return None
    action, agent = found
    text = f"[{action.status}] {agent.name}: {action.summary} ({action.service}, {action.mode})"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if kind == "card" and action.status == "pending":
        buttons = ["approve", "override"] if action.kind == "proposed" else ["acknowledge", "override"]
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "action_id": b, "value": str(action.id), "text": {"type": "plain_text", "text": b}}
            for b in buttons]})
    return {"text": text, "blocks": blocks}
