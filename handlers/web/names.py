"""How the web pages show people and channels: a Slack user id as its display name (users.info,
cached for a day in `slack_users`), an email as the person it resolves to, a channel by its role in
the action ("leadership channel"). Whatever Slack cannot name is shown as itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import timedelta

from bot.delivery.directory import LOOKUP_WAIT_SECONDS, is_email, is_user, name_of, people
from bot.services import Services
from storage.queries import names as cache

CACHE_FOR = timedelta(days=1)


async def display_names(svc: Services, ids: Iterable[str | None]) -> dict[str, str]:
    """{user id: name} for every Slack user id among `ids` (others are left out)."""
    wanted = {i for i in ids if i and is_user(i)}
    now = svc.clock()
    async with svc.db.session() as session:
        known = await cache.cached(session, wanted, now - CACHE_FOR)
    unseen = sorted(wanted - known.keys())
    asks = [asyncio.ensure_future(name_of(svc, user_id)) for user_id in unseen]
    if asks:  # together, and at most LOOKUP_WAIT_SECONDS: a slow Slack leaves ids unnamed, not a page hanging
        await asyncio.wait(asks, timeout=LOOKUP_WAIT_SECONDS)
    for user_id, ask in zip(unseen, asks, strict=True):
        if not ask.done():
            ask.add_done_callback(_quiet)  # it finishes (and caches) after we stopped waiting
        elif ask.exception() is None and ask.result():
            known[user_id] = str(ask.result())
    return known


def _quiet(ask: asyncio.Future[str | None]) -> None:
    if not ask.cancelled():
        ask.exception()  # retrieved, so asyncio does not log it as never retrieved; name_of logged it


async def display_name(svc: Services, user_id: str) -> str | None:
    return (await display_names(svc, [user_id])).get(user_id)


async def labels(svc: Services, specs: Iterable[str | None],
                 channels: Mapping[str, str] | None = None) -> dict[str, str]:
    """{spec: how a page shows it} (the `person` filter, handlers.web.render): "Name (U…)" for a user
    id or an email Slack resolves (never the email when the id is known), "role (C…)" for the
    channels in `channels` ({channel id: its role}). Specs left out are shown as given."""
    wanted = {s for s in specs if s}
    emails = await people(svc, [s for s in wanted if is_email(s)])
    ids = {s: p.user_id for s, p in emails.items() if p.user_id}
    names = await display_names(svc, [s for s in wanted if is_user(s)] + list(ids.values()))
    shown = {user_id: f"{name} ({user_id})" for user_id, name in names.items()}
    for email, user_id in ids.items():
        shown[email] = shown.get(user_id) or (f"{emails[email].name} ({user_id})" if emails[email].name else user_id)
    for channel, role in (channels or {}).items():
        if channel in wanted:
            shown[channel] = f"{role} ({channel})"
    return shown
