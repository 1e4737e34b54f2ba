"""Block Kit for the other messages about actions, as pure functions: the refusal report, reminders,
notices, the ephemeral refusal and the override modal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_sdk.models.blocks import Block, HeaderBlock, InputBlock, PlainTextInputElement, PlainTextObject
from slack_sdk.models.views import View

from handlers.blocks.card import level_people, upcoming
from handlers.blocks.mrkdwn import (
    FALLBACK_MAX,
    HEADER_MAX,
    REASON_MAX,
    Message,
    clip,
    context,
    escape,
    mention,
    message,
    more,
    section,
    slack_date,
)
from handlers.ids import BlockId, CallbackId, InputId
from storage.models import Action


def rule_text(rule: Mapping[str, Any]) -> str:
    """A policy rule as a person reads it: `action_type drop_database, delete_data → forbidden`."""
    match = rule.get("match") or {}
    parts = [f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in match.items() if v]
    name = f"{rule['name']}: " if rule.get("name") else ""
    return escape(f"{name}{'; '.join(parts) or 'default'} → {rule.get('mode', '?')}")


def forbidden(refused: Mapping[str, Any]) -> Message:
    """An action the policy refused at ingest (it was never stored as an action)."""
    rule = refused.get("rule") or {}
    where = (
        f"*{escape(refused.get('agent'))}* tried `{escape(refused.get('action_type'))}` on "
        f"*{escape(refused.get('service'))}* ({escape(refused.get('environment'))}, "
        f"{escape(refused.get('kind'))}). The policy forbids it"
        + (f" (rule: {rule_text(rule)})." if rule else ".")
    )
    blocks: list[Block] = [
        HeaderBlock(
            text=PlainTextObject(
                text=clip(f":no_entry_sign: Refused by policy: {refused.get('summary')}", HEADER_MAX),
                emoji=True,
            )
        ),
        section(where),
        section(f"*Why the AI wanted to*\n{escape(refused.get('rationale') or '-')}"),
        context("Nothing ran: the agent was answered 403. Recorded in the audit ledger."),
    ]
    text = (
        f"Refused by policy: {escape(refused.get('agent'))} tried {escape(refused.get('action_type'))} "
        f"on {escape(refused.get('service'))}"
    )
    return message(text, blocks)


def reminder(action: Action, *, level: str | None, people: Mapping[str, str] | None = None) -> Message:
    """A nudge to the level currently paged; the card itself (with its buttons) is the place to respond."""
    people = people or {}
    who = level_people(action, level, people) if level else mention(action.owner, people)
    text = (
        f":alarm_clock: Reminder for {who}: action {action.id} still waits for a response: "
        f"{escape(clip(action.summary, 500))}"
    )
    _, deadline = upcoming(action)
    blocks: list[Block] = [section(text)]
    if deadline is not None:
        blocks.append(context(f"Deadline {slack_date(deadline)} · use the buttons on the card"))
    return message(text, blocks)


def notice(text: str, action_id: int | None = None) -> Message:
    """A short note about an action written by Countersign itself (so not escaped)."""
    return message(text, [section(text, pointer=more(action_id) if action_id else "")])


def refusal(message: str) -> Message:
    """The ephemeral answer to someone who may not (or may no longer) respond."""
    return {"text": clip(message, FALLBACK_MAX), "blocks": [section(f":no_entry_sign: {message}").to_dict()]}


def override_modal(action: Action, private_metadata: str) -> dict[str, Any]:
    """The modal asking why: a reason is required for every override."""
    means = (
        "Override *denies* this proposal: the agent must not run it."
        if action.kind == "proposed"
        else "Override asks for this executed action to be *reverted*."
    )
    view = View(
        type="modal",
        callback_id=CallbackId.OVERRIDE,
        title=PlainTextObject(text="Override"),
        submit=PlainTextObject(text="Override"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=private_metadata,
        blocks=[
            section(f"*{escape(clip(action.summary, 500))}*\n{means}"),
            InputBlock(
                block_id=BlockId.REASON,
                label=PlainTextObject(text="Why do you override it?"),
                hint=PlainTextObject(text="Kept in the responsibility record beside the AI's rationale."),
                element=PlainTextInputElement(
                    action_id=InputId.REASON, multiline=True, max_length=REASON_MAX
                ),
                optional=False,
            ),
        ],
    )
    return view.to_dict()
