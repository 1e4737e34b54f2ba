"""The JSON shape of an action, as SPEC's `GET /v1/actions/{id}` gives it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.models import Action


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def decision_json(action: Action) -> dict[str, Any] | None:
    if action.accountability is None:
        return None
    return {
        "outcome": action.outcome,
        "by": {"slack_user_id": action.decided_by, "name": action.decided_by_name},
        "accountability": action.accountability,
        "level": action.decision_level,
        "via": action.decision_via,
        "at": iso(action.decided_at),
        "reason": action.decision_reason,
    }


def action_json(action: Action, agent_name: str | None, base_url: str = "") -> dict[str, Any]:
    frozen = action.frozen or {}
    return {
        "id": action.id,
        "kind": action.kind,
        "status": action.status,
        "mode": action.mode,
        "policy_violation": action.policy_violation,
        "agent": agent_name,
        "service": action.service,
        "action_type": action.action_type,
        "environment": action.environment,
        "summary": action.summary,
        "rationale": action.rationale,
        "confidence": action.confidence,
        "evidence": action.evidence or [],
        "executed_at": iso(action.executed_at),
        "callback_url": action.callback_url,
        "external_id": action.external_id,
        "model": action.model,
        "metadata": action.extra,
        "owner": action.owner or frozen.get("owner"),
        "secondary": frozen.get("secondary"),
        "rule": {"index": frozen.get("rule_index"), "mode": frozen.get("mode"), "rule": frozen.get("rule")},
        "escalation": {"level": action.level, "next_at": iso(action.next_at)},
        "decision": decision_json(action),
        "created_at": iso(action.created_at),
        "updated_at": iso(action.updated_at),
        "links": {
            "self": f"{base_url}/v1/actions/{action.id}",
            "decision": f"{base_url}/v1/actions/{action.id}/decision",
        },
    }
