"""Responding to an action: who may, what each response means, and the first valid one wins.

Every attempt is recorded (accepted or refused) in `responses` and in the ledger. The decision
is a compare-and-set on the action's status, so two people clicking at once yield one decision,
and a response and an escalation step contend for the same row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.actions.rules import OUTCOMES, allowed_responses
from bot.delivery.callbacks import queue_callback
from bot.delivery.directory import resolve_all
from bot.delivery.messages import update_cards
from bot.escalation.home_refresh import refresh_homes
from bot.escalation.snapshot import snapshot_of
from bot.services import Services
from storage.ledger import chain as ledger
from storage.models import Action, Response
from storage.queries import actions as repo

Via = Literal["button", "slash", "web", "api"]


@dataclass(frozen=True)
class Result:
    accepted: bool
    action: Action | None
    refusal: str | None = None  # not_found | not_authorized | not_applicable | reason_required | already_decided
    message: str = ""


async def may_respond(svc: Services, action: Action, user_id: str) -> bool:
    """The people paged so far (the set only grows with each level) and the policy's admins."""
    people = snapshot_of(action).people_up_to(action.level or "owner")
    return user_id in people or user_id in await resolve_all(svc, [p for p in people if "@" in p])


async def respond(
    svc: Services,
    action_id: int,
    *,
    user_id: str,
    user_name: str | None,
    response: str,
    via: Via,
    reason: str | None = None,
) -> Result:
    now = svc.clock()
    reason = (reason or "").strip() or None
    async with svc.db.session() as session:
        action = await repo.get(session, action_id)
        if action is None:
            return Result(False, None, "not_found", f"There is no action {action_id}.")
        # may_respond may resolve an email in a session of its own: on SQLite every transaction
        # holds the writer lock, so end this read first or the two wait on each other (30 s, then fail).
        await session.commit()
        refusal, message = None, ""
        if not await may_respond(svc, action, user_id):
            refusal = "not_authorized"
            message = (f"You are not paged for action {action_id}: only its owner, the people it has "
                       "escalated to, and admins may respond. Your attempt was recorded.")
        elif action.status != "pending":
            refusal = "already_decided"
            message = _already_decided(action)
        elif response not in allowed_responses(action):
            refusal = "not_applicable"
            message = f"'{response}' does not apply to a {action.kind} action."
        elif response == "override" and not reason:
            refusal = "reason_required"
            message = "An override needs a reason."
        if refusal is None:
            status = OUTCOMES[(action.kind, response)]
            won = await repo.decide(
                session, action_id, expect_status="pending",
                status=status, outcome=status, decided_at=now, decided_by=user_id, decided_by_name=user_name,
                accountability="explicit", decision_level=action.level, decision_via=via,
                decision_reason=reason, next_at=None,
            )
            if not won:
                await session.rollback()
                await session.refresh(action)  # see who won
                refusal, message = "already_decided", _already_decided(action)
        await repo.add_response(session, Response(
            action_id=action_id, slack_user_id=user_id, user_name=user_name, response=response, via=via,
            reason=reason, accepted=refusal is None, refusal=refusal, level=action.level, created_at=now,
        ))
        event = "decision" if refusal is None else "response.refused"
        data = {"response": response, "by": user_id, "name": user_name, "via": via, "reason": reason,
                "level": action.level}
        if refusal is None:
            data.update(outcome=OUTCOMES[(action.kind, response)], accountability="explicit")
        else:
            data["refusal"] = refusal
        await ledger.append(session, event, data, action_id=action_id, actor=user_id, at=now)
        if refusal is None:
            await session.refresh(action)
            update_cards(session, action_id)
            refresh_homes(session, action)  # the decider's and the paged people's App Homes
            queue_callback(session, action)
        await session.commit()
    if refusal is None:
        svc.metrics.decided(outcome=action.outcome, accountability="explicit", via=via)
        for listener in svc.decision_listeners:
            listener(action_id)  # wake the agents long-polling for this decision
        for hook in svc.decided_hooks:
            await hook(action_id)  # e.g. the automatic brake counts overrides
    return Result(refusal is None, action, refusal, message)


def _already_decided(action: Action) -> str:
    """Plain words; Slack's refusal (handlers.blocks.notices.refused) mentions the decider instead."""
    who = action.decided_by_name or action.decided_by or "someone"
    return f"Action {action.id} was already decided: {action.outcome} by {who}."
