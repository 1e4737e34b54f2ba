"""Benchmark the track record and the ingest cost of grants and pauses.

    python -m bench.bench_trust [--actions 1000000] [--databases sqlite,postgresql] [--runs 40] [--ingest 600]

1. `/ai-actions trust` (handlers.commands.answer_for: queries, suggestions, Block Kit) and `countersign
   trust`'s work (bot.autonomy.trust.records + suggestions over 30 days) on bench.bench_queries_seed's
   database (a year of actions; ~8% fall in the 30-day window), with a result reported for one action
   in ten. Target: p99 < 200 ms. Before timing, the daily rollup is built as production builds it
   (bot.autonomy.rollup.refresh, the app's scheduled job: every whole day up to an hour ago); its
   build time is reported. Today (and the window's partial first day) are read live. The garbage
   collector is set as the app sets it at startup (bot/app.py: gc.freeze, threshold 50,000): without
   it every other call paid a full collection of the process's objects (~100 ms).
2. Ingest: bot.actions.submit.submit called in-process, 16 at a time, with the grants and pauses in
   force read through bot.autonomy.state (20 grants and 3 pauses in the table, none matching) versus
   the same code with nothing to evaluate (bot.services' default source); rounds alternate A/B in one
   run so the machine's load hits both alike. Target: under 5 % of throughput.
Results: bench/results/bench_trust.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.bench_queries import pct, services
from bench.bench_queries_seed import PG_ADMIN, seed_postgresql, seed_sqlite
from bot.actions.submit import submit
from bot.autonomy import rollup
from bot.autonomy import trust as domain
from bot.autonomy.state import AutonomyState
from bot.contract.schemas import ActionIn
from bot.services import Services, _NoAutonomy
from handlers.listeners.commands import answer_for
from storage.models import AutonomyGrant, Pause
from storage.queries import agents

RESULTS_SQL = ("INSERT INTO action_results (action_id, agent_id, result, detail, evidence, request_hash, created_at) "
               "SELECT id, agent_id, CASE WHEN id % 30 = 0 THEN 'failed' ELSE 'succeeded' END, NULL, NULL, 'h', "
               "created_at FROM actions WHERE id % 10 = 0")
AUTONOMY = """
autonomy:
  promote: {min_decisions: 20, min_approval_rate: 0.95, max_failed_results: 0}
  demote: {max_override_rate: 0.3, max_failed_results: 2, window: 7d}
  grant_for: 30d
"""


async def trust_cases(svc: Services, runs: int) -> list[dict[str, Any]]:
    gc.freeze()  # as bot.app.Runtime.start does once the app is up (and `countersign trust` does)
    gc.set_threshold(50_000, 20, 100)
    async def slash(subject: str) -> None:
        await answer_for(svc, "U0VP", f"trust {subject}".strip())

    async def cli() -> None:
        now = svc.clock()
        async with svc.db.read_session() as session:
            records = await domain.records(session, now - timedelta(days=30), now)
            await domain.current_suggestions(svc, session, now, long=records)

    cases = {"/ai-actions trust": lambda: slash(""), "/ai-actions trust svc03": lambda: slash("svc03"),
             "countersign trust": cli}
    rows = []
    for name, case in cases.items():
        await case()  # warm
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            await case()
            times.append(time.perf_counter() - started)
        rows.append({"case": name, "p50": pct(times, 0.5), "p99": pct(times, 0.99), "runs": runs})
    return rows


async def ingest(svc: Services, n: int, rounds: int = 6) -> dict[str, float]:
    """Submissions per second, with (A) and without (B) the grants and pauses in force."""
    async with svc.db.session() as session:
        agent, _ = await agents.create(session, f"bench-{uuid.uuid4().hex[:6]}")
        now = datetime.now(UTC)
        for i in range(20):
            session.add(AutonomyGrant(agent="other", service=f"svc{i:02d}", action_type="scale_down",
                                      environment="production", kind="promote", decision="granted",
                                      mode="acknowledge", previous_mode="approve", by="U0VP", at=now,
                                      until=now + timedelta(days=30)))
        for target in ("svc30", "svc31", "agent:other"):
            session.add(Pause(target=target, service=None if target.startswith("agent") else target,
                              agent="other" if target.startswith("agent") else None, by="U0VP", reason="bench",
                              started_at=now))
        await session.commit()
    req = ActionIn.model_validate({"kind": "proposed", "service": "svc05", "action_type": "scale_down",
                                   "summary": "Scale down", "rationale": "CPU low", "environment": "staging"})
    sources = {"with": AutonomyState(svc.db), "without": _NoAutonomy()}
    totals = {k: 0.0 for k in sources}
    sem = asyncio.Semaphore(16)

    async def one() -> None:
        async with sem:
            await submit(svc, agent, req, raw={})

    await asyncio.gather(*(one() for _ in range(max(16, n // rounds))))  # warm: not counted
    for r in range(rounds):
        for name in (("with", "without") if r % 2 == 0 else ("without", "with")):
            svc.autonomy = sources[name]  # type: ignore[assignment]
            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n // rounds)))
            totals[name] += time.perf_counter() - started
    per = n // rounds * rounds
    return {name: per / seconds for name, seconds in totals.items()}


async def build(svc: Services) -> dict[str, float]:
    """The rollup from nothing (every day of the seeded year), then the job's next run (nothing due)."""
    started = time.perf_counter()
    days = await rollup.refresh(svc)
    built = time.perf_counter() - started
    started = time.perf_counter()
    await rollup.refresh(svc)
    return {"rollup_days": days, "rollup_build": built, "rollup_idle": time.perf_counter() - started}


async def run(kind: str, n: int, runs: int, ingest_n: int) -> dict[str, Any]:
    from bench.bench_queries_seed import policy_text

    text = policy_text() + AUTONOMY
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/bench.db"
            svc = await services(f"sqlite+aiosqlite:///{path}")
            svc.policy = type(svc.policy).model_validate(__import__("yaml").safe_load(text))
            seeded = await seed_sqlite(svc, path, n)
            async with svc.db.session() as session:
                await session.exec(__import__("sqlalchemy").text(RESULTS_SQL))  # type: ignore[call-overload]
                await session.commit()
            built = await build(svc)
            svc.autonomy = AutonomyState(svc.db)
            rows = await trust_cases(svc, runs)
            rates = await ingest(svc, ingest_n)
            await svc.db.dispose()
            return {"rows": rows, "seeded": seeded, "ingest": rates, **built}
    name = f"cs_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    try:
        svc = await services(dsn.replace("postgresql://", "postgresql+asyncpg://"))
        svc.policy = type(svc.policy).model_validate(__import__("yaml").safe_load(text))
        seeded = await seed_postgresql(svc, dsn, n)
        conn = await asyncpg.connect(dsn)
        await conn.execute(RESULTS_SQL)
        await conn.execute("ANALYZE")
        built = await build(svc)
        await conn.execute("ANALYZE")
        await conn.close()
        svc.autonomy = AutonomyState(svc.db)
        rows = await trust_cases(svc, runs)
        rates = await ingest(svc, ingest_n)
        await svc.db.dispose()
        return {"rows": rows, "seeded": seeded, "ingest": rates, **built}
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def report(results: dict[str, dict[str, Any]], n: int, command: str, load: tuple[float, float]) -> str:
    lines = [
        "# The track record and the cost of grants and pauses at ingest", "",
        f"`{command}`: {n:,} actions over a year (bench.bench_queries_seed; ~8% in the 30-day window), a result "
        f"for one action in ten; {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {load[0]:.1f} at the "
        f"start, {load[1]:.1f} at the end (other engineers' tests shared the 2 cores).", "",
        "## `/ai-actions trust` and `countersign trust` (target p99 < 200 ms)", "",
        "| database | case | runs | p50 ms | p99 ms | target |", "|---|---|---:|---:|---:|---|",
    ]
    for db, r in results.items():
        for row in r["rows"]:
            lines.append(f"| {db} | `{row['case']}` | {row['runs']} | {row['p50']:.1f} | {row['p99']:.1f} | "
                         f"{'met' if row['p99'] < 200 else 'MISSED'} |")
    lines += ["", "## Ingest with and without grants and pauses (target: under 5 % of throughput)", "",
              "| database | with (submissions/s) | without | cost |", "|---|---:|---:|---:|"]
    for db, r in results.items():
        w, wo = r["ingest"]["with"], r["ingest"]["without"]
        lines.append(f"| {db} | {w:.0f} | {wo:.0f} | {(1 - w / wo) * 100:+.1f} % |")
    lines += ["", "Seeding: " + ", ".join(f"{db} {r['seeded']:.0f} s" for db, r in results.items()), "",
              "Rollup build (bot.autonomy.rollup.refresh over the seeded year, then its next run with nothing "
              "due): " + ", ".join(f"{db} {r['rollup_days']:.0f} days in {r['rollup_build']:.1f} s, next run "
                                   f"{r['rollup_idle'] * 1000:.0f} ms" for db, r in results.items()), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actions", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--ingest", type=int, default=600)
    parser.add_argument("--output", default="bench/results/bench_trust.md")
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
    results = {kind: asyncio.run(run(kind, args.actions, args.runs, args.ingest))
               for kind in args.databases.split(",")}
    command = (f"python -m bench.bench_trust --actions {args.actions} --databases {args.databases} "
               f"--runs {args.runs} --ingest {args.ingest}")
    text = report(results, args.actions, command, (load0, os.getloadavg()[0]))
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
