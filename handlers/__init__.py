"""Slack: translate Slack requests into domain calls and render answers in Block Kit.

Only the app factory (bot.app) and the CLI import this package. `listeners/` receive Slack's
requests, `blocks/` builds Block Kit (pure, no I/O), `renderers/` turns queued messages into
Slack Web API arguments at send time.
"""

from __future__ import annotations

from slack_bolt.app.async_app import AsyncApp

from bot.services import Services
from handlers.listeners import buttons, commands, home, override_modal, slash_autonomy
from handlers.renderers import anchor, autonomy, cards, digest, packs, storm
from handlers.renderers.registry import render

# Importing a renderer module registers its `@renders(kind)` functions; name them so that a reader
# (and ruff) sees the registration is the point of the import.
RENDERER_MODULES = (anchor, autonomy, cards, digest, packs, storm)

__all__ = ["register", "render"]


def register(app: AsyncApp, svc: Services) -> None:
    """Register every listener on the one bolt app."""
    buttons.register(app, svc)
    override_modal.register(app, svc)
    commands.register(app, svc)
    home.register(app, svc)
    slash_autonomy.register(app, svc)  # Grant / Dismiss buttons
