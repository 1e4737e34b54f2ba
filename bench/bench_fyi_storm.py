"""Autonomous FYIs in a storm (issue 15, finding 10): 2,000 autonomous actions in 30 s to one
service, against a fake Slack enforcing chat.postMessage's 1/s per channel (bursts of 5, 429
beyond). Measures how many messages carry them, when the outbox drained, 429s, and that every
action id is named in the channel or its storm thread. Writes bench/results/bench_fyi_storm.md.

    python -m bench.bench_fyi_storm [--actions 2000] [--seconds 30] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import tempfile
import time
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
from storage.models import OutboxMessage

POLICY = """
services:
  batch: {owner: U0BATCH, channel: C0BATCH}
rules:
  - mode: autonomous
"""
CHANNEL = "C0BATCH"
RESULTS = Path(__file__).parent / "results" / "bench_fyi_storm.md"


def named(call: Call) -> set[int]:
    """The action ids one post names: a pack's text lists them; a single FYI says `show ID`."""
    packed = re.search(r"actions ([\d, ]+)$", call.args.get("text") or "")
    if packed:
        return {int(n) for n in packed.group(1).split(", ")}
    return {int(m) for m in re.findall(r"show (\d+)", str(call.args))}


async def run(total: int, seconds: float, database_url: str) -> dict[str, Any]:
    fake = FakeSlack()
    await fake.start()
    fake.post_limit = RateLimit(per_second=1.0, burst=5)
    settings = Settings(SLACK_BOT_TOKEN="xoxb-bench", SLACK_SIGNING_SECRET="bench", SLACK_API_URL=fake.url,
                        DATABASE_URL=database_url, COUNTERSIGN_TICK_SECONDS=0.1, _env_file=None)
    app = create_app(settings, policy=parse_policy(POLICY, "bench-policy.yml"))
    runner, port, token = await serve_with_agent(app, "runaway")
    svc = app[SERVICES]
    accepted: list[int] = []
    start = time.monotonic()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

        async def submit(i: int) -> None:
            await asyncio.sleep(max(0.0, start + i * seconds / total - time.monotonic()))
            body = {"kind": "executed", "service": "batch", "action_type": "reindex",
                    "summary": f"Reindexed shard {i}", "rationale": "nightly maintenance"}
            async with http.post(f"http://127.0.0.1:{port}/v1/actions", json=body) as resp:
                if resp.status == 201:
                    accepted.append((await resp.json())["id"])

        await asyncio.gather(*(submit(i) for i in range(total)))
        submitted_in = time.monotonic() - start
        drained_at = None
        while time.monotonic() - start < seconds + 600:
            async with svc.db.session() as session:
                waiting = (await session.execute(select(func.count()).select_from(OutboxMessage).where(
                    col(OutboxMessage.status).in_(["pending", "sending"])))).scalar_one()
            if waiting == 0:
                drained_at = time.monotonic() - start
                break
            await asyncio.sleep(0.5)
    await runner.cleanup()
    await fake.stop()
    posts = fake.posts(CHANNEL)
    found: set[int] = set()
    for post in posts:
        found |= named(post)
    return {"actions": total, "accepted": len(accepted), "submitted_in": submitted_in,
            "drained_at": drained_at, "posts": len(posts),
            "threaded": sum(1 for p in posts if p.args.get("thread_ts")),
            "packs": sum(1 for p in posts if len(named(p)) > 1),
            "missing": len(set(accepted) - found), "rate_limited": len(fake.post_limit.refused),
            "database": database_url.split("://")[0]}


def report(r: dict[str, Any], command: str) -> str:
    drained = f"{r['drained_at']:.1f} s" if r["drained_at"] else "NOT DRAINED"
    after = f"{r['drained_at'] - r['submitted_in']:.1f} s" if r["drained_at"] else "-"
    unpacked = r["accepted"]  # one post each at Slack's 1/s: the bound without packing
    ratio = f"{unpacked / r['drained_at']:.0f}x" if r["drained_at"] else "-"
    rows = [("actions submitted (open loop)", f"{r['actions']} in {r['submitted_in']:.1f} s"),
            ("accepted (201)", f"{r['accepted']}"),
            ("outbox drained at (from the first submission) / after the burst", f"{drained} / {after}"),
            ("chat.postMessage to the channel / threaded / packs", f"{r['posts']} / {r['threaded']} / {r['packs']}"),
            ("actions not named in the channel or its thread", f"{r['missing']}"),
            ("**429s received**", f"**{r['rate_limited']}**"),
            ("one post per FYI at 1/s would take (no packing)", f"{unpacked} s: packed is {ratio} faster")]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {r['database']}"
    return f"""# bench_fyi_storm: 2,000 autonomous FYIs in 30 s to one service

`{command}` ({machine}).
The fake Slack enforces chat.postMessage at 1/s per channel, bursts of 5, 429 + Retry-After beyond.

| | |
|---|---|
{table}

How: past `storm_per_minute` the FYIs are threaded under the storm card; when the channel's queue
is more than 20 posts deep they go 80 to a message, a line each naming the action id.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--actions", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        result = asyncio.run(run(args.actions, args.seconds, url))
    command = "python -m bench.bench_fyi_storm"
    if args.actions != 2000:
        command += f" --actions {args.actions}"
    if args.seconds != 30:
        command += f" --seconds {args.seconds:g}"
    if args.database_url:
        command += " --database-url postgresql+asyncpg://…"
    text = report(result, command)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
