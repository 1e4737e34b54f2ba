"""`countersign demo`: the whole flow on this machine, with no Slack workspace (see bot/demo.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from bot.demo import Demo

EMOJI = {
    ":raised_hand:": "✋",
    ":white_check_mark:": "✅",
    ":no_entry:": "⛔",
    ":no_entry_sign:": "🚫",
    ":leftwards_arrow_with_hook:": "↩️",
    ":hourglass:": "⌛",
    ":hourglass_flowing_sand:": "⏳",
    ":robot_face:": "🤖",
    ":rotating_light:": "🚨",
    ":eyes:": "👀",
    ":alarm_clock:": "⏰",
    ":arrow_up:": "⬆️",
    ":warning:": "⚠️",
    ":grey_question:": "❔",
}


def mrkdwn_to_text(text: str, names: Mapping[str, str]) -> str:
    """Slack mrkdwn as a terminal shows it: mentions by name, dates by their fallback, links spelled out."""
    text = re.sub(r"<@(\w+)>", lambda m: "@" + names.get(m.group(1), m.group(1)), text)
    text = re.sub(r"<#(\w+)>", lambda m: "#" + names.get(m.group(1), m.group(1)), text)
    text = re.sub(r"<!date\^\d+\^[^|>]*\|([^>]*)>", r"\1", text)
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r"\2 (\1)", text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"\1", text)  # *bold*
    text = re.sub(r"(?<![\w_])_([^_\n]+)_(?![\w_])", r"\1", text)  # _italic_
    for code, char in EMOJI.items():
        text = text.replace(code, char)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def card_to_text(message: Mapping[str, Any], names: Mapping[str, str], *, indent: str = "    ") -> str:
    """A Block Kit message (or modal) as readable lines in a box."""
    lines: list[str] = []
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind == "header":
            lines.append(mrkdwn_to_text(block["text"]["text"], names).upper())
        elif kind == "section":
            if block.get("text"):
                lines.extend(mrkdwn_to_text(block["text"]["text"], names).splitlines())
            fields = [
                mrkdwn_to_text(f["text"], names).replace("\n", ": ", 1).replace("*", "")
                for f in block.get("fields") or []
            ]
            for i in range(0, len(fields), 3):
                lines.append("   ".join(fields[i : i + 3]))
        elif kind == "context":
            lines.append(" · ".join(mrkdwn_to_text(e.get("text", ""), names) for e in block["elements"]))
        elif kind == "actions":
            lines.append("  ".join(f"[ {e['text']['text']} ]" for e in block["elements"]))
        elif kind == "input":
            lines.append(f"{block['label']['text']}  [______________________]")
        elif kind == "divider":
            lines.append("─" * 40)
    if not lines:
        lines = [mrkdwn_to_text(str(message.get("text", "")), names)]
    width = min(100, max(len(line) for line in lines) + 2)
    boxed = (
        [indent + "┌" + "─" * width] + [f"{indent}│ {line}" for line in lines] + [indent + "└" + "─" * width]
    )
    return "\n".join(boxed)


def _title(demo: Demo, text: str) -> None:
    demo.echo("")
    demo.echo(typer.style(f"━━ {text} ", bold=True) + "━" * max(0, 70 - len(text)))


async def _modal(demo: Demo, user: str, reason: str) -> None:
    """The modal views.open received, shown, then filled in and submitted as Slack would."""
    [opened] = await demo.until(
        "the override modal", lambda: asyncio.sleep(0, demo.slack.calls_to("views.open"))
    )
    view = opened.args["view"]
    demo.echo("  Slack → views.open: a modal asks for the reason:")
    demo.echo(card_to_text(view, demo.names))
    field = next(b for b in view["blocks"] if b["type"] == "input")
    state = {
        "values": {
            field["block_id"]: {field["element"]["action_id"]: {"type": "plain_text_input", "value": reason}}
        }
    }
    handle = demo.handle(user)
    status, _, ms = await demo.signed(
        {
            "type": "view_submission",
            "team": {"id": "T0DEMO"},
            "user": {"id": user, "username": handle, "name": handle},
            "view": {**view, "id": "V0DEMO", "state": state},
        }
    )
    demo.echo(f'  @{demo.names[user]} types "{reason}" and submits (HTTP {status}, {ms:.0f} ms)')


async def story(demo: Demo) -> None:
    """What `countersign demo` shows, in order."""
    from bot.demo import EVIDENCE, verify_callbacks
    from bot.record import action_record, format_record

    echo = demo.echo
    echo(typer.style("Countersign demo", bold=True) + ": every AI action owned by a named human, end to end.")
    echo(f"  app {demo.url} (SQLite in a temporary directory), fake Slack {demo.slack.url}")
    echo("  policy: checkout-api (tier1, approval in production; owner @Olive Owner,")
    echo("          secondary dana@example.com), search (restarts: acknowledge; owner @Sam SRE),")
    echo("          batch (autonomous), drop_database forbidden everywhere")
    echo(f"  agent 'remediator' created (bearer token, callback secret); callbacks to {demo.callback_url}")

    _title(demo, "1. A proposal waits for its owner, who approves it")
    first = await demo.submit(
        kind="proposed",
        service="checkout-api",
        action_type="scale_down",
        summary="Scale checkout-api from 12 to 8 pods",
        confidence=0.82,
        evidence=EVIDENCE,
        rationale="CPU under 20% for 3 hours on all pods; 4 pods cost $1.9k a month",
        model={"provider": "anthropic", "name": "claude-sonnet", "version": "2026-01"},
        callback_url=demo.callback_url,
        external_id="chg-1042",
    )
    dm = await demo.card("U0OWNER", first["id"])
    channel = await demo.card("C0CHECKOUT", first["id"])
    demo.show("DM to @Olive Owner (the same card is in #checkout)", demo.slack.messages[dm])
    await demo.click("U0EVE", channel, "Approve")
    [note] = await demo.until(
        "the refusal", lambda: asyncio.sleep(0, demo.slack.calls_to("chat.postEphemeral"))
    )
    echo(f"  Slack → only @Eve Elsewhere sees: {mrkdwn_to_text(note.args['text'], demo.names)}")
    await demo.click("U0OWNER", dm, "Approve")
    await demo.decided(first["id"])
    await demo.updated(first["id"], dm)
    await demo.until("the agent's callback", lambda: asyncio.sleep(0, demo.received))
    for line in verify_callbacks(demo):
        echo(line)

    _title(demo, "2. The owner overrides a proposal, and must say why")
    second = await demo.submit(
        kind="proposed",
        service="checkout-api",
        action_type="rollback",
        summary="Roll checkout-api back to v2.14.0",
        confidence=0.64,
        rationale="Error rate rose from 0.2% to 1.1% right after the v2.15.0 deploy",
    )
    dm = await demo.card("U0OWNER", second["id"])
    await demo.click("U0OWNER", dm, "Override")
    await _modal(demo, "U0OWNER", "the errors come from a payment provider outage, not from v2.15.0")
    await demo.decided(second["id"])
    await demo.updated(second["id"], dm)

    _title(demo, "3. The AI already acted: the on-call acknowledges it")
    executed_at = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
    third = await demo.submit(
        kind="executed",
        service="search",
        action_type="restart",
        executed_at=executed_at,
        summary="Restarted search-indexer after two OOM kills",
        confidence=0.91,
        rationale="Heap exhausted twice in 10 minutes; a restart clears the leaked cache",
    )
    dm = await demo.card("U0SRE", third["id"])
    demo.show("DM to @Sam SRE", demo.slack.messages[dm])
    await demo.click("U0SRE", dm, "Acknowledge")
    await demo.decided(third["id"])
    await demo.updated(third["id"], dm)

    _title(demo, "4. Autonomous actions are recorded; forbidden ones are refused")
    fourth = await demo.submit(
        kind="executed",
        service="batch",
        action_type="resize_queue",
        summary="Raised batch worker concurrency from 4 to 6",
        rationale="Queue depth above 10k for 15 minutes",
    )
    fyi = await demo.until("the FYI", lambda: asyncio.sleep(0, demo.slack.posts("C0BATCH")))
    demo.show("#batch (FYI, no response needed)", fyi[0].args)
    await demo.submit(
        kind="proposed",
        service="checkout-api",
        action_type="drop_database",
        summary="Drop the orders_archive database",
        rationale="Disk 91% full",
    )
    refused = await demo.until(
        "the refusal report",
        lambda: asyncio.sleep(
            0, [c for c in demo.slack.posts("C0CHECKOUT") if "Refused by policy" in c.args.get("text", "")]
        ),
    )
    demo.show("#checkout", refused[0].args)

    _title(demo, "Responsibility records (also: countersign actions show ID, /ai-actions show ID)")
    for action in (first, second, third, fourth):
        async with demo.svc.db.session() as session:
            record = await action_record(session, action["id"])
        assert record is not None
        echo(format_record(record))
        echo("")
    echo(
        f"The fake Slack received {len(demo.slack.calls)} Web API calls. Next: README.md sets up a real "
        "workspace from manifest.yml."
    )


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo() -> None:
        """Run the whole flow locally against a built-in fake Slack: cards, clicks, records."""
        from bot.demo import run

        asyncio.run(run(typer.echo))
