"""The `countersign` command: `serve` and `migrate` here; each other command group is a module
of bot/cli/ with a `register(app)`."""

from __future__ import annotations

from typing import Any

import typer

from bot.cli import actions, agents, audit, deliveries, demo, digest, mcp, policy, trust
from bot.cli.common import fail, with_db
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
        logs.configure(settings.log_format, settings.log_level)
        application = create_app(settings, migrate=migrate)
    except (SettingsError, PolicyError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"countersign listening on http://{settings.host}:{settings.port}", err=True)
    try:
        web.run_app(application, host=settings.host, port=settings.port, print=None,
                    shutdown_timeout=30, handle_signals=True)
    except SchemaNotCurrent as exc:
        raise fail(str(exc)) from None


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    revision = with_db(lambda db: db.migrate(), schema="none")
    typer.echo(f"database is at revision {revision}")


for group in (agents, policy, actions, audit, deliveries, demo, mcp, trust, digest):
    group.register(app)


def main() -> None:
    app(prog_name="countersign")


if __name__ == "__main__":
    main()
