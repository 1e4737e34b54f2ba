"""`/ai-actions`: ask Slack what the AI did, what waits on you, and how the AI is doing.

The request is acknowledged at once (Slack allows 3 s); the answer goes through `respond()`
(the command's response_url), ephemeral unless the text starts with `share` and the answer is not a
refusal or a mistake (handlers.blocks.notices.Private): a mistake is never shared with the channel.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from slack_bolt.app.async_app import AsyncApp

from bot.actions.record import action_record
from bot.delivery.directory import mention_ids
from bot.policy.durations import parse_duration, spoken
from bot.reports import stats
from bot.services import Services
from handlers.blocks import commands as ui
from handlers.blocks.autonomy import in_force_text
from handlers.blocks.kit import Message, escape, message, section
from handlers.blocks.notices import Private, refusal
from handlers.blocks.record import record_message
from handlers.listeners import slash_autonomy, slash_decisions
from handlers.listeners.command_text import too_long, typed_id
from handlers.web.links import action_url, service_url
from storage.queries import actions as repo
from storage.queries import agents, people

log = logging.getLogger("countersign.commands")
COMMAND = "/ai-actions"
MAX_ITEMS = 20  # a pending item takes two blocks (text and buttons); a message holds 50
COUNT_CAP = 1000  # "1000+ pending" is as useful as the exact figure, and costs a bounded scan
MIN_WINDOW, MAX_WINDOW = 60.0, 90 * 86400.0  # `stats`: past a quarter the scan outgrows an ephemeral answer


def register(app: AsyncApp, svc: Services) -> None:
    async def on_command(ack: Any, command: dict[str, Any], respond: Any) -> None:
        # Without a response_url (Slack always sends one; a bare client may not) the answer can only
        # go in the acknowledgement: bolt's respond() raised, and Slack got a 404 after 3 s.
        by_url = bool(command.get("response_url"))
        if by_url:
            await ack()  # within Slack's 3 s, whatever the query costs
        user_id = command.get("user_id", "")
        try:
            share, answer = await answer_for(svc, user_id, command.get("text") or "",
                                             user_name=command.get("user_name"))
        except Exception:
            log.exception("/ai-actions %r failed", command.get("text"))
            share, answer = False, ui.help_message(":warning: Something went wrong answering that; "
                                                   "it was logged. Try again in a moment.")
        if share:
            answer = ui.shared(answer, user_id, COMMAND)
        kind = "in_channel" if share else "ephemeral"
        if not by_url:
            await ack(response_type=kind, **answer)
            return
        await respond(response_type=kind, replace_original=False, **answer)

    app.command(COMMAND)(on_command)


async def answer_for(svc: Services, user_id: str, text: str,
                     user_name: str | None = None) -> tuple[bool, Message]:
    """(share with the channel?, the answer) for the command's text; `user_name` is the payload's, the
    name a decision records when Slack's users.info cannot name the user (as a click records it).
    Shared only when asked with `share` and the answer is no refusal or mistake (`Private`)."""
    problem = too_long(text)
    if problem is not None:  # answered, never shared: the channel need not see a mistake
        return False, refusal(problem)
    words = text.strip().split()
    share = bool(words) and words[0].lower() == "share"
    if share:
        words = words[1:]
    sub, args = (words[0].lower(), words[1:]) if words else ("help", [])
    decide = slash_decisions.RESPONSES.get(sub)
    if decide is not None:
        answer = await slash_decisions.decide(svc, user_id, decide, args, user_name=user_name)
        return share and ui.shareable(answer), answer
    handler = SUBCOMMANDS.get(sub)
    if handler is None:
        return False, ui.unknown_command(sub)
    answer = await handler(svc, user_id, args)
    return share and ui.shareable(answer), answer


def _count(text: str, default: int) -> int:
    # isascii: `²` passes str.isdigit() but not int(); the cap keeps int() on at most 4 digits
    if not (text.isascii() and text.isdigit()):
        return default
    return MAX_ITEMS if len(text) > 4 else max(1, min(MAX_ITEMS, int(text)))


async def _recent(svc: Services, user_id: str, args: list[str]) -> Message:
    limit = _count(args[0], 10) if args else 10
    async with svc.db.session() as session:
        rows = await repo.page(session, limit=limit)
    people = await mention_ids(svc, ui.people_in(a for a, _ in rows))
    return ui.action_list(f"Last {len(rows)} AI actions", [(a, g.name) for a, g in rows],
                          empty="No actions yet.", people=people)


async def _pending(svc: Services, user_id: str, args: list[str]) -> Message:
    async with svc.db.session() as session:
        rows = await repo.page(session, status="pending", limit=MAX_ITEMS)
        total = len(rows) if len(rows) < MAX_ITEMS else await repo.count_pending(session, COUNT_CAP)
    shown = f"{COUNT_CAP}+" if total > COUNT_CAP else str(total)
    footer = f"Showing the newest {len(rows)} of {shown} pending." if total > len(rows) else ""
    people = await mention_ids(svc, ui.people_in(a for a, _ in rows))
    return ui.action_list(f"Pending: {shown} waiting for a human", [(a, g.name) for a, g in rows],
                          empty="Nothing is waiting for a human. :tada:", footer=footer, people=people)


async def _mine(svc: Services, user_id: str, args: list[str]) -> Message:
    async with svc.db.session() as session:
        who = await stats.person(session, user_id)
        waiting = await stats.waiting_on(session, svc.policy, who, limit=MAX_ITEMS // 2)
        decided = await people.decided_by(session, user_id, limit=10)
        names = await agents.names(session)
    mentions = await mention_ids(svc, ui.people_in([*waiting, *decided]))
    return ui.mine_message([(a, names.get(a.agent_id)) for a in waiting],
                           [(a, names.get(a.agent_id)) for a in decided], people=mentions)


async def _show(svc: Services, user_id: str, args: list[str]) -> Message:
    ref = typed_id(args)
    if ref is None:
        return ui.help_message("Which action? Use `/ai-actions show ID`, e.g. `/ai-actions show 42`.")
    raw, action_id = ref
    if action_id is None:  # more digits than any id has: asking the database would overflow
        return ui.no_action(raw)
    async with svc.db.session() as session:
        record = await action_record(session, action_id)
    if record is None:
        return ui.no_action(raw)
    page = action_url(svc.settings, action_id, user_id, svc.clock())  # signed for who asked
    return record_message(record, svc.settings.public_url or "", page_url=page)


async def _service(svc: Services, user_id: str, args: list[str]) -> Message:
    if not args:
        return ui.help_message("Which service? Use `/ai-actions service NAME`.")
    if args[0] not in svc.policy.services:
        return ui.unknown_service(svc.policy, args[0])
    async with svc.db.session() as session:
        rows = await repo.page(session, service=args[0], limit=10)
    people = await mention_ids(svc, [*ui.owner_people(svc.policy, args[0]), *ui.people_in(a for a, _ in rows)])
    # The service page (/s/NAME) is otherwise reachable only from an action's page.
    page = service_url(svc.settings, args[0], user_id, svc.clock())  # signed for who asked
    paused, granted = (await svc.autonomy.current()).at_service(args[0], svc.clock())
    return ui.service_message(svc.policy, args[0], [(a, g.name) for a, g in rows], people=people, page_url=page,
                              in_force=in_force_text(paused, granted))


async def _who_owns(svc: Services, user_id: str, args: list[str]) -> Message:
    if not args:
        return ui.help_message("Which service? Use `/ai-actions who-owns SERVICE`.")
    if args[0] not in svc.policy.services:
        return ui.unknown_service(svc.policy, args[0])
    people = await mention_ids(svc, ui.owner_people(svc.policy, args[0]))
    return ui.who_owns_message(svc.policy, args[0], people=people)



def stats_window(args: list[str]) -> tuple[timedelta, str]:
    """`stats [WINDOW]` (`24h`, `7d`, `30d`, `1d12h`; 7 days when left out): the window and how the
    answer names it. ValueError (its text is the answer) for one we cannot read or will not scan."""
    word = args[0].lower() if args else "7d"
    try:
        seconds = parse_duration(word)
    except ValueError:
        raise ValueError(f"Cannot read the window `{escape(word[:40])}`: use e.g. `/ai-actions stats 24h`, "
                         "`stats 7d` or `stats 30d`.") from None
    if not MIN_WINDOW <= seconds <= MAX_WINDOW:
        raise ValueError(f"The window `{escape(word[:40])}` must be at least 1 minute and at most 90 days.")
    return timedelta(seconds=seconds), window_label(seconds)


def window_label(seconds: float) -> str:
    """The window in the largest unit that is exact: `last 7 days`, `last 24 hours` (hours up to two
    days, as people say "the last 36 hours"), `last 90 minutes`."""
    for unit, size, least in (("day", 86400, 2 * 86400), ("hour", 3600, 3600), ("minute", 60, 60)):
        if seconds >= least and seconds % size == 0:
            count = int(seconds // size)
            return f"last {count} {unit}s" if count > 1 else f"last {unit}"
    return f"last {spoken(seconds)}"


async def _stats(svc: Services, user_id: str, args: list[str]) -> Message:
    try:
        window, label = stats_window(args)
    except ValueError as exc:  # a window we cannot read or will not scan: a mistake, never shared
        return Private(message(str(exc), [section(f":warning: {exc}")]))
    until = svc.clock()
    async with svc.db.session() as session:
        figures = await stats.window_stats(session, until - window, until)
    people = await mention_ids(svc, [a.decided_by for a in figures.recent_defaults])
    return ui.stats_message(figures, label, people)


async def _help(svc: Services, user_id: str, args: list[str]) -> Message:
    return ui.help_message()


SUBCOMMANDS = {
    "recent": _recent, "pending": _pending, "mine": _mine, "show": _show, "service": _service,
    "who-owns": _who_owns, "whoowns": _who_owns, "owner": _who_owns, "stats": _stats, "help": _help,
    **slash_autonomy.SUBCOMMANDS,  # trust, pause, resume, pauses
}
