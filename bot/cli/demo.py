"""`countersign demo`: the whole flow on this machine, with no Slack workspace (bot/demo/)."""

from __future__ import annotations

import asyncio

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        serve: bool = typer.Option(False, "--serve", help="Then print one action's page link and keep "
                                   "serving (decide in a browser) until Ctrl-C."),
    ) -> None:
        """Run the whole flow locally against a built-in fake Slack: cards, clicks, records."""
        from bot.demo.story import run

        asyncio.run(run(typer.echo, keep_serving=serve))
