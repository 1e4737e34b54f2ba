"""What Countersign says in Slack, as outbox intents.

The domain enqueues *what* to send (a card for action 42 to the owner's DM); the relay asks the
renderer (handlers.render, wired by the app factory) for the Block Kit at send time, so a card
sent late still shows the action as it is then.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enqueue import Queued, enqueue


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
    STORM = "storm"  # a storm's parent card in the service channel (bot.delivery.storms)
    CARD_PACK = "card_pack"  # several cards in one message, when a storm makes a queue deep (the relay)
    FYI_PACK = "fyi_pack"  # many autonomous actions' FYIs in one message, a line each (the relay)
    REMINDER_PACK = "reminder_pack"  # a deep queue's reminders to one person or channel, a line each
    NOTICE_PACK = "notice_pack"  # a deep queue's notes to one person or channel, a line each
    AUTONOMY = "autonomy"  # a pause, a resume, the brake, a grant, a failed result (bot.autonomy)


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
    Kind.STORM: "chat.postMessage",  # and chat.update for its running count
    Kind.CARD_PACK: "chat.postMessage",
    Kind.FYI_PACK: "chat.postMessage",
    Kind.REMINDER_PACK: "chat.postMessage",
    Kind.NOTICE_PACK: "chat.postMessage",
    Kind.AUTONOMY: "chat.postMessage",
}

# What an outbox row is for (its `purpose`): which copy of a card it is, so a decision re-draws every
# copy in place (storage slack_messages), a storm threads the channel's and a deep queue packs them.
CARD_CHANNEL = "card:channel"  # the service channel's copy
CARD_LEADERSHIP = "card:leadership"  # the leadership channel's copy
STORM_PARENT, STORM_UPDATE = "storm:parent", "storm:update"
THREADED_PURPOSES = frozenset({CARD_CHANNEL, Kind.FYI.value})  # what goes into a storm's thread


def card_purpose(level: str | None) -> str:
    """The copy of a card sent to an escalation level (None: the service channel's copy)."""
    if level is None:
        return CARD_CHANNEL
    return CARD_LEADERSHIP if level == "leadership" else f"card:dm:{level}"


def card_level(purpose: str) -> str:
    """The level a card copy went to (`channel` for the service channel's copy)."""
    return purpose.split(":")[-1]


def reminder_purpose(step_key: str) -> str:
    return f"remind:{step_key}"


# The card copies a storm's deep queue may pack (a leadership pack mentions its users once, at the top).
PACKABLE_PURPOSES = frozenset({card_purpose("owner"), card_purpose("secondary"), CARD_LEADERSHIP, CARD_CHANNEL})


def send(
    session: AsyncSession,
    kind: Kind,
    *,
    channel: str | None,
    action_id: int | None = None,
    purpose: str | None = None,
    dedupe_key: str | None = None,
    **extra: Any,
) -> Queued:
    """Queue one Slack message. `channel` is a channel id, a user id (DM) or an email (resolved when sent)."""
    payload = {"kind": kind.value, "channel": channel, "action_id": action_id, **extra}
    return enqueue(
        session,
        method=METHODS[kind],
        payload=payload,
        action_id=action_id,
        purpose=purpose or kind.value,
        dedupe_key=dedupe_key,
    )


def update_cards(session: AsyncSession, action_id: int) -> Queued:
    return send(session, Kind.UPDATE_CARDS, channel=None, action_id=action_id)
