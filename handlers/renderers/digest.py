"""Renderers for the daily digest (Kind.DIGEST, from the snapshot bot.reports.digest took) and for
App Home refreshes (Kind.HOME, built at send time by handlers.listeners.home)."""

from __future__ import annotations

from typing import Any

from bot.delivery.directory import mention_ids
from bot.delivery.messages import Kind
from bot.services import Services
from handlers.blocks.digest import digest_message, digest_people
from handlers.listeners.home import home_view
from handlers.renderers.registry import renders


@renders(Kind.DIGEST)
async def render_digest(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The people a policy names by email are resolved here (the cache, else Slack, briefly), so the
    digest mentions them as Slack users; the snapshot keeps the policy's spec."""
    digest = payload["digest"]
    return digest_message(digest, await mention_ids(svc, digest_people(digest)))


@renders(Kind.HOME)
async def render_home(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    user_id = payload.get("channel")
    if not user_id or user_id[:1] not in ("U", "W"):
        return None  # an email Slack could not resolve (the relay resolves them first)
    return {"user_id": user_id, "view": await home_view(svc, user_id)}
