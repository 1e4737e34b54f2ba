"""`countersign actions list|show`: submitted actions from the command line."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import typer

from bot.api.openapi import STATUSES
from bot.cli.common import fail, with_db
from storage.db import Database

# An unknown --status is refused with the valid ones (it listed nothing and exited 0).
Status = StrEnum("Status", {name: name for name in STATUSES})  # type: ignore[misc]

actions_app = typer.Typer(no_args_is_help=True, help="Submitted actions.")


def register(app: typer.Typer) -> None:
    app.add_typer(actions_app, name="actions")


@actions_app.command("list")
def actions_list(
    status: Status = typer.Option(None, help="Only this status.", show_default=False),
    service: str = typer.Option(None, help="Only this service."),
    limit: int = typer.Option(20, min=1, max=500),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Newest actions first."""
    from bot.actions.serialize import action_json
    from bot.contract.serialize import decider_spec, with_person
    from bot.delivery.directory import known_people
    from storage.queries import actions as repo

    async def run(db: Database) -> list[dict[str, Any]]:
        async with db.session() as session:
            rows = await repo.page(session, status=status.value if status else None, service=service,
                                   limit=limit)
            items = [action_json(a, g.name) for a, g in rows]
            # decision.by as the API and `actions show` give it: from the cache (the CLI asks no Slack)
            people = await known_people(session, [decider_spec(i["decision"]) for i in items])
        for item in items:
            item["decision"] = with_person(item["decision"], people)
        return items

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
    from bot.actions.record import action_record, format_record

    async def run(db: Database) -> dict[str, Any] | None:
        async with db.session() as session:
            return await action_record(session, action_id)

    record = with_db(run)
    if record is None:
        raise fail(f"there is no action {action_id}", 1)
    typer.echo(json.dumps(record, indent=2) if as_json else format_record(record))
