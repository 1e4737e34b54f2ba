"""`countersign pause|resume|pauses`: the kill switch from a terminal, for when Slack is down or the
person who must stop the AI is not in it. The same pause as `/ai-actions pause`
(bot.autonomy.pauses): stored, in the ledger, announced in Slack through the outbox (the running
server sends it), and applied by every server process within a second (bot.autonomy.state reads
what holds at most a second old). Whoever holds the database may, as with `policy grants revoke`."""

from __future__ import annotations

import json

import typer

from bot.autonomy import pauses
from bot.cli.common import BY_HELP, fail, operator, with_db
from bot.cli.trust import services
from storage.db import Database
from storage.models import Pause

COMMAND = "countersign"
TARGET_HELP = "A service, agent:NAME, agent:NAME@SERVICE, or all."


def register(app: typer.Typer) -> None:
    app.command("pause")(pause)
    app.command("resume")(resume)
    app.command("pauses")(list_pauses)


def _plain(message: str) -> str:
    return message.replace("`", "")  # the refusals are written for Slack's mrkdwn


def pause(
    target: str = typer.Argument(..., metavar="TARGET", help=TARGET_HELP),
    words: list[str] = typer.Argument(..., metavar="[DURATION] REASON",
                                      help="How long (30m, 2h, 3d; at most 30 days; none: until resumed), then why."),
    by: str = typer.Option(None, "--by", help=BY_HELP),
) -> None:
    """Stop an agent, a service or everything now: every new action for TARGET needs approval
    (forbidden stays forbidden; an executed one is a policy violation)."""
    who = operator(by)

    async def run(db: Database) -> tuple[pauses.PauseRequest, Pause | None]:
        svc = services(db)
        try:
            req = await pauses.parse_pause(svc, [target, *words], svc.clock(), command=COMMAND)
        except pauses.Refused as exc:
            raise fail(_plain(str(exc))) from None
        return req, await pauses.start(svc, who, req)

    req, started = with_db(run)
    assert started is not None  # no dedupe key: a person's pause always starts
    until = f"until {req.until.isoformat()}" if req.until else "until resumed"
    typer.echo(f"paused {req.target.text} {until} (#{started.id}, by {who}): every new action for it needs "
               f"approval. Reason: {req.reason}")
    typer.echo("Announced in Slack by the running server; `countersign resume "
               f"{req.target.text}` ends it.")


def resume(
    target: str = typer.Argument(..., metavar="TARGET", help=TARGET_HELP),
    by: str = typer.Option(None, "--by", help=BY_HELP),
) -> None:
    """End the pauses holding for TARGET: the policy's modes apply again."""
    who = operator(by)

    async def run(db: Database) -> list[Pause]:
        svc = services(db)
        try:
            return await pauses.resume(svc, who, await pauses.parse_target(svc, target), command=COMMAND,
                                       operator=True)
        except pauses.Refused as exc:
            raise fail(_plain(str(exc))) from None

    ended = with_db(run)
    typer.echo(f"resumed {', '.join(p.target for p in ended)} (by {who}): the policy's modes apply again.")


def list_pauses(as_json: bool = typer.Option(False, "--json", help="Print them as JSON.")) -> None:
    """The pauses holding now: target, who, since when, until when, why."""

    async def run(db: Database) -> list[Pause]:
        return await pauses.holding(services(db, policy_required=False))

    rows = with_db(run)
    if as_json:
        typer.echo(json.dumps([pauses.pause_json(p) for p in rows], indent=2))
        return
    if not rows:
        typer.echo("No pause holds.")
    for p in rows:
        until = p.until.isoformat() if p.until else "resumed"
        typer.echo(f"#{p.id}  {p.target}  by {p.by} since {p.started_at.isoformat()} until {until}: {p.reason}")
