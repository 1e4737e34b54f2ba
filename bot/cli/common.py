"""Helpers every `countersign` command group shares: errors, settings, the database."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer
from sqlalchemy.exc import ArgumentError, DatabaseError, InterfaceError, NoSuchModuleError, OperationalError

from bot.config import Settings, SettingsError, load_settings
from storage.db import Database, SchemaNotCurrent

T = TypeVar("T")


BY_HELP = "Who does it, for the ledger and the announcement (default: cli:<your login name>)."


def operator(by: str | None) -> str:
    """Who a change made from the command line is recorded as: the `--by` given, else the login that
    ran the command (a pause or a revocation names a person, not just "cli")."""
    if by and by.strip():
        return by.strip()
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container's bare uid)
        return "cli"


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
    refuse_missing_directory(settings.database_url)

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
    except BrokenPipeError:
        raise  # stdout closed early (`audit export | head`): typer exits quietly; not the database's fault
    except Exception as exc:
        problem = database_problem(exc, settings.database_url)
        if problem is None:
            raise
        raise fail(problem) from None


def refuse_missing_directory(url: str) -> None:
    """A SQLite file in a directory that does not exist: say so before connecting (aiosqlite's
    worker thread prints a stray traceback after the loop has closed when its connect fails)."""
    if url.startswith("sqlite") and ":///" in url:
        path = Path(url.split(":///", 1)[-1].split("?", 1)[0])
        if str(path) != ":memory:" and not path.parent.exists():
            raise fail(f"cannot open the database {path}: the directory {path.parent} does not exist")


def database_problem(exc: BaseException, url: str) -> str | None:
    """One line for a database that cannot be opened: a SQLite file in a missing directory, a
    PostgreSQL database that does not exist, a refused login, nothing listening. None for any
    other error: its traceback is the useful part (these were tracebacks too)."""
    import asyncpg

    where = url.split("@")[-1]
    reason = str(getattr(exc, "orig", None) or exc).strip()
    # `DatabaseError` itself (not a subclass such as IntegrityError): "file is not a database"
    if url.startswith("sqlite") and (isinstance(exc, OperationalError) or type(exc) is DatabaseError):
        return f"cannot open the database {url.split(':///', 1)[-1]}: {reason}"
    if isinstance(exc, OSError | OperationalError | InterfaceError):
        return f"cannot reach the database ({where}): {reason}"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"cannot open the database ({where}): {reason}: create it first (createdb)"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.CannotConnectNowError
                  | asyncpg.TooManyConnectionsError):
        return f"cannot log in to the database ({where}): {reason}"
    return None


def open_database(url: str) -> Database:
    try:
        return Database(url)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise fail(f"DATABASE_URL: cannot use {url.split('@')[-1]!r}: {exc} "
                   "(use sqlite+aiosqlite:///file.db or postgresql+asyncpg://user@host/db)") from None
