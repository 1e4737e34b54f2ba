"""A runaway agent: 1,000 actions in 60 s on one service, against a fake Slack that enforces Slack's
chat.postMessage limit (1 message per second per channel, bursts of 5, 429 with Retry-After beyond).

Measures messages sent, 429s received, the delay from each action's 201 to its owner's page (p50,
p99), and checks that nothing is lost (every accepted action stored, paged and carded) and nothing
duplicated. Writes bench/results/bench_outbox.md.

    python -m bench.bench_outbox [--actions 1000] [--seconds 60] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func
from sqlmodel import col, select

from bench.common import serve_with_agent
from bot.api.routes import SERVICES
from bot.app import create_app
from bot.config import Settings
from bot.demo.fakeslack import Call, FakeSlack, RateLimit
from bot.policy.rules import parse_policy
from storage.models import Action, OutboxMessage

POLICY = """
tiers:
  standard:
    escalation:
      - {notify: owner, after: 0s}
    timeout: 2h
services:
  payments:
    owner: U0PAY
    channel: C0PAY
    tier: standard
rules:
  - match: {action_type: [restart]}
    mode: acknowledge
  - mode: autonomous
"""
OWNER, CHANNEL = "U0PAY", "C0PAY"
RESULTS = Path(__file__).parent / "results" / "bench_outbox.md"


def action_ids(call: Call) -> list[int]:
    """The actions a posted message carries (one card, or a pack): their buttons' values."""
    found = {int(e["value"]) for b in call.args.get("blocks") or [] if b.get("type") == "actions"
             for e in b.get("elements", []) if str(e.get("value", "")).isdigit()}
    return sorted(found)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run(total: int, seconds: float, database_url: str) -> dict[str, Any]:
    fake = FakeSlack()
    await fake.start()
    fake.post_limit = RateLimit(per_second=1.0, burst=5)
    first_page: dict[int, float] = {}

    def on_call(call: Call) -> None:
        if call.method == "chat.postMessage" and call.args.get("channel") == OWNER:
            for action_id in action_ids(call):
                first_page.setdefault(action_id, call.at)

    fake.on_call.append(on_call)
    environment: dict[str, Any] = {"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": "bench",
                                   "SLACK_API_URL": fake.url, "DATABASE_URL": database_url,
                                   "COUNTERSIGN_TICK_SECONDS": 0.1, "_env_file": None}
    settings = Settings(**environment)
    app = create_app(settings, policy=parse_policy(POLICY, "bench-policy.yml"))
    runner, port, token = await serve_with_agent(app, "runaway")
    svc = app[SERVICES]

    accepted: dict[int, float] = {}
    refused: list[int] = []
    backlog_samples: list[tuple[float, float, float]] = []
    start = time.monotonic()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

        async def submit(i: int) -> None:
            await asyncio.sleep(max(0.0, start + i * seconds / total - time.monotonic()))
            body = {"kind": "executed", "service": "payments", "action_type": "restart",
                    "summary": f"Restarted payments worker {i}", "rationale": "health check failed 3 times",
                    "confidence": 0.7}
            async with http.post(f"http://127.0.0.1:{port}/v1/actions", json=body) as resp:
                if resp.status == 201:
                    accepted[(await resp.json())["id"]] = time.monotonic()
                else:
                    refused.append(resp.status)
                    print(f"action {i} refused: {resp.status} {await resp.text()}")

        async def sample() -> None:
            while True:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    text = await resp.text()
                values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                          if line.startswith("countersign_outbox_")}
                backlog_samples.append((time.monotonic() - start, values.get("countersign_outbox_backlog", 0),
                                        values.get("countersign_outbox_oldest_age_seconds", 0)))
                await asyncio.sleep(1.0)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(submit(i) for i in range(total)))
        submitted_in = time.monotonic() - start
        drained_at = None
        while time.monotonic() - start < seconds + 150:
            async with svc.db.session() as session:
                waiting = (await session.execute(select(func.count()).select_from(OutboxMessage).where(
                    col(OutboxMessage.status).in_(["pending", "sending"])))).scalar_one()
            if waiting == 0:
                drained_at = time.monotonic() - start
                break
            await asyncio.sleep(0.5)
        sampler.cancel()

    async with svc.db.session() as session:
        stored = (await session.execute(select(func.count()).select_from(Action))).scalar_one()
        failed = (await session.execute(select(func.count()).select_from(OutboxMessage).where(
            col(OutboxMessage.status) == "failed"))).scalar_one()
    await runner.cleanup()
    await fake.stop()

    posts = fake.calls_to("chat.postMessage")
    pages = Counter(a for c in posts if c.args.get("channel") == OWNER for a in action_ids(c))
    cards = Counter(a for c in posts if c.args.get("channel") == CHANNEL for a in action_ids(c))
    delays = [first_page[a] - at for a, at in accepted.items() if a in first_page]
    return {
        "actions": total, "accepted": len(accepted), "refused": len(refused), "stored": stored,
        "submitted_in": submitted_in, "drained_at": drained_at,
        "posts": len(posts), "dm_posts": sum(1 for c in posts if c.args.get("channel") == OWNER),
        "channel_posts": sum(1 for c in posts if c.args.get("channel") == CHANNEL),
        "threaded": sum(1 for c in posts if c.args.get("thread_ts")),
        "updates": len(fake.calls_to("chat.update")), "rate_limited": len(fake.post_limit.refused),
        "paged": len(pages), "page_dupes": sum(n - 1 for n in pages.values()),
        "carded": len(cards), "card_dupes": sum(n - 1 for n in cards.values()),
        "failed": failed, "p50": pct(delays, 0.5), "p99": pct(delays, 0.99), "max": max(delays, default=0),
        "mean": statistics.fmean(delays) if delays else float("nan"),
        "peak_backlog": max((b for _, b, _ in backlog_samples), default=0),
        "peak_age": max((a for _, _, a in backlog_samples), default=0),
        "database": database_url.split("://")[0],
    }


def report(r: dict[str, Any], command: str) -> str:
    lost = r["accepted"] - r["paged"], r["accepted"] - r["carded"]
    verdict = "PASS" if (r["stored"] >= r["accepted"] == r["paged"] == r["carded"] and not r["page_dupes"]
                         and not r["card_dupes"] and not r["rate_limited"] and not r["failed"]) else "FAIL"
    drained = f"{r['drained_at']:.1f} s" if r["drained_at"] else "NOT DRAINED"
    rows = [
        (f"actions submitted (open loop, {r['actions']} over the window)",
         f"{r['actions']} in {r['submitted_in']:.1f} s"),
        ("accepted (201) / refused / stored", f"{r['accepted']} / {r['refused']} / {r['stored']}"),
        ("outbox drained at (from the first submission)", drained),
        ("chat.postMessage sent: owner DM / channel / of which threaded",
         f"{r['posts']}: {r['dm_posts']} / {r['channel_posts']} / {r['threaded']}"),
        ("chat.update sent (storm count)", f"{r['updates']}"),
        ("**429s received**", f"**{r['rate_limited']}**"),
        ("actions paged in the owner's DM / duplicates / missing",
         f"{r['paged']} / {r['page_dupes']} / {lost[0]}"),
        ("actions carded in the channel / duplicates / missing",
         f"{r['carded']} / {r['card_dupes']} / {lost[1]}"),
        ("failed deliveries", f"{r['failed']}"),
        ("delay 201 -> owner's page: p50 / p99 / max",
         f"{r['p50']:.1f} s / {r['p99']:.1f} s / {r['max']:.1f} s"),
        ("peak backlog (/metrics) / its oldest age",
         f"{r['peak_backlog']:.0f} messages / {r['peak_age']:.0f} s"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    machine += f", {r['database']}"
    return f"""# bench_outbox: a runaway agent against Slack's rate limit

`{command}` ({machine}).
The fake Slack enforces chat.postMessage at 1/s per channel, bursts of 5, 429 + Retry-After beyond.

| | |
|---|---|
{table}

Verdict (nothing lost, no duplicates, no 429): **{verdict}**

How: past `storm_per_minute` (10) the channel cards are threaded under one storm card; when a
channel's queue is more than 20 posts deep (20 s at Slack's pace) the storm's cards go 20 to a
message, each with its own buttons. Pacing counts actual sends per channel (burst 3, 1/s) so the
relay never earns a 429; rows that must wait are deferred to a time of their own (no polling).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        result = asyncio.run(run(args.actions, args.seconds, url))
    command = "python -m bench.bench_outbox"
    if args.actions != 1000:
        command += f" --actions {args.actions}"
    if args.seconds != 60:
        command += f" --seconds {args.seconds:g}"
    if args.database_url:
        command += " --database-url postgresql+asyncpg://…"
    text = report(result, command)
    target = RESULTS if not args.database_url else RESULTS.with_name("bench_outbox_postgresql.md")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
