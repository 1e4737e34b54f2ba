"""`/ai-actions approve ID [reason]`, `override ID REASON`, `ack ID`: deciding from the command line,
with exactly the buttons' rules (bot.actions.decisions), recorded `via: "slash"`. The answer is
ephemeral (the command's); a refusal is recorded by decisions like a refused click."""

from __future__ import annotations

from bot.actions.decisions import respond
from bot.delivery.directory import mention_ids
from bot.services import Services
from handlers.blocks import commands as ui
from handlers.blocks import notices
from handlers.blocks.kit import Message, escape, link, message, section
from handlers.listeners.command_text import typed_id
from handlers.web.links import action_url
from handlers.web.names import display_name

USAGE = {
    "approve": "`/ai-actions approve ID [reason]`",
    "override": "`/ai-actions override ID REASON` (a reason is required)",
    "acknowledge": "`/ai-actions ack ID`",
}
DONE = {"approved": "Approved", "denied": "Denied", "acknowledged": "Acknowledged", "overridden": "Overridden"}


async def decide(svc: Services, user_id: str, response: str, args: list[str], *,
                 user_name: str | None = None) -> Message:
    """Parse `ID [reason…]` and respond as a click would; the answer says what happened. The name
    recorded is Slack's display name, else the command's `user_name` (a click records the payload's)."""
    ref = typed_id(args)
    if ref is None:
        return ui.help_message(f"Which action? Use {USAGE[response]}, e.g. with the id from the card.")
    raw, action_id = ref
    if action_id is None:  # more digits than any id has: no action to decide, nothing to record
        return ui.no_action(raw)
    reason = " ".join(args[1:]).strip() or None
    result = await respond(svc, action_id, user_id=user_id, user_name=await display_name(svc, user_id) or user_name,
                           response=response, via="slash", reason=reason)
    if not result.accepted:
        if result.refusal == "not_found":
            return ui.no_action(raw)
        people = await mention_ids(svc, notices.refused_people(result.refusal, result.action))
        answer = notices.refused(result.refusal, result.message, result.action, people)
        if result.refusal == "reason_required":
            answer = notices.refusal(f"An override needs a reason: {USAGE['override']}.")
        return answer
    action = result.action
    assert action is not None
    word = DONE.get(action.status, action.status)
    page = action_url(svc.settings, action_id, user_id, svc.clock())
    text = (f":white_check_mark: *{word}* action {action_id}: {escape(action.summary)}. You are recorded as "
            f"accountable; the cards are updated and the agent is told. {link(page, 'Open the action page')}")
    return message(f"{word} action {action_id}", [section(text)])


# answer_for dispatches these words to decide(): the response each records.
RESPONSES = {"approve": "approve", "override": "override", "ack": "acknowledge", "acknowledge": "acknowledge"}
