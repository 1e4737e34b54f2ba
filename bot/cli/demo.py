"""`countersign demo`: the whole flow on this machine, with no Slack workspace (bot/demo/)."""

from __future__ import annotations

import asyncio

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo() -> None:
        """Run the whole flow locally against a built-in fake Slack: cards, clicks, records."""
        from bot.demo.story import run

        asyncio.run(run(typer.echo))
