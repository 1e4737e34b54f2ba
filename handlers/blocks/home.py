"""Block Kit for App Home: what waits on you (with the buttons), your recent decisions, and the
services you are named on with their autonomy modes. Pure: handlers.listeners.home loads the data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.policy.rules import Policy
from handlers.blocks.commands import FULL_RECORD, action_items, owner_text
from handlers.blocks.kit import MAX_VIEW_BLOCKS, Block, context, divider, header, section, slack_date
from storage.models import Action

Items = Sequence[tuple[Action, str | None]]  # actions with their agents' names


def home_blocks(policy: Policy, waiting: Items, waiting_shown: int, decided: Items, roles: Mapping[str, str],
                now: datetime, people: Mapping[str, str] | None = None,
                in_force: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Home tab view; `waiting_shown` is how many waiting items were asked for (so "20+");
    `people` maps the emails it names to Slack ids (shown as mentions); `in_force`: per service, what
    changes its modes now (handlers.blocks.autonomy.in_force_text), shown under it."""
    in_force = in_force or {}
    shown = f"{len(waiting)}+" if len(waiting) == waiting_shown else str(len(waiting))
    blocks: list[Block] = [header(f"Waiting on you ({shown})")]
    blocks += action_items(waiting, people=people) if waiting else [section("Nothing waits on you. :tada:")]
    blocks += [divider(), header("Your recent decisions")]
    blocks += (action_items(decided, with_buttons=False, people=people) if decided
               else [section("You have not decided anything yet.")])
    blocks += [divider(), header("Your services")]
    if roles:
        blocks += [section(f"_{role}_ · " + owner_text(policy, name, people)
                           + (f"\n*Now:*\n{in_force[name]}" if in_force.get(name) else ""))
                   for name, role in roles.items()]
    else:
        blocks.append(section("You are not named as owner or secondary of any service in the policy."))
    blocks.append(context(f"As of {slack_date(now)} · {FULL_RECORD} · `/ai-actions help`"))
    if len(blocks) > MAX_VIEW_BLOCKS:
        blocks = [*blocks[: MAX_VIEW_BLOCKS - 1], context("More on `/ai-actions mine`.")]
    return {"type": "home", "blocks": blocks}
