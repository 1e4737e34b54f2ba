"""An agent's result for its action (`POST /v1/actions/{id}/result`): stored once, in the ledger, on
every copy of the card, and a failure told to the service channel and whoever was accountable.

Not the human decision (`decision.outcome`): this is what happened when the action ran.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from bot.autonomy import brake
from bot.contract.errors import ApiError
from bot.contract.schemas import ResultIn
from bot.contract.serialize import iso
from bot.delivery.messages import Kind, send, update_cards
from bot.services import Services
from storage.ledger import chain as ledger
from storage.models import Action, ActionResult, Agent
from storage.queries import actions as repo
from storage.queries import autonomy as q
from storage.queries import trust_rollup

# A proposal runs once it is approved (or was autonomous: go ahead); an executed action already ran.
RAN = {"proposed": {"approved", "recorded"}}
BAD = {"failed", "rolled_back"}


def result_json(row: ActionResult | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"result": row.result, "detail": row.detail, "evidence": row.evidence or [], "at": iso(row.created_at)}


def _hash(req: ResultIn) -> str:
    return hashlib.sha256(rfc8785.dumps(req.model_dump(mode="json"))).hexdigest()


def not_found(action_id: int) -> ApiError:
    return ApiError(404, "not_found", f"there is no action {action_id}")


async def report(svc: Services, agent: Agent, action_id: int, req: ResultIn) -> dict[str, Any]:
    """The stored result (the same body again: the same answer). Raises ApiError 404 / 409."""
    now, digest = svc.clock(), _hash(req)
    async with svc.db.session() as session:
        action = await repo.get(session, action_id)
        if action is None or action.agent_id != agent.id:
            raise not_found(action_id)  # another agent's action does not exist for this one
        existing = await q.result_for(session, action_id)
        if existing is None:
            _check_ran(action)
            row = ActionResult(action_id=action_id, agent_id=agent.id, result=req.result, detail=req.detail,
                               evidence=[{"label": e.label, "url": str(e.url)} for e in req.evidence],
                               request_hash=digest, created_at=now)
            if await q.add_once(session, row):
                await trust_rollup.mark(session, action.created_at, now)  # a result after the action's day
                await _record(session, svc, action, agent, row)
                await session.commit()
                existing = row
                if row.result in BAD:
                    await brake.check(svc, agent.id or 0, agent.name, action.service)
            else:  # a concurrent first report won
                await session.rollback()
                existing = await q.result_for(session, action_id)
        assert existing is not None
    if existing.request_hash != digest:
        raise ApiError(409, "result_conflict", f"action {action_id} already has a result "
                       f"({existing.result}); a result is stored once", result=result_json(existing))
    out = result_json(existing)
    assert out is not None
    return {"id": action_id, **out}


def _check_ran(action: Action) -> None:
    ran = RAN.get(action.kind)
    # `on_timeout: approve` told the agent to go ahead: status expired, outcome approved.
    if ran is not None and action.status not in ran and action.outcome != "approved":
        why = {"pending": "it is still waiting for a decision", "denied": "it was denied",
               "expired": "its proposal expired"}.get(action.status, f"its status is {action.status}")
        raise ApiError(409, "not_run", f"action {action.id} never ran: {why}", field="result")


async def _record(session: Any, svc: Services, action: Action, agent: Agent, row: ActionResult) -> None:
    data = {"result": row.result, "detail": row.detail, "evidence": row.evidence}
    await ledger.append(session, "action.result", data, action_id=action.id, actor=f"agent:{agent.name}",
                        at=row.created_at)
    update_cards(session, action.id or 0)
    if row.result in BAD:
        payload = {"event": "result", "action": action.id, "summary": action.summary, "service": action.service,
                   "agent": agent.name, **data}
        channel = svc.policy.services[action.service].channel if action.service in svc.policy.services else None
        if channel:
            send(session, Kind.AUTONOMY, channel=channel, action_id=action.id, purpose="autonomy", notice=payload)
        who = action.decided_by if action.decided_by and action.decided_by[:1] in ("U", "W") else action.owner
        if who:
            send(session, Kind.AUTONOMY, channel=who, action_id=action.id, purpose="autonomy", notice=payload)
