"""Block Kit for storms, as pure functions: the parent card a burst is threaded under in the service
channel, and the pack of several cards in one message that a too-deep queue is sent as."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from handlers.blocks.card import decision_buttons, title
from handlers.blocks.kit import (
    Block,
    Message,
    clip,
    context,
    escape,
    message,
    section,
    user_mention,
)
from handlers.blocks.packs import lines_in_sections
from storage.models import Action


def storm_parent(service: str, total: int, pending: int, since: datetime) -> Message:
    """The running count a storm's thread hangs under."""
    text = (f":rotating_light: Storm on {escape(service)}: {total} actions since "
            f"{since.strftime('%H:%M:%S UTC')}, {pending} waiting for a decision.")
    return message(text, [
        section(f"*{text}*"),
        context("Every action of the burst is in this thread (its card, or a line in a pack of FYIs), "
                "and its owner is paged for every one that needs a response. The count updates as they arrive."),
    ])


def card_pack(cards: Sequence[tuple[Action, str]], *, mentions: Sequence[str] = (),
              people: Mapping[str, str] | None = None) -> Message:
    """Several actions' cards in one message (actions with their agents' names), each with its own
    buttons: what a storm's backlog looks like when one channel's queue is too deep to send one card
    a second (bot.delivery.packing packs them). `mentions`: the leadership users a leadership pack
    calls, once for the whole pack, and only while one of its actions still waits. `people`: the
    emails the policy gave resolved to user ids, so a decider given by email is mentioned too."""
    service = cards[0][0].service
    waiting = sum(1 for action, _ in cards if action.status == "pending")
    head = f"{len(cards)} actions on {escape(service)} (a storm), {waiting} waiting for a decision"
    blocks: list[Block] = [context(f"{head}. Each has its own buttons; the full card: /ai-actions show ID.")]
    if mentions and waiting:
        head = " ".join(mentions) + " " + head
        blocks.insert(0, section(f"{' '.join(mentions)} these actions reached leadership: any of you may respond."))
    for action, agent in cards:
        confidence = f" · confidence {action.confidence:.0%}" if action.confidence is not None else ""
        text = (f"*{title(action)}*: {escape(clip(action.summary, 300))}\n"
                f"Action {action.id} · {escape(agent)} · {escape(action.environment)}{confidence}\n"
                f"_{escape(clip(action.rationale, 500))}_")
        decider = user_mention(action.decided_by, people)
        if action.status != "pending" and decider is not None:
            text += f"\nby {decider}"
        blocks.append(section(text))
        buttons = decision_buttons(action, per_action=True)
        if buttons is not None:
            blocks.append(buttons)
    summaries = "; ".join(f"{a.id}: {escape(clip(a.summary, 80))}" for a, _ in cards)
    return message(f"{head}: {summaries}", blocks)


def fyi_pack(fyis: Sequence[tuple[Action, str]]) -> Message:
    """Many autonomous actions (with their agents' names) recorded in one message, a line each,
    during a storm: nobody needs to respond, and each id stays in the text, so every action can be
    found from the thread (and opened with /ai-actions show ID). A line is at most ~1,000 characters
    even when every character is escaped, so two fit a section and bot.delivery.packing.PACK_SIZES
    (80) lines stay within Slack's 50 blocks."""
    service = fyis[0][0].service
    lines = [f"• *{a.id}* {escape(clip(a.action_type, 40))} · {escape(clip(a.summary, 100))} · "
             f"{escape(clip(agent, 40))} · {escape(clip(a.environment, 20))}" for a, agent in fyis]
    head = f"{len(fyis)} autonomous actions on {escape(service)} (a storm), recorded: no response needed"
    blocks: list[Block] = [context(f"{head}. The full record of one: /ai-actions show ID."),
                           *lines_in_sections(lines)]
    return message(f"{head}: actions {', '.join(str(a.id) for a, _ in fyis)}", blocks, unfurl=False)
