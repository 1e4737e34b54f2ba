"""The `countersign` command line: serve, migrate, agents, policy, actions (and more, added by
their own modules below)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import typer

from bot.cli_common import fail, with_db
from bot.config import SettingsError, load_settings
from bot.policy import PolicyError, load_policy
from storage.db import Database, SchemaNotCurrent

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, help="Countersign: every AI action owned by a named human.",
                  pretty_exceptions_enable=False)
agents_app = typer.Typer(no_args_is_help=True, help="Agents and their API tokens.")
policy_app = typer.Typer(no_args_is_help=True, help="The policy file.")
actions_app = typer.Typer(no_args_is_help=True, help="Submitted actions.")
app.add_typer(agents_app, name="agents")
app.add_typer(policy_app, name="policy")
app.add_typer(actions_app, name="actions")


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


# --- agents -------------------------------------------------------------------------------------


@agents_app.command("add")
def agents_add(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Create an agent; prints its bearer token and callback secret ONCE."""
    from storage import agents

    async def run(db: Database) -> tuple[Any, str]:
        async with db.session() as session:
            try:
                agent, token = await agents.create(session, name)
            except agents.AgentExists as exc:
                raise fail(str(exc)) from None
            await session.commit()
            return agent, token

    agent, token = with_db(run)
    if as_json:
        typer.echo(json.dumps({"name": agent.name, "token": token, "callback_secret": agent.callback_secret}))
        return
    typer.echo(f"Agent {agent.name!r} created.")
    typer.echo(f"token: {token}")
    typer.echo(f"callback secret: {agent.callback_secret}")
    typer.echo("")
    typer.echo("Both are shown only now. The agent sends the token as `Authorization: Bearer <token>`;")
    typer.echo("the callback secret verifies X-Countersign-Signature on decisions POSTed to its")
    typer.echo("callback_url: v1=hex(HMAC-SHA256(secret, \"<X-Countersign-Timestamp>.<body>\")).")


@agents_app.command("list")
def agents_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List agents (tokens are never shown again)."""
    from storage import agents

    async def run(db: Database) -> list[Any]:
        async with db.session() as session:
            return await agents.list_all(session)

    rows = with_db(run)
    if as_json:
        typer.echo(json.dumps([{"name": a.name, "token_prefix": a.token_prefix,
                                "created_at": a.created_at.isoformat(), "revoked": a.revoked_at is not None}
                               for a in rows]))
        return
    if not rows:
        typer.echo("no agents yet: `countersign agents add NAME`")
    for a in rows:
        state = f"revoked {a.revoked_at:%Y-%m-%d %H:%M}" if a.revoked_at else "active"
        typer.echo(f"{a.name:<30} {a.token_prefix}…  created {a.created_at:%Y-%m-%d %H:%M}  {state}")


@agents_app.command("revoke")
def agents_revoke(name: str) -> None:
    """Revoke an agent's token: its requests are refused from now on."""
    from storage import agents

    async def run(db: Database) -> Any:
        async with db.session() as session:
            agent = await agents.revoke(session, name)
            await session.commit()
            return agent

    if with_db(run) is None:
        raise fail(f"no agent named {name!r}", 1)
    typer.echo(f"Agent {name!r} revoked.")


# --- policy -------------------------------------------------------------------------------------


@policy_app.command("check")
def policy_check(file: Path) -> None:
    """Validate a policy file and show which rule each service and action type falls under."""
    from bot.policy_report import report

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        for problem in exc.problems:
            typer.secho(problem, fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(report(policy, str(file)))


# --- actions ------------------------------------------------------------------------------------


@actions_app.command("list")
def actions_list(
    status: str = typer.Option(None, help="Only this status."),
    service: str = typer.Option(None, help="Only this service."),
    limit: int = typer.Option(20, min=1, max=500),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Newest actions first."""
    from bot.serialize import action_json
    from storage import actions as repo

    async def run(db: Database) -> list[dict[str, Any]]:
        async with db.session() as session:
            rows = await repo.page(session, status=status, service=service, limit=limit)
        return [action_json(a, g.name) for a, g in rows]

    items = with_db(run)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    if not items:
        typer.echo("no actions")
    for a in items:
        who = (a["decision"] or {}).get("by", {}).get("slack_user_id") or a["owner"]
        typer.echo(f"{a['id']:>6}  {a['created_at'][:19]}  {a['status']:<12} {a['mode']:<11} "
                   f"{a['service']:<20} {a['action_type']:<16} {who or '':<12} {a['summary'][:60]}")


@actions_app.command("show")
def actions_show(action_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """One action with its responsibility record and timeline."""
    from bot.record import action_record, format_record

    async def run(db: Database) -> dict[str, Any] | None:
        async with db.session() as session:
            return await action_record(session, action_id)

    record = with_db(run)
    if record is None:
        raise fail(f"there is no action {action_id}", 1)
    typer.echo(json.dumps(record, indent=2) if as_json else format_record(record))


def _register_optional() -> None:
    """Command groups that live in their own modules."""
    import importlib

    for module in ("bot.cli_audit", "bot.cli_demo", "bot.cli_outbox", "bot.cli_mcp"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        mod.register(app)


_register_optional()


def main() -> None:
    app(prog_name="countersign")


if __name__ == "__main__":
    main()
