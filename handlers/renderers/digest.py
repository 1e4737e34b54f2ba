"""Renderers for the daily digest (Kind.DIGEST, from the snapshot bot.digest took) and for App Home
refreshes (Kind.HOME, built at send time by handlers.home)."""

from __future__ import annotations

from typing import Any

from bot.delivery.messages import Kind
from bot.reports.stats import Rates
from bot.services import Services
from handlers.blocks import commands as ui
from handlers.listeners.home import home_view
from handlers.renderers.registry import renders

LIST_LINES = 60  # per list (a message holds 50 blocks); beyond it the digest points to the audit export


def _who(item: dict[str, Any]) -> str:
    return ui.mention(item.get("decided_by")) + (f" ({ui.escape(item['decided_by_name'])})"
                                                 if item.get("decided_by_name") and item.get("level") else "")


def _line(item: dict[str, Any], extra: str) -> str:
    return (f"• *#{item['id']}* {ui.escape(item['service'])} `{ui.escape(item['action_type'])}` — "
            f"{ui.escape(ui.clip(item['summary'] or '', 120))} · {extra}")


def _list_blocks(title: str, items: list[dict[str, Any]], fmt: Any, empty: str, day: str) -> list[ui.Block]:
    """A titled list packed into sections of at most 3000 characters."""
    if not items:
        return [ui.section(f"*{title}*: {empty}")]
    lines = [fmt(i) for i in items[:LIST_LINES]]
    if len(items) > LIST_LINES:
        lines.append(f"…and {len(items) - LIST_LINES} more: `countersign audit export --since {day}`")
    blocks: list[ui.Block] = []
    chunk = [f"*{title}* ({len(items)})"]
    for line in lines:
        if sum(len(x) + 1 for x in chunk) + len(line) > 2900:
            blocks.append(ui.section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    blocks.append(ui.section("\n".join(chunk)))
    return blocks


def digest_message(d: dict[str, Any]) -> ui.Message:
    rates = {t: {k: Rates(**v) for k, v in d[t].items()} for t in ("per_agent", "per_service")}
    blocks: list[ui.Block] = [
        ui.header(f"Countersign daily digest: {d['day']}"),
        ui.section(f"*{d['total']} AI actions* submitted {ui.when(d['since'])} – {ui.when(d['until'])}\n"
                   f"*By mode:* {ui.counts(d['by_mode'])}\n*By outcome:* {ui.counts(d['by_outcome'])}\n"
                   f"*Median time to response:* {ui.duration(d['median_response_seconds'])} "
                   f"(over {d['responded']} explicit responses)\n"
                   f"*Default accountability:* {len(d['defaults'])} decided by default this day"),
    ]
    for title, table in (("Per agent", rates["per_agent"]), ("Per service", rates["per_service"])):
        ranked = sorted(table.items(), key=lambda kv: -kv[1].total)[:15]
        lines = "\n".join(ui.rates_line(name, r) for name, r in ranked)
        blocks.append(ui.section(f"*{title}*\n" + (lines or "none")))
    blocks += _list_blocks("Slowest responses", d["slowest"], lambda i: _line(
        i, f"*{ui.duration(i['response_seconds'])}* to {ui.escape(i['outcome'])} by {_who(i)}"),
        "no responses", d["day"])
    blocks += _list_blocks("Overrides", d["overrides"], lambda i: _line(
        i, f"{ui.escape(i['outcome'])} by {_who(i)} {ui.when(i['decided_at'])}"
        + (f": “{ui.escape(ui.clip(i['reason'] or '', 200))}”" if i.get("reason") else "")), "none", d["day"])
    blocks += _list_blocks("Default accountability", d["defaults"], lambda i: _line(
        i, f"{ui.escape(i['outcome'])}, accountable {_who(i)} at {ui.escape(i['level'] or '-')} "
        f"{ui.when(i['decided_at'])}"), "none: every decision had a named human", d["day"])
    head = d.get("head") or {}
    blocks.append(ui.section(f":link: *Audit chain head:* `{head.get('hash')}@{head.get('seq')}`\n"
                             "Keep this line: `countersign audit verify` recomputes the chain; a rewritten "
                             "ledger will not end at this hash."))
    blocks.append(ui.context(f"Details: `/ai-actions stats 1d` · `/ai-actions show ID` · "
                             f"time zone {ui.escape(d['timezone'])}"))
    text = (f"Countersign daily digest {d['day']}: {d['total']} actions, {len(d['overrides'])} overrides, "
            f"{len(d['defaults'])} default accountability; chain head {head.get('hash')}@{head.get('seq')}")
    return ui.message(text, blocks)


@renders(Kind.DIGEST)
async def render_digest(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    return digest_message(payload["digest"])


@renders(Kind.HOME)
async def render_home(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    user_id = payload.get("channel")
    if not user_id or user_id[:1] not in ("U", "W"):
        return None  # an email Slack could not resolve (the relay resolves them first)
    return {"user_id": user_id, "view": await home_view(svc, user_id)}
