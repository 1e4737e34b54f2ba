"""The migrations and the models agree (on both databases), and `serve` handles an old schema:
it migrates on start by default; with --no-migrate it refuses with a message saying what to run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, MetaData, Text, text
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables)
from bot.demo.fakeslack import FakeSlack
from storage.db import Database, SchemaNotCurrent
from tests.processes.test_shutdown import serve_env, start_serve


def _diff(connection: Connection, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


async def migrated(url: str) -> Database:
    db = Database(url)
    await db.migrate()
    return db


async def test_models_and_migrations_agree(database_url: str) -> None:
    """Anyone hand-editing storage/models.py or the migration must keep them identical."""
    db = await migrated(database_url)
    try:
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff, SQLModel.metadata) == []

            # The comparison is sensitive: a column the migration lacks is reported.
            changed = MetaData()
            for table in SQLModel.metadata.tables.values():
                table.to_metadata(changed)
            changed.tables["actions"].append_column(Column("surprise", Text, nullable=True))
            diff = await conn.run_sync(_diff, changed)
            assert [d[0] for d in diff] == ["add_column"] and diff[0][3].name == "surprise"
    finally:
        await db.dispose()


async def test_migrate_twice_and_check_schema(database_url: str) -> None:
    db = Database(database_url)
    try:
        with pytest.raises(SchemaNotCurrent, match="countersign migrate"):
            await db.check_schema()
        head = await db.migrate()
        assert await db.migrate() == head == await db.current_revision()
        await db.check_schema()
        async with db.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
        with pytest.raises(SchemaNotCurrent, match=f"at revision 0000, this version needs {head}"):
            await db.check_schema()
        with pytest.raises(SchemaNotCurrent, match="newer Countersign"):
            await db.migrate()
    finally:
        await db.dispose()


async def test_serve_no_migrate_refuses_an_unmigrated_database(
    database_url: str, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    served = await start_serve(serve_env(database_url, fake_slack.url, tmp_path), tmp_path, "--no-migrate")
    code = await asyncio.to_thread(served.proc.wait, 60)
    output = served.log_path.read_text()
    assert code == 2, output
    assert "no Countersign schema yet" in output and "countersign migrate" in output
    assert "Traceback" not in output


async def test_serve_no_migrate_refuses_an_outdated_database(
    database_url: str, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    db = await migrated(database_url)
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    await db.dispose()
    served = await start_serve(serve_env(database_url, fake_slack.url, tmp_path), tmp_path, "--no-migrate")
    assert await asyncio.to_thread(served.proc.wait, 60) == 2
    output = served.log_path.read_text()
    assert "at revision 0000" in output and "countersign migrate" in output and "Traceback" not in output
