"""What the benchmarks share: a fresh, empty database of either kind, and the app served with one agent."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from aiohttp import web

from bot.api.routes import SERVICES
from storage.queries import agents

PG_ADMIN = os.environ.get("COUNTERSIGN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@asynccontextmanager
async def fresh_database(kind: str) -> AsyncIterator[str]:
    """A SQLite file in a temporary directory, or a PostgreSQL database created (and dropped) for the run."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{tmp}/bench.db"
        return
    name = f"cs_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def serve_with_agent(app: web.Application, agent: str) -> tuple[web.AppRunner, int, str]:
    """Start `app` on a free loopback port and create one agent: (runner to clean up, port, token)."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with app[SERVICES].db.session() as session:
        _, token = await agents.create(session, agent)
        await session.commit()
    return runner, port, token
