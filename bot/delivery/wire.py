"""What one delivery does on the wire (`Wire`): render at send time and call the Slack Web API,
post a pack of cards, re-draw every copy of a card in place, or POST a signed callback to an agent.
How what came back is classified: bot/delivery/failures.py; recorded: recorder.py; looked for after
a crash: resume.py. The relay (bot/delivery/relay.py) decides when."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bot.contract.callback_target import refusal
from bot.delivery import callbacks, ssrf
from bot.delivery.directory import name_deciders, resolve
from bot.delivery.failures import CALL_TIMEOUT, Permanent
from bot.delivery.messages import Kind, card_level
from bot.delivery.packing import PACK_KINDS
from bot.delivery.resume import tag
from bot.services import Services
from storage.models import Agent, OutboxMessage
from storage.queries import actions as repo
from storage.queries import storms as storm_rows

# Render a queued message into Slack Web API arguments (text, blocks, view...), or None to skip it.
Renderer = Callable[[Services, dict[str, Any]], Awaitable[dict[str, Any] | None]]


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
