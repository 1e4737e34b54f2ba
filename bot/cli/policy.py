"""`countersign policy check`: validate a policy file."""

from __future__ import annotations

from pathlib import Path

import typer

from bot.policy.rules import PolicyError, load_policy

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
