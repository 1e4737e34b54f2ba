"""What one delivery does on the wire: render at send time and call the Slack Web API, post a pack
of cards, re-draw every copy of a card in place, or POST a signed callback to an agent (`Wire`);
and how what came back is recorded (`Recorder`). The relay (bot/relay.py) decides when."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.contract.callback_target import refusal
from bot.delivery import callbacks, ssrf, storms
from bot.delivery.directory import name_deciders, resolve
from bot.delivery.messages import Kind, card_level
from bot.delivery.pacing import backoff
from bot.delivery.packing import PACK_KINDS
from bot.services import Services
from storage import outbox
from storage.ledger import chain as ledger
from storage.models import Action, Agent, OutboxMessage
from storage.queries import actions as repo
from storage.queries import storms as storm_rows

log = logging.getLogger("countersign.relay")

# Slack errors that retrying cannot fix: recorded, surfaced, and handed to escalation.
PERMANENT_ERRORS = frozenset({
    "channel_not_found", "not_in_channel", "invalid_auth", "missing_scope", "user_not_found",
    "users_not_found", "account_inactive", "is_archived", "not_authed", "token_revoked",
    "invalid_blocks", "invalid_arguments", "msg_too_long", "no_text", "cant_update_message",
    "message_not_found", "user_disabled", "channel_is_archived", "unknown_method", "not_allowed_token_type",
})
# HTTP statuses that say the Web API has no such method: Slack answers an unknown method
# `unknown_method`, but a proxy or a minimal stand-in answers 404/405/410 with no JSON at all. As
# permanent as `unknown_method`: retried, an owner given by e-mail behind a missing
# users.lookupByEmail was never paged and escalation never moved past them.
NO_SUCH_METHOD = frozenset({404, 405, 410})
# `ok: false` answers that mean Slack itself is struggling (count towards the breaker).
SLACK_TROUBLE = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
# How a call that got no answer at all (timeout, refused or dropped connection) is recorded.
NO_ANSWER = "no answer"
CALL_TIMEOUT = 10.0  # seconds one Slack call or callback may take
# Every post carries its outbox ids in Slack message metadata, so a resend after a crash can first
# look for the post in the conversation (Wire.find_sent) instead of posting it twice.
OUTBOX_EVENT = "countersign_outbox"
HISTORY_PAGES, HISTORY_PAGE = 5, 200  # how far back find_sent reads (1,000 messages)
CLOCK_SKEW = timedelta(seconds=60)  # our clock against Slack's, when bounding the search

# Render a queued message into Slack Web API arguments (text, blocks, view...), or None to skip it.
Renderer = Callable[[Services, dict[str, Any]], Awaitable[dict[str, Any] | None]]
# A page that failed for good, handed back to escalation (bot.escalation.paging.fail_level): the
# app factory passes it in, so delivery never imports the escalation room above it.
PageFailed = Callable[[AsyncSession, Action, str, str, datetime], Awaitable[None]]


class Permanent(Exception):
    """A delivery that must not be retried."""


class Deferred(Exception):  # noqa: N818 (not an error: the post waits for its turn)
    """A post not sent now: its channel's budget has no room for it yet (`seconds` to its turn)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"paced: {seconds:.2f}s")
        self.seconds = seconds


# Called as a post leaves (the Slack channel it goes to, after resolving, and the rows it carries):
# the relay's last pacing check (bot/delivery/relay.py, Relay._leaving). Raises Deferred.
BeforePost = Callable[[str, list[OutboxMessage]], Awaitable[None]]


async def _no_check(channel: str, unit: list[OutboxMessage]) -> None:
    return None


class Wire:
    def __init__(self, svc: Services, render: Renderer) -> None:
        self.svc, self.render = svc, render
        self._http: aiohttp.ClientSession | None = None
        self.before_post: BeforePost = _no_check

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _call(self, method: str, args: dict[str, Any]) -> Any:
        """One Slack Web API call, bounded (rendering before it is not: a slow render is not Slack
        failing, and must not trip the breaker)."""
        async with asyncio.timeout(CALL_TIMEOUT):
            return await self.svc.slack.api_call(method, json=args)

    async def slack(self, msg: OutboxMessage, thread_ts: str | None = None) -> dict[str, Any]:
        payload = dict(msg.payload)
        if payload.get("kind") == Kind.UPDATE_CARDS:
            return await self.update_cards(payload)
        channel = payload.get("channel")
        if channel and "@" in channel:
            payload["channel"] = await resolve(self.svc, channel)
        args = await self.render(self.svc, payload)
        if args is None:
            return {"skipped": True}
        if "channel" not in args and msg.method != "views.publish" and payload.get("channel"):
            args["channel"] = payload["channel"]
        if thread_ts:
            args["thread_ts"] = thread_ts
        if msg.method == "chat.postMessage":
            args["metadata"] = tag([msg])
            await self.before_post(str(args.get("channel") or ""), [msg])
        resp = await self._call(msg.method, args)
        return {"channel": resp.get("channel"), "ts": resp.get("ts")}

    async def pack(self, unit: list[OutboxMessage], thread_ts: str | None = None) -> dict[str, Any]:
        channel = unit[0].payload.get("channel")
        if channel and "@" in channel:
            channel = await resolve(self.svc, channel)
        kind = PACK_KINDS[Kind(unit[0].payload["kind"])]
        args = await self.render(self.svc, {"kind": kind.value, "channel": channel,
                                            "action_ids": [row.action_id for row in unit],
                                            "texts": [row.payload.get("text") or "" for row in unit],
                                            "level": unit[0].payload.get("level")})
        if args is None:
            return {"skipped": True}
        args["channel"] = channel
        if thread_ts:
            args["thread_ts"] = thread_ts
        args["metadata"] = tag(unit)
        await self.before_post(str(channel or ""), unit)
        resp = await self._call("chat.postMessage", args)
        return {"channel": resp.get("channel"), "ts": resp.get("ts"), "pack": len(unit)}

    async def find_sent(self, unit: list[OutboxMessage], since: datetime,
                        thread_ts: str | None = None) -> dict[int, dict[str, Any]]:
        """Which of these rows' posts Slack already has (a relay died between Slack's answer and the
        done-mark): outbox id -> {"channel", "ts"}, read from the conversation's messages since the
        lease began (conversations.history, or .replies inside a storm thread)."""
        channel = unit[0].payload.get("channel")
        if channel and "@" in channel:
            channel = await resolve(self.svc, channel)
        if not channel:
            return {}
        if channel[:1] in ("U", "W"):  # a DM: its messages live in the IM conversation
            async with asyncio.timeout(CALL_TIMEOUT):
                opened = await self.svc.slack.conversations_open(users=channel)
            channel = opened["channel"]["id"]
        wanted = {row.id for row in unit if row.id is not None}
        found: dict[int, dict[str, Any]] = {}
        args: dict[str, Any] = {"channel": channel, "include_all_metadata": True, "limit": HISTORY_PAGE,
                                "oldest": f"{(since - CLOCK_SKEW).timestamp():.6f}"}
        for _ in range(HISTORY_PAGES):
            async with asyncio.timeout(CALL_TIMEOUT):
                if thread_ts:
                    page = await self.svc.slack.conversations_replies(ts=thread_ts, **args)
                else:
                    page = await self.svc.slack.conversations_history(**args)
            for message in page.get("messages") or []:
                for outbox_id in tagged(message) & wanted:
                    found[outbox_id] = {"channel": channel, "ts": message.get("ts"), "found_after_crash": True}
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not page.get("has_more") or not cursor or len(found) == len(wanted):
                break
            args["cursor"] = cursor
        return found

    async def update_cards(self, payload: dict[str, Any]) -> dict[str, Any]:
        async with self.svc.db.session() as session:
            copies = await repo.slack_messages(session, payload["action_id"])
            packs = {c.ts: await storm_rows.pack_members(session, c.channel, c.ts) for c in copies}
        updated = []
        for copy in copies:
            level = card_level(copy.purpose)
            if len(packs[copy.ts]) > 1:  # this card shares its message: redraw the whole pack
                args = await self.render(self.svc, {"kind": Kind.CARD_PACK.value, "action_ids": packs[copy.ts]})
            elif copy.purpose == Kind.FYI.value:  # an autonomous action's FYI: it shows the result too
                args = await self.render(self.svc, {**payload, "kind": Kind.FYI, "channel": copy.channel})
            else:
                args = await self.render(self.svc, {**payload, "kind": Kind.CARD, "channel": copy.channel,
                                                    "purpose": copy.purpose, "level": level})
            if args is None:
                continue
            args.update(channel=copy.channel, ts=copy.ts)
            await self._call("chat.update", args)
            updated.append(copy.ts)
        return {"updated": updated}

    async def callback(self, msg: OutboxMessage) -> tuple[dict[str, Any], int]:
        async with self.svc.db.session() as session:
            agent = await session.get(Agent, msg.payload["agent_id"])
        if agent is None:
            raise Permanent("the agent no longer exists")
        sent = dict(msg.payload["body"])  # decision.by as GET gives it (the row keeps what was queued)
        await name_deciders(self.svc, [sent])
        body = callbacks.encode(sent)
        headers = {"Content-Type": "application/json", **callbacks.sign(agent.callback_secret, body)}
        allow = self.svc.settings.callback_allow_list
        refused = await refusal(msg.payload["url"], allow, strict=False)  # literals; names: the resolver
        if refused is not None:
            raise Permanent(f"callback_url refused: {refused}")
        if self._http is None:
            self._http = ssrf.client_session(allow, CALL_TIMEOUT)
        try:
            # Not followed: a redirect would carry the signed decision past the allow-list checks.
            async with self._http.post(msg.payload["url"], data=body, headers=headers,
                                       allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    return {"status": resp.status}, resp.status
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status,
                                                  message=f"callback answered {resp.status}")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ssrf.CallbackRefused):  # resolved to a refused address
                raise Permanent(f"callback_url refused: {exc.os_error}") from None
            raise


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


def _updatable(row: OutboxMessage, unit_size: int) -> bool:
    """A message later redrawn in place (its copy remembered): a card (alone or in a pack), or an
    FYI sent alone (an FYI pack is a line per action, and is left as posted)."""
    kind = row.payload.get("kind")
    return kind == Kind.CARD or (kind == Kind.FYI and row.purpose == Kind.FYI.value and unit_size == 1)


class Recorder:
    """What came back: every attempt recorded, the row moved to done, retried (backoff) or failed
    (and a failed page handed to escalation). Mixed into the relay, which owns `svc`."""

    svc: Services
    on_page_failed: PageFailed
    mark_windows: deque[float]  # the latest done-mark windows (seconds), for the benchmark

    @staticmethod
    async def _each(unit: list[OutboxMessage], record: Callable[..., Awaitable[None]], *args: Any,
                    **kwargs: Any) -> None:
        for row in unit:
            await record(row, *args, **kwargs)

    async def _done(self, unit: list[OutboxMessage], result: dict[str, Any], code: int,
                    routes: list[storms.Route | None]) -> None:
        """Mark the rows done right after the send (one short transaction: the shorter this gap,
        the rarer a duplicate), remembering where each card now lives."""
        now = self.svc.clock()
        answered = time.monotonic()
        async with self.svc.db.urgent_session() as session:
            await outbox.mark_done(session, unit, status_code=code, result=result, at=now)
            if result.get("ts"):
                await repo.remember_messages(session, [(m.action_id or 0, m.purpose or "card") for m in unit
                                                       if m.target == "slack" and _updatable(m, len(unit))],
                                             result["channel"], result["ts"])
            threaded = Counter(r.storm_id for r in routes if r is not None and r.storm_id is not None)
            for storm_id, n in threaded.items() if result.get("ts") else ():
                await storms.child_posted(session, storm_id, now, n)
            for msg in unit:
                if msg.payload.get("kind") == Kind.STORM and msg.method == "chat.postMessage":
                    await storm_rows.parent_posted(session, msg.payload["storm_id"], result.get("channel"),
                                                   result.get("ts"))
                if msg.target == "callback":
                    await ledger.append(session, "callback.delivered",
                                        {"url": msg.payload["url"], "status": code}, action_id=msg.action_id)
            await session.commit()
        window = time.monotonic() - answered
        self.svc.metrics.outbox_mark_window.observe(window)
        self.mark_windows.append(window)

    async def _retry(self, msg: OutboxMessage, error: str, *, delay: float | None = None,
                     status_code: int | None = None) -> None:
        assert msg.id is not None
        now = self.svc.clock()
        give_up = msg.target == "callback" and now - msg.created_at > timedelta(
            seconds=callbacks.GIVE_UP_AFTER_SECONDS)
        cap = 3600 if msg.target == "callback" else 60
        wait = delay if delay is not None else backoff(msg.attempts + 1, cap=cap)
        log.warning("delivery %s (%s) failed, retry in %.1fs: %s", msg.id, msg.method, wait, error,
                    extra={"action_id": msg.action_id})
        self.svc.metrics.outbox_errors.labels(msg.target, error.split(":")[0][:40], "false").inc()
        async with self.svc.db.session() as session:
            await outbox.record_attempt(session, msg.id, ok=False, status_code=status_code, error=error,
                                        retry_at=now + timedelta(seconds=wait), give_up=give_up, at=now)
            if give_up:
                await _callback_given_up(session, msg, error, now)
            await session.commit()

    async def _failed(self, msg: OutboxMessage, error: str, *, status_code: int | None = None) -> None:
        assert msg.id is not None
        log.error("delivery %s (%s to %s) failed for good: %s", msg.id, msg.method, msg.channel_key, error,
                  extra={"action_id": msg.action_id})
        self.svc.metrics.outbox_errors.labels(msg.target, error[:40], "true").inc()
        now = self.svc.clock()
        async with self.svc.db.session() as session:
            await outbox.record_attempt(session, msg.id, ok=False, status_code=status_code, error=error,
                                        give_up=True, at=now)
            if msg.target == "callback":
                await _callback_given_up(session, msg, error, now)
            level = msg.payload.get("level")
            if msg.payload.get("kind") == Kind.CARD and level and msg.action_id:
                action = await repo.get(session, msg.action_id)
                if action is not None and action.status == "pending":
                    await self.on_page_failed(session, action, level, error, now)
            await session.commit()


async def _callback_given_up(session: AsyncSession, msg: OutboxMessage, error: str, now: datetime) -> None:
    """The agent never learned the decision through its callback: that belongs in the audit trail."""
    await ledger.append(session, "callback.failed",
                        {"url": msg.payload["url"], "error": error, "attempts": msg.attempts + 1},
                        action_id=msg.action_id, at=now)
