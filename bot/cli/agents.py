"""`countersign agents add|list|revoke`: the agents and their bearer tokens."""

from __future__ import annotations

import json
from typing import Any

import typer

from bot.cli.common import fail, with_db
from storage.db import Database

agents_app = typer.Typer(no_args_is_help=True, help="Agents and their API tokens.")


def register(app: typer.Typer) -> None:
    app.add_typer(agents_app, name="agents")


@agents_app.command("add")
def agents_add(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Create an agent; prints its bearer token and callback secret ONCE."""
    from storage.queries import agents

    name = name.strip()  # `' bob'` and `bob` would read alike on a card and in `agents list`
    if not name:  # an agent nobody can name cannot be listed, revoked or told apart on a card
        raise fail("an agent needs a name: `countersign agents add NAME`, e.g. `countersign agents add remediator`")

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
    from storage.queries import agents

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
    from sqlmodel import col, select

    from storage.models import Agent
    from storage.queries import agents

    async def run(db: Database) -> tuple[Any, bool]:
        async with db.session() as session:
            # Revoked before this call: say since when (it said "revoked." again, as if just now).
            earlier = await session.scalar(select(col(Agent.revoked_at)).where(col(Agent.name) == name))
            agent = await agents.revoke(session, name)
            await session.commit()
            return agent, earlier is not None

    agent, earlier = with_db(run)
    if agent is None:
        raise fail(f"no agent named {name!r}", 1)
    if earlier:
        typer.echo(f"Agent {name!r} was already revoked on {agent.revoked_at:%Y-%m-%d %H:%M} UTC.")
        return
    typer.echo(f"Agent {name!r} revoked.")
