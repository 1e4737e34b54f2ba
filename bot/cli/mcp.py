"""`countersign mcp`: the MCP server (stdio) an LLM agent's host launches to ask humans for approval.

    {"mcpServers": {"countersign": {"command": "countersign", "args": ["mcp"],
      "env": {"COUNTERSIGN_URL": "https://countersign.internal", "COUNTERSIGN_TOKEN": "cs_..."}}}}
"""

from __future__ import annotations

import logging
import sys

import typer


def register(app: typer.Typer) -> None:
    @app.command("mcp")
    def mcp_command(
        url: str = typer.Option("http://localhost:3000", envvar="COUNTERSIGN_URL",
                                help="The Countersign server's base URL."),
        token: str = typer.Option("", envvar="COUNTERSIGN_TOKEN", show_default=False,
                                  help="The agent's bearer token (`countersign agents add NAME`)."),
    ) -> None:
        """Serve request_approval, get_decision, report_action and report_result as MCP tools over stdio."""
        if not token:
            typer.secho("error: set COUNTERSIGN_TOKEN to the agent's token (`countersign agents add NAME`)",
                        fg=typer.colors.RED, err=True)
            raise typer.Exit(2)
        try:
            from countersign_client.mcp_server import build_server
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("mcp"):
                raise
            typer.secho(f"error: the MCP server needs the mcp package: pip install 'countersign[mcp]' "
                        f"({exc})", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        from countersign_client import CountersignClient, CountersignError

        try:  # a URL without http(s):// is refused now, not as an opaque error on every tool call
            CountersignClient(url, token)
        except CountersignError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        # stdout carries the protocol: every log line goes to stderr.
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
        server = build_server(lambda: CountersignClient(url, token))
        server.run()  # stdio transport
