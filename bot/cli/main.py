"""The `countersign` command: `serve` and `migrate` here; each other command group is a module
of bot/cli/ with a `register(app)`."""

from __future__ import annotations

import asyncio
import errno
import gc
import socket
from typing import Any

import typer

from bot.cli import actions, agents, audit, deliveries, demo, digest, mcp, pauses, policy, trust
from bot.cli.common import database_problem, fail, refuse_missing_directory, with_db
from bot.config import SettingsError, load_settings
from bot.policy.rules import PolicyError
from storage.db import SchemaNotCurrent

app = typer.Typer(no_args_is_help=True, help="Countersign: every AI action owned by a named human.",
                  pretty_exceptions_enable=False)


# --- serve / migrate ----------------------------------------------------------------------------


@app.command()
def serve(
    host: str = typer.Option(None, help="Listen address (default COUNTERSIGN_HOST or 0.0.0.0)."),
    port: int = typer.Option(None, help="Port (default COUNTERSIGN_PORT or 3000)."),
    migrate: bool = typer.Option(True, help="Migrate the schema on start; --no-migrate refuses if behind."),
    workers: int = typer.Option(1, min=1, max=64, help="Processes sharing the port (SO_REUSEPORT; PostgreSQL "
                                "only: SQLite has one writer, and more processes fight over it)."),
    reuse_port: bool = typer.Option(False, hidden=True, help="Listen with SO_REUSEPORT (set for each worker)."),
) -> None:
    """Run the API, the Slack endpoint and the background workers."""
    from aiohttp import web

    from bot import logs
    from bot.app import create_app

    overrides: dict[str, Any] = {}
    if host:
        overrides["COUNTERSIGN_HOST"] = host
    if port is not None:
        overrides["COUNTERSIGN_PORT"] = port
    try:
        settings = load_settings(**overrides)
        settings.require_slack()
        refuse_missing_directory(settings.database_url)
        logs.configure(settings.log_format, settings.log_level)
        application = create_app(settings, migrate=migrate)
    except (SettingsError, PolicyError) as exc:
        raise fail(str(exc)) from None
    if workers > 1:
        if not settings.database_url.startswith("postgresql"):
            raise fail("--workers needs PostgreSQL: SQLite has one writer, and more processes fight over it")
        raise typer.Exit(_supervise(workers, settings.host, settings.port, migrate))
    collect_less(application)
    try:
        web.run_app(application, host=settings.host, port=settings.port, loop=event_loop(),
                    shutdown_timeout=30, handle_signals=True, reuse_port=reuse_port or None,
                    # called once the socket is bound: before, the line could precede a failed bind
                    print=lambda _: typer.echo(f"countersign listening on http://{settings.host}:{settings.port}",
                                               err=True))
    except SchemaNotCurrent as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        problem = cannot_listen(exc, settings.host, settings.port)
        if problem is None and isinstance(exc, ConnectionError | socket.gaierror):  # the database's host
            problem = database_problem(exc, settings.database_url)
        if problem is None:
            raise
        raise fail(problem) from None
    except Exception as exc:  # the database, opened on start: a missing directory or database, a refused login
        problem = database_problem(exc, settings.database_url)
        if problem is None:
            raise
        raise fail(problem) from None


def cannot_listen(exc: OSError, host: str, port: int) -> str | None:
    """One line for a socket that could not be bound (the usual first-run mistakes), or None for
    any other OSError (not ours to explain: its traceback is the useful part)."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use: set COUNTERSIGN_PORT or stop the other process"
    if exc.errno == errno.EACCES:
        return f"port {port} needs privileges to listen on: set COUNTERSIGN_PORT to 1024 or above"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine: set COUNTERSIGN_HOST (0.0.0.0 listens on all)"
    return None


def _port_problem(host: str, port: int) -> str | None:
    """Bind (SO_REUSEPORT, as the workers will) and let go at once: `cannot_listen`'s line when the
    workers could not listen either; None when they can (or the host is not ours to check here)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        return None  # each worker says what is wrong with the host
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return cannot_listen(exc, host, port)
    return None


# Allocations between young-generation collections (CPython's default is 700). A submission
# allocates thousands of short-lived objects (ORM rows, dicts, statements' parameters); with the
# default, collections were ~5 % of the ingest writer's instructions (bench/results/bench_ingest.md).
GC_YOUNG_THRESHOLD = 10_000


def collect_less(application: Any) -> None:
    """For a serving process: collect the young generation less often, and once started, move
    everything loaded so far (modules, the app, its caches) out of the collector's sight
    (`gc.freeze`): full collections then walk only what serving created."""
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

    async def freeze(_: Any) -> None:
        gc.collect()
        gc.freeze()

    application.on_startup.append(freeze)


def event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux and macOS: a dependency there), else asyncio's own loop.
    Measured at 32 concurrent submissions: +18 % ingest throughput (bench/results/bench_ingest.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _supervise(workers: int, host: str, port: int, migrate: bool) -> int:
    """`serve --workers N`: N processes listening on one port (SO_REUSEPORT: the kernel spreads
    connections); SIGTERM/SIGINT are passed on; the exit code is the first non-zero one."""
    import signal
    import subprocess
    import sys

    problem = _port_problem(host, port)
    if problem is not None:  # said once, not by each of the N workers
        raise fail(problem)
    command = [sys.executable, "-m", "bot.cli", "serve", "--reuse-port", "--host", host, "--port", str(port),
               "--migrate" if migrate else "--no-migrate"]
    children = [subprocess.Popen(command) for _ in range(workers)]

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    typer.echo(f"countersign listening on http://{host}:{port} with {workers} worker processes", err=True)
    codes = [child.wait() for child in children]
    return next((code for code in codes if code), 0)


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    revision = with_db(lambda db: db.migrate(), schema="none")
    typer.echo(f"database is at revision {revision}")


for group in (agents, policy, actions, audit, deliveries, demo, mcp, trust, pauses, digest):
    group.register(app)


def main() -> None:
    app(prog_name="countersign")


if __name__ == "__main__":
    main()
