"""Render queued messages (bot.messages.Kind) into Slack Web API arguments at send time.

Each message kind has one renderer, registered with `@renders(kind)` in the module that owns
that kind of message (cards, digest, home, ...). The relay calls `render(svc, payload)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.services import Services

Renderer = Callable[[Services, dict[str, Any]], Awaitable[dict[str, Any] | None]]
RENDERERS: dict[str, Renderer] = {}


def renders(kind: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        RENDERERS[str(kind)] = fn
        return fn

    return register


async def render(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    """Slack Web API arguments for a queued message, or None to skip it (e.g. its action is gone)."""
    renderer = RENDERERS.get(payload["kind"])
    if renderer is None:
        raise LookupError(f"no renderer for message kind {payload['kind']!r}")
    return await renderer(svc, payload)
