"""Ingest benchmark: `POST /v1/actions` against a bare aiohttp handler, on SQLite and PostgreSQL.

    python -m bench.bench_ingest [--n 2000] [--concurrency 32] [--databases sqlite,postgresql]

Each server runs in its own process (`--serve`), the load generator in this one. The bare baseline
parses the same JSON and inserts one row through the same engine (storage.db.Database: the same
driver, pool and SQLite pragmas). Countersign does everything a real submission does: bearer-token
lookup, validation, policy, the frozen chain, the action row, its ledger entries, the first page in
the outbox and the escalation step, in one transaction. Background workers are off (no Slack here),
so both sides measure ingest alone. Results: bench/results/bench_ingest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

PG_ADMIN = os.environ.get("COUNTERSIGN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).parent / "results" / "bench_ingest.md"
BODY = {
    "kind": "proposed",
    "service": "checkout-api",
    "action_type": "scale_down",
    "summary": "Scale checkout-api from 12 to 8 pods",
    "rationale": "CPU under 20% for 3 hours; saving cost",
    "confidence": 0.82,
    "evidence": [{"label": "CPU dashboard", "url": "https://grafana.example.com/d/cpu"}],
}


# --- the servers (run in a child process) ----------------------------------------------------------


async def serve_bare(url: str, port: int) -> None:
    from aiohttp import web
    from sqlalchemy import JSON, BigInteger, Column, Integer, MetaData, Table, insert

    from storage.db import Database

    db = Database(url)
    metadata = MetaData()
    rows = Table("bench_rows", metadata, Column("id", BigInteger().with_variant(Integer(), "sqlite"),
                                                primary_key=True, autoincrement=True), Column("body", JSON))
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)

    async def handler(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        async with db.engine.begin() as conn:
            new_id = (await conn.execute(insert(rows).values(body=body).returning(rows.c.id))).scalar_one()
        return web.json_response({"id": new_id, "status": "pending"}, status=201)

    app = web.Application()
    app.router.add_post("/v1/actions", handler)
    await _run(app, port)


async def serve_countersign(url: str, port: int) -> None:
    from bot.app import create_app
    from bot.config import Settings
    from bot.policy.rules import parse_policy
    from storage.queries import agents
    from tests.policies import FAST

    settings = Settings(SLACK_BOT_TOKEN="xoxb-bench", SLACK_SIGNING_SECRET="s", SLACK_API_URL="http://127.0.0.1:9/",
                        DATABASE_URL=url, _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings, policy=parse_policy(FAST), background=False)
    from bot.api.routes import SERVICES

    async def add_agent(_: Any) -> None:
        async with app[SERVICES].db.session() as session:
            _, token = await agents.create(session, f"bench-{uuid.uuid4().hex[:6]}")
            await session.commit()
        await asyncio.to_thread(Path(os.environ["BENCH_TOKEN_FILE"]).write_text, token)

    app.on_startup.append(add_agent)
    await _run(app, port)


async def _run(app: Any, port: int) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


# --- the load generator ------------------------------------------------------------------------


async def load(url: str, token: str, n: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps(BODY).encode()
    remaining = iter(range(n))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            for _ in remaining:
                started = time.perf_counter()
                async with http.post(f"{url}/v1/actions", data=body, headers=headers) as resp:
                    await resp.read()
                    assert resp.status == 201, await resp.text()
                latencies.append(time.perf_counter() - started)

        warm = iter(range(100))
        for _ in warm:
            async with http.post(f"{url}/v1/actions", data=body, headers=headers) as resp:
                assert resp.status == 201, await resp.text()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {"rate": n / wall, "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000}


async def fresh_database(kind: str, tmp: str) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp}/bench-{uuid.uuid4().hex[:6]}.db", None
    name = f"cs_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}", name


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(which: str, url: str, port: int, token_file: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_TOKEN_FILE": str(token_file)}
    command = [sys.executable, "-m", "bench.bench_ingest", "--serve", which, "--url", url,
               "--port", str(port)]
    return subprocess.Popen(command, env=env)


async def run_one(which: str, kind: str, n: int, concurrency: int, tmp: str) -> dict[str, float]:
    url, pg_name = await fresh_database(kind, tmp)
    port = free_port()
    token_file = Path(tmp) / f"token-{port}"
    proc = spawn(which, url, port, token_file)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                assert proc.poll() is None, f"the {which} server exited"
                try:
                    async with http.post(f"http://127.0.0.1:{port}/v1/actions", data=b"{}") as resp:
                        if resp.status and (which == "bare" or token_file.exists()):
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)  # polling readiness
        # (the bare probe above inserted one row: harmless)
        token = "none" if which == "bare" else token_file.read_text()
        return await load(f"http://127.0.0.1:{port}", token, n, concurrency)
    finally:
        proc.terminate()
        proc.wait(30)
        if pg_name:
            await drop_database(pg_name)


async def main(args: argparse.Namespace) -> None:
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.databases.split(","):
            bare = await run_one("bare", kind, args.n, args.concurrency, tmp)
            ours = await run_one("countersign", kind, args.n, args.concurrency, tmp)
            rows.append((kind, bare, ours))
            print(f"{kind}: bare {bare['rate']:.0f}/s p50 {bare['p50']:.1f} ms p99 {bare['p99']:.1f} ms | "
                  f"countersign {ours['rate']:.0f}/s p50 {ours['p50']:.1f} ms p99 {ours['p99']:.1f} ms | "
                  f"ratio {ours['rate'] / bare['rate']:.2f}", flush=True)
    lines = [
        "# Ingest benchmark (`POST /v1/actions`)",
        "",
        f"Command: `python -m bench.bench_ingest --n {args.n} --concurrency {args.concurrency}`  ",
        f"Machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}; "
        "server and load generator on the same machine, each server in its own process; "
        f"1-minute load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after "
        "(other work on the machine shows up here).",
        "",
        f"{args.n} submissions (after 100 warm-up) at {args.concurrency} concurrent clients.",
        "",
        "| database | server | actions/s | p50 ms | p99 ms | throughput vs bare |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for kind, bare, ours in rows:
        lines.append(f"| {kind} | bare aiohttp + 1 insert | {bare['rate']:.0f} | {bare['p50']:.1f} | "
                     f"{bare['p99']:.1f} | 1.00 |")
        lines.append(f"| {kind} | countersign | {ours['rate']:.0f} | {ours['p50']:.1f} | {ours['p99']:.1f} | "
                     f"{ours['rate'] / bare['rate']:.2f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = RESULTS.read_text().split("\n## Notes", 1) if RESULTS.exists() else ["", ""]
    notes = "\n## Notes" + previous[1] if len(previous) > 1 and previous[1] else ""
    RESULTS.write_text("\n".join(lines) + "\n" + notes)
    print(f"wrote {RESULTS}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--serve", choices=["bare", "countersign"])
    parser.add_argument("--url")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve == "bare":
        asyncio.run(serve_bare(args.url, args.port))
    elif args.serve == "countersign":
        asyncio.run(serve_countersign(args.url, args.port))
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
