"""Accepting an agent's action: policy, freezing, first page, ledger, idempotency.

An action answered 201 is in the database before the answer: the action, its first page in the
outbox, its ledger entry and the stored idempotent response commit in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from bot.contract.errors import ApiError
from bot.contract.schemas import ActionIn
from bot.contract.serialize import action_json
from bot.delivery.messages import Kind, send
from bot.escalation.paging import advance
from bot.escalation.plan import freeze
from bot.policy.rules import evaluate
from bot.services import Services
from storage.ledger import chain as ledger
from storage.models import Action, Agent, IdempotencyKey

# A key whose first request died mid-flight is taken over after this long.
ABANDONED_AFTER = timedelta(seconds=60)


def body_hash(raw: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def submit(
    svc: Services, agent: Agent, req: ActionIn, *, idempotency_key: str | None = None, raw: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Returns (HTTP status, body). Raises ApiError for a refusal (403, 409, 422)."""
    key_row_id = await _claim_key(svc, agent, idempotency_key, raw) if idempotency_key else None
    if isinstance(key_row_id, tuple):
        return key_row_id  # the stored response of the first request
    try:
        status, body = await _accept(svc, agent, req, key_row_id)
    except ApiError as exc:
        if key_row_id is not None:
            await _finish_key(svc, key_row_id, exc.status, exc.body())
        raise
    except BaseException:
        if key_row_id is not None:
            await _release_key(svc, key_row_id)
        raise
    return status, body


async def _accept(svc: Services, agent: Agent, req: ActionIn, key_row_id: int | None) -> tuple[int, dict]:
    policy, now = svc.policy, svc.clock()
    if req.service not in policy.services:
        known = ", ".join(sorted(policy.services)[:20])
        raise ApiError(422, "unknown_service",
                       f"service {req.service!r} is not in the policy (known: {known})", field="service")
    match = evaluate(policy, req.service, req.action_type, req.environment, req.kind)
    async with svc.db.session() as session:
        if match.mode == "forbidden":
            await _refuse(session, svc, agent, req, match.rule, now)
            error = ApiError(403, "forbidden",
                             f"policy forbids {req.action_type} on {req.service} ({req.environment})",
                             rule=match.index)
            if key_row_id is not None:
                await _store_key(session, key_row_id, error.status, error.body())
            await session.commit()
            raise error
        violation = req.kind == "executed" and match.mode == "approve"
        frozen = freeze(policy, req.service, match, violation=violation)
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
            owner=frozen["owner"],
            created_at=now,
            updated_at=now,
        )
        if match.mode == "autonomous":
            action.status, action.outcome = "recorded", "recorded"
            action.accountability, action.decision_via, action.decision_level = "policy", "policy", "owner"
            action.decided_at, action.decided_by, action.decided_by_name = now, frozen["owner"], "owner"
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
            if frozen.get("channel"):
                send(session, Kind.FYI, channel=frozen["channel"], action_id=action.id, purpose="fyi")
            await ledger.append(session, "decision", {"outcome": "recorded", "accountability": "policy",
                                                      "by": frozen["owner"], "via": "policy", "level": "owner",
                                                      "reason": action.decision_reason},
                                action_id=action.id, actor=frozen["owner"], at=now)
        else:
            await advance(session, action, now, fired={})  # brand new: nothing can have fired yet
        body = action_json(action, agent.name, svc.settings.base_url)
        if key_row_id is not None:
            await _store_key(session, key_row_id, 201, body)
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


# --- Idempotency-Key (IETF draft): same key+body -> same response; other body -> 422; in flight -> 409


async def _claim_key(
    svc: Services, agent: Agent, key: str, raw: dict[str, Any]
) -> int | tuple[int, dict[str, Any]]:
    digest, now = body_hash(raw), svc.clock()
    async with svc.db.session() as session:
        row = IdempotencyKey(agent_id=agent.id, key=key, request_hash=digest, created_at=now)  # type: ignore[arg-type]
        session.add(row)
        try:
            await session.commit()
            assert row.id is not None
            return row.id
        except IntegrityError:
            await session.rollback()
        existing = (
            await session.execute(
                select(IdempotencyKey).where(col(IdempotencyKey.agent_id) == agent.id,
                                             col(IdempotencyKey.key) == key)
            )
        ).scalar_one()
        if existing.request_hash != digest:
            raise ApiError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used with a different request body")
        if existing.in_flight:
            if now - existing.created_at < ABANDONED_AFTER:
                raise ApiError(409, "idempotency_key_in_flight",
                               "a request with this Idempotency-Key is still being processed; retry later")
            existing.created_at = now  # abandoned by a crashed request: take it over
            session.add(existing)
            await session.commit()
            assert existing.id is not None
            return existing.id
        assert existing.response_status is not None and existing.response_body is not None
        if existing.response_status >= 400:
            err = dict(existing.response_body["error"])
            raise ApiError(existing.response_status, err.pop("code"), err.pop("message"), **err)
        return existing.response_status, existing.response_body


async def _store_key(session: Any, key_row_id: int, status: int, body: dict[str, Any]) -> None:
    row = await session.get(IdempotencyKey, key_row_id)
    row.in_flight, row.response_status, row.response_body = False, status, body
    session.add(row)


async def _finish_key(svc: Services, key_row_id: int, status: int, body: dict[str, Any]) -> None:
    async with svc.db.session() as session:
        row = await session.get(IdempotencyKey, key_row_id)
        if row is not None and row.in_flight:
            if status in (409, 422) or status >= 500:
                await session.delete(row)  # not a final answer for this key: let a retry run
            else:
                await _store_key(session, key_row_id, status, body)
        await session.commit()


async def _release_key(svc: Services, key_row_id: int) -> None:
    async with svc.db.session() as session:
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == key_row_id))  # type: ignore[arg-type]
        await session.commit()
