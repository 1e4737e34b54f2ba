"""Block Kit for the action card, as pure functions: data in, Slack JSON out.

Clipped to Block Kit's limits everywhere: an approval must never be lost because a rationale was
long. Every piece of text an agent wrote goes through handlers.blocks.kit's `escape`, so it cannot
@-mention a channel, forge a link or format. The card's buttons (`decision_buttons`) are the ones
every other surface (command answers, the storm pack, the record) shows, so one can decide anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bot.actions.rules import allowed_responses
from bot.escalation.snapshot import snapshot_of
from bot.policy.rules import rule_label
from handlers.blocks.kit import (
    SECTION_MAX,
    Block,
    Message,
    actions,
    button,
    clip,
    context,
    escape,
    fields,
    header,
    link,
    mention,
    message,
    more,
    section,
    slack_date,
)
from handlers.ids import ActionId, BlockId
from storage.models import Action

DECIDED: dict[str, tuple[str, str]] = {
    "approved": (":white_check_mark:", "Approved"),
    "denied": (":no_entry:", "Denied"),
    "acknowledged": (":white_check_mark:", "Acknowledged"),
    "overridden": (":leftwards_arrow_with_hook:", "Overridden"),
    "expired": (":hourglass:", "Expired"),
    "recorded": (":robot_face:", "Recorded (autonomous)"),
}
BUTTONS: dict[str, tuple[str, str]] = {  # response -> (label, style)
    ActionId.APPROVE: ("Approve", "primary"),
    ActionId.ACKNOWLEDGE: ("Acknowledge", "primary"),
    ActionId.OVERRIDE: ("Override", "danger"),
}


# --- the action card ----------------------------------------------------------------------------


def title(action: Action) -> str:
    if action.status in DECIDED:
        emoji, word = DECIDED[action.status]
        if action.status == "expired":
            word = f"Expired ({action.outcome} by default)"
        return f"{emoji} {word}"
    if action.policy_violation:
        return ":rotating_light: Policy violation: acknowledge or override"
    if action.kind == "proposed":
        return ":raised_hand: Approval needed"
    return ":eyes: Acknowledge or override"


def _fields(action: Action, agent: str, people: Mapping[str, str]) -> Block:
    pairs = [
        ("Agent", escape(agent)),
        ("Service", escape(action.service)),
        ("Environment", escape(action.environment)),
        (
            "Mode",
            escape(action.mode) + (" :rotating_light: *policy violation*" if action.policy_violation else ""),
        ),
        ("Action", f"`{escape(action.action_type)}` ({escape(action.kind)})"),
        ("Owner", mention(action.owner or snapshot_of(action).owner, people)),
        (
            "Confidence",
            f"{action.confidence:.0%} ({action.confidence:g})"
            if action.confidence is not None
            else "not given",
        ),
    ]
    if action.model:
        model = action.model
        pairs.append(
            (
                "Model",
                escape(" ".join(str(model[k]) for k in ("provider", "name", "version") if model.get(k))),
            )
        )
    if action.executed_at:
        pairs.append(("Executed", slack_date(action.executed_at)))
    return fields([f"*{k}*\n{v}" for k, v in pairs])


def _evidence(action: Action) -> Block | None:
    items = action.evidence or []
    if not items:
        return None
    lines, budget = ["*Evidence*"], SECTION_MAX - 200
    for i, ev in enumerate(items):
        label, url = str(ev.get("label") or ev.get("url"))[:200], str(ev.get("url") or "")
        line = f"• {link(url, label)}" if url.startswith(("http://", "https://")) else f"• {escape(label)}"
        if sum(len(x) + 1 for x in lines) + len(line) > budget:
            lines.append(f"…and {len(items) - i} more: `/ai-actions show {action.id}`")
            break
        lines.append(line)
    return section("\n".join(lines))


def upcoming(action: Action) -> tuple[tuple[str, datetime] | None, datetime | None]:
    """(the next escalation level and when it is due, the deadline), as the escalation plans them:
    a level planned after the timeout is never paged, so it is not shown."""
    snapshot, created = snapshot_of(action), action.created_at
    later = snapshot.upcoming_after(action.level, created)
    nxt = (later[0].level or "", later[0].at) if later else None
    return nxt, snapshot.deadline(created)


def level_people(action: Action, level: str, people: Mapping[str, str]) -> str:
    """Who a page at `level` reaches: the owner's or secondary's DM, or the leadership channel and users."""
    snapshot = snapshot_of(action)
    users = snapshot.leadership_users if level == "leadership" else ()
    return ", ".join(mention(who, people) for who in (snapshot.target(level), *users))


def _pending_blocks(action: Action, people: Mapping[str, str], audience: str | None) -> list[Block]:
    blocks: list[Block] = []
    if audience == "leadership" or action.level == "leadership":
        users = snapshot_of(action).leadership_users
        if audience == "leadership" and users:
            blocks.append(
                section(
                    " ".join(mention(u, people) for u in users)
                    + " this action reached leadership: any of you may respond."
                )
            )
    if action.level in ("secondary", "leadership"):
        blocks.append(
            section(f":arrow_up: *Escalated to {action.level}*: {level_people(action, action.level, people)}")
        )
    if action.outcome == "unacknowledged":
        blocks.append(
            section(
                f":warning: Not acknowledged in time: accountability defaulted to "
                f"{mention(action.decided_by, people)} ({escape(action.decision_level or '-')}). "
                "Acknowledging now still records you as accountable."
            )
        )
        return blocks
    nxt, deadline = upcoming(action)
    notes = []
    if nxt is not None:
        notes.append(
            f":alarm_clock: Escalates to {nxt[0]} ({level_people(action, nxt[0], people)}) "
            f"{slack_date(nxt[1])}"
        )
    if deadline is not None:
        then = (
            f"then {snapshot_of(action).on_timeout} by default"
            if action.kind == "proposed"
            else "then accountability defaults to the last level reached"
        )
        notes.append(f":hourglass_flowing_sand: Deadline {slack_date(deadline)}: {then}")
    if notes:
        blocks.append(context(*notes))
    return blocks


def _decision_blocks(action: Action, people: Mapping[str, str]) -> list[Block]:
    emoji, word = DECIDED.get(action.status, (":grey_question:", action.status))
    who = mention(action.decided_by, people)
    if action.decided_by_name and action.accountability != "explicit":
        who += f" ({escape(action.decided_by_name)})"
    at = slack_date(action.decided_at) if action.decided_at else "-"
    head = f"{emoji} *{escape(action.outcome or word)}*"
    if action.accountability == "policy":
        lines = [f"{head} under the policy: {who} owns the rule that let the AI act alone · {at}"]
    elif action.accountability == "default":
        lines = [f"{head}: nobody responded in time; accountability defaults to {who} · {at}"]
    else:
        lines = [f"{head} by {who} · {at}"]
    if action.decision_reason:
        lines.append(f"*Reason:* {escape(action.decision_reason)}")
    lines.append(
        f"_accountability {escape(action.accountability or '-')}, level "
        f"{escape(action.decision_level or '-')}, via {escape(action.decision_via or '-')}_"
    )
    return [section("\n".join(lines), pointer=more(action.id))]


def decision_buttons(action: Action, *, per_action: bool = False) -> Block | None:
    """The buttons for what may still be answered, each carrying the action id. A message that holds
    several actions (a command answer, a storm's pack) gives each its own block id (`decide-42`)."""
    choices = allowed_responses(action)
    if not choices:
        return None
    block_id = f"{BlockId.DECIDE}-{action.id}" if per_action else BlockId.DECIDE
    return actions(block_id, [button(BUTTONS[c][0], c, str(action.id), BUTTONS[c][1]) for c in choices])


def action_card(
    action: Action,
    agent: str,
    *,
    people: Mapping[str, str] | None = None,
    audience: str | None = None,
    failures: Mapping[str, str] | None = None,
    page_url: str | None = None,
    result: Mapping[str, Any] | None = None,
) -> Message:
    """The card: everything needed to decide, then (once decided) outcome, who, when, why; no buttons.

    `audience` is the level this copy was sent to (owner, secondary, leadership) or None (channel);
    `failures` maps a level that could not be paged to why (so readers see why it escalated);
    `page_url` is the action's web page, signed for this copy's recipient (handlers.web.links).
    """
    people = people or {}
    head = title(action)
    blocks: list[Block] = [header(f"{head}: {action.summary}")]
    blocks.append(_fields(action, agent, people))
    if action.policy_violation:
        blocks.append(
            section(
                ":rotating_light: *Policy violation*: this action needed approval before it "
                "ran, but the agent executed it. Escalated to leadership at once."
            )
        )
    blocks.append(section(f"*Why the AI did this*\n{escape(action.rationale)}", pointer=more(action.id)))
    evidence = _evidence(action)
    if evidence is not None:
        blocks.append(evidence)
    for level, why in (failures or {}).items():
        who = level_people(action, level, people) if level in ("owner", "secondary", "leadership") else ""
        blocks.append(
            section(
                f":warning: Could not page the {escape(level)} ({who}): {escape(why)}. "
                "Escalated to the next level at once."
            )
        )
    unreachable = action.status == "pending" and snapshot_of(action).unreachable(failures or {})
    if unreachable:
        blocks.append(section(
            ":rotating_light: *Unreachable*: no level could be paged when it was due (every page "
            "failed for good), so this card may come late. It waits for a decision until it times out."))
    if action.status == "pending":
        blocks.extend(_pending_blocks(action, people, audience))
    else:
        blocks.extend(_decision_blocks(action, people))
    buttons = decision_buttons(action)
    if buttons is not None:
        blocks.append(buttons)
    if result is not None:
        from handlers.blocks.autonomy import result_line

        blocks.append(section(result_line(result)))
    blocks.append(
        context(
            f"Action {action.id} · {rule_label(snapshot_of(action).rule_index)} · "
            f"full record: `/ai-actions show {action.id}`"
            + (f" · {link(page_url, 'open the action page')}" if page_url else "")
        )
    )
    where = f"{escape(action.service)}, {escape(action.environment)}"
    text = f"{head}: {escape(clip(action.summary, 500))} ({where})"
    if unreachable:
        text = f"Unreachable (nobody could be paged): {text}"
    if audience == "leadership":
        users = snapshot_of(action).leadership_users
        text = " ".join(mention(u, people) for u in users) + " " + text
    return message(text, blocks, unfurl=False)


def fyi(action: Action, agent: str, *, people: Mapping[str, str] | None = None,
        page_url: str | None = None, result: Mapping[str, Any] | None = None) -> Message:
    """An autonomous action, posted for the record: no response needed."""
    return action_card(action, agent, people=people, page_url=page_url, result=result)
