"""The servers bench.bench_ingest measures, each run in its own child process (`--serve`): the
raw-driver baseline and countersign (optionally with the ledger switched off)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

import asyncpg


async def serve_raw(url: str, port: int) -> None:
    """One INSERT and one commit per request, straight on the driver."""
    from aiohttp import web

    create = "CREATE TABLE IF NOT EXISTS raw_rows (id {}, body TEXT NOT NULL)"
    if url.startswith("sqlite"):
        import aiosqlite

        conn = await aiosqlite.connect(url.split("///", 1)[1], isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
            await conn.execute(f"PRAGMA {pragma}")
        await conn.execute(create.format("INTEGER PRIMARY KEY AUTOINCREMENT"))
        lock = asyncio.Lock()

        async def insert(text: str) -> int:
            async with lock:  # one transaction at a time, as SQLite has one writer
                await conn.execute("BEGIN IMMEDIATE")
                cursor = await conn.execute("INSERT INTO raw_rows (body) VALUES (?) RETURNING id", (text,))
                row = await cursor.fetchone()
                await conn.execute("COMMIT")
            assert row is not None
            return int(row[0])
    else:
        pool = await asyncpg.create_pool(url.replace("+asyncpg", ""), min_size=10, max_size=20)
        await pool.execute(create.format("BIGSERIAL PRIMARY KEY"))

        async def insert(text: str) -> int:
            return int(await pool.fetchval("INSERT INTO raw_rows (body) VALUES ($1) RETURNING id", text))

    async def handler(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        new_id = await insert(json.dumps(body))
        return web.json_response({"id": new_id, "status": "pending"}, status=201)

    app = web.Application()
    app.router.add_post("/v1/actions", handler)
    await _run(app, port)


async def serve_countersign(url: str, port: int, ledger_on: bool, reuse_port: bool) -> None:
    from bot.app import create_app
    from bot.cli.main import collect_less
    from bot.config import Settings
    from bot.policy.rules import parse_policy
    from storage.ledger import chain as ledger
    from storage.queries import agents
    from tests.policies import FAST

    if not ledger_on:  # benchmark only: the same app with `ledger.append` a no-op
        async def no_append(*_: Any, **__: Any) -> None:
            return None

        ledger.append = no_append  # type: ignore[assignment]
    settings = Settings(SLACK_BOT_TOKEN="xoxb-bench", SLACK_SIGNING_SECRET="s", SLACK_API_URL="http://127.0.0.1:9/",
                        DATABASE_URL=url, _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings, policy=parse_policy(FAST), background=False)
    from bot.api.routes import SERVICES

    async def add_agent(_: Any) -> None:
        token_file = Path(os.environ["BENCH_TOKEN_FILE"])
        if await asyncio.to_thread(token_file.exists):  # a second worker: the first made the agent
            return
        async with app[SERVICES].db.session() as session:
            _, token = await agents.create(session, f"bench-{uuid.uuid4().hex[:6]}")
            await session.commit()
        await asyncio.to_thread(token_file.write_text, token)

    app.on_startup.append(add_agent)
    collect_less(app)  # as `countersign serve` does
    await _run(app, port, reuse_port=reuse_port)


async def _run(app: Any, port: int, *, reuse_port: bool = False) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_port=reuse_port or None).start()
    await asyncio.Event().wait()


