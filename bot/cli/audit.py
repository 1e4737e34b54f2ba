"""`countersign audit`: verify the ledger, print its head, publish an anchor, export it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from bot.cli.common import fail, with_db
from bot.reports import audit
from storage.db import Database
from storage.ledger.verify import format_anchor, parse_anchor

audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit ledger.")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr, only when a person is watching it (never in a pipe or a log)."""
    if total <= 0 or not sys.stderr.isatty():
        yield None
        return
    with typer.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


@audit_app.command("verify")
def verify(
    against: list[str] = typer.Option(None, "--against", metavar="HASH@SEQ",
                                      help="An anchor published earlier (e.g. in the leadership channel); "
                                           "repeat for several."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Recompute the hash chain. Exit 0 when intact; otherwise exit 1 naming the first bad entry."""
    try:
        anchors = dict(parse_anchor(a) for a in against or [])
    except ValueError as exc:
        raise fail(str(exc)) from None

    async def run(db: Database) -> Any:
        total, _ = await audit.current_head(db)
        with _progress("verifying", total) as progress:
            return await audit.verify_ledger(db, anchors, progress=progress)

    result = with_db(run)
    if as_json:
        problem = result.problem
        typer.echo(json.dumps({
            "ok": result.ok, "entries": result.entries,
            "head": format_anchor(*result.head) if result.head else None,
            "anchors": [format_anchor(s, h) for s, h in sorted(result.anchors.items())],
            "problem": problem and {"seq": problem.seq, "kind": problem.kind, "detail": problem.detail},
        }))
    elif result.ok:
        checked = f"; matches {len(result.anchors)} anchor(s)" if result.anchors else ""
        last = format_anchor(result.last_seq, result.last_hash)
        typer.echo(f"ledger intact: {result.entries} entries, head {last}{checked}")
    else:
        typer.secho(f"LEDGER TAMPERED: {result.problem}", fg=typer.colors.RED, err=True)
        typer.echo(f"verified intact up to entry {result.last_seq} ({result.entries} entries)", err=True)
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("head")
def head(as_json: bool = typer.Option(False, "--json")) -> None:
    """Print the ledger's head as HASH@SEQ (what an anchor holds)."""
    seq, hash_ = with_db(audit.current_head)
    typer.echo(json.dumps({"seq": seq, "hash": hash_, "anchor": format_anchor(seq, hash_)}) if as_json
               else format_anchor(seq, hash_))


@audit_app.command("anchor")
def anchor(
    wait: float = typer.Option(0.0, help="Seconds to wait for the server to post it (0: queue only)."),
) -> None:
    """Publish the head to the leadership channel now (queued; the running server posts it)."""
    from bot.cli.common import settings_or_exit
    from bot.policy.rules import PolicyError, load_policy
    from bot.services import Services

    settings = settings_or_exit()
    if not settings.policy_path:
        raise fail("COUNTERSIGN_POLICY is not set: the leadership channel comes from the policy")
    try:
        policy = load_policy(settings.policy_path)
    except PolicyError as exc:
        raise fail("; ".join(exc.problems)) from None

    async def run(db: Database) -> tuple[int, str, str | None]:
        svc = Services(settings=settings, db=db, policy=policy)
        try:
            seq, hash_, outbox_id = await audit.publish_anchor(svc)
        except ValueError as exc:
            raise fail(str(exc)) from None
        state: str | None = "queued"
        deadline = asyncio.get_running_loop().time() + wait
        while wait > 0 and outbox_id is not None and asyncio.get_running_loop().time() < deadline:
            state = await audit.outbox_state(db, outbox_id)
            if state in ("done", "failed"):
                break
            await asyncio.sleep(0.1)
        return seq, hash_, state

    seq, hash_, state = with_db(run)
    channel = policy.leadership.channel if policy.leadership else None
    typer.echo(format_anchor(seq, hash_))
    if state == "done":
        typer.echo(f"posted to {channel}", err=True)
    elif state == "failed":
        raise fail(f"posting the anchor to {channel} failed: see `countersign outbox` / the server log", 1)
    else:
        typer.echo(f"queued for {channel}: the running server posts it", err=True)


@audit_app.command("export")
def export(
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv (opens in a spreadsheet)."),
    since: str = typer.Option(None, help="Only entries at or after this date (YYYY-MM-DD), ISO date-time, "
                                         "or this long ago (7d, 24h)."),
    service: str = typer.Option(None, help="Only entries about this service's actions."),
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file (default: stdout)."),
) -> None:
    """Stream every ledger entry with its hashes, so anyone can recompute the chain."""
    if fmt not in audit.FORMATS:
        raise fail(f"--format: one of {', '.join(audit.FORMATS)}")
    try:
        since_at = audit.parse_since(since) if since else None
    except ValueError as exc:
        raise fail(str(exc)) from None

    try:
        out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror}") from None

    async def run(db: Database) -> int:
        total, _ = await audit.current_head(db)
        with _progress("exporting", total) as progress:
            done = [0]

            def advance(seq: int) -> None:
                if progress is not None:
                    progress(seq - done[0])
                    done[0] = seq

            return await audit.export(db, out, fmt=fmt, since=since_at, service=service, progress=advance)

    try:
        count = with_db(run)
    finally:
        if output:
            out.close()
    if output:
        typer.echo(f"{count} entries written to {output}", err=True)
