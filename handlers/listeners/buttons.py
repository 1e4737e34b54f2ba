"""Button clicks on action cards: Approve, Acknowledge, and Override (which opens the reason modal).

Every listener acks first (Slack wants an answer within 3 s), then makes one domain call. Who
may respond and which response wins is bot.decisions' business; here we only tell a refused
clicker why, privately, including who decided when they were too late.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.actions.decisions import Result, may_respond, respond
from bot.actions.rules import allowed_responses
from bot.delivery.directory import mention_ids
from bot.delivery.messages import Kind, send
from bot.delivery.pacing import slack_error
from bot.services import Services
from handlers.blocks import notices
from handlers.ids import ActionId
from storage.queries import actions as repo

log = logging.getLogger("countersign.slack.actions")


class OverrideMetadata(BaseModel):
    """What the override modal carries in `private_metadata` (Slack allows 3000 characters)."""

    action_id: int
    channel: str | None = None  # where the card was clicked, to answer there ephemerally
    response_url: str | None = None


def register(app: AsyncApp, svc: Services) -> None:
    app.action(ActionId.APPROVE)(_respond_with(svc, ActionId.APPROVE))
    app.action(ActionId.ACKNOWLEDGE)(_respond_with(svc, ActionId.ACKNOWLEDGE))
    app.action(ActionId.OVERRIDE)(_open_override(svc))


def clicked(body: dict[str, Any]) -> tuple[str, str | None, int | None]:
    """(user id, user name, Countersign action id from the button's value)."""
    user = body.get("user") or {}
    value = ((body.get("actions") or [{}])[0]).get("value") or ""
    return (
        user.get("id", ""),
        user.get("name") or user.get("username"),
        int(value) if value.isdigit() else None,
    )


async def tell(
    svc: Services, client: Any, user_id: str, result: Result, *, channel: str | None = None,
    response_url: str | None = None
) -> None:
    """Why a response was refused, privately (`privately`). Best effort: the refusal is already
    recorded whatever happens here."""
    people = await mention_ids(svc, notices.refused_people(result.refusal, result.action))
    payload = notices.refused(result.refusal, result.message, result.action, people)
    await privately(svc, client, user_id, payload, channel=channel, response_url=response_url,
                    action_id=result.action.id if result.action else None, dm_text=f":no_entry_sign: {payload['text']}")


async def privately(
    svc: Services, client: Any, user_id: str, payload: dict[str, Any], *, channel: str | None = None,
    response_url: str | None = None, action_id: int | None = None, purpose: str = "notice:refused",
    dm_text: str | None = None
) -> None:
    """An answer only `user_id` sees: in the channel they clicked in, else by the response_url, else
    by DM. The DM goes through the outbox, paced with the person's other DMs (a click from App Home
    has no channel nor response_url: posted at once, it took Slack's budget from the queued cards)."""
    try:
        if channel:
            try:
                await client.chat_postEphemeral(channel=channel, user=user_id, **payload)
                return
            except SlackApiError as exc:  # e.g. not_in_channel: fall through to the response_url
                log.info("chat.postEphemeral to %s failed: %s", channel, slack_error(exc.response))
        if response_url:
            from slack_sdk.webhook.async_client import AsyncWebhookClient

            await AsyncWebhookClient(response_url).send(
                response_type="ephemeral", replace_original=False, **payload
            )
            return
        async with svc.db.session() as session:
            send(session, Kind.NOTICE, channel=user_id, action_id=action_id, purpose=purpose,
                 text=dm_text or payload["text"])
            await session.commit()
    except Exception:  # a lost note must not fail the request
        log.exception("could not tell %s: %s", user_id, payload.get("text"))


def _respond_with(svc: Services, response: str) -> Any:
    async def handler(ack: Any, body: dict[str, Any], client: Any) -> None:
        await ack()
        user_id, name, action_id = clicked(body)
        if action_id is None:
            return
        result = await respond(
            svc, action_id, user_id=user_id, user_name=name, response=response, via="button"
        )
        if not result.accepted:
            await tell(
                svc,
                client,
                user_id,
                result,
                channel=(body.get("channel") or {}).get("id"),
                response_url=body.get("response_url"),
            )

    return handler


def _open_override(svc: Services) -> Any:
    async def handler(ack: Any, body: dict[str, Any], client: Any) -> None:
        await ack()
        user_id, name, action_id = clicked(body)
        if action_id is None:
            return
        channel = (body.get("channel") or {}).get("id")
        async with svc.db.session() as session:
            action = await repo.get(session, action_id)
        if (
            action is not None
            and ActionId.OVERRIDE in allowed_responses(action)
            and await may_respond(svc, action, user_id)
        ):
            if not body.get("trigger_id"):  # no modal without one (a KeyError here answered Slack 404)
                await privately(svc, client, user_id, notices.refusal(
                    f"Slack sent no trigger_id, so the override form cannot open. Override with a reason: "
                    f"`/ai-actions override {action_id} REASON`."), channel=channel,
                    response_url=body.get("response_url"), action_id=action_id, purpose="notice:override")
                return
            meta = OverrideMetadata(
                action_id=action_id, channel=channel, response_url=body.get("response_url")
            )
            await client.views_open(
                trigger_id=body["trigger_id"], view=notices.override_modal(action, meta.model_dump_json())
            )
            return
        # Refused before asking for a reason: decisions records the attempt and says why.
        result = await respond(
            svc, action_id, user_id=user_id, user_name=name, response=ActionId.OVERRIDE, via="button"
        )
        await tell(svc, client, user_id, result, channel=channel, response_url=body.get("response_url"))

    return handler
