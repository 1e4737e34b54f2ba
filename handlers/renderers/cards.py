"""Renderers for the messages about actions (cards, FYIs, refusals, reminders, notices).

The relay calls these at send time, so a card sent (or updated) late shows the action as it is
then. Each reads what it needs from the database and hands plain data to handlers.blocks.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.delivery.directory import UserNotFound, is_email, resolve
from bot.delivery.messages import Kind, card_purpose
from bot.escalation.snapshot import snapshot_of
from bot.services import Services
from handlers.blocks import card as blocks
from handlers.blocks import notices
from handlers.blocks.kit import escape
from handlers.renderers.registry import renders
from handlers.web.links import action_url
from storage.models import Action
from storage.queries import actions as repo
from storage.queries import autonomy as autonomy_q

log = logging.getLogger("countersign.cards")


async def people_of(svc: Services, action: Action) -> dict[str, str]:
    """Emails in the action's chain -> Slack user ids, so cards can @-mention them (cached lookups)."""
    snapshot = snapshot_of(action)
    specs = [snapshot.owner, snapshot.secondary, action.owner, action.decided_by, *snapshot.leadership_users]
    people: dict[str, str] = {}
    for spec in specs:
        if not spec or not is_email(spec) or spec in people:
            continue
        try:
            user_id = await resolve(svc, spec)
        except (UserNotFound, SlackApiError) as exc:
            log.info("card shows %s as text: %s", spec, exc)
            continue
        if user_id:
            people[spec] = user_id
    return people


async def paging_failures(svc: Services, *, action_id: int) -> dict[str, str]:
    """Levels whose page failed for good (escalation_steps `failed:<level>`), with the reason."""
    async with svc.db.session() as session:
        rows = await repo.step_notes(session, action_id, "failed:")
    return {step.split(":", 1)[1]: note or "unknown error" for step, note in rows}


async def result_of(svc: Services, action_id: int) -> dict[str, Any] | None:
    """The agent's reported result, shown on every copy of the card."""
    async with svc.db.read_session() as session:
        row = await autonomy_q.result_for(session, action_id)
    return None if row is None else {"result": row.result, "detail": row.detail}


async def _load(svc: Services, action_id: int | None) -> tuple[Action, str] | None:
    if action_id is None:
        return None
    async with svc.db.session() as session:
        found = await repo.get_with_agent(session, action_id)
    if found is None:
        return None
    action, agent = found
    return action, agent.name


def page_link(svc: Services, action: Action, audience: str | None, people: dict[str, str]) -> str:
    """The action page, signed for this copy's recipient: the paged person for a DM, else the
    channel the copy went to (a channel's link opens the page read-only: see handlers.web.routes)."""
    snapshot = snapshot_of(action)
    if audience in ("owner", "secondary"):
        spec = snapshot.target(audience) or ""
        viewer = people.get(spec, spec)
    elif audience == "leadership":
        viewer = snapshot.target("leadership") or "leadership"
    else:
        viewer = snapshot.channel or "channel"
    return action_url(svc.settings, action.id or 0, viewer, svc.clock())


@renders(Kind.CARD)
async def render_card(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    found = await _load(svc, payload.get("action_id"))
    if found is None:
        return None  # the action is gone: nothing to show
    action, agent = found
    audience = payload.get("level")
    if audience not in ("owner", "secondary", "leadership"):
        audience = None  # the service channel's copy
    people = await people_of(svc, action)
    return blocks.action_card(
        action,
        agent,
        people=people,
        audience=audience,
        failures=await paging_failures(svc, action_id=action.id or 0),
        page_url=page_link(svc, action, audience, people),
        result=await result_of(svc, action.id or 0),
    )


@renders(Kind.FYI)
async def render_fyi(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    found = await _load(svc, payload.get("action_id"))
    if found is None:
        return None
    action, agent = found
    people = await people_of(svc, action)
    return blocks.fyi(action, agent, people=people, page_url=page_link(svc, action, None, people),
                      result=await result_of(svc, action.id or 0))


@renders(Kind.FORBIDDEN)
async def render_forbidden(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    return notices.forbidden(payload.get("refused") or {})


@renders(Kind.REMINDER)
async def render_reminder(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    found = await _load(svc, payload.get("action_id"))
    if found is None or found[0].status != "pending":
        return None  # decided meanwhile: no nudge
    action, _ = found
    level = payload.get("level")
    message = notices.reminder(action, level=level, people=await people_of(svc, action))
    # Reply under the card this level received, so the nudge sits next to the buttons.
    async with svc.db.session() as session:
        copies = {c.purpose: c for c in await repo.slack_messages(session, action.id or 0)}
    card = copies.get(card_purpose(level)) if level else None
    if card is not None:
        message.update(channel=card.channel, thread_ts=card.ts, reply_broadcast=True)
    return message


@renders(Kind.NOTICE)
async def render_notice(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    text = payload.get("text") or ""
    if not text:
        found = await _load(svc, payload.get("action_id"))
        if found is None:
            return None
        action = found[0]
        text = f"Action {action.id} ({escape(action.summary)}): {escape(action.status)}"
    return notices.notice(text, payload.get("action_id"))
