"""Render queued messages (bot.messages.Kind) into Slack Web API arguments at send time.

Each message kind has one renderer, registered with `@renders(kind)` in the module that owns
that kind of message (cards, digest, home, ...). The relay calls `render(svc, payload)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.services import Services
from storage import actions as repo

Renderer = Callable[[Services, dict[str, Any]], Awaitable[dict[str, Any] | None]]
RENDERERS: dict[str, Renderer] = {}


def renders(kind: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        RENDERERS[str(kind)] = fn
        return fn

    return register


async def render(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    """Slack Web API arguments for a queued message, or None to skip it (e.g. its action is gone)."""
    renderer = RENDERERS.get(payload["kind"])
    if renderer is None:
        raise LookupError(f"no renderer for message kind {payload['kind']!r}")
    return await renderer(svc, payload)


# --- placeholder card renderers (replaced by handlers/cards.py) --------------------------------


@renders("forbidden")
async def _forbidden(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    r = payload["refused"]
    return {"text": f"Refused by policy: {r['agent']} tried {r['action_type']} on {r['service']}"}


async def _basic(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    async with svc.db.session() as session:
        found = await repo.get_with_agent(session, payload["action_id"])
    if found is None:
        return None
    action, agent = found
    text = f"[{action.status}] {agent.name}: {action.summary} ({action.service}, {action.mode})"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if payload["kind"] == "card" and action.status == "pending":
        buttons = ["approve", "override"] if action.kind == "proposed" else ["acknowledge", "override"]
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "action_id": b, "value": str(action.id), "text": {"type": "plain_text", "text": b}}
            for b in buttons]})
    return {"text": text, "blocks": blocks}


for _kind in ("card", "fyi", "reminder", "notice"):
    RENDERERS[_kind] = _basic
