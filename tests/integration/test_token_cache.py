"""The bearer-token cache (bot.actions.tokens): a burst from a new agent reads its token once, a
lookup that a revocation's emptying overtook is not cached, a dropped connection is read again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event

from bot.actions.tokens import TokenCache
from storage.db import Database
from tests.conftest import Running, proposal
from tests.writer_helpers import writer_of


class TokenReads:
    """Counts the statements that read agents by token on a database's engine."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        self._engine = db.engine.sync_engine
        event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM agents" in statement and "token_hash" in statement:
            self.count += 1

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)


@pytest.fixture
def token_reads(running: Running) -> Iterator[TokenReads]:
    reads = TokenReads(running.svc.db)
    yield reads
    reads.close()


async def test_a_burst_from_a_new_token_reads_it_once(running: Running, token_reads: TokenReads) -> None:
    token, _ = await running.add_agent("bursty")
    token_reads.count = 0
    tokens = TokenCache(running.svc)
    found = await asyncio.gather(*(tokens.agent(token) for _ in range(30)))
    assert {a.name for a in found if a is not None} == {"bursty"} and None not in found
    assert token_reads.count == 1
    await tokens.agent(token)  # cached now
    assert token_reads.count == 1
    # Through the API too: 30 submissions at once from a token this process never saw.
    other, _ = await running.add_agent("bursty-api")
    token_reads.count = 0
    answers = await asyncio.gather(*(running.submit(proposal(summary=f"burst {i}"), token=other) for i in range(30)))
    assert [s for s, _ in answers] == [201] * 30
    assert token_reads.count <= 3  # 30 without sharing; a few when the requests arrive spread out


async def test_a_lookup_overtaken_by_an_emptying_answers_but_is_not_cached(
        running: Running, token_reads: TokenReads) -> None:
    """It may have read the token before a revocation; cached, a later request would take it in the
    new epoch and no batch would re-check it."""
    token, _ = await running.add_agent("overtaken")
    token_reads.count = 0
    tokens = TokenCache(running.svc)
    lookup = asyncio.create_task(tokens.agent(token))
    await asyncio.sleep(0)  # the lookup has begun in this epoch
    tokens.saw_stamp(-1)  # a batch read a moved revocation stamp: the cache is emptied
    found = await lookup
    assert found is not None and found.name == "overtaken"
    await tokens.agent(token)
    assert token_reads.count == 2  # read again in the new epoch, not taken from the cache
    await tokens.agent(token)
    assert token_reads.count == 2  # the second read was cached: it began in the current epoch


async def test_a_token_read_on_a_dead_connection_is_read_again(running: Running, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite has no backends to kill")
    token, _ = await running.add_agent("after-a-restart")
    await writer_of(running).stop()  # nothing else takes the pooled connection meanwhile
    admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1 AND pid <> pg_backend_pid()", database_url.rsplit("/", 1)[1])
    finally:
        await admin.close()
    found = await TokenCache(running.svc).agent(token)
    assert found is not None and found.name == "after-a-restart"
