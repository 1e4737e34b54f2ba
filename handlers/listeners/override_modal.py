"""The override modal's submission: a reason is required, and the override is recorded with it."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from slack_bolt.app.async_app import AsyncApp

from bot.actions.decisions import respond
from bot.services import Services
from handlers.ids import ActionId, BlockId, CallbackId, InputId
from handlers.listeners.buttons import OverrideMetadata, tell

REASON_REQUIRED = "Say why you override it: the reason goes into the responsibility record."


def register(app: AsyncApp, svc: Services) -> None:
    app.view(CallbackId.OVERRIDE)(_submit_override(svc))


def reason_of(view: dict[str, Any]) -> str:
    values = (view.get("state") or {}).get("values") or {}
    return ((values.get(BlockId.REASON) or {}).get(InputId.REASON) or {}).get("value") or ""


def _submit_override(svc: Services) -> Any:
    async def handler(ack: Any, body: dict[str, Any], view: dict[str, Any], client: Any) -> None:
        reason = reason_of(view).strip()
        if not reason:  # Slack enforces a non-empty field, but not a blank one
            await ack(response_action="errors", errors={BlockId.REASON: REASON_REQUIRED})
            return
        try:
            meta = OverrideMetadata.model_validate_json(view.get("private_metadata") or "")
        except ValidationError:
            await ack(
                response_action="errors",
                errors={BlockId.REASON: "This form lost track of its action; open it again from the card."},
            )
            return
        await ack()
        user = body.get("user") or {}
        result = await respond(
            svc,
            meta.action_id,
            user_id=user.get("id", ""),
            user_name=user.get("name") or user.get("username"),
            response=ActionId.OVERRIDE,
            via="button",
            reason=reason,
        )
        if not result.accepted:
            await tell(
                svc,
                client,
                user.get("id", ""),
                result,
                channel=meta.channel,
                response_url=meta.response_url,
            )

    return handler
