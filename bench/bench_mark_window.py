"""The done-mark window under an ingest burst: how long after Slack answered a post the relay's row
is marked done (a kill -9 inside that window re-sends the post). 300 concurrent POSTs, each giving a
DM and a channel card; the figure is read from the relay's own timings.

    python -m bench.bench_mark_window [--actions 300] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp

from bench.bench_outbox import pct
from bench.common import fresh_database, serve_with_agent
from bot.api.routes import SERVICES
from bot.app import RUNTIME, create_app
from bot.config import Settings
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import parse_policy
from tests.policies import FAST


async def run(total: int, database_url: str, shared_pool: bool = False) -> dict[str, Any]:
    fake = FakeSlack()
    await fake.start()
    settings = Settings(SLACK_BOT_TOKEN="xoxb-bench", SLACK_SIGNING_SECRET="bench",  # type: ignore[call-arg]
                        SLACK_API_URL=fake.url, DATABASE_URL=database_url, COUNTERSIGN_TICK_SECONDS=0.05,
                        _env_file=None)
    app = create_app(settings, policy=parse_policy(FAST, "bench-policy.yml"))
    runner, port, token = await serve_with_agent(app, "burst")
    svc = app[SERVICES]
    relay = app[RUNTIME].relay
    if shared_pool:  # the baseline: the done-mark queues for a connection with the submissions
        svc.db.urgent_session = svc.db.session  # type: ignore[method-assign]
    start = time.monotonic()
    statuses: list[int] = []
    lags: list[float] = []

    async def loop_lag() -> None:  # how late a 10 ms sleep wakes: the event loop's own delay
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    lagging = asyncio.create_task(loop_lag())
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

        async def submit(i: int) -> None:
            body = {"kind": "executed", "service": "search", "action_type": "restart",
                    "summary": f"Restarted search worker {i}", "rationale": "stuck"}
            async with http.post(f"http://127.0.0.1:{port}/v1/actions", json=body,
                                 headers={"Idempotency-Key": f"k{i}"}) as resp:
                statuses.append(resp.status)

        await asyncio.gather(*(submit(i) for i in range(total)))
        ingest = time.monotonic() - start
        await asyncio.sleep(3.0)
    lagging.cancel()
    windows = list(relay.mark_windows)
    await runner.cleanup()
    await fake.stop()
    return {"accepted": statuses.count(201), "ingest": ingest, "marks": len(windows),
            "p50": pct(windows, 0.5), "p99": pct(windows, 0.99), "max": max(windows, default=0.0),
            "lag_p99": pct(lags, 0.99), "lag_max": max(lags, default=0.0)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actions", type=int, default=300)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--rounds", type=int, default=1, help="alternate shared-pool baseline and own pool")
    args = parser.parse_args()
    for _ in range(args.rounds):
        for shared in (True, False):
            async with fresh_database(args.database) as url:
                r = await run(args.actions, url, shared_pool=shared)
            mode = "shared pool (baseline)" if shared else "own pool"
            print(f"{args.database}, {mode}: {r['accepted']} accepted in {r['ingest']:.1f} s; {r['marks']} "
                  f"done-marks: p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms, "
                  f"max {r['max'] * 1000:.1f} ms; event-loop lag p99 {r['lag_p99'] * 1000:.1f} ms, "
                  f"max {r['lag_max'] * 1000:.1f} ms", flush=True)

if __name__ == "__main__":
    asyncio.run(main())
