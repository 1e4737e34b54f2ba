"""Block Kit for a deep queue's reminders and notes, packed a line each into one message (pure
functions; bot/delivery/packing.py decides when): a person paged for many actions at once is
reminded of them at once, and many short notes leave as one post instead of one a second."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from handlers.blocks.card import level_people, title, upcoming
from handlers.blocks.kit import (
    SECTION_MAX,
    Block,
    Message,
    clip,
    context,
    escape,
    mention,
    message,
    section,
    slack_date,
)
from storage.models import Action

LINE_MAX = 1000  # a line never fills a section alone, so 40 lines stay within Slack's 50 blocks


def lines_in_sections(lines: Sequence[str]) -> list[Block]:
    """As many lines to a section as Slack's 3,000 characters allow."""
    blocks: list[Block] = []
    chunk: list[str] = []
    for line in lines:
        if chunk and sum(len(x) + 1 for x in chunk) + len(line) > SECTION_MAX - 100:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    return blocks


def reminder_pack(actions: Sequence[Action], *, level: str | None,
                  people: Mapping[str, str] | None = None) -> Message:
    """One reminder for several actions still waiting for the same level: a line each, with its
    deadline; the cards (with their buttons) are where to respond."""
    people = people or {}
    first = actions[0]
    who = level_people(first, level, people) if level else mention(first.owner, people)
    head = f":alarm_clock: Reminder for {who}: {len(actions)} actions still wait for a response"
    lines = []
    for action in actions:
        _, deadline = upcoming(action)
        due = f" · deadline {slack_date(deadline)}" if deadline is not None else ""
        lines.append(clip(f"• *{action.id}* {title(action)}: {escape(clip(action.summary, 200))} "
                          f"({escape(action.service)}){due}", LINE_MAX))
    blocks: list[Block] = [section(head), *lines_in_sections(lines),
                           context("Use the buttons on each action's card, or /ai-actions show ID.")]
    return message(f"{head}: actions {', '.join(str(a.id) for a in actions)}", blocks, unfurl=False)


def notice_pack(texts: Sequence[str]) -> Message:
    """Several of Countersign's own notes (already escaped where they quote others) in one message."""
    head = f"{len(texts)} notes from Countersign"
    blocks: list[Block] = [context(head), *lines_in_sections([clip(f"• {t}", LINE_MAX) for t in texts])]
    return message(f"{head}: " + " · ".join(clip(t, 120) for t in texts), blocks, unfurl=False)
