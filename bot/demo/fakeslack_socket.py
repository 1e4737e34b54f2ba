"""Slack's Socket Mode, played by the fake Slack: `apps.connections.open` hands out a ws:// URL on
the fake, whose WebSocket says `hello`, sends `events_api` / `interactive` / `slash_commands`
envelopes and waits for the app's ack by envelope_id (with its response payload, e.g. a modal's
`response_action: errors`), and can ask the app to reconnect (`disconnect`) or drop it.

Envelope shapes as slack_sdk.socket_mode (the aiohttp client AsyncSocketModeHandler uses) reads them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

APP_ID = "A0COUNTERSIGN"


@dataclass
class Ack:
    """What the app answered to one envelope."""

    envelope_id: str
    payload: dict[str, Any] | None = None


@dataclass
class SocketMode:
    """The WebSocket side of the fake Slack (one app; the newest connection gets the envelopes)."""

    base_url: str = ""  # ws://127.0.0.1:PORT, set when the fake starts
    connections: int = 0  # how many times an app connected (a reconnect counts again)
    acks: list[Ack] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    _open: list[web.WebSocketResponse] = field(default_factory=list)
    _waiting: dict[str, asyncio.Future[Ack]] = field(default_factory=dict)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Condition | None = None

    def attach(self, app: web.Application) -> None:
        app.router.add_get("/socket-mode/{n}", self._socket)

    def started(self, http_base: str) -> None:
        """The fake's HTTP base (http://host:port): its WebSocket lives on the same port."""
        self.base_url = "ws://" + http_base.removeprefix("http://").rstrip("/")

    def connections_open(self) -> dict[str, Any]:
        """The `apps.connections.open` answer: a fresh URL each time, as Slack gives."""
        return {"ok": True, "url": f"{self.base_url}/socket-mode/{next(self._numbers)}?ticket={uuid.uuid4()}"}

    @property
    def connected(self) -> bool:
        return bool(self._open)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        async with self._condition():
            self._condition().notify_all()

    async def wait_connected(self, count: int = 1, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until the app has connected `count` times in all and is connected now."""
        async with asyncio.timeout(timeout), self._condition():
            await self._condition().wait_for(lambda: self.connections >= count and self.connected)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._open.append(ws)
        self.connections += 1
        await ws.send_json({"type": "hello", "num_connections": len(self._open),
                            "debug_info": {"host": "fakeslack", "approximate_connection_time": 18060},
                            "connection_info": {"app_id": APP_ID}})
        await self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._acked(json.loads(msg.data))
        finally:
            if ws in self._open:
                self._open.remove(ws)
            await self._notify()
        return ws

    def _acked(self, data: dict[str, Any]) -> None:
        envelope_id = str(data.get("envelope_id") or "")
        ack = Ack(envelope_id, data.get("payload"))
        self.acks.append(ack)
        waiting = self._waiting.pop(envelope_id, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(ack)

    async def send(self, kind: str, payload: dict[str, Any], *, timeout: float = 10.0) -> Ack:  # noqa: ASYNC109
        """Deliver one envelope (`events_api`, `interactive` or `slash_commands`) to the connected
        app and wait for its ack, as Slack waits up to 3 s before showing the user an error."""
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                                    "accepts_response_payload": kind != "events_api"}
        if kind == "events_api":
            envelope.update(retry_attempt=0, retry_reason="")
        await self.wait_connected(timeout=timeout)
        waiting: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._waiting[envelope_id] = waiting
        self.sent.append(envelope)
        await self._open[-1].send_json(envelope)
        async with asyncio.timeout(timeout):
            return await waiting

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's `disconnect` message: the app opens a new connection (and leaves this one)."""
        for ws in list(self._open):
            await ws.send_json({"type": "disconnect", "reason": reason,
                                "debug_info": {"host": "fakeslack"}})

    async def drop(self) -> None:
        """The connection goes away without warning (server restart, network cut): the app must
        notice and reconnect by itself."""
        for ws in list(self._open):
            await ws.close(code=1001, message=b"going away")

    async def close(self) -> None:
        """The fake stops: close what is still open, so its server does not wait for them."""
        for ws in list(self._open):
            await ws.close()
