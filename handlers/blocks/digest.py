"""Block Kit for the daily digest, from the JSON snapshot bot.reports.digest took: pure functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bot.policy.autonomy import Record, Suggestion
from bot.policy.durations import spoken
from bot.reports.figures import Rates, counts_text
from handlers.blocks.autonomy import suggestion_blocks, table_lines
from handlers.blocks.commands import rates_line
from handlers.blocks.kit import Block, Message, clip, context, escape, header, mention, message, section, when

LIST_LINES = 60  # per list (a message holds 50 blocks); beyond it the digest points to the audit export
LISTS = ("slowest", "overrides", "defaults")  # the lists whose lines name who decided


def digest_people(d: dict[str, Any]) -> list[str]:
    """Whom the digest's lines name (who decided, or is accountable by default): the emails among
    them to resolve before rendering, so the digest mentions the Slack user, not the address."""
    return [i["decided_by"] for name in LISTS for i in (d.get(name) or [])[:LIST_LINES] if i.get("decided_by")]


def _who(item: dict[str, Any], people: Mapping[str, str]) -> str:
    return mention(item.get("decided_by"), people) + (f" ({escape(item['decided_by_name'])})"
                                                      if item.get("decided_by_name") and item.get("level") else "")


def _line(item: dict[str, Any], extra: str) -> str:
    return (f"• *#{item['id']}* {escape(item['service'])} `{escape(item['action_type'])}` — "
            f"{escape(clip(item['summary'] or '', 120))} · {extra}")


def _list_blocks(title: str, items: list[dict[str, Any]], fmt: Callable[[dict[str, Any]], str], empty: str,
                 day: str) -> list[Block]:
    """A titled list packed into sections of at most 3000 characters."""
    if not items:
        return [section(f"*{title}*: {empty}")]
    lines = [fmt(i) for i in items[:LIST_LINES]]
    if len(items) > LIST_LINES:
        lines.append(f"…and {len(items) - LIST_LINES} more: `countersign audit export --since {day}`")
    blocks: list[Block] = []
    chunk = [f"*{title}* ({len(items)})"]
    for line in lines:
        if sum(len(x) + 1 for x in chunk) + len(line) > 2900:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    blocks.append(section("\n".join(chunk)))
    return blocks


def digest_message(d: dict[str, Any], people: Mapping[str, str] | None = None) -> Message:
    """The digest from its snapshot `d`; `people` maps the emails among `digest_people(d)` to the
    Slack user ids they resolved to (one Slack cannot resolve is shown as text)."""
    people = people or {}
    rates = {t: {k: Rates(**v) for k, v in d[t].items()} for t in ("per_agent", "per_service")}
    blocks: list[Block] = [
        header(f"Countersign daily digest: {d['day']}"),
        section(f"*{d['total']} AI actions* submitted {when(d['since'])} – {when(d['until'])}\n"
                f"*By mode:* {counts_text(d['by_mode'], escape)}\n"
                f"*By outcome:* {counts_text(d['by_outcome'], escape)}\n"
                f"*Median time to response:* {spoken(d['median_response_seconds'])} "
                f"(over {d['responded']} explicit responses)\n"
                f"*Default accountability:* {len(d['defaults'])} decided by default in this period"),
    ]
    for title, table in (("Per agent", rates["per_agent"]), ("Per service", rates["per_service"])):
        ranked = sorted(table.items(), key=lambda kv: -kv[1].total)[:15]
        lines = "\n".join(rates_line(name, r) for name, r in ranked)
        blocks.append(section(f"*{title}*\n" + (lines or "none")))
    blocks += _list_blocks("Slowest responses", d["slowest"], lambda i: _line(
        i, f"*{spoken(i['response_seconds'])}* to {escape(i['outcome'])} by {_who(i, people)}"),
        "no responses", d["day"])
    blocks += _list_blocks("Overrides", d["overrides"], lambda i: _line(
        i, f"{escape(i['outcome'])} by {_who(i, people)} {when(i['decided_at'])}"
        + (f": “{escape(clip(i['reason'] or '', 200))}”" if i.get("reason") else "")), "none", d["day"])
    blocks += _list_blocks("Default accountability", d["defaults"], lambda i: _line(
        i, f"{escape(i['outcome'])}, accountable {_who(i, people)} at {escape(i['level'] or '-')} "
        f"{when(i['decided_at'])}"), "none: every decision had a named human", d["day"])
    blocks += autonomy_blocks(d)
    head = d.get("head") or {}
    blocks.append(section(f":link: *Audit chain head:* `{head.get('hash')}@{head.get('seq')}`\n"
                          "Keep this line: `countersign audit verify` recomputes the chain; a rewritten "
                          "ledger will not end at this hash."))
    blocks.append(context(f"Details: `/ai-actions stats 1d` · `/ai-actions show ID` · "
                          f"time zone {escape(d['timezone'])}"))
    text = (f"Countersign daily digest {d['day']}: {d['total']} actions, {len(d['overrides'])} overrides, "
            f"{len(d['defaults'])} default accountability; chain head {head.get('hash')}@{head.get('seq')}")
    return message(text, blocks)


def autonomy_blocks(d: dict[str, Any]) -> list[Block]:
    """The track record's busiest rows (30 days) and the suggestions standing, with Grant / Dismiss
    (the click is checked: only leadership users and admins may)."""
    if "trust" not in d:
        return []
    records = [Record(**{k: v for k, v in r.items() if k not in ("approval_rate", "override_rate")})
               for r in d["trust"]]
    blocks: list[Block] = []
    if records:
        table = "\n".join(escape(line) for line in table_lines(records))
        more = d.get("trust_rows", len(records)) - len(records)
        blocks.append(section(f"*Track record, last 30 days*\n```{table}```"
                              + (f"\n…{more} more: `countersign trust`" if more > 0 else "")))
    found = [Suggestion(**{k: v for k, v in s.items() if k != "token"}) for s in d.get("suggestions") or []]
    if found:
        blocks.append(section(f"*Suggestions* ({len(found)})"))
        blocks += suggestion_blocks(found, can_grant=True)
    return blocks
