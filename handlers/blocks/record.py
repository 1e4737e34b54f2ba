"""`/ai-actions show ID`: one action's responsibility record (bot.actions.record.action_record) in
Block Kit: the AI's reasons beside who is accountable and how, then every event of its timeline."""

from __future__ import annotations

from typing import Any

from handlers.blocks.card import decision_buttons
from handlers.blocks.kit import (
    Block,
    Message,
    clip,
    context,
    divider,
    escape,
    fields,
    header,
    link,
    mention,
    message,
    section,
    when,
)
from storage.models import Action


def _event_text(event: dict[str, Any]) -> str:
    """One timeline entry as a sentence (ledger events: submission, pages, responses, callbacks...)."""
    kind, data = event["event"], event.get("data") or {}
    actor = event.get("actor")
    if kind == "action.submitted":
        text = (f"Submitted by agent *{escape(data.get('agent'))}* ({escape(data.get('kind'))}, mode "
                f"`{escape(data.get('mode'))}`)")
        return text + (" :rotating_light: policy violation" if data.get("policy_violation") else "")
    if kind == "escalation.page":
        late = data.get("late_seconds") or 0
        return (f"Paged *{escape(data.get('level'))}*: {mention(data.get('target'))}"
                + (f" ({late:.1f}s late)" if late >= 1 else ""))
    if kind == "escalation.reminder":
        return f"Reminded *{escape(data.get('level'))}*"
    if kind == "escalation.skipped":
        return f"Skipped paging *{escape(data.get('level'))}*: {escape(data.get('reason'))}"
    if kind == "page.failed":
        return f":warning: Paging *{escape(data.get('level'))}* failed: {escape(data.get('reason'))}"
    if kind == "decision":
        how = data.get("accountability")
        who = mention(data.get("by") or actor)
        via = f", via {escape(data.get('via'))}" if data.get("via") else ""
        reason = f": “{escape(clip(str(data['reason']), 300))}”" if data.get("reason") else ""
        return f"*Decision* `{escape(data.get('outcome'))}` — {who} ({escape(how)}{via}){reason}"
    if kind == "response.refused":
        return (f":no_entry_sign: {mention(data.get('by') or actor)} tried to {escape(data.get('response'))}"
                f" via {escape(data.get('via'))}: refused ({escape(data.get('refusal'))})")
    if kind == "callback.delivered":
        return f"Callback delivered to `{escape(data.get('url'))}` (HTTP {escape(data.get('status'))})"
    return f"`{escape(kind)}`" + (f" by {mention(actor)}" if actor else "")


def _accountable(record: dict[str, Any]) -> str:
    d = record.get("decision")
    if not d:
        esc = record.get("escalation") or {}
        nxt = f", next step {when(esc.get('next_at'))}" if esc.get("next_at") else ""
        return (f"*Accountable:* nobody yet: pending at *{escape(esc.get('level') or 'owner')}* "
                f"(owner {mention(record.get('owner'))}){nxt}")
    by = d.get("by") or {}
    how = {"explicit": "explicitly, by responding", "default": "by default: nobody answered in time",
           "policy": "by policy: the owner of the rule that let the AI act alone"}.get(
        d["accountability"], "")
    text = (f"*Accountable:* {mention(by.get('slack_user_id'))}"
            + (f" ({escape(by['name'])})" if by.get("name") else "")
            + f" — `{escape(d.get('outcome'))}`, {how}; level {escape(d.get('level') or '-')}, "
            f"via {escape(d.get('via') or '-')}, {when(d.get('at'))}")
    if d.get("reason"):
        text += f"\n*Reason:* {escape(d['reason'])}"
    return text


def record_message(record: dict[str, Any], base_url: str = "", page_url: str = "") -> Message:
    facts = [
        f"*Agent*\n{escape(record.get('agent'))}",
        f"*Service*\n{escape(record['service'])} ({escape(record['environment'])})",
        f"*Action*\n`{escape(record['action_type'])}` ({escape(record['kind'])})",
        f"*Status*\n`{escape(record['status'])}`, mode `{escape(record['mode'])}`"
        + (" :rotating_light: policy violation" if record.get("policy_violation") else ""),
        f"*Confidence*\n{record['confidence']:.0%}" if record.get("confidence") is not None
        else "*Confidence*\nnot given",
        f"*Submitted*\n{when(record.get('created_at'))}",
    ]
    model = record.get("model") or {}
    if model:
        facts.append("*Model*\n" + escape(" ".join(str(model[k]) for k in ("provider", "name", "version")
                                                     if model.get(k))))
    blocks: list[Block] = [
        header(f"#{record['id']}: {record['summary']}"),
        fields(facts),
        section(f"*Why the AI did this*\n{escape(record['rationale'])}"),
    ]
    evidence = [f"• {link(e['url'], e.get('label') or e['url'])}"
                for e in record.get("evidence") or [] if str(e.get("url", "")).startswith(("http://", "https://"))]
    if evidence:
        blocks.append(section("*Evidence*\n" + "\n".join(evidence)))
    blocks.append(section(_accountable(record)))
    # The buttons need only what the record holds (a transient Action, never added to a session).
    transient = Action(id=record["id"], agent_id=0, kind=record["kind"], status=record["status"],
                       service=record["service"], action_type=record["action_type"],
                       summary=record["summary"], rationale=record["rationale"], mode=record["mode"])
    block = decision_buttons(transient, per_action=True)
    if block is not None:
        blocks.append(block)
    blocks += [divider(), section("*Timeline*")]
    lines = [f"{when(e['at'])} · {_event_text(e)}" for e in record.get("timeline") or []]
    chunk: list[str] = []
    for line in lines:  # pack lines into sections of at most 3000 characters
        if sum(len(x) + 1 for x in chunk) + len(line) > 2900:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    url = f"{base_url}/v1/actions/{record['id']}"
    api = f"{link(url, 'full record (API)')} · " if base_url else ""
    if page_url:
        api = f"{link(page_url, 'open the action page')} · {api}"
    blocks.append(context(f"{api}rule #{(record.get('rule') or {}).get('index', '-')} · "
                          f"`countersign actions show {record['id']}`"))
    return message(f"Action {record['id']}: {escape(record['summary'])} ({escape(record['status'])})", blocks)
