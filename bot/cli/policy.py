"""`countersign policy check`: validate a policy file."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from bot.cli.common import BY_HELP
from bot.policy.rules import PolicyError, load_policy
from storage.queries import autonomy as autonomy_q

policy_app = typer.Typer(no_args_is_help=True, help="The policy file.")


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")


@policy_app.command("check")
def policy_check(file: Path) -> None:
    """Validate a policy file and show which rule each service and action type falls under."""
    from bot.reports.policy_check import report

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        for problem in exc.problems:
            typer.secho(problem, fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(report(policy, str(file)))
    _grants_in_force()


def _grants_in_force() -> None:
    """The grants in force, when a database is configured and migrated (else nothing to show)."""
    from bot.cli.common import open_database
    from bot.config import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError:
        return
    url = settings.database_url
    if url.startswith("sqlite") and not Path(url.split(":///", 1)[-1]).exists():
        return  # no database here yet: do not create one by checking a file

    async def run() -> list[Any]:
        db = open_database(settings.database_url)
        try:
            await db.check_schema()
            async with db.read_session() as session:
                return await autonomy_q.grants(session, now=datetime.now(UTC))
        except Exception:  # no database yet, or not migrated: the file alone was checked
            return []
        finally:
            await db.dispose()

    rows = asyncio.run(run())
    typer.echo("\nGrants in force (before the rules above):" if rows else "\nGrants in force: none")
    for g in rows:
        typer.echo(f"  #{g.id} {g.kind} {g.agent} x {g.service} x {g.action_type} x {g.environment}: "
                   f"{g.previous_mode} -> {g.mode} until {g.until.isoformat()} (by {g.by})")


grants_app = typer.Typer(no_args_is_help=True, help="Grants of autonomy (promotions and demotions) in force.")
policy_app.add_typer(grants_app, name="grants")


@grants_app.command("list")
def grants_list(
    all_: bool = typer.Option(False, "--all", help="Also the expired and revoked ones."),
    as_json: bool = typer.Option(False, "--json", help="Print them as JSON (who, when, until, figures)."),
) -> None:
    """The grants in force (or every grant with --all)."""
    from bot.autonomy.grants import grant_json
    from bot.cli.common import with_db

    async def run(db: Any) -> list[Any]:
        async with db.read_session() as session:
            return await autonomy_q.grants(session, include_ended=all_, now=datetime.now(UTC))

    rows = with_db(run)
    if as_json:
        typer.echo(json.dumps([{**grant_json(g), "at": g.at.isoformat(), "revoked_at": g.revoked_at and
                                g.revoked_at.isoformat(), "revoked_by": g.revoked_by} for g in rows], indent=2))
        return
    if not rows:
        typer.echo("No grants." if all_ else "No grants in force.")
    for g in rows:
        # when it was granted and why: the stored who / when / until / figures, not only until
        ended = f" ended {g.revoked_at.isoformat()} by {g.revoked_by}" if g.revoked_at else ""
        why = (g.figures or {}).get("why")
        typer.echo(f"#{g.id}  {g.kind:<7} {g.agent} x {g.service} x {g.action_type} x {g.environment}: "
                   f"{g.previous_mode} -> {g.mode} until {g.until.isoformat()} by {g.by} at {g.at.isoformat()}"
                   f"{ended}" + (f" ({why})" if why else ""))


@grants_app.command("revoke")
def grants_revoke(grant_id: int, by: str = typer.Option(None, "--by", help=BY_HELP)) -> None:
    """Revoke a grant now: new actions fall back to the policy file's rules."""
    from bot.autonomy import grants
    from bot.cli.common import fail, operator, with_db
    from bot.cli.trust import services

    async def run(db: Any) -> Any:
        try:
            return await grants.revoke(services(db), grant_id, operator(by))
        except grants.GrantRefused as exc:
            raise fail(str(exc)) from None

    row = with_db(run)
    typer.echo(f"revoked grant #{row.id}: {row.agent} x {row.service} x {row.action_type} x {row.environment} "
               f"is back to the policy's rules")
