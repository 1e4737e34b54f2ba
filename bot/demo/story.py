"""`countersign demo`'s story: the chapters it plays against the harness, in order."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer

from bot.actions.record import action_record, format_record
from bot.demo import autonomy_chapter
from bot.demo.harness import EVIDENCE, Demo, Echo, verify_callbacks
from bot.demo.text import card_to_text, mrkdwn_to_text


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

    _title(demo, "5. Autonomy moves with evidence: the brake trips, the owner resumes, leadership grants")
    await autonomy_chapter.chapter(demo)

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




async def run(echo: Echo = print, *, keep_serving: bool = False) -> None:
    """The demo, start to finish; raises if any step does not happen. `keep_serving`: then one more
    action waits, its page link is printed, and the demo serves until Ctrl-C (bot.demo.serve)."""
    logging.disable(logging.WARNING)  # the story is the output; the app's own logs would drown it
    with tempfile.TemporaryDirectory(prefix="countersign-demo-") as tmp:
        demo = Demo(echo, Path(tmp))
        try:
            await demo.start()
            await story(demo)
            if keep_serving:
                from bot.demo.serve import serve, stop_on_signals

                await serve(demo, stop_on_signals())
        finally:
            await demo.stop()
            logging.disable(logging.NOTSET)
