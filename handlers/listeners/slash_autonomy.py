"""`/ai-actions trust [AGENT|SERVICE]`, `pause TARGET [DURATION] REASON`, `resume TARGET`, `pauses`,
and the Grant / Dismiss buttons of a suggestion. Thin: parse, one domain call (bot.autonomy), answer."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.app.async_app import AsyncApp

from bot.autonomy import grants, pauses
from bot.autonomy import trust as trust_domain
from bot.autonomy.trust import DEFAULT_WINDOW, UnknownSubject
from bot.contract.serialize import iso
from bot.services import Services
from handlers.blocks import autonomy as ui
from handlers.blocks.kit import Message, escape, slack_date
from handlers.ids import ActionId
from handlers.listeners.buttons import privately

log = logging.getLogger("countersign.slack.autonomy")


async def trust(svc: Services, user_id: str, args: list[str]) -> Message:
    now = svc.clock()
    word = args[0] if args else None
    async with svc.db.read_session() as session:
        try:
            agent_id, service = await trust_domain.subject(svc, session, word)
        except UnknownSubject:
            return ui.mistake(f"No agent or service is called `{escape(word)}`: "
                              "use `/ai-actions trust [AGENT|SERVICE]`.")
        found = await trust_domain.records(session, now - DEFAULT_WINDOW, now, agent_id=agent_id, service=service)
        same = svc.policy.autonomy is not None and svc.policy.autonomy.window == DEFAULT_WINDOW.total_seconds()
        suggested = await trust_domain.current_suggestions(svc, session, now, agent_id=agent_id, service=service,
                                                           long=found if same else None)
    label = f"{escape(word) if word else 'every agent'}, last 30 days"
    return ui.trust_message(found, suggested, label, can_grant=await grants.may_grant(svc, user_id))


async def pause(svc: Services, user_id: str, args: list[str]) -> Message:
    text = " ".join(args)
    try:
        req = await pauses.parse_pause(svc, args, svc.clock())
    except pauses.Refused as exc:
        return ui.mistake(f":warning: {exc}")
    if not await pauses.may_pause(svc, user_id, req.target.service):  # None (all, agent:NAME): leadership
        why = "not allowed: only the service's owner and secondary (their services), leadership and admins"
        await pauses.refuse(svc, user_id, "pause", text, why)
        return ui.mistake(f":no_entry_sign: You may not pause `{escape(req.target.text)}`: only the service's "
                          "owner and secondary (for their services), leadership users and admins may. Your attempt "
                          "was recorded.")
    await pauses.start(svc, user_id, req)
    until = f"until {slack_date(req.until)}" if req.until else "until resumed"
    return ui.answer(f":double_vertical_bar: Paused `{escape(req.target.text)}` {until}: every new action for it "
                     f"needs approval. Reason: {escape(req.reason)}")


async def resume(svc: Services, user_id: str, args: list[str]) -> Message:
    if not args:
        return ui.mistake("Which pause? Use `/ai-actions resume TARGET` (see `/ai-actions pauses`).")
    try:
        target = await pauses.parse_target(svc, args[0])
        ended = await pauses.resume(svc, user_id, target)
    except pauses.Refused as exc:
        return ui.mistake(f":warning: {exc}")
    except PermissionError as exc:
        await pauses.refuse(svc, user_id, "resume", " ".join(args), str(exc))
        return ui.mistake(f":no_entry_sign: {exc} Your attempt was recorded.")
    names = ", ".join(f"`{escape(p.target)}`" for p in ended)
    return ui.answer(f":arrow_forward: Resumed {names}: the policy's modes apply again.")


async def list_pauses(svc: Services, user_id: str, args: list[str]) -> Message:
    items = [{"target": p.target, "by": p.by, "until": iso(p.until), "reason": p.reason}
             for p in await pauses.holding(svc)]
    return ui.pauses_message(items)


SUBCOMMANDS = {"trust": trust, "pause": pause, "resume": resume, "pauses": list_pauses}


def register(app: AsyncApp, svc: Services) -> None:
    app.action(ActionId.GRANT)(_decide(svc, "granted"))
    app.action(ActionId.DISMISS)(_decide(svc, "dismissed"))


def _decide(svc: Services, decision: str) -> Any:
    async def handler(ack: Any, body: dict[str, Any], client: Any) -> None:
        await ack()
        user_id = (body.get("user") or {}).get("id", "")
        token = ((body.get("actions") or [{}])[0]).get("value") or ""

        async def answer(message: Message) -> None:
            # by the response_url as before; not bolt's respond(), which raises without one: then
            # ephemerally in the channel, else by DM
            url = body.get("response_url")
            await privately(svc, client, user_id, message, response_url=url, purpose=f"notice:{decision}",
                            channel=None if url else (body.get("channel") or {}).get("id"))

        try:
            row = await grants.decide(svc, user_id, token, decision)
        except grants.GrantRefused as exc:
            await answer(ui.answer(f":no_entry_sign: {exc}"))
            return
        verb = "Granted" if decision == "granted" else "Dismissed"
        text = (f"{verb}: `{escape(row.agent)}` on {escape(row.service)} · {escape(row.action_type)} · "
                f"{escape(row.environment)} → *{row.mode}*"
                + (f" until {slack_date(row.until)}" if decision == "granted" else "") + ".")
        await answer(ui.answer(text))

    return handler
