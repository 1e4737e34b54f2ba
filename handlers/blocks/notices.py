"""Block Kit for the other messages, as pure functions: the refusal report, reminders, notices, the
ephemeral refusal (a `Private` answer), the override modal and the audit anchor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.blocks.card import level_people, upcoming
from handlers.blocks.kit import (
    REASON_MAX,
    Block,
    Message,
    clip,
    context,
    escape,
    header,
    mention,
    message,
    more,
    plain,
    section,
    slack_date,
    user_mention,
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
        header(f":no_entry_sign: Refused by policy: {refused.get('summary')}"),
        section(where),
        section(f"*Why the AI wanted to*\n{escape(refused.get('rationale') or '-')}"),
        context("Nothing ran: the agent was answered 403. Recorded in the audit ledger."),
    ]
    text = (
        f"Refused by policy: {escape(refused.get('agent'))} tried {escape(refused.get('action_type'))} "
        f"on {escape(refused.get('service'))}"
    )
    return message(text, blocks, unfurl=False)


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
    return message(text, blocks, unfurl=False)


def notice(text: str, action_id: int | None = None) -> Message:
    """A short note about an action written by Countersign itself (so not escaped)."""
    return message(text, [section(text, pointer=more(action_id) if action_id else "")], unfurl=False)


class Private(dict[str, Any]):
    """An answer for the asker alone: a refusal or a mistake (a missing id, an unknown service). It is
    a Message like any other (Web API arguments); its type tells `/ai-actions share …` not to post it
    to the channel, since a mistake is never shared."""


def refusal(text: str) -> Private:
    """The ephemeral answer to someone who may not (or may no longer) respond; `text` is
    Countersign's own (so not escaped). Never shared, even when asked with `share`."""
    return Private(message(text, [section(f":no_entry_sign: {text}")]))


def refused(code: str | None, text: str, action: Action | None,
            people: Mapping[str, str] | None = None) -> Private:
    """The refusal for a response bot.actions.decisions turned down (`code`, its plain `text`):
    too late, it names who decided, mentioned when they are a Slack user (`people`: the emails the
    policy gave resolved to user ids, `refused_people` lists what to resolve)."""
    if code == "already_decided" and action is not None:
        who = user_mention(action.decided_by, people) or escape(action.decided_by_name or "someone")
        text = f"Action {action.id} was already decided: {escape(action.outcome)} by {who}."
    return refusal(text)


def refused_people(code: str | None, action: Action | None) -> list[str]:
    """Whom `refused` may name: the decider of an action already decided (an email when a timeout
    or the policy decided for a person the policy gave by email)."""
    return [action.decided_by] if code == "already_decided" and action is not None and action.decided_by else []


def override_modal(action: Action, private_metadata: str) -> dict[str, Any]:
    """The modal asking why: a reason is required for every override."""
    means = (
        "Override *denies* this proposal: the agent must not run it."
        if action.kind == "proposed"
        else "Override asks for this executed action to be *reverted*."
    )
    return {
        "type": "modal",
        "callback_id": CallbackId.OVERRIDE,
        "title": plain("Override"),
        "submit": plain("Override"),
        "close": plain("Cancel"),
        "private_metadata": private_metadata,
        "blocks": [
            section(f"*{escape(clip(action.summary, 500))}*\n{means}"),
            {
                "type": "input",
                "block_id": BlockId.REASON,
                "label": plain("Why do you override it?"),
                "hint": plain("Kept in the responsibility record beside the AI's rationale."),
                "element": {
                    "type": "plain_text_input", "action_id": InputId.REASON, "multiline": True,
                    "max_length": REASON_MAX,
                },
                "optional": False,
            },
        ],
    }


def anchor_message(payload: Mapping[str, Any]) -> Message:
    """The audit ledger's head (HASH@SEQ), posted to the leadership channel. The text fallback carries
    the anchor verbatim, so it can be found by searching Slack and copied as is."""
    anchor, seq, reason = payload["anchor"], payload["seq"], payload.get("reason") or "on demand"
    blocks = [
        header("Audit ledger anchor"),
        section(f"The responsibility ledger holds *{seq}* entr{'y' if seq == 1 else 'ies'}. Its head is:\n"
                f"```{anchor}```"),
        context(f"Published {payload.get('at') or ''} ({reason}). Keep this message: "
                f"`countersign audit verify --against {anchor}` proves the ledger still holds it."),
    ]
    return message(f"Audit ledger anchor: {anchor}", blocks, unfurl=False)
