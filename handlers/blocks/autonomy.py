"""Block Kit for autonomy: the track record table, suggestions with Grant / Dismiss, pauses, and the
notices of pauses, the brake, grants and failed results. Pure; every name an agent or a person
typed goes through `escape`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.policy.autonomy import GrantInForce, PauseInForce, Record, Suggestion
from bot.policy.durations import spoken
from handlers.blocks.kit import (
    Block,
    Message,
    actions,
    button,
    context,
    escape,
    header,
    mention,
    message,
    section,
    slack_date,
    when,
)
from handlers.blocks.notices import Private
from handlers.ids import ActionId

MAX_ROWS = 15
MAX_SUGGESTIONS = 10


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def median(r: Record) -> str:
    """`≈` when read from the daily rollup's histogram (within 9 % of the exact median)."""
    text = spoken(r.median_decision_seconds)
    return f"≈{text}" if r.median_approximate and r.median_decision_seconds is not None else text


def table_lines(records: Sequence[Record]) -> list[str]:
    """The track record as fixed-width lines (the CLI prints the same columns)."""
    head = ("agent", "service", "type", "env", "acts", "appr", "ovr", "ack", "exp", "dflt", "viol", "median",
            "ok/fail/rb")
    rows = [head] + [(r.agent, r.service, r.action_type, r.environment, str(r.actions), _rate(r.approval_rate),
                      _rate(r.override_rate), str(r.acknowledged), str(r.expired), str(r.defaults),
                      str(r.violations), median(r),
                      f"{r.succeeded}/{r.failed}/{r.rolled_back}") for r in records]
    widths = [min(24, max(len(row[i]) for row in rows)) for i in range(len(head))]
    return ["  ".join(cell[:w].ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def suggestion_text(s: Suggestion) -> str:
    arrow = ":arrow_up:" if s.kind == "promote" else ":arrow_down:"
    return (f"{arrow} *{s.kind.capitalize()}* `{escape(s.agent)}` on {escape(s.service)} · "
            f"{escape(s.action_type)} · {escape(s.environment)}: *{s.mode_now}* → *{s.mode_suggested}*\n"
            f"{escape(s.why)}")


def suggestion_blocks(found: Sequence[Suggestion], *, can_grant: bool) -> list[Block]:
    blocks: list[Block] = []
    for i, s in enumerate(found[:MAX_SUGGESTIONS]):
        blocks.append(section(suggestion_text(s)))
        if can_grant:
            blocks.append(actions(f"suggest-{i}", [button("Grant", ActionId.GRANT, s.token(), "primary"),
                                                   button("Dismiss", ActionId.DISMISS, s.token())]))
    return blocks


def trust_message(records: Sequence[Record], found: Sequence[Suggestion], label: str, *, can_grant: bool) -> Message:
    blocks: list[Block] = [header(f"Track record: {label}")]
    if not records:
        blocks.append(section("No actions in this window."))
    else:
        shown = records[:MAX_ROWS]
        table = "\n".join(escape(line) for line in table_lines(shown))
        blocks.append(section(f"```{table}```"))
        if len(records) > MAX_ROWS:
            blocks.append(context(f"Showing the busiest {MAX_ROWS} of {len(records)}: `countersign trust` lists all."))
    blocks.append(context("appr = approved or acknowledged, ovr = denied or overridden (of human decisions); "
                          "dflt = `default` accountability; viol = policy violations; results ok/failed/rolled back"
                          + ("; ≈ median: from daily totals, within 9 %" if any(r.median_approximate for r in records)
                             else "")))
    if found:
        blocks.append(section("*Suggestions* (from the policy's `autonomy:` thresholds)"))
        blocks.extend(suggestion_blocks(found, can_grant=can_grant))
    return message(f"Track record: {escape(label)}", blocks)


def pauses_message(items: Sequence[Mapping[str, Any]]) -> Message:
    if not items:
        return message("No pause holds.", [section(":white_check_mark: No pause holds: every agent runs under the "
                                                   "policy's modes.")])
    lines = [f"• `{escape(p['target'])}` by {_who(p['by'])} until {_until(p['until'])}: "
             f"{escape(p['reason'])}" for p in items]
    count = f"{len(items)} pause{'' if len(items) == 1 else 's'} in force"
    return message(count, [header("Pauses in force"), section("\n".join(lines))])


def in_force_text(paused: Sequence[PauseInForce], granted: Sequence[GrantInForce]) -> str:
    """What changes a service's modes now, a line each (empty when only the file's rules decide)."""
    lines = [f":double_vertical_bar: *Paused* (`{escape(p.target)}`) by {_who(p.by)} "
             f"{f'until {slack_date(p.until)}' if p.until else 'until resumed'}: {escape(p.reason)}" for p in paused]
    lines += [f":key: *Grant #{g.id}*: `{escape(g.agent)}` · {escape(g.action_type)} · {escape(g.environment)} "
              f"runs *{g.mode}* until {slack_date(g.until)}, granted by {_who(g.by)}" for g in granted]
    return "\n".join(lines)


def _who(by: str | None) -> str:
    if by == "countersign":
        return "countersign (automatic brake)"
    return mention(by) if by and by[:1] in ("U", "W") else escape(by or "someone")


def answer(text: str) -> Message:
    """An ephemeral answer written by Countersign (what a person typed is escaped by the caller)."""
    return message(text, [section(text)])


def mistake(text: str) -> Private:
    """`answer` for a refusal or a mistake: the asker alone sees it, even after `share`."""
    return Private(answer(text))


def _until(iso_text: str | None) -> str:
    """When a pause or grant ends, as Slack's reader-local date (the raw ISO string, microseconds
    and all, was what people read); "resumed" when it holds until someone resumes it."""
    if not iso_text:
        return "resumed"
    try:
        return when(iso_text)
    except ValueError:
        return escape(iso_text)


def notice(n: Mapping[str, Any]) -> Message:
    """A pause, resume, brake, grant or failed result, announced in a channel or a DM."""
    event = n.get("event")
    if event == "pause.started":
        until = f" until {_until(n.get('until'))}"
        braked = n.get("by") == "countersign"
        lead = ":octagonal_sign: *Automatic brake*" if braked else ":double_vertical_bar: *Paused*"
        text = (f"{lead}: `{escape(n['target'])}` by {_who(n.get('by'))}{until}. "
                f"Every new action for it needs approval.\nReason: {escape(n.get('reason') or '')}\n"
                f"Resume with `/ai-actions resume {escape(n['target'])}`.")
    elif event == "pause.ended":
        how = "expired" if n.get("by") == "expiry" else f"resumed by {_who(n.get('by'))}"
        text = f":arrow_forward: *Pause ended*: `{escape(n['target'])}` {how}. The policy's modes apply again."
    elif event in ("grant.granted", "grant.revoked", "grant.expired"):
        verb = {"grant.granted": "granted", "grant.revoked": "revoked", "grant.expired": "expired"}[event]
        kind = "Demotion" if n.get("kind") == "demote" else "Promotion"
        by = "" if verb == "expired" else f" by {_who(n.get('by'))}"
        text = (f":scales: *{kind} {verb}*{by}: `{escape(n['agent'])}` on "
                f"{escape(n['service'])} · {escape(n['action_type'])} · {escape(n['environment'])} is now "
                f"*{n['mode'] if verb == 'granted' else n['previous_mode']}*"
                + (f" until {_until(n.get('until'))}" if verb == "granted" else "") + ".")
        why = (n.get("figures") or {}).get("why")
        if why:
            text += f"\nFigures: {escape(why)}"
    elif event == "result":
        text = (f":x: *Action {n.get('action')} {escape(str(n.get('result')).replace('_', ' '))}* "
                f"({escape(n.get('service') or '')}, agent `{escape(n.get('agent') or '')}`): "
                f"{escape(n.get('summary') or '')}\n{escape(n.get('detail') or 'no detail given')}")
    else:
        text = escape(str(event))
    return message(text, [section(text)], unfurl=False)


def result_line(result: Mapping[str, Any]) -> str:
    """The result on an action's card."""
    emoji = {"succeeded": ":white_check_mark:", "failed": ":x:", "rolled_back": ":leftwards_arrow_with_hook:"}
    kind = str(result.get("result"))
    detail = escape(result.get("detail") or "")
    return f"{emoji.get(kind, '')} *Result reported by the agent*: {escape(kind.replace('_', ' '))}" + (
        f": {detail}" if detail else "")
