"""Accepting an agent's action: `prepare` (no database: policy, frozen chain), then `write` (the
action, its first page in the outbox, its ledger entries) in the caller's transaction.

An action answered 201 is in the database before the answer: the action, its first page in the
outbox, its ledger entries and the stored idempotent response (bot.actions.idempotency) commit in
one transaction. Two callers: `submit` (one request, one transaction: the single path, and the
fallback) and bot.actions.writer (the group-commit path: many requests, one transaction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.actions import idempotency
from bot.actions.frozen import frozen_snapshot, ledger_json, rule_match, stored_json
from bot.actions.idempotency import Answer
from bot.actions.serialize import action_json
from bot.contract.errors import ApiError, unauthorized
from bot.contract.schemas import ActionIn
from bot.delivery.callbacks import queue_callback
from bot.delivery.messages import Kind, send
from bot.escalation.paging import Effects, advance
from bot.escalation.snapshot import EscalationSnapshot
from bot.policy.autonomy import InForce, PauseInForce, apply
from bot.policy.rules import RuleMatch, rule_label
from bot.services import Services
from storage.ledger import chain as ledger
from storage.models import Action, Agent
from storage.queries import ingest
from storage.rows import new_row

# Refusals at ingest, by their error code: a rule forbids the action, or the policy lacks its service.
REFUSED = frozenset({"forbidden", "unknown_service"})


@dataclass(frozen=True)
class Prepared:
    """A submission checked and evaluated without the database, ready to be written."""

    agent: Agent
    req: ActionIn
    raw: dict[str, Any]
    key: str | None  # its Idempotency-Key
    digest: str | None  # the body's hash, when it has a key
    now: datetime
    match: RuleMatch
    snapshot: EscalationSnapshot | None  # None: the policy forbids it
    pause: PauseInForce | None = None  # the pause that made it `approve` (the 201's `paused`)
    # The token cache's epoch when its agent was looked up there (bot.actions.tokens); None: read
    # from the database. The writer re-checks the agent of a submission from an older epoch.
    auth_epoch: int | None = None

    def refusal(self) -> ApiError:
        req = self.req
        return ApiError(403, "forbidden", f"policy forbids {req.action_type} on {req.service} ({req.environment})",
                        rule=self.match.index)


def prepare(svc: Services, agent: Agent, req: ActionIn, *, raw: dict[str, Any],
            idempotency_key: str | None = None, in_force: InForce | None = None,
            auth_epoch: int | None = None) -> Prepared:
    """Everything that needs no database, before a submission queues for the writer: the agent was
    authenticated (bot.actions.tokens) and the body validated (ActionIn) by the route; here the
    policy is evaluated (the one call of `evaluate` at ingest) and the escalation chain frozen.
    Raises the 422 for a service the policy does not know."""
    policy, now = svc.policy, svc.clock()
    if req.service not in policy.services:
        known = ", ".join(sorted(policy.services)[:20])
        svc.metrics.actions_refused.labels("unknown_service").inc()
        raise ApiError(422, "unknown_service",
                       f"service {req.service!r} is not in the policy (known: {known})", field="service")
    match = rule_match(policy, req.service, req.action_type, req.environment, req.kind)  # memoised
    pause = None
    if in_force is not None:  # grants and pauses in force (bot.autonomy.state): frozen in like the rule
        applied = apply(match, in_force, agent=agent.name, service=req.service, action_type=req.action_type,
                        environment=req.environment, now=now)
        match, pause = applied.match, applied.pause
    snapshot = None
    if match.mode != "forbidden":
        snapshot = frozen_snapshot(policy, req.service, match,
                                   violation=req.kind == "executed" and match.mode == "approve")
    digest = idempotency.body_hash(raw) if idempotency_key else None
    return Prepared(agent, req, raw, idempotency_key, digest, now, match, snapshot, pause, auth_epoch)


def build_action(prep: Prepared) -> Action | None:
    """The action's row, not yet stored (None for a forbidden one)."""
    snapshot, req, now = prep.snapshot, prep.req, prep.now
    if snapshot is None:
        return None
    action = new_row(
        Action,
        agent_id=prep.agent.id,  # type: ignore[arg-type]
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
        mode=prep.match.mode,
        status="pending",
        policy_violation=snapshot.violation,
        frozen=stored_json(snapshot),  # one dict per snapshot, shared (bot.actions.frozen)
        owner=snapshot.owner,
        created_at=now,
        updated_at=now,
    )
    if prep.match.mode == "autonomous":
        action.status, action.outcome = "recorded", "recorded"
        action.accountability, action.decision_via, action.decision_level = "policy", "policy", "owner"
        action.decided_at, action.decided_by, action.decided_by_name = now, snapshot.owner, "owner"
        action.decision_reason = f"autonomous under {rule_label(prep.match.index)}: the service owner owns the rule"
    return action


async def write(session: AsyncSession, svc: Services, prep: Prepared, action: Action | None, *,
                effects: Effects, recorded: set[str] | None = None) -> None:
    """The ledger entries and the first steps of one submission (its action already flushed, with
    its id), in the caller's transaction. Outbox messages and the action's escalation state go to
    `effects`, applied by the caller after the last submission of its transaction, in order."""
    req, now, agent = prep.req, prep.now, prep.agent
    if action is None:
        await _refuse(session, svc, prep, effects)
        return
    assert action.id is not None and prep.snapshot is not None
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
            "mode": prep.match.mode,
            "policy_violation": action.policy_violation,
            "frozen": ledger_json(prep.snapshot, action.frozen),  # converted once per snapshot
        },
        action_id=action.id,
        actor=f"agent:{agent.name}",
        at=now,
    )
    if prep.match.mode == "autonomous":
        snapshot = prep.snapshot
        if snapshot.channel:
            effects.append(partial(send, session, Kind.FYI, channel=snapshot.channel, action_id=action.id,
                                   purpose="fyi"))
        effects.append(partial(queue_callback, session, action))  # SPEC: on a decision, the agent is told
        await ledger.append(session, "decision", {"outcome": "recorded", "accountability": "policy",
                                                  "by": snapshot.owner, "via": "policy", "level": "owner",
                                                  "reason": action.decision_reason},
                            action_id=action.id, actor=snapshot.owner, at=now)
    else:  # brand new: nothing can have fired yet
        await advance(session, action, now, fired={}, recorded=recorded, effects=effects)


def answer(svc: Services, prep: Prepared, action: Action | None) -> Answer:
    """The 201 (after the effects were applied), or the 403 body of a forbidden submission."""
    if action is None:
        error = prep.refusal()
        return error.status, error.body()
    body = action_json(action, prep.agent.name, svc.settings.base_url)
    body["paused"] = prep.pause.json() if prep.pause else None
    return 201, body


def count(svc: Services, status: int, body: dict[str, Any]) -> None:
    """After the commit: what was refused or decided at once (a repeat answered from a stored
    response is never counted again)."""
    if status == 403:
        svc.metrics.actions_refused.labels("forbidden").inc()
        return
    decision = body.get("decision")
    if decision is not None:  # autonomous: the policy decided on arrival
        svc.metrics.decided(outcome=decision["outcome"], accountability=decision["accountability"],
                            via=decision["via"])


def raise_or_return(status: int, body: dict[str, Any]) -> Answer:
    if status >= 400:
        err = dict(body["error"])
        raise ApiError(status, err.pop("code"), err.pop("message"), **err)
    return status, body


async def submit(
    svc: Services, agent: Agent, req: ActionIn, *, idempotency_key: str | None = None, raw: dict[str, Any]
) -> Answer:
    """The single path: prepare and write one submission in its own transaction. Returns (HTTP
    status, body). Raises ApiError for a refusal (403, 409, 422)."""
    in_force = await svc.autonomy.current()
    return await submit_prepared(svc, prepare(svc, agent, req, raw=raw, idempotency_key=idempotency_key,
                                              in_force=in_force))


async def submit_prepared(svc: Services, prep: Prepared) -> Answer:
    return await idempotency.once(svc, prep.agent, prep.key, prep.raw, partial(_single, svc, prep))


async def _single(svc: Services, prep: Prepared, key_row_id: int | None) -> Answer:
    async with svc.db.session() as session:
        # The token may come from the cache (bot.actions.tokens), and this path is also the fallback
        # of a batch that failed (its revocation check rolled back with it): check it here, in the
        # transaction that writes, as a batch does.
        if prep.agent.id is not None and await ingest.revoked_among(session, {prep.agent.id}):
            raise unauthorized()
        action = build_action(prep)
        if action is not None:
            session.add(action)
            await session.flush()
        effects: list[Callable[[], object]] = []
        await write(session, svc, prep, action, effects=effects)
        for effect in effects:
            effect()
        status, body = answer(svc, prep, action)
        if key_row_id is not None:
            await idempotency.store(session, key_row_id, status, body)
        await session.commit()
    count(svc, status, body)
    return raise_or_return(status, body)


async def _refuse(session: AsyncSession, svc: Services, prep: Prepared, effects: Effects) -> None:
    """A forbidden action is not stored as an action, but recorded and reported to the service channel."""
    req, agent = prep.req, prep.agent
    details = {
        "agent": agent.name,
        "service": req.service,
        "action_type": req.action_type,
        "environment": req.environment,
        "kind": req.kind,
        "summary": req.summary,
        "rationale": req.rationale,
        "rule": prep.match.rule,
    }
    await ledger.append(session, "action.forbidden", details, actor=f"agent:{agent.name}", at=prep.now)
    channel = svc.policy.services[req.service].channel
    if channel:
        effects.append(partial(send, session, Kind.FORBIDDEN, channel=channel, purpose="forbidden",
                               refused=details))
