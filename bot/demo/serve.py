"""`countersign demo --serve`: after the story, one more proposal waits for its owner; the demo
prints the action page link from the owner's card and keeps serving until Ctrl-C, so a person can
read the whole story in a browser and approve there, and watch the cards and the callback follow."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal

from bot.demo.harness import EVIDENCE, Demo, verify_callbacks
from storage.queries import actions as repo

_PAGE_LINK = re.compile(r"<(https?://[^|>]+/a/\d+\?[^|>]+)\|")


def page_link(message: dict[str, object]) -> str | None:
    """The action page link on a card (handlers.blocks.card puts it in the last context block)."""
    found = _PAGE_LINK.search(str(message.get("blocks") or ""))
    return found.group(1).replace("&amp;", "&") if found else None


async def serve(demo: Demo, stop: asyncio.Event) -> None:
    echo = demo.echo
    seen = len(demo.received)
    action = await demo.submit(
        kind="proposed", service="checkout-api", action_type="rollback",
        summary="Roll checkout-api back to v2.14.0",
        rationale="p99 latency doubled (180 ms to 370 ms) within 4 minutes of the v2.15.0 deploy; "
                  "no other change in that window",
        confidence=0.88, evidence=EVIDENCE, callback_url=demo.callback_url,
        model={"provider": "anthropic", "name": "claude-sonnet", "version": "2026-01"},
    )
    dm = await demo.card("U0OWNER", action["id"])
    link = page_link(demo.slack.messages[dm])
    echo("")
    echo(f"Action {action['id']} waits for @Olive Owner. Open her link (from her card) in a browser, read the")
    echo("whole story and approve or override it there:")
    echo("")
    echo(f"  {link}")
    echo("")
    echo("Serving until Ctrl-C.")
    while not stop.is_set():
        async with demo.svc.db.session() as session:
            row = await repo.get(session, action["id"])
        if row is not None and row.status != "pending":
            echo(f"  decided in the browser: {row.status} by {row.decided_by} (via {row.decision_via})")
            await demo.updated(action["id"], dm)
            await demo.until("the agent's callback", lambda: asyncio.sleep(0, len(demo.received) > seen))
            for line in verify_callbacks(demo)[seen:]:
                echo(line)
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    await stop.wait()


def stop_on_signals() -> asyncio.Event:
    """An event set by Ctrl-C (SIGINT) or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
