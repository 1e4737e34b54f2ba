"""Finding out, after a crash, whether a post already reached Slack: a relay can die between Slack's
answer and the done-mark, and the row's lapsed lease hands it to another relay, which must not post
it twice. Every post carries its outbox ids in Slack message metadata (`tag`); a row whose lease
lapsed mid-send is first looked for in its conversation (`find_sent`, read with `tagged`) and, if
found, recorded as sent (`Resuming`). Why at-least-once at this edge: docs/architecture.md."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.delivery import storms
from bot.delivery.directory import resolve
from bot.delivery.failures import CALL_TIMEOUT, PERMANENT_ERRORS
from bot.delivery.pacing import describe_error, slack_error
from bot.delivery.recorder import Recorder
from bot.services import Services
from storage.models import OutboxMessage

log = logging.getLogger("countersign.relay")

# Every post carries its outbox ids in Slack message metadata, so a resend after a crash can first
# look for the post in the conversation (find_sent) instead of posting it twice.
OUTBOX_EVENT = "countersign_outbox"
HISTORY_PAGES, HISTORY_PAGE = 5, 200  # how far back find_sent reads (1,000 messages)
CLOCK_SKEW = timedelta(seconds=60)  # our clock against Slack's, when bounding the search


def tag(unit: list[OutboxMessage]) -> dict[str, Any]:
    """The message metadata a post carries: which outbox rows it delivers."""
    return {"event_type": OUTBOX_EVENT, "event_payload": {"outbox_ids": [row.id for row in unit]}}


def tagged(message: dict[str, Any]) -> set[int]:
    """The outbox ids a message from conversations.history carries (none if it is not ours)."""
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != OUTBOX_EVENT:
        return set()
    ids = (metadata.get("event_payload") or {}).get("outbox_ids") or []
    return {int(i) for i in ids if isinstance(i, int | str) and str(i).isdigit()}


async def find_sent(svc: Services, unit: list[OutboxMessage], since: datetime,
                    thread_ts: str | None = None) -> dict[int, dict[str, Any]]:
    """Which of these rows' posts Slack already has (a relay died between Slack's answer and the
    done-mark): outbox id -> {"channel", "ts"}, read from the conversation's messages since the
    lease began (conversations.history, or .replies inside a storm thread)."""
    channel = unit[0].payload.get("channel")
    if channel and "@" in channel:
        channel = await resolve(svc, channel)
    if not channel:
        return {}
    if channel[:1] in ("U", "W"):  # a DM: its messages live in the IM conversation
        async with asyncio.timeout(CALL_TIMEOUT):
            opened = await svc.slack.conversations_open(users=channel)
        channel = opened["channel"]["id"]
    wanted = {row.id for row in unit if row.id is not None}
    found: dict[int, dict[str, Any]] = {}
    args: dict[str, Any] = {"channel": channel, "include_all_metadata": True, "limit": HISTORY_PAGE,
                            "oldest": f"{(since - CLOCK_SKEW).timestamp():.6f}"}
    for _ in range(HISTORY_PAGES):
        async with asyncio.timeout(CALL_TIMEOUT):
            if thread_ts:
                page = await svc.slack.conversations_replies(ts=thread_ts, **args)
            else:
                page = await svc.slack.conversations_history(**args)
        for message in page.get("messages") or []:
            for outbox_id in tagged(message) & wanted:
                found[outbox_id] = {"channel": channel, "ts": message.get("ts"), "found_after_crash": True}
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not page.get("has_more") or not cursor or len(found) == len(wanted):
            break
        args["cursor"] = cursor
    return found


class Resuming(Recorder):
    """Rows whose lease lapsed mid-send, looked for in Slack before they are posted again. Mixed
    into the relay, which fills `_resumed` as it claims rows and as a post goes unanswered."""

    _resumed: dict[int, datetime]

    async def _skip_sent(self, unit: list[OutboxMessage], routes: list[storms.Route | None],
                         thread_ts: str | None) -> tuple[list[OutboxMessage], list[storms.Route | None]]:
        """Rows whose lease lapsed mid-send: those whose post Slack already has (found by its
        metadata) are recorded as sent with its ts; the rest go on to be posted."""
        since = min(self._resumed.get(row.id or 0, row.created_at) for row in unit)
        try:
            found = await find_sent(self.svc, unit, since, thread_ts)
        except SlackApiError as exc:
            # A server without the method (404/405/501: a Web API stand-in that only posts) can never
            # answer: waiting for it would hold the message forever, so send it.
            absent = exc.response is not None and exc.response.status_code in (404, 405, 501)
            if slack_error(exc.response) not in PERMANENT_ERRORS and not absent:
                raise  # Slack is struggling: retry the whole thing later, still checking first
            log.warning("cannot look for earlier posts (%s): sending, a duplicate is possible",
                        describe_error(exc))
            found = {}
        for row, route in zip(unit, routes, strict=True):
            self._resumed.pop(row.id or 0, None)
            if row.id in found:
                log.warning("delivery %s was already in Slack (ts %s): recorded, not sent again", row.id,
                            found[row.id]["ts"], extra={"action_id": row.action_id})
                await self._done([row], found[row.id], 200, [route])
        rest = [(row, route) for row, route in zip(unit, routes, strict=True) if row.id not in found]
        return [row for row, _ in rest], [route for _, route in rest]
