"""What Countersign says in Slack, as outbox intents.

The domain enqueues *what* to send (a card for action 42 to the owner's DM); the relay asks the
renderer (handlers.render, wired by the app factory) for the Block Kit at send time, so a card
sent late still shows the action as it is then.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from storage import outbox
from storage.models import OutboxMessage


class Kind(StrEnum):
    CARD = "card"  # the action card with its buttons (DM, service channel, leadership channel)
    FYI = "fyi"  # an autonomous action, recorded
    FORBIDDEN = "forbidden"  # an action refused at ingest
    REMINDER = "reminder"  # the current level is reminded
    UPDATE_CARDS = "update_cards"  # re-render every copy of the action's card in place (chat.update)
    NOTICE = "notice"  # a short text about an action (e.g. paging failed, escalated)
    DIGEST = "digest"
    ANCHOR = "anchor"  # the audit chain head, published
    HOME = "home"  # App Home view for a user (views.publish)


# Where each kind goes through the Slack Web API (UPDATE_CARDS is expanded by the relay).
METHODS: dict[Kind, str] = {
    Kind.CARD: "chat.postMessage",
    Kind.FYI: "chat.postMessage",
    Kind.FORBIDDEN: "chat.postMessage",
    Kind.REMINDER: "chat.postMessage",
    Kind.UPDATE_CARDS: "chat.update",
    Kind.NOTICE: "chat.postMessage",
    Kind.DIGEST: "chat.postMessage",
    Kind.ANCHOR: "chat.postMessage",
    Kind.HOME: "views.publish",
}


def send(
    session: AsyncSession,
    kind: Kind,
    *,
    channel: str | None,
    action_id: int | None = None,
    purpose: str | None = None,
    dedupe_key: str | None = None,
    **extra: Any,
) -> OutboxMessage:
    """Queue one Slack message. `channel` is a channel id, a user id (DM) or an email (resolved when sent)."""
    payload = {"kind": kind.value, "channel": channel, "action_id": action_id, **extra}
    return outbox.enqueue(
        session,
        method=METHODS[kind],
        payload=payload,
        action_id=action_id,
        purpose=purpose or kind.value,
        dedupe_key=dedupe_key,
    )


def update_cards(session: AsyncSession, action_id: int) -> OutboxMessage:
    return send(session, Kind.UPDATE_CARDS, channel=None, action_id=action_id)
