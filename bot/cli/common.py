"""Helpers every `countersign` command group shares: errors, settings, the database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from bot.config import Settings, SettingsError, load_settings
from storage.db import Database, SchemaNotCurrent

T = TypeVar("T")


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise fail(str(exc)) from None


def with_db(fn: Callable[[Database], Awaitable[T]], *, schema: str = "migrate") -> T:
    """Run `fn` against the configured database. `schema`: "migrate" brings it to head first (so a
    fresh file just works), "check" refuses unless it is at head, "none" leaves it alone."""
    settings = settings_or_exit()

    async def run() -> T:
        db = open_database(settings.database_url)
        try:
            if schema == "migrate":
                await db.migrate()
            elif schema == "check":
                await db.check_schema()
            return await fn(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except SchemaNotCurrent as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot reach the database ({settings.database_url.split('@')[-1]}): {exc}") from None


def open_database(url: str) -> Database:
    try:
        return Database(url)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise fail(f"DATABASE_URL: cannot use {url.split('@')[-1]!r}: {exc} "
                   "(use sqlite+aiosqlite:///file.db or postgresql+asyncpg://user@host/db)") from None
