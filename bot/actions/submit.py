"""Accepting an agent's action: policy, freezing, first page, ledger.

An action answered 201 is in the database before the answer: the action, its first page in the
outbox, its ledger entry and the stored idempotent response (bot.actions.idempotency) commit in one
transaction.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from bot.actions import idempotency
from bot.actions.idempotency import Answer
from bot.actions.serialize import action_json
from bot.contract.errors import ApiError
from bot.contract.schemas import ActionIn
from bot.delivery.messages import Kind, send
from bot.escalation.paging import advance
from bot.escalation.snapshot import freeze
from bot.policy.autonomy import apply
from bot.policy.rules import evaluate
from bot.services import Services
from storage.ledger import chain as ledger
from storage.models import Action, Agent

# Refusals at ingest, by their error code: a rule forbids the action, or the policy lacks its service.
REFUSED = frozenset({"forbidden", "unknown_service"})


async def submit(
    svc: Services, agent: Agent, req: ActionIn, *, idempotency_key: str | None = None, raw: dict[str, Any]
) -> Answer:
    """Returns (HTTP status, body). Raises ApiError for a refusal (403, 409, 422)."""
    return await idempotency.once(svc, agent, idempotency_key, raw, partial(_counted, svc, agent, req))


async def _counted(svc: Services, agent: Agent, req: ActionIn, key_row_id: int | None) -> Answer:
    """Accept, and count what was refused or decided at once (a repeat answered from the stored
    response never comes here, so it is not counted twice)."""
    try:
        status, body = await _accept(svc, agent, req, key_row_id)
    except ApiError as exc:
        if exc.code in REFUSED:
            svc.metrics.actions_refused.labels(exc.code).inc()
        raise
    decision = body["decision"]
    if decision is not None:  # autonomous: the policy decided on arrival
        svc.metrics.decided(outcome=decision["outcome"], accountability=decision["accountability"],
                            via=decision["via"])
    return status, body


async def _accept(svc: Services, agent: Agent, req: ActionIn, key_row_id: int | None) -> tuple[int, dict]:
    policy, now = svc.policy, svc.clock()
    if req.service not in policy.services:
        known = ", ".join(sorted(policy.services)[:20])
        raise ApiError(422, "unknown_service",
                       f"service {req.service!r} is not in the policy (known: {known})", field="service")
    match = evaluate(policy, req.service, req.action_type, req.environment, req.kind)
    # Grants and pauses in force (bot.autonomy.state, cached): frozen into the action like the rule.
    applied = apply(match, await svc.autonomy.current(), agent=agent.name, service=req.service,
                    action_type=req.action_type, environment=req.environment, now=now)
    match = applied.match
    async with svc.db.session() as session:
        if match.mode == "forbidden":
            await _refuse(session, svc, agent, req, match.rule, now)
            error = ApiError(403, "forbidden",
                             f"policy forbids {req.action_type} on {req.service} ({req.environment})",
                             rule=match.index)
            if key_row_id is not None:
                await idempotency.store(session, key_row_id, error.status, error.body())
            await session.commit()
            raise error
        violation = req.kind == "executed" and match.mode == "approve"
        snapshot = freeze(policy, req.service, match, violation=violation)
        frozen = snapshot.to_json()
        action = Action(
            agent_id=agent.id,  # type: ignore[arg-type]
            kind=req.kind,
            service=req.service,
            action_type=req.action_type,
            summary=req.summary,
            rationale=req.rationale,
            environment=req.environment,
            confidence=req.confidence,
            evidence=[{"label": e.label, "url": str(e.url)} for e in req.evidence],
            executed_at=req.executed_at,
            callback_url=str(req.callback_url) if req.callback_url else None,
            external_id=req.external_id,
            model=req.model.model_dump() if req.model else None,
            extra=req.metadata,
            mode=match.mode,
            status="pending",
            policy_violation=violation,
            frozen=frozen,
            owner=snapshot.owner,
            created_at=now,
            updated_at=now,
        )
        if match.mode == "autonomous":
            action.status, action.outcome = "recorded", "recorded"
            action.accountability, action.decision_via, action.decision_level = "policy", "policy", "owner"
            action.decided_at, action.decided_by, action.decided_by_name = now, snapshot.owner, "owner"
            action.decision_reason = f"autonomous under rule {match.index}: the service owner owns the rule"
        session.add(action)
        await session.flush()
        assert action.id is not None
        await ledger.append(
            session,
            "action.submitted",
            {
                "agent": agent.name,
                "kind": req.kind,
                "service": req.service,
                "action_type": req.action_type,
                "environment": req.environment,
                "summary": req.summary,
                "rationale": req.rationale,
                "confidence": req.confidence,
                "evidence": action.evidence,
                "model": action.model,
                "mode": match.mode,
                "policy_violation": violation,
                "frozen": frozen,
            },
            action_id=action.id,
            actor=f"agent:{agent.name}",
            at=now,
        )
        if match.mode == "autonomous":
            if snapshot.channel:
                send(session, Kind.FYI, channel=snapshot.channel, action_id=action.id, purpose="fyi")
            await ledger.append(session, "decision", {"outcome": "recorded", "accountability": "policy",
                                                      "by": snapshot.owner, "via": "policy", "level": "owner",
                                                      "reason": action.decision_reason},
                                action_id=action.id, actor=snapshot.owner, at=now)
        else:
            await advance(session, action, now, fired={})  # brand new: nothing can have fired yet
        body = action_json(action, agent.name, svc.settings.base_url)
        body["paused"] = applied.pause.json() if applied.pause else None
        if key_row_id is not None:
            await idempotency.store(session, key_row_id, 201, body)
        await session.commit()
    return 201, body


async def _refuse(session: Any, svc: Services, agent: Agent, req: ActionIn, rule: dict, now: Any) -> None:
    """A forbidden action is not stored as an action, but recorded and reported to the service channel."""
    details = {
        "agent": agent.name,
        "service": req.service,
        "action_type": req.action_type,
        "environment": req.environment,
        "kind": req.kind,
        "summary": req.summary,
        "rationale": req.rationale,
        "rule": rule,
    }
    await ledger.append(session, "action.forbidden", details, actor=f"agent:{agent.name}", at=now)
    channel = svc.policy.services[req.service].channel
    if channel:
        send(session, Kind.FORBIDDEN, channel=channel, purpose="forbidden", refused=details)
