"""App Home: what waits on you (with the buttons), your recent decisions, and the services you own
with their autonomy modes (handlers.blocks.home). Published when the tab is opened, and re-published
through the outbox (Kind.HOME, see bot.escalation.home_refresh) when something of yours changes."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.delivery.directory import mention_ids
from bot.delivery.pacing import slack_error
from bot.reports import stats
from bot.services import Services
from handlers.blocks.autonomy import in_force_text
from handlers.blocks.commands import owner_people, people_in
from handlers.blocks.home import home_blocks
from storage.queries import agents, people

log = logging.getLogger("countersign.home")
WAITING_SHOWN, DECIDED_SHOWN = 20, 10


def register(app: AsyncApp, svc: Services) -> None:
    async def on_home_opened(event: dict[str, Any], client: Any) -> None:
        if event.get("tab", "home") != "home":
            return  # the Messages tab
        user_id = event["user"]
        try:
            await client.views_publish(user_id=user_id, view=await home_view(svc, user_id))
        except SlackApiError as exc:  # the next opening tries again; nothing is lost
            log.warning("views.publish for %s failed: %s", user_id, slack_error(exc.response))

    app.event("app_home_opened")(on_home_opened)


async def home_view(svc: Services, user_id: str) -> dict[str, Any]:
    async with svc.db.session() as session:
        who = await stats.person(session, user_id)
        waiting = await stats.waiting_on(session, svc.policy, who, limit=WAITING_SHOWN)
        decided = await people.decided_by(session, user_id, limit=DECIDED_SHOWN)
        names = await agents.names(session)
    roles = stats.services_of(svc.policy, who)
    named = [spec for name in roles for spec in owner_people(svc.policy, name)]
    mentions = await mention_ids(svc, [*named, *people_in([*waiting, *decided])])
    now, holding = svc.clock(), await svc.autonomy.current(fresh=True)  # Home is seldom: no second-old read
    in_force = {name: in_force_text(*holding.at_service(name, now)) for name in roles}  # paused? granted?
    return home_blocks(svc.policy, [(a, names.get(a.agent_id)) for a in waiting], WAITING_SHOWN,
                       [(a, names.get(a.agent_id)) for a in decided], roles, now, mentions, in_force)
