"""App Home: what waits on you (with the buttons), your recent decisions, and the services you own
with their autonomy modes. Published when the tab is opened, and re-published through the outbox
(Kind.HOME, see bot.home_refresh) when something of yours changes."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.reports import stats
from bot.services import Services
from handlers.blocks import commands as ui

log = logging.getLogger("countersign.home")
MAX_VIEW_BLOCKS = 100
WAITING_SHOWN, DECIDED_SHOWN = 20, 10


def register(app: AsyncApp, svc: Services) -> None:
    async def on_home_opened(event: dict[str, Any], client: Any) -> None:
        if event.get("tab", "home") != "home":
            return  # the Messages tab
        user_id = event["user"]
        try:
            await client.views_publish(user_id=user_id, view=await home_view(svc, user_id))
        except SlackApiError as exc:  # the next opening tries again; nothing is lost
            log.warning("views.publish for %s failed: %s", user_id, exc.response.get("error"))

    app.event("app_home_opened")(on_home_opened)


async def home_view(svc: Services, user_id: str) -> dict[str, Any]:
    async with svc.db.session() as session:
        who = await stats.person(session, user_id)
        waiting = await stats.waiting_on(session, svc.policy, who, limit=WAITING_SHOWN)
        decided = await stats.decided_by(session, user_id, limit=DECIDED_SHOWN)
        names = await stats.agent_names(session)
    shown = f"{len(waiting)}+" if len(waiting) == WAITING_SHOWN else str(len(waiting))
    blocks: list[ui.Block] = [ui.header(f"Waiting on you ({shown})")]
    blocks += (ui.action_items([(a, names.get(a.agent_id)) for a in waiting]) if waiting
               else [ui.section("Nothing waits on you. :tada:")])
    blocks += [ui.divider(), ui.header("Your recent decisions")]
    blocks += (ui.action_items([(a, names.get(a.agent_id)) for a in decided], with_buttons=False) if decided
               else [ui.section("You have not decided anything yet.")])
    blocks += [ui.divider(), ui.header("Your services")]
    roles = stats.services_of(svc.policy, who)
    if roles:
        blocks += [ui.section(f"_{role}_ · " + ui.owner_text(svc.policy, name))
                   for name, role in roles.items()]
    else:
        blocks.append(ui.section("You are not named as owner or secondary of any service in the policy."))
    blocks.append(ui.context(f"As of {ui.slack_date(svc.clock())} · {ui.FULL_RECORD} · `/ai-actions help`"))
    if len(blocks) > MAX_VIEW_BLOCKS:
        blocks = [*blocks[: MAX_VIEW_BLOCKS - 1], ui.context("More on `/ai-actions mine`.")]
    return {"type": "home", "blocks": blocks}
