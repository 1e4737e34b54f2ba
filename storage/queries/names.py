"""Display names of Slack users, cached in `slack_users` under the user id (emails are cached there
by bot.delivery.directory under the email): the web pages show names, never bare ids."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import SlackUser


async def cached(session: AsyncSession, user_ids: Collection[str], fresh_after: datetime) -> dict[str, str]:
    """{user id: name} for the ids whose name was fetched after `fresh_after`."""
    if not user_ids:
        return {}
    rows = await session.execute(
        select(SlackUser.key, SlackUser.name).where(
            col(SlackUser.key).in_(sorted(user_ids)), col(SlackUser.fetched_at) > fresh_after,
            col(SlackUser.name).is_not(None)))
    return {key: name for key, name in rows.all() if name}


async def remember(session: AsyncSession, user_id: str, name: str | None, at: datetime,
                   error: str | None = None) -> None:
    """Cache one name, or that Slack does not know the id (`error`, no name); a concurrent writer of
    the same id wins (the answer is the same)."""
    row = await session.get(SlackUser, user_id) or SlackUser(key=user_id, slack_user_id=user_id)
    row.name, row.error, row.fetched_at = name, error, at
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()


async def known(session: AsyncSession, keys: Collection[str]) -> dict[str, tuple[str | None, str | None]]:
    """{key: (slack user id, name)} for the keys (emails, lowercased, and user ids) the cache holds,
    whatever their age: one statement. A key Slack said it does not know has (None, None)."""
    if not keys:
        return {}
    rows = await session.execute(select(SlackUser.key, SlackUser.slack_user_id, SlackUser.name)
                                 .where(col(SlackUser.key).in_(sorted(keys))))
    return {key: (user_id, name) for key, user_id, name in rows.all()}
