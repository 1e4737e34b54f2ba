"""Storm messages: the parent card under which a burst is threaded in the service channel, and the
pack of several cards in one message that a too-deep queue is sent as."""

from __future__ import annotations

from typing import Any

from bot.actions.rules import allowed_responses
from bot.delivery import storms
from bot.delivery.messages import Kind
from bot.services import Services
from handlers.blocks.card import BUTTONS, title
from handlers.blocks.mrkdwn import FALLBACK_MAX, MAX_BLOCKS, SECTION_MAX, clip, escape
from handlers.ids import BlockId
from handlers.renderers.registry import renders
from storage.models import Action
from storage.queries import actions as repo


@renders(Kind.STORM)
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


@renders(Kind.CARD_PACK)
async def card_pack(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    """Several actions' cards in one message, each with its own buttons: what a storm's backlog looks
    like when one channel's queue is too deep to send one card a second (bot/relay.py packs them)."""
    cards: list[tuple[Action, str]] = []
    async with svc.db.session() as session:
        for action_id in payload["action_ids"]:
            found = await repo.get_with_agent(session, action_id)
            if found is not None:
                cards.append((found[0], found[1].name))
    if not cards:
        return None
    service = cards[0][0].service
    waiting = sum(1 for action, _ in cards if action.status == "pending")
    head = f"{len(cards)} actions on {service} (a storm), {waiting} waiting for a decision"
    blocks: list[dict[str, Any]] = [{"type": "context", "elements": [{"type": "mrkdwn", "text": escape(
        f"{head}. Each has its own buttons; the full card: /ai-actions show ID.")}]}]
    for action, agent in cards:
        confidence = f" · confidence {action.confidence:.0%}" if action.confidence is not None else ""
        text = (f"*{title(action)}*: {escape(clip(action.summary, 300))}\n"
                f"Action {action.id} · {escape(agent)} · {escape(action.environment)}{confidence}\n"
                f"_{escape(clip(action.rationale, 500))}_")
        if action.status != "pending" and action.decided_by:
            text += f"\nby <@{action.decided_by}>" if action.decided_by.startswith("U") else ""
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_MAX)}})
        choices = allowed_responses(action)
        if choices:
            blocks.append({"type": "actions", "block_id": f"{BlockId.DECIDE}-{action.id}", "elements": [
                {"type": "button", "action_id": str(c), "value": str(action.id), "style": BUTTONS[c][1],
                 "text": {"type": "plain_text", "text": BUTTONS[c][0]}} for c in choices]})
    summaries = "; ".join(f"{a.id}: {clip(a.summary, 80)}" for a, _ in cards)
    return {"text": clip(f"{head}: {summaries}", FALLBACK_MAX), "blocks": blocks[:MAX_BLOCKS]}
