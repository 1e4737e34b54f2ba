"""The JSON shape of an action, as SPEC's `GET /v1/actions/{id}` gives it.

Here, above the escalation room, because the owner, secondary and rule come from the escalation
snapshot frozen into the action; the decision's JSON (bot.contract.serialize) needs none of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.contract.serialize import decision_json, iso
from bot.escalation.snapshot import snapshot_of
from storage.models import Action


def action_json(action: Action, agent_name: str | None, base_url: str = "",
                paging: tuple[Mapping[str, str], bool] | None = None) -> dict[str, Any]:
    """`paging`: the levels whose page failed for good, and whether a card reached Slack since
    (storage.queries.paging.unreachable_view)."""
    failed, shown = paging or ({}, False)
    snapshot = snapshot_of(action)
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
        "owner": action.owner or snapshot.owner,
        "secondary": snapshot.secondary,
        "rule": {"index": snapshot.rule_index, "mode": snapshot.mode, "rule": snapshot.rule},
        "escalation": {"level": action.level, "next_at": iso(action.next_at),
                       # added by issue 15: no level could be paged (every page failed for good)
                       "unreachable": action.status == "pending" and not shown and snapshot.unreachable(failed),
                       "failed_levels": sorted(failed)},
        "decision": decision_json(action),
        "created_at": iso(action.created_at),
        "updated_at": iso(action.updated_at),
        "links": {
            "self": f"{base_url}/v1/actions/{action.id}",
            "decision": f"{base_url}/v1/actions/{action.id}/decision",
        },
    }
