"""The installed `countersign` command given a DATABASE_URL it cannot open: a SQLite file in a
directory that does not exist or a file that is not a database, a PostgreSQL database that does
not exist, a login PostgreSQL refuses. Each is one line naming the database and the reason, exit 2,
never a traceback (they were tracebacks: only OSError was caught). And a reader that closes the
pipe early (`audit export | head`) is not told the database is unreachable."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.demo.fakeslack import FakeSlack
from storage.db import Database
from storage.ledger import chain as ledger
from tests.conftest import PG_ADMIN_URL
from tests.processes.test_cli import COMMAND, clean_env, countersign
from tests.processes.test_shutdown import serve_env

PG_BASE = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")


def _one_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "Event loop is closed" not in done.stderr, done.stderr[-2000:]
    for text in expected:
        assert text in done.stderr, done.stderr


async def test_a_sqlite_file_in_a_missing_directory(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/nowhere/countersign.db"
    for args in (("actions", "list"), ("audit", "verify"), ("agents", "add", "bot")):
        done = await countersign(*args, database_url=url, cwd=tmp_path)
        _one_line(done, f"error: cannot open the database {tmp_path}/nowhere/countersign.db",
                  f"the directory {tmp_path}/nowhere does not exist")
    assert not (tmp_path / "nowhere").exists()


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("these are my notes, not a database\n" * 100)
    done = await countersign("audit", "verify", database_url=f"sqlite+aiosqlite:///{tmp_path}/notes.db",
                             cwd=tmp_path)
    _one_line(done, f"cannot open the database {tmp_path}/notes.db: file is not a database")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_without_the_database_or_the_login(database_url: str, tmp_path: Path) -> None:
    """`database_url` only makes the test skip like the other PostgreSQL tests when none answers."""
    missing = f"cs_missing_{uuid.uuid4().hex[:12]}"
    done = await countersign("actions", "list", database_url=f"{PG_BASE}/{missing}", cwd=tmp_path)
    _one_line(done, "cannot open the database", f'database "{missing}" does not exist', "createdb")
    where = urlsplit(PG_ADMIN_URL)
    stranger = f"postgresql+asyncpg://nobody_{uuid.uuid4().hex[:8]}@{where.hostname}:{where.port or 5432}"
    done = await countersign("actions", "list", database_url=f"{stranger}/{missing}", cwd=tmp_path)
    _one_line(done, "cannot log in to the database")


async def test_serve_with_a_database_it_cannot_open(fake_slack: FakeSlack, tmp_path: Path) -> None:
    environment = serve_env(f"sqlite+aiosqlite:///{tmp_path}/nowhere/c.db", fake_slack.url, tmp_path)
    served = await asyncio.to_thread(subprocess.run, [*COMMAND, "serve"], capture_output=True, text=True,
                                     env=environment, cwd=tmp_path, timeout=60)
    _one_line(served, f"the directory {tmp_path}/nowhere does not exist")
    assert "listening on" not in served.stderr


async def test_a_reader_that_stops_early_is_not_a_database_problem(database_url: str, tmp_path: Path) -> None:
    db = Database(database_url)  # more entries than a pipe holds (64 KiB), so the writer meets the closed end
    try:
        await db.migrate()
        async with db.session() as session:
            for i in range(600):
                await ledger.append(session, "note", {"i": i, "text": "x" * 200})
            await session.commit()
    finally:
        await db.dispose()
    env = {**clean_env(), "DATABASE_URL": database_url}
    command = " ".join([*COMMAND, "audit", "export", "--format", "csv"]) + " | head -c 1"
    piped = await asyncio.to_thread(subprocess.run, ["bash", "-o", "pipefail", "-c", command], capture_output=True,
                                    text=True, env=env, cwd=tmp_path, timeout=60)
    assert piped.stdout == "s"  # "seq,at,..." cut after one byte
    assert "cannot reach the database" not in piped.stderr and "Traceback" not in piped.stderr, piped.stderr
