"""Async engines for SQLite (aiosqlite) and PostgreSQL (asyncpg), and schema migrations."""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import json_text

MIGRATIONS = Path(__file__).parent / "migrations"
READ_ONLY = "countersign_read_only"
URGENT = "countersign_urgent"  # a short write that must not queue behind a burst (the outbox done-mark)
WRITER_WAIT_SECONDS = 30.0  # like busy_timeout: a writer waiting longer fails instead of hanging
# PostgreSQL: a statement waiting on a lock, or running, longer than this fails (the API answers
# 503 with Retry-After) instead of holding a pooled connection for minutes; a request waiting for
# a pooled connection gives up after POOL_TIMEOUT_SECONDS.
LOCK_TIMEOUT_MS = 5_000
STATEMENT_TIMEOUT_MS = 15_000
POOL_TIMEOUT_SECONDS = 5.0
# SQLSTATEs that mean "the database cannot serve now, retry": the connection was terminated
# (pg_terminate_backend, restart), a lock or statement timeout, too many connections.
DROPPED_STATES = frozenset({"57P01", "57P02", "57P03", "08000", "08003", "08006"})
BUSY_STATES = frozenset({"55P03", "57014", "53300", "40001", "40P01"})


class SchemaNotCurrent(RuntimeError):
    """The database is unmigrated or behind the code's migrations."""


class WriterQueue:
    """SQLite's writer lock within one process, first come first served, except that urgent
    writers (the outbox done-mark) go before every ordinary one still waiting."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())

    async def acquire(self, urgent: bool = False) -> None:
        if not self._held and not any(self._waiting):
            self._held = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting[0 if urgent else 1]
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed over just as the waiter gave up: pass it on
            else:
                queue.remove(future)
            raise

    def release(self) -> None:
        for queue in self._waiting:
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)  # handed over: still held
                    return
        self._held = False


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)


def dropped(exc: BaseException) -> bool:
    """The connection went away under the statement (worth one retry on a fresh connection)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return _sqlstate(exc) in DROPPED_STATES or isinstance(exc, ConnectionError)


def unavailable(exc: BaseException) -> bool:
    """The database cannot serve now (dropped, locked, timed out, no pooled connection, SQLite busy):
    the API answers 503 with Retry-After, never 500."""
    if dropped(exc) or isinstance(exc, SATimeoutError | TimeoutError | OSError):
        return True
    if _sqlstate(exc) in BUSY_STATES:
        return True
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and _sqlstate(exc) is None
                                                 and "connection" in str(exc).lower())


def _configure_sqlite(engine: AsyncEngine, writers: WriterQueue) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so we can BEGIN IMMEDIATE below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # Writers of this process queue here, first come first served, before asking SQLite for its
    # writer lock: SQLite's own busy handler polls with sleeps of up to 100 ms, which under 30
    # concurrent submissions left the lock idle between polls and gave p99s of seconds.
    holds = "countersign_holds_writer_lock"

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Every transaction takes the writer lock up front: no lock upgrade can deadlock,
        # and a claim (sweeper, outbox relay, ledger append) is serialized across processes.
        # Read-only sessions (Database.read_session) take none: WAL readers never wait for writers.
        if conn.get_execution_options().get(READ_ONLY, False):
            conn.exec_driver_sql("BEGIN")
            return
        if not conn.info.get(holds):
            urgent = bool(conn.get_execution_options().get(URGENT, False))
            await_only(asyncio.wait_for(writers.acquire(urgent), WRITER_WAIT_SECONDS))
            conn.info[holds] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(conn.info)
            raise

    def _release(info: dict[str, Any]) -> None:
        if info.pop(holds, False):
            writers.release()

    # The transaction is over once its connection is back in the pool (after COMMIT or ROLLBACK
    # ran), or when the connection is dropped.
    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi: Any, record: Any) -> None:
        _release(record.info)

    @event.listens_for(engine.sync_engine, "close")
    def _on_close(_dbapi: Any, record: Any) -> None:
        _release(record.info)

    @event.listens_for(engine.sync_engine, "invalidate")
    def _on_invalidate(_dbapi: Any, record: Any, _exc: Any) -> None:
        _release(record.info)


JSON_CODEC: dict[str, Any] = {"json_serializer": json_text.dumps}


class Database:
    """One engine and its session factory. `dialect` is "sqlite" or "postgresql"."""

    def __init__(self, url: str, *, pool_size: int = 10, lock_timeout_ms: int = LOCK_TIMEOUT_MS,
                 statement_timeout_ms: int = STATEMENT_TIMEOUT_MS, pool_timeout: float = POOL_TIMEOUT_SECONDS) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"pool_pre_ping": False, **JSON_CODEC}
        if url.startswith("postgresql"):
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_timeout=pool_timeout,
                          connect_args={"server_settings": {"lock_timeout": str(lock_timeout_ms),
                                                            "statement_timeout": str(statement_timeout_ms)}})
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self.dialect = self.engine.dialect.name
        writers = WriterQueue()
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine, writers)
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self.read_engine = self.engine.execution_options(**{READ_ONLY: True})
        self.read_sessions = async_sessionmaker(self.read_engine, class_=AsyncSession, expire_on_commit=False)
        # The outbox done-mark: its own small pool, so it never waits for a connection behind a burst
        # of submissions, and on SQLite the head of the (shared) writer queue.
        self._urgent_base = create_async_engine(url, **JSON_CODEC, **({"pool_size": 2, "max_overflow": 2}
                                                                       if self.dialect == "postgresql" else {}))
        if self.dialect == "sqlite":
            _configure_sqlite(self._urgent_base, writers)
        self.urgent_engine = self._urgent_base.execution_options(**{URGENT: True})
        self.urgent_sessions = async_sessionmaker(self.urgent_engine, class_=AsyncSession, expire_on_commit=False)

    def session(self) -> AsyncSession:
        return self.sessions()

    def read_session(self) -> AsyncSession:
        """For reads only (a write in it could fail with SQLITE_BUSY): on SQLite it takes no writer
        lock, so token checks and GETs never queue behind submissions. The same as session() on
        PostgreSQL."""
        return self.read_sessions()

    def urgent_session(self) -> AsyncSession:
        """For a short write that must not wait behind a burst: marking a sent message done (the
        shorter that wait, the smaller the window in which a crash re-sends it)."""
        return self.urgent_sessions()

    async def dispose(self) -> None:
        await self._urgent_base.dispose()
        await self.engine.dispose()

    # --- migrations -------------------------------------------------------------------------
    def _alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    async def migrate(self) -> str:
        """Upgrade the schema to the newest revision; returns it."""
        cfg = self._alembic_config()

        def _upgrade(connection: Connection) -> None:
            if connection.dialect.name == "postgresql":
                # Replicas starting together: one migrates, the others wait and find nothing to do.
                # (a migration may wait for another replica's, and run long: no timeouts here)
                connection.exec_driver_sql("SET LOCAL lock_timeout = 0")
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7428301)")
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(_upgrade)
        except CommandError as exc:  # e.g. a revision this version does not know: a newer database
            raise SchemaNotCurrent(f"cannot migrate the database: {exc} "
                                   "(is it from a newer Countersign?)") from exc
        return self.head_revision()

    def head_revision(self) -> str:
        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None
        return head

    async def current_revision(self) -> str | None:
        def _current(connection: Connection) -> str | None:
            return MigrationContext.configure(connection).get_current_revision()

        async with self.read_engine.connect() as conn:
            return await conn.run_sync(_current)

    async def check_schema(self) -> None:
        """Raise SchemaNotCurrent with an actionable message unless the schema is at head."""
        current, head = await self.current_revision(), self.head_revision()
        if current is None:
            raise SchemaNotCurrent(
                "the database has no Countersign schema yet: run `countersign migrate` "
                "(or `countersign serve --migrate`)"
            )
        if current != head:
            raise SchemaNotCurrent(
                f"the database schema is at revision {current}, this version needs {head}: "
                "run `countersign migrate` (or `countersign serve --migrate`)"
            )
