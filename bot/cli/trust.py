"""`countersign trust [--since 30d] [--format table|json] [AGENT|SERVICE]`: the track record and the
suggestions the policy's `autonomy:` thresholds make of it."""

from __future__ import annotations

import gc
import json
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import typer

from bot.cli.common import fail, settings_or_exit
from bot.policy.autonomy import Record
from bot.policy.durations import parse_duration
from bot.policy.rules import Policy, PolicyError, load_policy
from bot.services import Services
from storage.db import Database


def register(app: typer.Typer) -> None:
    app.command("trust")(trust)


def services(db: Database, *, policy_required: bool = True) -> Services:
    """Services for a command that needs the policy (COUNTERSIGN_POLICY) as well as the database.
    `policy_required=False`: without COUNTERSIGN_POLICY, an empty policy (no services, no thresholds)."""
    settings = settings_or_exit()
    if not settings.policy_path and not policy_required:
        policy = Policy(services={})
    elif not settings.policy_path:
        raise fail("COUNTERSIGN_POLICY is not set: the services and thresholds come from the policy")
    else:
        try:
            policy = load_policy(settings.policy_path)
        except PolicyError as exc:
            raise fail("; ".join(exc.problems)) from None
    svc = Services(settings=settings, db=db, policy=policy)
    from bot.autonomy.state import AutonomyState

    svc.autonomy = AutonomyState(db)
    return svc


def record_json(r: Record) -> dict[str, Any]:
    return {**asdict(r), "decisions": r.decisions, "approval_rate": r.approval_rate, "override_rate": r.override_rate}


def table(records: list[Record]) -> str:
    def rate(v: float | None) -> str:
        return "-" if v is None else f"{v:.0%}"

    def secs(v: float | None, approximate: bool) -> str:
        if v is None:
            return "-"
        about = "≈" if approximate else ""  # from the daily rollup's histogram: within 9 %
        return about + (f"{v:.0f}s" if v < 120 else f"{v / 60:.0f}m" if v < 7200 else f"{v / 3600:.1f}h")

    head = ["AGENT", "SERVICE", "TYPE", "ENV", "ACTIONS", "APPROVAL", "OVERRIDE", "ACK", "EXPIRED", "DEFAULT",
            "VIOL", "MEDIAN", "OK/FAIL/RB"]
    rows = [head] + [[r.agent, r.service, r.action_type, r.environment, str(r.actions), rate(r.approval_rate),
                      rate(r.override_rate), str(r.acknowledged), str(r.expired), str(r.defaults),
                      str(r.violations), secs(r.median_decision_seconds, r.median_approximate),
                      f"{r.succeeded}/{r.failed}/{r.rolled_back}"] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def trust(
    subject: str = typer.Argument(None, help="An agent or a service (default: all)."),
    since: str = typer.Option("30d", "--since", help="The window, like 7d, 30d, 12h."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """The track record per agent x service x action type x environment, and the suggestions."""
    if fmt not in ("table", "json"):
        raise fail("--format: table or json")
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        raise fail(f"--since: {exc}") from None
    if not 0 < seconds <= 3660 * 86400:
        raise fail("--since: more than 0 and at most about 10 years")

    async def run(db: Database) -> tuple[list[Record], list[Any]]:
        from bot.autonomy import trust as domain

        # A one-shot process: what the imports built is never garbage. Frozen, a collection in the
        # middle of the query does not walk it (~100 ms on 1,000,000 actions' track record).
        gc.freeze()

        # The track record is in the database: without COUNTERSIGN_POLICY it is shown all the same
        # (it refused, exit 2), only the suggestions need the policy's thresholds.
        svc = services(db, policy_required=False)
        now = svc.clock()
        async with db.read_session() as session:
            try:
                agent_id, service = await domain.subject(svc, session, subject)
            except domain.UnknownSubject:
                if svc.settings.policy_path:
                    raise fail(f"no agent or service is called {subject!r}") from None
                agent_id, service = None, subject  # no policy to know the services by: read it as one
            records = await domain.records(session, now - timedelta(seconds=seconds), now, agent_id=agent_id,
                                           service=service)
            found = await domain.current_suggestions(svc, session, now, agent_id=agent_id, service=service)
        return records, found

    from bot.cli.common import with_db

    records, found = with_db(run)
    if not settings_or_exit().policy_path:
        typer.echo("note: COUNTERSIGN_POLICY is not set: the track record only, no suggestions", err=True)
    if fmt == "json":
        typer.echo(json.dumps({"since": since, "records": [record_json(r) for r in records],
                               "suggestions": [asdict(s) for s in found]}, indent=2))
        return
    about = f" for {subject}" if subject else ""
    typer.echo(table(records) if records else f"No actions{about} in the last {since}.")
    if any(r.median_approximate for r in records):
        typer.echo("≈ MEDIAN: read from the daily rollup's histogram, within 9 % of the exact median.")
    if found:
        typer.echo("\nSuggestions:")
        for s in found:
            typer.echo(f"  {s.kind:<8} {s.agent} on {s.service} {s.action_type} {s.environment}: "
                       f"{s.mode_now} -> {s.mode_suggested} ({s.why})")
