"""Slack user ids as display names for the web pages and the record (users.info, cached for a day
in `slack_users`); an id Slack does not know is shown as itself."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from bot.services import Services
from storage.queries import names as cache

log = logging.getLogger("countersign.web.names")
CACHE_FOR = timedelta(days=1)


def _is_user(spec: str) -> bool:
    return spec[:1] in ("U", "W") and spec.isalnum()


async def display_names(svc: Services, ids: Iterable[str | None]) -> dict[str, str]:
    """{user id: name} for every Slack user id among `ids` (others are left out)."""
    wanted = {i for i in ids if i and _is_user(i)}
    now = svc.clock()
    async with svc.db.session() as session:
        known = await cache.cached(session, wanted, now - CACHE_FOR)
    for user_id in sorted(wanted - known.keys()):
        name = await _users_info(svc, user_id)
        if name:
            known[user_id] = name
            async with svc.db.session() as session:
                await cache.remember(session, user_id, name, now)
    return known


async def display_name(svc: Services, user_id: str) -> str | None:
    return (await display_names(svc, [user_id])).get(user_id)


async def _users_info(svc: Services, user_id: str) -> str | None:
    if svc.slack is None:
        return None
    try:
        resp: Any = await svc.slack.users_info(user=user_id)
    except Exception as exc:  # a name is a nicety: the page shows the id instead
        log.info("users.info %s failed: %s", user_id, exc)
        return None
    user = resp.get("user") or {}
    profile = user.get("profile") or {}
    return profile.get("display_name") or user.get("real_name") or profile.get("real_name") or user.get("name")
