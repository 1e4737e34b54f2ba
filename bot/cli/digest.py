"""`countersign digest [--post]`: the digest a leader would get now (the time since the previous
one), printed, or posted to the leadership channel now (queued; the running server sends it)."""

from __future__ import annotations

import json
from typing import Any

import typer

from bot.cli.common import fail, with_db
from bot.cli.trust import services, table
from bot.policy.autonomy import Record
from bot.policy.durations import spoken
from bot.reports.figures import counts_text
from storage.db import Database


def register(app: typer.Typer) -> None:
    app.command("digest")(digest)


def summary(d: dict[str, Any]) -> str:
    lines = [f"Countersign digest {d['day']} ({d['since']} to {d['until']}, {d['timezone']})",
             f"{d['total']} actions; by mode: {counts_text(d['by_mode'])}; by outcome: {counts_text(d['by_outcome'])}",
             f"median time to response: {spoken(d['median_response_seconds'])} over {d['responded']} responses",
             f"overrides: {len(d['overrides'])}; default accountability: {len(d['defaults'])}"]
    for item in d["overrides"]:
        lines.append(f"  override #{item['id']} {item['service']} {item['action_type']}: {item['reason'] or ''}")
    for item in d["defaults"]:
        lines.append(f"  default  #{item['id']} {item['service']} {item['action_type']}: {item['outcome']}")
    if d.get("trust"):
        # the columns of `countersign trust` (rates were printed as 1.0 and None)
        records = [Record(**{k: v for k, v in r.items() if k not in ("approval_rate", "override_rate")})
                   for r in d["trust"]]
        lines.append("track record, last 30 days (busiest):")
        lines += ["  " + line for line in table(records).splitlines()]
    for s in d.get("suggestions") or []:
        lines.append(f"suggestion: {s['kind']} {s['agent']} on {s['service']} {s['action_type']} "
                     f"{s['environment']}: {s['mode_now']} -> {s['mode_suggested']} ({s['why']})")
    lines.append(f"chain head {d['head']['hash']}@{d['head']['seq']}")
    return "\n".join(lines)


def digest(
    post: bool = typer.Option(False, "--post", help="Post it to the leadership channel now."),
    as_json: bool = typer.Option(False, "--json", help="Print the digest's figures as JSON."),
) -> None:
    """Print the digest for the time since the previous one; --post sends it now."""

    async def run(db: Database) -> dict[str, Any] | None:
        from bot.reports.digest import post_now, run_digest

        svc = services(db)
        if post:
            return await post_now(svc)
        return await run_digest(svc, post=False)

    found = with_db(run)
    if found is None:
        raise fail("no leadership channel in the policy: there is nowhere to post a digest")
    typer.echo(json.dumps(found, indent=2, default=str) if as_json else summary(found))
    if post:
        typer.echo("queued for the leadership channel; the running `countersign serve` posts it", err=True)
