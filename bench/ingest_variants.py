"""Ingest throughput (POST /v1/actions over real HTTP) with the audit ledger and without it.

The "without" build is constructed here, for the benchmark only: `storage.ledger.append` is
swapped for a no-op for the duration of a round. Everything else is the same app, same
database kind, same requests. Rounds alternate (with, without, without, with, ...) so drift on a
shared machine falls on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
from aiohttp import web

from bot.app import create_app
from bot.config import Settings
from bot.policy.rules import parse_policy
from storage.ledger import chain as ledger
from storage.queries import agents

POLICY = """
leadership: {channel: C0LEADERS, users: [U0VP]}
tiers:
  tier1:
    escalation: [{notify: owner, after: 0s}, {notify: leadership, after: 15m}]
    timeout: 30m
services:
  checkout-api: {owner: U0OWNER, channel: C0CHECKOUT, tier: tier1}
  batch: {owner: U0BATCH, channel: C0BATCH}
rules:
  - match: {tier: tier1, environment: production}
    mode: approve
  - mode: autonomous
"""
CONCURRENCY = 8


@contextlib.contextmanager
def ledger_variant(enabled: bool) -> Iterator[None]:
    """The ledger as built, or `append` as a no-op (benchmark only: tests never do this)."""
    if enabled:
        yield
        return
    real = ledger.append

    async def no_append(*_: Any, **__: Any) -> None:
        return None

    ledger.append = no_append  # type: ignore[assignment]
    try:
        yield
    finally:
        ledger.append = real  # type: ignore[assignment]


def body(i: int) -> dict[str, Any]:
    """Half need approval (submission + page entries), half are autonomous (submission + decision)."""
    approve = i % 2 == 0
    return {
        "kind": "proposed" if approve else "executed",
        "service": "checkout-api" if approve else "batch",
        "action_type": "scale_down",
        "summary": f"Scale down, request {i}",
        "rationale": "CPU under 20% for 3 hours; saving cost",
        "confidence": 0.82,
        "evidence": [{"label": "CPU dashboard", "url": "https://grafana.example.com/d/cpu"}],
        "model": {"provider": "example", "name": "ops-agent", "version": "2026-01"},
    }


async def one_round(url: str, posts: int, enabled: bool) -> tuple[float, float]:
    """Requests per second for `posts` submissions from CONCURRENCY agents at once, and this
    process's CPU milliseconds per request (server, SQLite's thread, and the client, alike in both
    variants): the steadier figure on a machine that others are loading."""
    settings = Settings(SLACK_BOT_TOKEN="xoxb-bench", SLACK_SIGNING_SECRET="bench", DATABASE_URL=url,
                        _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings, policy=parse_policy(POLICY, "bench-policy.yml"), background=False)
    runner = web.AppRunner(app, access_log=None)
    with ledger_variant(enabled):
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        from bot.api.routes import SERVICES

        async with app[SERVICES].db.session() as session:
            _, token = await agents.create(session, "bench-agent")
            await session.commit()
        queue = iter(range(posts))
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as http:

            async def agent() -> None:
                for i in queue:
                    async with http.post("/v1/actions", json=body(i)) as resp:
                        assert resp.status == 201, await resp.text()

            started, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(agent() for _ in range(CONCURRENCY)))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        await runner.cleanup()
    return posts / elapsed, cpu / posts * 1000


Fresh = Callable[[str], contextlib.AbstractAsyncContextManager[str]]


async def measure_ingest(kind: str, fresh_database: Fresh, posts: int, rounds: int = 3) -> dict[str, Any]:
    rates: dict[bool, list[float]] = {True: [], False: []}
    cpus: dict[bool, list[float]] = {True: [], False: []}
    for r in range(rounds):
        for enabled in ((True, False) if r % 2 == 0 else (False, True)):
            async with fresh_database(kind) as url:
                rate, cpu = await one_round(url, posts, enabled)
            rates[enabled].append(rate)
            cpus[enabled].append(cpu)
            print(f"  {kind}: round {r + 1} {'with' if enabled else 'without'} ledger: {rate:,.0f} req/s, "
                  f"{cpu:.2f} ms CPU/request", flush=True)
    with_ledger, without = statistics.median(rates[True]), statistics.median(rates[False])
    cpu_with, cpu_without = statistics.median(cpus[True]), statistics.median(cpus[False])
    return {"database": kind, "posts": posts, "with": with_ledger, "without": without,
            "overhead": 1 - with_ledger / without, "cpu_with": cpu_with, "cpu_without": cpu_without,
            "cpu_overhead": cpu_with / cpu_without - 1, "rounds": rates}
