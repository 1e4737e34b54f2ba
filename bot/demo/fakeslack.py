"""A fake Slack Web API server (aiohttp, random port) that records every call: used by the tests
and by `countersign demo`, so the whole flow runs with no Slack workspace.

It answers like Slack (`{"ok": true, ...}`), validates blocks and views with slack_sdk.models so
a card Slack would reject fails the test, and can inject faults: HTTP 500s, 429 with Retry-After,
`ok: false` errors and slow answers, per method or for everything.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.demo.fakeslack_socket import SocketMode


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    """Answer matching calls with this instead of success, `times` times (None: until cleared)."""

    method: str | None = None  # None: every method
    status: int = 200
    error: str | None = None  # with status 200: {"ok": false, "error": error}
    retry_after: int | None = None
    delay: float = 0.0
    times: int | None = 1
    channel: str | None = None  # only calls to this channel (None: any)


@dataclass
class RateLimit:
    """Enforce Slack's chat.postMessage limit: `per_second` per channel with bursts of `burst`;
    beyond it answer 429 with Retry-After, as Slack does (the benchmark's mode)."""

    per_second: float = 1.0
    burst: int = 5
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # channel -> (tokens, at)
    refused: list[Call] = field(default_factory=list)

    def retry_after(self, channel: str) -> float:
        """0 if a message may go now (and take a token), else seconds until one may."""
        now = time.monotonic()
        tokens, at = self.buckets.get(channel, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.per_second)
        if tokens >= 1.0:
            self.buckets[channel] = (tokens - 1.0, now)
            return 0.0
        self.buckets[channel] = (tokens, now)
        return (1.0 - tokens) / self.per_second


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.users_by_email: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.down = False  # refuse every call with 503, as in an outage
        self.post_limit: RateLimit | None = None  # set to enforce chat.postMessage's per-channel rate
        self._ts = itertools.count(1)
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> latest message
        self.history: dict[str, list[dict[str, Any]]] = {}  # conversation id -> its messages, oldest first
        self._last_ts = 0.0
        self.on_call: list[Callable[[Call], None]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.team_id = "T1"  # the workspace auth.test names (the app accepts requests from it only)
        self.socket = SocketMode()  # Socket Mode: apps.connections.open and its WebSocket

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)  # slack_sdk sends some methods as GET
        app.router.add_post("/response/{key}", self._response_url)
        self.socket.attach(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/api/"
        self.socket.started(f"http://127.0.0.1:{port}")
        return self.url

    async def stop(self) -> None:
        await self.socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- test helpers ------------------------------------------------------------------------------
    def add_user(self, user_id: str, email: str | None = None, name: str | None = None) -> None:
        user = {"id": user_id, "name": name or user_id.lower(), "real_name": name or user_id,
                "profile": {"email": email}}
        self.users[user_id] = user
        if email:
            self.users_by_email[email.lower()] = user

    def inject(self, fault: Fault) -> None:
        self.faults.append(fault)

    def calls_to(self, method: str, **match: Any) -> list[Call]:
        return [c for c in self.calls if c.method == method
                and all(c.args.get(k) == v for k, v in match.items())]

    def posts(self, channel: str | None = None) -> list[Call]:
        return [c for c in self.calls_to("chat.postMessage") if channel is None or c.args.get("channel") == channel]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting; calls so far: {[c.method for c in self.calls]}")

    # --- the API -----------------------------------------------------------------------------------
    async def _args(self, request: web.Request) -> dict[str, Any]:
        raw = await request.text()
        if request.method == "GET":
            return dict(request.query)
        if request.content_type == "application/json":
            return {**request.query, **json.loads(raw or "{}")}
        args: dict[str, Any] = {**request.query, **dict(parse_qsl(raw))}  # Slack reads both
        for key in ("blocks", "view", "attachments"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        return args

    def response_url(self, key: str = "r1") -> str:
        """A response_url for slash commands and interactions; posts to it are recorded."""
        return f"{self.url.removesuffix('/api/')}/response/{key}"

    async def _response_url(self, request: web.Request) -> web.Response:
        self.calls.append(Call(f"response_url:{request.match_info['key']}", await request.json()))
        return web.Response(text="ok")

    def _fault_for(self, method: str, args: dict[str, Any] | None = None) -> Fault | None:
        for fault in self.faults:
            if fault.channel is not None and (args or {}).get("channel") != fault.channel:
                continue
            if fault.method in (None, method):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if self.down:
            return web.Response(status=503, text="service unavailable")
        args = await self._args(request)
        if method == "chat.postMessage" and self.post_limit is not None:
            wait = self.post_limit.retry_after(str(args.get("channel", "")))
            if wait > 0:
                self.post_limit.refused.append(Call(method, args))
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                         headers={"Retry-After": str(math.ceil(wait))})
        fault = self._fault_for(method, args)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status == 429:
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                         headers={"Retry-After": str(fault.retry_after or 1)})
            if fault.status != 200:
                return web.Response(status=fault.status, text="fault injected")
            if fault.error:
                return web.json_response({"ok": False, "error": fault.error})
        call = Call(method, args)
        problem = self._validate(method, args)
        if problem:
            return web.json_response({"ok": False, "error": "invalid_blocks", "errors": [problem]})
        self.calls.append(call)
        for hook in self.on_call:
            hook(call)
        return web.json_response(self._answer(method, args))

    # --- message history: metadata, conversations.history / conversations.replies ------------------
    def _next_ts(self) -> str:
        """A message ts as Slack makes them: the wall-clock time, unique and increasing."""
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    @staticmethod
    def conversation(channel: str) -> str:
        """Where a post lands: a post to a user id goes to the app's DM with that user, the IM
        conversation conversations.open returns ("D" + user id here)."""
        return "D" + channel if channel[:1] in ("U", "W") else channel

    def _file_message(self, channel: str, ts: str, args: dict[str, Any]) -> None:
        message: dict[str, Any] = {"type": "message", "ts": ts, "text": args.get("text") or "", "user": "UBOT",
                                   "bot_id": "BBOT"}
        metadata = args.get("metadata")
        if isinstance(metadata, str):  # form-encoded calls send it as JSON text
            metadata = json.loads(metadata)
        if metadata:
            message["metadata"] = metadata
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
            if str(args.get("reply_broadcast", "")).lower() in ("true", "1"):
                message["subtype"] = "thread_broadcast"  # also shown in the channel, as Slack does
        self.history.setdefault(self.conversation(channel), []).append(message)

    def _read_history(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """Newest first, `oldest`/`latest` exclusive bounds, `limit` with a cursor; metadata only with
        include_all_metadata; history leaves thread replies out (except those also sent to the
        channel, `thread_broadcast`), replies gives the parent and its thread (oldest first), as Slack
        does."""
        channel = str(args.get("channel", ""))
        if channel not in self.history and channel[:1] not in ("C", "D", "G"):
            return {"ok": False, "error": "channel_not_found"}
        oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or math.inf)
        messages = [m for m in self.history.get(channel, []) if oldest < float(m["ts"]) < latest]
        if method == "conversations.history":
            messages = [m for m in messages if m.get("thread_ts") in (None, m["ts"])
                        or m.get("subtype") == "thread_broadcast"][::-1]
        else:
            parent = str(args.get("ts", ""))
            messages = [m for m in messages if m["ts"] == parent or m.get("thread_ts") == parent]
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit") or 100)
        page = messages[start:start + limit]
        if str(args.get("include_all_metadata", "")).lower() not in ("true", "1"):
            page = [{k: v for k, v in m.items() if k != "metadata"} for m in page]
        more = start + limit < len(messages)
        return {"ok": True, "messages": page, "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

    def _validate(self, method: str, args: dict[str, Any]) -> str | None:
        try:
            for block in args.get("blocks") or []:
                Block.parse(block).validate_json()  # type: ignore[union-attr]
            if len(args.get("blocks") or []) > 50:
                return "more than 50 blocks"
            if "view" in args:
                view = args["view"]
                View(**view).validate_json()
                if len(view.get("blocks") or []) > 100:
                    return "more than 100 blocks in a view"
            if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
                if not args.get("text") and not args.get("blocks"):
                    return "no_text"
                if len(args.get("text") or "") > 40000:
                    return "msg_too_long"
        except Exception as exc:  # slack_sdk raises SlackObjectFormationError and friends
            return f"{type(exc).__name__}: {exc}"
        return None

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "apps.connections.open":
            return self.socket.connections_open()
        if method == "auth.test":
            return {"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": self.team_id, "team": "Test"}
        if method == "users.lookupByEmail":
            user = self.users_by_email.get(str(args.get("email", "")).lower())
            return {"ok": True, "user": user} if user else {"ok": False, "error": "users_not_found"}
        if method == "users.info":
            user = self.users.get(args.get("user", ""))
            return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + str(args.get("users", "X"))}}
        if method in ("conversations.history", "conversations.replies"):
            return self._read_history(method, args)
        if method in ("chat.postMessage", "chat.update"):
            channel = args.get("channel", "")
            ts = str(args.get("ts")) if method == "chat.update" else self._next_ts()
            self.messages[(channel, ts)] = args
            if method == "chat.postMessage":
                self._file_message(channel, ts, args)
            return {"ok": True, "channel": channel, "ts": ts, "message": {"text": args.get("text")}}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{1700000000 + next(self._ts)}.000200"}
        if method in ("views.open", "views.publish", "views.update", "views.push"):
            return {"ok": True, "view": {"id": f"V{next(self._ts)}", **(args.get("view") or {})}}
        return {"ok": True}
