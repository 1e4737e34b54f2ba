"""Slack: translate Slack requests into domain calls and render answers in Block Kit.

Only the app factory (bot.app) and the CLI import this package.
"""

from __future__ import annotations

from slack_bolt.app.async_app import AsyncApp

from bot.services import Services
from handlers import (
    anchor_blocks,  # noqa: F401  (registers the audit anchor renderer)
    cards,  # noqa: F401  (registers the card renderers)
    digest_blocks,  # noqa: F401  (registers the digest and App Home renderers)
    storm,  # noqa: F401  (registers the storm parent card renderer)
)
from handlers.render import render

__all__ = ["register", "render"]


def register(app: AsyncApp, svc: Services) -> None:
    """Register every listener on the one bolt app."""
    from handlers import actions, commands, home, views

    actions.register(app, svc)
    views.register(app, svc)
    commands.register(app, svc)
    home.register(app, svc)
    digest_blocks.register(app, svc)
