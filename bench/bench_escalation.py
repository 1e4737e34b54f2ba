"""Escalation sweeper: how late steps fire, what a sweep costs as pending actions grow, and
whether replicas ever fire a step twice.

    python -m bench.bench_escalation [--actions 10000] [--spread 60] [--databases sqlite,postgresql]
                                     [--replicas 3] [--small 1000] [--large 100000]

1. Lateness: N pending actions are seeded in bulk (SQL) with deadlines spread evenly over S
   seconds; the sweeper runs as the app runs it (bot.sweeper.Sweeper scheduled on APScheduler's
   AsyncIOScheduler, the app's default 0.5 s interval) in separate processes: one on SQLite, R
   replicas on PostgreSQL. Lateness is escalation_steps.late_seconds (fired_at - due_at), p50/p99.
   Only the sweeper runs (it commits the step, the ledger entry and the outbox rows); sending the
   outbox is the relay's and is measured by bench_outbox.
2. Cost per tick: with 1,000 and with 100,000 pending actions (not due), the time of a sweep that
   finds nothing due, and of one that fires 100 due actions. Claiming reads ix_actions_next_at
   (a range scan bounded by LIMIT), so both must stay flat; the query plan is printed as proof.
3. Duplicates (PostgreSQL, R replicas, from run 1): steps per (action, step) and card messages
   per action in the outbox; both must be exactly one.

Targets: lateness p99 < 1 s; cost ratio 100k/1k <= 1.5; zero duplicates.
Results: bench/results/bench_escalation.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlmodel import col

from bench.common import fresh_database
from bot.config import Settings
from bot.escalation.snapshot import freeze
from bot.escalation.sweeper import Sweeper
from bot.policy.rules import evaluate, parse_policy
from bot.services import Services
from storage.db import Database
from storage.models import Action, EscalationStep, OutboxMessage
from storage.queries import agents

RESULTS = Path(__file__).parent / "results" / "bench_escalation.md"
POLICY = """
tiers:
  t1:
    escalation: [{notify: owner, after: 0s}, {notify: secondary, after: 1h}]
    timeout: 2h
services:
  checkout-api: {owner: U0OWNER, secondary: U0DANA, tier: t1}
rules:
  - mode: approve
"""
TICK_SECONDS = 0.5  # bot.config's default COUNTERSIGN_TICK_SECONDS
ACTIONS = Action.__table__  # type: ignore[attr-defined]




async def seed(db: Database, deadlines: list[datetime], *, chunk: int = 5000) -> None:
    """Pending actions due at `deadlines`, inserted in bulk (created_at == its owner page's due time)."""
    policy = parse_policy(POLICY, "bench")
    match = evaluate(policy, "checkout-api", "scale_down", "production", "proposed")
    frozen = freeze(policy, "checkout-api", match).to_json()
    async with db.session() as session:
        agent, _ = await agents.create(session, f"bench-{uuid.uuid4().hex[:8]}")
        await session.flush()
        agent_id = agent.id
        await session.commit()
    for start in range(0, len(deadlines), chunk):
        common = {"agent_id": agent_id, "kind": "proposed", "service": "checkout-api",
                  "action_type": "scale_down", "summary": "Scale checkout-api down", "rationale": "idle",
                  "environment": "production", "mode": "approve", "status": "pending",
                  "policy_violation": False, "frozen": frozen, "owner": "U0OWNER", "version": 0}
        rows = [{**common, "created_at": due, "updated_at": due, "next_at": due}
                for due in deadlines[start:start + chunk]]
        async with db.session() as session:
            await session.execute(insert(ACTIONS), rows)
            await session.commit()


def services(url: str) -> Services:
    settings = Settings(_env_file=None, DATABASE_URL=url)  # type: ignore[call-arg]
    return Services(settings=settings, db=Database(url), policy=parse_policy(POLICY, "bench"))


# --- 1. lateness, in sweeper processes --------------------------------------------------------


def replica_main(url: str, ready: Any, stop: Any) -> None:
    asyncio.run(_replica(url, ready, stop))


async def _replica(url: str, ready: Any, stop: Any) -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    svc = services(url)
    sweeper = Sweeper(svc)
    scheduler = AsyncIOScheduler(timezone="UTC")
    sweeper.schedule(scheduler, TICK_SECONDS)  # exactly as bot.app schedules it
    scheduler.start()
    await sweeper.run()  # connected and warm before the clock starts
    ready.set()
    while not stop.is_set():  # noqa: ASYNC110 (a multiprocessing Event, set by the parent process)
        await asyncio.sleep(0.2)
    await sweeper.stop()
    scheduler.shutdown(wait=False)
    await svc.db.dispose()


async def lateness(kind: str, actions: int, spread: float, replicas: int) -> dict[str, Any]:
    async with fresh_database(kind) as url:
        db = Database(url)
        await db.migrate()
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        readiness = [ctx.Event() for _ in range(replicas)]
        procs = [ctx.Process(target=replica_main, args=(url, ready, stop)) for ready in readiness]
        for proc in procs:
            proc.start()
        while not all(ready.is_set() for ready in readiness):  # noqa: ASYNC110 (set by the children)
            await asyncio.sleep(0.1)
        # Seeded while the sweepers already tick: the first deadline falls after seeding ends.
        start = datetime.now(UTC) + timedelta(seconds=2 + actions / 2000)
        await seed(db, [start + timedelta(seconds=spread * i / actions) for i in range(actions)])
        until = start.timestamp() + spread + 15
        while time.time() < until - 15:  # noqa: ASYNC110 (waiting out the spread)
            await asyncio.sleep(1)
        while time.time() < until:  # stop early once everything fired
            async with db.session() as session:
                fired = await _count(session, select(col(EscalationStep.id)).subquery())
                await session.commit()
            if fired >= actions:
                break
            await asyncio.sleep(0.5)
        stop.set()
        for proc in procs:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.kill()
        async with db.session() as session:
            late = sorted((await session.execute(select(col(EscalationStep.late_seconds)))).scalars().all())
            per_step = await _count(session, select(col(EscalationStep.action_id), col(EscalationStep.step))
                                    .group_by(col(EscalationStep.action_id), col(EscalationStep.step))
                                    .having(func.count() > 1).subquery())
            is_card = col(OutboxMessage.purpose) == "card:dm:owner"
            per_card = await _count(session, select(col(OutboxMessage.action_id)).where(is_card)
                                    .group_by(col(OutboxMessage.action_id))
                                    .having(func.count() > 1).subquery())
            cards = await _count(session, select(col(OutboxMessage.id)).where(is_card).subquery())
            await session.commit()
        await db.dispose()
    return {"database": kind, "replicas": replicas, "actions": actions, "fired": len(late),
            "p50": pct(late, 50), "p99": pct(late, 99), "max": late[-1] if late else None,
            "duplicate_steps": per_step, "duplicate_cards": per_card, "cards": cards}


async def _count(session: Any, subquery: Any) -> int:
    return int((await session.execute(select(func.count()).select_from(subquery))).scalar_one())


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, round(len(values) * p / 100) - 1))]


# --- 2. cost per tick ---------------------------------------------------------------------------


async def tick_costs(kind: str, sizes: tuple[int, int], due: int = 100,
                     rounds: int = 7) -> list[dict[str, Any]]:
    """Both sizes side by side, measured in alternation, so a busy host slows both alike."""
    async with fresh_database(kind) as small_url, fresh_database(kind) as large_url:
        setups: list[tuple[Services, Sweeper, int, list[float], list[float]]] = []
        for url, pending in zip((small_url, large_url), sizes, strict=True):
            svc = services(url)
            await svc.db.migrate()
            later = datetime.now(UTC) + timedelta(days=1)
            await seed(svc.db, [later + timedelta(seconds=i / 100) for i in range(pending)])
            if kind == "postgresql":
                async with svc.db.session() as session:
                    await session.execute(text("ANALYZE actions"))
                    await session.commit()
            setups.append((svc, Sweeper(svc), pending, [], []))
        for _ in range(rounds):
            for _ in range(10):  # a tick that finds nothing due costs milliseconds: take more, interleaved
                for _svc, sweeper, _pending, idle, _busy in setups:
                    t = time.perf_counter()
                    assert await sweeper.tick() == 0
                    idle.append(time.perf_counter() - t)
            for svc, sweeper, _pending, _idle, busy in setups:
                await seed(svc.db, [datetime.now(UTC) - timedelta(seconds=1)] * due)
                t = time.perf_counter()
                assert await sweeper.tick() == due
                busy.append(time.perf_counter() - t)
        results = []
        for svc, _sweeper, pending, idle, busy in setups:
            results.append({"database": kind, "pending": pending, "idle_ms": 1000 * statistics.median(idle),
                            "busy_ms": 1000 * statistics.median(busy), "plan": await query_plan(svc.db)})
            await svc.db.dispose()
    return results


async def query_plan(db: Database) -> str:
    from sqlalchemy.dialects import postgresql, sqlite


    due = col(Action.next_at)
    stmt = select(col(Action.id)).where(due.is_not(None), due <= datetime.now(UTC)).order_by(due).limit(100)
    async with db.session() as session:
        if db.dialect == "postgresql":
            sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
            rows = list((await session.execute(text("EXPLAIN " + sql))).scalars())
        else:
            sql = str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
            rows = [r[-1] for r in (await session.execute(text("EXPLAIN QUERY PLAN " + sql))).all()]
        await session.commit()
    return " / ".join(str(r).strip() for r in rows)


# --- report -------------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=60.0)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--replicas", type=int, default=3, help="sweeper processes on PostgreSQL")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--skip-lateness", action="store_true")
    args = parser.parse_args()
    kinds = [k for k in args.databases.split(",") if k]
    load_before = os.getloadavg()
    started = time.monotonic()
    runs = [] if args.skip_lateness else [
        await lateness(k, args.actions, args.spread, args.replicas if k == "postgresql" else 1)
        for k in kinds]
    costs = [c for k in kinds for c in await tick_costs(k, (args.small, args.large))]
    elapsed = time.monotonic() - started
    lines = [
        "# bench_escalation",
        "",
        f"`python -m bench.bench_escalation {' '.join(sys.argv[1:])}`".replace("  ", " ").replace(" `", "`"),
        "",
        f"Machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"load average {load_before[0]:.1f} at start and {os.getloadavg()[0]:.1f} at the end "
        f"(shared with other work); run took {elapsed:.0f} s.",
        "",
        f"## Lateness of step firing ({args.actions:,} actions due over {args.spread:.0f} s, "
        f"tick {TICK_SECONDS} s)",
        "",
        "| database | sweeper processes | fired | p50 s | p99 s | max s | duplicate steps "
        "| duplicate cards |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(f"| {r['database']} | {r['replicas']} | {r['fired']:,}/{r['actions']:,} "
                     f"| {fmt(r['p50'])} | "
                     f"{fmt(r['p99'])} | {fmt(r['max'])} | {r['duplicate_steps']} | {r['duplicate_cards']} "
                     f"({r['cards']:,} cards) |")
    lines += ["", "## Sweeper cost per tick (median of 70 idle and of 7 busy ticks, sizes alternated)", "",
              "| database | pending | nothing due, ms | 100 due, ms |", "|---|---|---|---|"]
    for c in costs:
        lines.append(f"| {c['database']} | {c['pending']:,} | {c['idle_ms']:.2f} | {c['busy_ms']:.1f} |")
    for kind in kinds:
        small = next(c for c in costs if c["database"] == kind and c["pending"] == args.small)
        large = next(c for c in costs if c["database"] == kind and c["pending"] == args.large)
        lines.append("")
        idle_ratio = large["idle_ms"] / small["idle_ms"]
        lines.append(f"{kind}: ratio {args.large:,}/{args.small:,} = {idle_ratio:.2f} "
                     f"(nothing due), {large['busy_ms'] / small['busy_ms']:.2f} (100 due). "
                     f"Claim plan: `{large['plan']}`")
    report = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(report)
    print(report)


if __name__ == "__main__":
    asyncio.run(main())
