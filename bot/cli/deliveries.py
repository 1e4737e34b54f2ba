"""`countersign deliveries`: see what the outbox holds (Slack messages and agent callbacks) and send
failed deliveries again once their cause is fixed (the app invited to a channel, an agent's
endpoint back up after the 24 h of retries)."""

from __future__ import annotations

import json
from typing import Any

import typer

from storage import outbox
from storage.db import Database

deliveries_app = typer.Typer(no_args_is_help=True, help="Outbound Slack messages and agent callbacks.")


def _row(msg: Any) -> dict[str, Any]:
    return {
        "id": msg.id, "target": msg.target, "method": msg.method, "purpose": msg.purpose,
        "action_id": msg.action_id,
        "to": msg.payload.get("url") or msg.channel_key or msg.payload.get("channel"),
        "status": msg.status, "attempts": msg.attempts, "last_error": msg.last_error,
        "created_at": msg.created_at.isoformat(), "next_attempt_at": msg.next_attempt_at.isoformat(),
        "sent_at": msg.sent_at.isoformat() if msg.sent_at else None,
    }


@deliveries_app.command("list")
def list_deliveries(
    failed: bool = typer.Option(False, "--failed", help="Only deliveries that failed for good."),
    status: str = typer.Option(None, help="Only this status: pending, sending, done, failed."),
    limit: int = typer.Option(50, min=1, max=10000),
    attempts: bool = typer.Option(False, "--attempts", help="Show every attempt under each delivery."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Newest deliveries first, with their status, attempts and last error."""
    from bot.cli.common import with_db

    async def run(db: Database) -> list[dict[str, Any]]:
        async with db.session() as session:
            rows = await outbox.listing(session, status="failed" if failed else status, limit=limit)
            items = [_row(m) for m in rows]
            if attempts:
                for item in items:
                    item["attempt_log"] = [
                        {"attempt": a.attempt, "ok": a.ok, "status_code": a.status_code, "error": a.error,
                         "at": a.at.isoformat()} for a in await outbox.attempts(session, item["id"])]
            return items

    items = with_db(run)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    if not items:
        typer.echo("no failed deliveries" if failed else "no deliveries")
    for d in items:
        action = f"action {d['action_id']}" if d["action_id"] else ""
        typer.echo(f"{d['id']:>7}  {d['status']:<8} {d['target']:<8} {d['method']:<17} "
                   f"{d['purpose'] or '':<18} {action:<12} to {d['to'] or '-'}  attempts={d['attempts']}"
                   + (f"  error: {d['last_error']}" if d["last_error"] else ""))
        for a in d.get("attempt_log", []):
            result = "ok" if a["ok"] else f"{a['status_code'] or ''} {a['error'] or ''}".strip()
            typer.echo(f"           #{a['attempt']} {a['at'][:19]}  {result}")


@deliveries_app.command("retry")
def retry_deliveries(
    ids: list[int] = typer.Argument(None, help="Delivery ids (from `deliveries list --failed`)."),
    all_failed: bool = typer.Option(False, "--all", help="Every failed delivery."),
    target: str = typer.Option(None, help="With --all: only slack or callback deliveries."),
) -> None:
    """Queue failed deliveries again; the running relay sends them (their attempts are kept)."""
    from bot.cli.common import fail, with_db

    if not ids and not all_failed:
        raise fail("name delivery ids, or use --all")
    if ids and all_failed:
        raise fail("either delivery ids or --all, not both")

    async def run(db: Database) -> int:
        async with db.session() as session:
            count = await outbox.retry_failed(session, ids=ids or None, target=target)
            await session.commit()
            return count

    count = with_db(run)
    if ids and count < len(ids):
        typer.echo(f"{len(ids) - count} of the given deliveries are not failed (or do not exist): left alone",
                   err=True)
    typer.echo(f"{count} deliver{'y' if count == 1 else 'ies'} queued again")
    if ids and count == 0:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(deliveries_app, name="deliveries")
