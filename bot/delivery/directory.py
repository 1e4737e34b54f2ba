"""Slack people: resolve a policy's user spec (a `U…` id or an email) to a user id, cached.

Emails are resolved with `users.lookupByEmail`; answers (and permanent failures) are cached in
the `slack_users` table for a day so a page never waits on Slack twice for the same person.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.delivery.pacing import slack_error
from bot.services import Services
from storage.models import SlackUser

log = logging.getLogger(__name__)
CACHE_FOR = timedelta(days=1)


class UserNotFound(LookupError):
    """A permanent failure: Slack says this person does not exist (or is not reachable)."""


def is_email(spec: str) -> bool:
    return "@" in spec


async def cached_id(session: AsyncSession, spec: str, now: datetime) -> str | None:
    """The user id an e-mail is known by (the cache `resolve` fills), without asking Slack."""
    cached = await session.get(SlackUser, spec.lower())
    if cached is not None and cached.slack_user_id and now - cached.fetched_at < CACHE_FOR:
        return str(cached.slack_user_id)
    return None


async def resolve(svc: Services, spec: str | None) -> str | None:
    """A user spec -> Slack user id. Raises UserNotFound for an email Slack does not know.
    Concurrent callers for one email share one lookup (one users.lookupByEmail, one cache row)."""
    if not spec or not is_email(spec):
        return spec
    key = spec.lower()
    flight = svc.email_lookups.get(key)
    if flight is None:
        flight = svc.email_lookups[key] = asyncio.ensure_future(_resolve_email(svc, spec))
        flight.add_done_callback(lambda done: svc.email_lookups.pop(key, None)
                                 if svc.email_lookups.get(key) is done else None)
    return await asyncio.shield(flight)  # a caller cancelled (a timed-out request) leaves the others theirs


async def _resolve_email(svc: Services, spec: str) -> str | None:
    now = svc.clock()
    async with svc.db.session() as session:
        cached = await session.get(SlackUser, spec.lower())
        if cached is not None and now - cached.fetched_at < CACHE_FOR:
            if cached.slack_user_id:
                return cached.slack_user_id
            raise UserNotFound(f"{spec}: {cached.error}")
    if svc.slack is None:
        return None
    try:
        resp: Any = await _lookup_by_email(svc, spec)
        user_id, name, error = resp["user"]["id"], resp["user"].get("real_name") or resp["user"].get("name"), None
    except SlackApiError as exc:
        code = slack_error(exc.response)  # an outage may answer HTML, not JSON
        if code not in ("users_not_found", "user_not_found", "account_inactive"):
            raise  # temporary or configuration trouble: let the caller retry
        user_id, name, error = None, None, code
    async with svc.db.session() as session:
        row = await session.get(SlackUser, spec.lower()) or SlackUser(key=spec.lower())
        row.slack_user_id, row.name, row.error, row.fetched_at = user_id, name, error, now
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:  # a concurrent lookup cached the same person first: keep theirs
            await session.rollback()
    if user_id is None:
        raise UserNotFound(f"{spec}: {error}")
    return user_id


async def _lookup_by_email(svc: Services, email: str) -> Any:
    """POST form first (Slack accepts both); a server that only routes GET (as slack_sdk's own
    users_lookupByEmail sends it) answers 404/405, and then we ask that way."""
    try:
        return await svc.slack.api_call("users.lookupByEmail", data={"email": email})
    except SlackApiError as exc:
        if exc.response is None or exc.response.status_code not in (404, 405):
            raise
    return await svc.slack.users_lookupByEmail(email=email)


async def resolve_all(svc: Services, specs: list[str]) -> set[str]:
    """Every spec that resolves; people Slack cannot find are skipped (and logged)."""
    ids: set[str] = set()
    for spec in specs:
        try:
            user_id = await resolve(svc, spec)
        except UserNotFound as exc:
            log.warning("cannot resolve %s", exc)
            continue
        except SlackApiError as exc:
            log.warning("cannot resolve %s now: %s", spec, exc)
            continue
        if user_id:
            ids.add(user_id)
    return ids
