"""Button clicks on action cards."""

from __future__ import annotations

from typing import Any

from slack_bolt.app.async_app import AsyncApp

from bot.decisions import respond
from bot.services import Services


def register(app: AsyncApp, svc: Services) -> None:
    for name in ("approve", "acknowledge"):
        app.action(name)(_respond_to(svc, name))


def _respond_to(svc: Services, response: str) -> Any:
    async def handler(ack: Any, body: dict[str, Any], respond_: Any = None, client: Any = None) -> None:
        await ack()
        user = body["user"]
        action_id = int(body["actions"][0]["value"])
        await respond(svc, action_id, user_id=user["id"], user_name=user.get("name"), response=response,
                      via="button")

    return handler
