"""Slack's requests over Socket Mode instead of HTTP: the same body a test would POST to
/slack/events, sent as the envelope Slack's WebSocket carries it in (bot/demo/fakeslack_socket.py),
answered like an HTTP response so the tests read the same on both transports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from bot.demo.fakeslack_socket import Ack, SocketMode

TRANSPORTS = ["http", "socket"]
APP_TOKEN = "xapp-1-A0COUNTERSIGN-1-test"


def envelope_for(raw: str, form: bool) -> tuple[str, dict[str, Any]]:
    """(envelope type, payload) for a body Slack would have POSTed over HTTP."""
    if not form:
        return "events_api", json.loads(raw)
    fields = dict(parse_qsl(raw, keep_blank_values=True))
    if "payload" in fields:
        return "interactive", json.loads(fields["payload"])
    return "slash_commands", fields


@dataclass
class SocketAnswer:
    """The app's ack, read like the HTTP answer: 200, and its response payload as the body."""

    ack: Ack
    status: int = 200

    async def text(self) -> str:
        return json.dumps(self.ack.payload) if self.ack.payload else ""

    async def json(self) -> Any:
        return self.ack.payload

    async def read(self) -> bytes:
        return (await self.text()).encode()


async def send(socket: SocketMode, raw: str, form: bool) -> SocketAnswer:
    kind, payload = envelope_for(raw, form)
    return SocketAnswer(await socket.send(kind, payload))
